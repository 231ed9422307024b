"""Analyses of a trained run (`coemogen analyze ...`): timesteps.py asks when in the denoising the
emotion enters."""
