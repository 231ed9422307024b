"""CoEmoGen: semantically-coherent, scalable emotional image generation (ICLR 2026).

The public API, importable from the top package:

- `CoEmoGenPipeline`: emotion (or mix) -> images, from a run directory or the shipped world run;
- `CoEmoGen`, `CoEmoGenConfig`: the model (mapper, visual-perception encoder, HiLoRA) and its config;
- `load_run`: rebuild a trained run around a base U-Net;
- `Taxonomy`: emotions grouped by polarity;
- `TrainingArguments`, `train`: training on a manifest.

Packages: `models/` (the method), `pipelines/` (generation), `training/`, `data/` (readers,
images, manifests), `captioning/` (captioners, the captioning run, the CLIP filter),
`evaluation/` (metrics, their networks, reports), `world/` (the synthetic world),
`experiments/` (demo, paper table), `cli/`. See docs/architecture.md.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Imported on first use, so `import coemogen` (and the command line) stays quick.
_EXPORTS = {
    "CoEmoGen": "coemogen.models.coemogen",
    "CoEmoGenConfig": "coemogen.models.configs",
    "load_run": "coemogen.models.coemogen",
    "CoEmoGenPipeline": "coemogen.pipelines.pipeline_coemogen",
    "Taxonomy": "coemogen.taxonomy",
    "TrainingArguments": "coemogen.training.config",
    "train": "coemogen.training.loop",
}
__all__ = ["CoEmoGen", "CoEmoGenConfig", "CoEmoGenPipeline", "Taxonomy", "TrainingArguments", "load_run", "train"]

if TYPE_CHECKING:
    from .models.coemogen import CoEmoGen, load_run
    from .models.configs import CoEmoGenConfig
    from .pipelines.pipeline_coemogen import CoEmoGenPipeline
    from .taxonomy import Taxonomy
    from .training.config import TrainingArguments
    from .training.loop import train


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'coemogen' has no attribute '{name}'")
