"""Training CoEmoGen: configuration (`config.py`), data and the balanced sampler (`data.py`), the
loop (`loop.py`: load components, build data, loop, finalise), resumable checkpoints
(`checkpoints.py`), and `fit.py`, the small supervised loop of the helper networks (pocket
models, world judges, the Emo-A head).

Import from the submodules; this package imports nothing heavy itself.
"""
