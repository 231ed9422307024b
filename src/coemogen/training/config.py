"""Training configuration, defined once.

`TrainingArguments` holds how to train (data, optimiser, schedule, checkpoints, logging, and which
method: `--method coemogen` or `emogen`); the model's hyper-parameters live in the method's
configuration (`CoEmoGenConfig`, `EmoGenConfig`). `add_training_flags` generates every `coemogen
train` flag from these dataclasses (names, types, defaults and help; a name two methods share is one
flag), and `split_training_flags` turns parsed flags back into the arguments and the chosen method's
hyper-parameters, so a new field is a new flag with no other edit.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, dataclass, field, fields

from .. import registry
from ..errors import CoEmoGenError
from ..models.configs import METHOD_CONFIGS as METHODS


def arg(default, help: str, choices: tuple | None = None, aliases: tuple[str, ...] = (), switch: bool = False):
    """A documented field; `switch=True` makes a bool a flag without a value (`--allow_tf32`), as in diffusers."""
    metadata = {"help": help, "choices": choices, "aliases": aliases, "switch": switch}
    if default is MISSING:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainingArguments:
    """How to train a method on a manifest (data, optimiser, schedule, checkpoints, logging, which
    method); the model's hyper-parameters are the method's configuration's (`CoEmoGenConfig`,
    `EmoGenConfig`). Every field is the `coemogen train` flag of the same name, its help text the
    field's `help` metadata (`add_training_flags`); `manifest` and `out` are required."""

    manifest: str = arg(MISSING, "training manifest (JSONL: one {image, emotion, caption} record per line)")
    out: str = arg(MISSING, "run directory")
    method: str = arg(
        "coemogen", "coemogen, or emogen: EmoGen (CVPR 2024) as published, the paper's baseline", tuple(METHODS)
    )
    pretrained_model_name_or_path: str | None = arg(
        None,
        "Stable Diffusion (1.x/2.x or SDXL) hub id or local diffusers directory (required unless --preset or a "
        "synthetic world)",
    )
    pretrained_vae_model_name_or_path: str | None = arg(
        None, "a VAE replacing the base model's (e.g. an fp16-safe SDXL VAE; SDXL's own stays in fp32)"
    )
    clip_model_name_or_path: str | None = arg(
        None, "CLIP hub id or local directory (required unless --preset or a synthetic world)"
    )
    preset: str | None = arg(
        None, registry.preset_help() + " (pocket: the default only for a world's data)", tuple(registry.presets())
    )
    init_from: str | None = arg(
        None,
        "a trained run of --method whose weights this run starts from (continued training; its configuration "
        "and base models are kept)",
    )
    taxonomy: str | None = arg(None, "mikels (default), artemis, emoart, or a JSON/YAML taxonomy file")
    resolution: int | None = arg(None, "training resolution (default: the U-Net sample size times the VAE factor)")
    train_batch_size: int = arg(8, "samples per process and micro-step")
    gradient_accumulation_steps: int = arg(1, "micro-steps per optimiser step")
    max_train_steps: int = arg(1000, "optimiser steps")
    learning_rate: float = arg(1e-3, "initial learning rate (after the warm-up), the paper's")
    scale_lr: bool = arg(
        False, "scale the learning rate by accumulation steps x batch size x processes (diffusers)", switch=True
    )
    lr_scheduler: str = arg(
        "constant",
        "learning-rate schedule (diffusers get_scheduler)",
        ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"),
    )
    lr_warmup_steps: int = arg(0, "optimiser steps of linear warm-up")
    lr_num_cycles: int = arg(1, "hard restarts of cosine_with_restarts")
    lr_power: float = arg(1.0, "power of the polynomial schedule")
    max_grad_norm: float | None = arg(None, "clip the trainable parameters' gradient norm (default: no clipping)")
    adam_beta1: float = arg(0.9, "AdamW beta1")
    adam_beta2: float = arg(0.999, "AdamW beta2")
    adam_weight_decay: float = arg(1e-2, "AdamW decoupled weight decay", aliases=("--weight_decay",))
    adam_epsilon: float = arg(1e-8, "AdamW epsilon")
    lambda_sem: float = arg(1.0, "weight of L_SEM (0 = the w/o L_SEM ablation; CoEmoGen only)")
    mixed_precision: str = arg("no", "frozen weights in fp16/bf16; trainable ones stay fp32", ("no", "fp16", "bf16"))
    gradient_checkpointing: bool = arg(False, "recompute U-Net activations in backward (less memory)", switch=True)
    cache: str | None = arg(None, "feature cache from `coemogen cache` (latents, caption embeddings, image tokens)")
    random_flip: bool = arg(False, "mirror each training image with probability 1/2", switch=True)
    center_crop: bool = arg(False, "centre-crop images to the resolution (default: a random crop)", switch=True)
    allow_tf32: bool = arg(False, "TF32 matmuls and convolutions on Ampere and newer GPUs", switch=True)
    use_8bit_adam: bool = arg(False, "bitsandbytes 8-bit AdamW (default on CUDA: fused AdamW)", switch=True)
    channels_last: bool = arg(False, "U-Net activations in channels-last memory format", switch=True)
    compile_unet: bool = arg(False, "torch.compile the U-Net (slow first steps)", aliases=("--compile",), switch=True)
    seed: int = arg(0, "seed of initial weights, sample order and every random draw")
    checkpointing_steps: int = arg(500, "save a resumable checkpoint every N steps (0: never)")
    checkpoints_total_limit: int | None = arg(None, "keep only the newest N checkpoints")
    resume_from_checkpoint: str | None = arg(None, "'latest' or a checkpoint directory")
    validation_steps: int | None = arg(None, "write a validation grid every N steps (and a final one)")
    report_to: str = arg("tensorboard", "where to log losses and validation grids", ("tensorboard", "none"))
    dataloader_num_workers: int = arg(0, "data-loading worker processes (pinned memory on CUDA)")
    ddp_timeout: int | None = arg(
        None, "seconds a process of a multi-process run waits for the others before the run stops (torch: 1800)"
    )


