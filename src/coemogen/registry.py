"""The seams through which clients extend the method without the method knowing them.

The method reads these registries; clients fill them. The synthetic world (`coemogen.world`) is
one such client: it registers its pocket models, its data defaults, its oracle captioner, its
judges and the shipped run (`coemogen/world/plugin.py`). A package of your own registers the same
way from a function named under the `coemogen.plugins` entry-point group in its metadata:

    [project.entry-points."coemogen.plugins"]
    mine = "my_package.coemogen_plugin:register"

Plugins are loaded once, the first time any registry is read (`load_plugins`).

- `model_aliases`: stable names of local model folders ("coemogen:pocket-sd"), so run directories
  record where their base models are without an install-specific path;
- `presets`: `--preset` names -> (Stable Diffusion, CLIP);
- `data_defaults`: functions of a data path returning defaults for data they recognise (the
  preset, EmoGen's emotion encoder), or None;
- `captioners`: caption schemes (`--captioner NAME`) -> a factory taking the captioner's options;
- `reference_networks`: functions of a reference dataset (and an optional CLIP for Sem-D) returning
  the metric networks that know it, or None;
- `default_run`: the run `generate`, `export` and `web` use without `--model`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "coemogen.plugins"

_model_aliases: dict[str, Path] = {}
_presets: dict[str, tuple[str, str]] = {
    "sd15": ("stable-diffusion-v1-5/stable-diffusion-v1-5", "openai/clip-vit-large-patch14"),
    # CLIP ViT-L/14 is also SDXL's first text encoder: its text tower has that encoder's width, so L_SEM
    # lives in ViT-L/14's image-text space, and its vision tower gives the image tokens v_i.
    "sdxl": ("stabilityai/stable-diffusion-xl-base-1.0", "openai/clip-vit-large-patch14"),
}
_preset_help: dict[str, str] = {
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5 + openai/clip-vit-large-patch14",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0 + openai/clip-vit-large-patch14",
}
_data_defaults: list[Callable[[Path], dict | None]] = []
_captioners: dict[str, Callable] = {}
_reference_networks: list[Callable] = []
_default_run: list[Path] = []
_reward_models: dict[str, Path] = {}
_loaded = False


def load_plugins() -> None:
    """Call every `coemogen.plugins` entry point's registration function, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()()
        except Exception as err:  # a broken plugin must not break the method
            logger.warning("coemogen plugin '%s' failed to register: %s", entry.name, err)


def register_model_alias(name: str, folder: str | Path) -> None:
    """Let `name` (e.g. "coemogen:pocket-sd") stand for the local model folder `folder` wherever a
    model id is accepted; run directories record the name, not the install's path."""
    _model_aliases[name] = Path(folder)


def register_preset(name: str, pretrained_model_name_or_path: str, clip_model_name_or_path: str, help: str) -> None:
    """Add `--preset name`: a Stable Diffusion and a CLIP (ids, folders or aliases), with its help text."""
    _presets[name] = (pretrained_model_name_or_path, clip_model_name_or_path)
    _preset_help[name] = help


def register_data_defaults(recognise: Callable[[Path], dict | None]) -> None:
    """`recognise(path)` returns defaults for data it knows ({"preset": ..., "emotion_encoder": ...})
    or None; the first function that recognises a path gives its defaults."""
    _data_defaults.append(recognise)


def register_captioner(scheme: str, factory: Callable) -> None:
    """`--captioner scheme[:arg]` builds `factory(arg, common, options)`: `common` holds the prompt
    template and emotion-prior flag, `options` the command's captioner options."""
    _captioners[scheme] = factory


def register_reference_networks(build: Callable) -> None:
    """`build(source, clip_model_name_or_path, evaluators)` returns the metric networks that know a
    reference dataset (or a base model's name), or None for one it does not know."""
    _reference_networks.append(build)


def register_default_run(run_dir: str | Path) -> None:
    """The run `generate`, `edit`, `export` and `web` use without `--model`."""
    _default_run[:] = [Path(run_dir)]


def register_reward_model(base_model: str, head_dir: str | Path) -> None:
    """The emotion reward `coemogen tune` uses for runs on `base_model` (a model id or alias as run
    configs record it) when no `--reward_model` is given: a head folder of `coemogen emotion-head train`."""
    _reward_models[base_model] = Path(head_dir)


def reward_model(base_model: str) -> Path | None:
    """The reward registered for runs on `base_model`, or None."""
    load_plugins()
    return _reward_models.get(base_model)


def model_aliases() -> dict[str, Path]:
    """Registered model names -> their folders."""
    load_plugins()
    return dict(_model_aliases)


def presets() -> dict[str, tuple[str, str]]:
    """`--preset` names -> (Stable Diffusion, CLIP)."""
    load_plugins()
    return dict(_presets)


def preset_help() -> str:
    """Every preset and what it loads, for `--help`."""
    load_plugins()
    return "; ".join(f"{name} = {text}" for name, text in _preset_help.items())


def data_defaults(path: str | Path | None) -> dict:
    """Defaults for the data at `path` from the first registered function that recognises it ({}
    for data no client knows)."""
    load_plugins()
    if path is None:
        return {}
    for recognise in _data_defaults:
        found = recognise(Path(path))
        if found is not None:
            return found
    return {}


def captioners() -> dict[str, Callable]:
    """Registered caption schemes -> their factories."""
    load_plugins()
    return dict(_captioners)


def reference_networks(reference: str | Path, clip_model_name_or_path: str | None = None, evaluators=None):
    """The metric networks a registered client has for this reference (None: no client knows it)."""
    load_plugins()
    for build in _reference_networks:
        networks = build(Path(reference), clip_model_name_or_path, evaluators)
        if networks is not None:
            return networks
    return None


def default_run() -> Path | None:
    """The registered default run, or None when no client registered one."""
    load_plugins()
    return _default_run[0] if _default_run else None
