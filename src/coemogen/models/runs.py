"""Run directories of every method: config.json records the method ("coemogen" or "emogen");
everything downstream (generate, evaluate, export, web) loads a run through these two functions.
A new method is one entry in `METHODS`."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import CoEmoGenError
from ..taxonomy import Taxonomy
from .clusters import EmotionClusters
from .coemogen import CoEmoGen, CoEmoGenConfig, load_run, read_run_config
from .emogen import EmoGen, EmoGenConfig, load_emogen_run

METHODS = {"coemogen": CoEmoGenConfig, "emogen": EmoGenConfig}
RunConfig = CoEmoGenConfig | EmoGenConfig


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The configuration of a run of any method."""
    method = read_run_config(run_dir).get("method", "coemogen")
    if method not in METHODS:
        raise CoEmoGenError(f"run '{run_dir}' records an unknown method '{method}'; known: {', '.join(METHODS)}")
    return METHODS[method].load(run_dir)


def load_method_run(
    run_dir: str | Path,
    unet: nn.Module,
    config: RunConfig,
    taxonomy: Taxonomy | None = None,
    require_clusters: bool = True,
) -> tuple[CoEmoGen | EmoGen, EmotionClusters | None]:
    """Rebuild a run around its frozen base U-Net (CoEmoGen injects its HiLoRA into it; EmoGen
    leaves it untouched)."""
    if isinstance(config, EmoGenConfig):
        return load_emogen_run(run_dir, config, taxonomy, require_clusters)
    return load_run(run_dir, unet, taxonomy, require_clusters, config)
