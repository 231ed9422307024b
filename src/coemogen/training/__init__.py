"""Training: configuration (`config.py`), data and the balanced sampler (`data.py`), the engine
(`loop.py`: one `train()` for every method, the loop, checkpoints, validation), the methods
(`coemogen.py`, `emogen.py`, registered by name in `loop.METHODS`), the feature cache
(`cache.py`), resumable checkpoints (`checkpoints.py`), and `fit.py`, the small supervised loop of
the helper networks (pocket models, world judges, the Emo-A head).

Import from the submodules; this package imports nothing heavy itself.
"""