def check_continued_resolution(args: TrainingArguments, resolution: int) -> None:
    """A continued run (`--init_from`) keeps its own resolution: another `--resolution` is refused."""
    if args.resolution is not None and args.resolution != resolution:
        raise CoEmoGenError(
            f"--init_from continues a run trained at {resolution} px; drop --resolution {args.resolution}"
        )


# `coemogen tune`'s defaults where they differ from training's: a short, gentle fine-tuning of a
# trained run (DRaFT's LoRA learning rates are of this order), checkpointed every 50 steps.
TUNE_TRAINING_DEFAULTS = {
    "learning_rate": 1e-4,
    "max_train_steps": 200,
    "train_batch_size": 4,
    "checkpointing_steps": 50,
}


def _flag_type(hint):
    """argparse type (and nargs) for a field's type hint: int, str | None, list[str], ..."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] if isinstance(hint, types.UnionType) else [hint]
    base = args[0]
    if typing.get_origin(base) is list:
        return typing.get_args(base)[0], "+"
    return base, None


def parse_bool(text: str) -> bool:
    if text.lower() in {"1", "true", "yes", "on"}:
        return True
    if text.lower() in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got '{text}'")


def _add_fields(
    parser: argparse._ActionsContainer, cls: type, dataclass_fields, model: bool = False, defaults: dict | None = None
) -> None:
    """One flag per field. `model=True`: a method's hyper-parameters, left out of the parsed
    namespace unless given, so `split_training_flags` knows which ones the user chose. `defaults`
    replaces some fields' defaults (a command with its own, such as `tune`)."""
    hints = typing.get_type_hints(cls)
    for f in dataclass_fields:
        kind, nargs = _flag_type(hints[f.name])
        names = [f"--{f.name}", *f.metadata.get("aliases", ())]
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        default = (defaults or {}).get(f.name, default)
        kwargs = {"help": f.metadata["help"], "dest": f.name}
        if default is MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = argparse.SUPPRESS if model else default
            if default is not None:
                kwargs["help"] += f" (default: {default})"
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        if f.metadata.get("switch"):
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = parse_bool if kind is bool else kind
            if nargs:
                kwargs["nargs"] = nargs
        parser.add_argument(*names, **kwargs)


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    """Every TrainingArguments field and every method's hyper-parameters as flags."""
    _add_fields(parser, TrainingArguments, fields(TrainingArguments))
    seen: set[str] = set()
    for method, config in METHODS.items():
        new = [f for f in config.hyperparameters() if f.name not in seen]
        seen.update(f.name for f in new)
        group = parser.add_argument_group(f"--method {method} ({config.__name__}; shared names above apply to both)")
        _add_fields(group, config, new, model=True)


def add_tune_flags(parser: argparse.ArgumentParser) -> None:
    """`coemogen tune`'s flags: the training engine's (tuning's defaults) and `TuneConfig`'s."""
    from ..models.configs import TuneConfig

    own = {"method", "init_from", "manifest", "out"}
    _add_fields(
        parser,
        TrainingArguments,
        [f for f in fields(TrainingArguments) if f.name not in own],
        defaults=TUNE_TRAINING_DEFAULTS,
    )
    group = parser.add_argument_group("reward tuning (TuneConfig)")
    _add_fields(group, TuneConfig, fields(TuneConfig))


def split_tune_flags(namespace: argparse.Namespace) -> tuple[TrainingArguments, dict]:
    """Parsed `tune` flags -> (TrainingArguments of the tune method, TuneConfig's values)."""
    from ..models.configs import TuneConfig
    from ..models.runs import run_or_default

    values = vars(namespace)
    training = {f.name: values[f.name] for f in fields(TrainingArguments) if f.name in values}
    args = TrainingArguments(**{**training, "method": "tune", "init_from": str(run_or_default(values["model"]))})
    return args, {f.name: values[f.name] for f in fields(TuneConfig)}


def split_training_flags(namespace: argparse.Namespace) -> tuple[TrainingArguments, dict]:
    """Parsed flags -> (TrainingArguments, the hyper-parameters given for the chosen method); a
    hyper-parameter of another method is refused rather than silently ignored."""
    values = vars(namespace)
    args = TrainingArguments(**{f.name: values[f.name] for f in fields(TrainingArguments)})
    own = {f.name for f in METHODS[args.method].hyperparameters()}
    others = {f.name for config in METHODS.values() for f in config.hyperparameters()} - own
    foreign = sorted(name for name in others if name in values)
    if foreign:
        raise CoEmoGenError(
            f"--method {args.method} has no {', '.join('--' + n for n in foreign)} "
            f"(a hyper-parameter of another method)"
        )
    return args, {name: values[name] for name in own if name in values}
