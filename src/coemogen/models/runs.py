"""Run directories of every method: config.json records the method ("coemogen" or "emogen");
everything downstream (generate, evaluate, export, web) loads a run through these functions."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .. import registry
from ..errors import CoEmoGenError
from ..taxonomy import Taxonomy
from .clusters import EmotionClusters
from .coemogen import CoEmoGen, load_run
from .configs import METHOD_CONFIGS, RunConfig, read_run_config
from .emogen import EmoGen, load_emogen_run

# How each method's run is rebuilt around the base U-Net (CoEmoGen injects its HiLoRA into it;
# EmoGen leaves it untouched). A new method is its config in configs.METHOD_CONFIGS and a line here.
RUN_LOADERS = {
    "coemogen": lambda run_dir, unet, config, taxonomy, require: load_run(run_dir, unet, taxonomy, require, config),
    "emogen": lambda run_dir, unet, config, taxonomy, require: load_emogen_run(run_dir, config, taxonomy, require),
}


def run_or_default(run_dir: str | Path | None) -> Path:
    """`run_dir`, or without one the registered default run (the shipped synthetic-world run)."""
    if run_dir is not None:
        return Path(run_dir)
    default = registry.default_run()
    if default is None:
        raise CoEmoGenError("no run given (--model) and no default run registered (the synthetic world's plugin)")
    return default


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The configuration of a run of any method."""
    method = read_run_config(run_dir).get("method", "coemogen")
    if method not in METHOD_CONFIGS:
        raise CoEmoGenError(f"run '{run_dir}' records an unknown method '{method}'; known: {', '.join(METHOD_CONFIGS)}")
    return METHOD_CONFIGS[method].load(run_dir)


def load_method_run(
    run_dir: str | Path,
    unet: nn.Module,
    config: RunConfig,
    taxonomy: Taxonomy | None = None,
    require_clusters: bool = True,
) -> tuple[CoEmoGen | EmoGen, EmotionClusters | None]:
    """Rebuild a run around its frozen base U-Net, as its method does (`RUN_LOADERS`)."""
    return RUN_LOADERS[config.method](run_dir, unet, config, taxonomy, require_clusters)
