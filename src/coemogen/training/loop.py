"""The training engine: one `train()` for every method (`coemogen train --method NAME`).

A `Method` (CoEmoGen in `coemogen.py`, EmoGen in `emogen.py`, registered by name in
`training/__init__.py`) builds its model and data on the frozen base models and says how a batch
becomes its losses, which adapters a batch trains, its validation grid and what it finalises.
Everything else is here, once: the accelerator, the frozen base models' preparation (device, the
mixed-precision cast that keeps SDXL's VAE in fp32, gradient checkpointing, channels-last,
`torch.compile`), feature-cache checks, AdamW and its schedule, resuming, the loop, checkpoints,
validation grids, the run records and the end-of-run report. Built on accelerate, so
`accelerate launch -m coemogen.cli train ...` runs it on many GPUs.

Determinism: initial weights come from the seed alone (the global RNG is left as it was), and the
sample order and every random draw of step s come from (seed, s), so a run resumed from a
checkpoint continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from ..data.manifest import ManifestRecord, SkipCounter, read_manifest
from ..errors import CoEmoGenError
from ..io import atomic_output, write_text
from ..models.base import BaseModels
from ..models.conditioning import check_template
from ..taxonomy import Taxonomy
from .cache import MICRO_CONDITIONS, CacheFingerprint, FeatureCache, compute_features
from .checkpoints import (
    find_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    rng_states,
    save_checkpoint,
    set_rng_states,
)
from .config import TrainingArguments
from .data import BalancedBatchSampler, collate, drop_unreadable

logger = logging.getLogger(__name__)
WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@torch.no_grad()
def frozen_latents(base: BaseModels, batch: dict, generator: torch.Generator, random_flip: bool):
    """(sampled, scaled VAE latents; the batch with its pixels on the device; the frozen features:
    latent mean and std, caption embeddings, and image tokens when cached). Each sample is mirrored
    with probability 1/2 under `random_flip`; draws come from `generator` (flips, then noise)."""
    device = base.vae.device
    flips = torch.rand(len(batch["labels"]), generator=generator) < 0.5 if random_flip else None
    if "pixels" in batch:
        batch = {**batch, "pixels": batch["pixels"].to(device)}
        if flips is not None:
            mask = flips.to(device).view(-1, 1, 1, 1)
            batch["pixels"] = torch.where(mask, batch["pixels"].flip(-1), batch["pixels"])
    if "latent_mean" in batch:
        features = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        if flips is not None:
            for name in [k for k in features if f"flipped_{k}" in features]:
                mask = flips.to(device).view(-1, *[1] * (features[name].dim() - 1))
                features[name] = torch.where(mask, features[f"flipped_{name}"], features[name])
    else:
        features = compute_features(base, batch["pixels"], batch["captions"], False, None)
        for name in MICRO_CONDITIONS:  # SDXL's, from the dataset; flipped below like a cached feature
            if name in batch:
                features[name] = batch[name].to(device)
        if flips is not None and "flipped_crop_top_left" in features:
            mask = flips.to(device).view(-1, 1)
            features["crop_top_left"] = torch.where(mask, features["flipped_crop_top_left"], features["crop_top_left"])
    mean, std = features["latent_mean"], features["latent_std"]
    noise = torch.randn(mean.shape, generator=generator).to(mean)
    latents = (mean + std * noise) * base.vae.config.scaling_factor
    if base.family.micro_conditioning:
        size = latents.shape[-1] * base.vae_scale_factor
        features["time_ids"] = base.family.time_ids(features["original_size"], features["crop_top_left"], (size, size))
    return latents.to(base.vae.dtype), batch, features


def diffusion_inputs(scheduler, latents: torch.Tensor, generator: torch.Generator):
    """(noisy latents, timesteps, target) of one L_LDM step: noise and timesteps from `generator`."""
    noise = torch.randn(latents.shape, generator=generator).to(latents)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
    t = t.to(latents.device)
    noisy = scheduler.add_noise(latents, noise, t)
    if scheduler.config.prediction_type == "epsilon":
        target = noise
    elif scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, t)
    else:
        raise CoEmoGenError(f"unsupported prediction type {scheduler.config.prediction_type}")
    return noisy, t, target


def make_optimizer(
    args: TrainingArguments, params: list[nn.Parameter], device: torch.device, num_processes: int = 1
) -> torch.optim.Optimizer:
    """AdamW with the diffusers recipe's settings: bitsandbytes' 8-bit one on request, the fused
    kernel on CUDA, else the default; `--scale_lr` multiplies the learning rate by accumulation steps
    x batch size x processes."""
    lr = args.learning_rate
    if args.scale_lr:
        lr *= args.gradient_accumulation_steps * args.train_batch_size * num_processes
    settings = dict(
        lr=lr, betas=(args.adam_beta1, args.adam_beta2), weight_decay=args.adam_weight_decay, eps=args.adam_epsilon
    )
    if args.use_8bit_adam:
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise CoEmoGenError("--use_8bit_adam needs bitsandbytes: pip install bitsandbytes") from None
        return bnb.optim.AdamW8bit(params, **settings)
    return torch.optim.AdamW(params, **settings, fused=device.type == "cuda" or None)


def make_accelerator(args: TrainingArguments):
    """The accelerator of a training run (mixed precision is our own autocast and GradScaler, so
    accelerate is told none); `--ddp_timeout` bounds how long a process waits for the others."""
    from datetime import timedelta

    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs, ProjectConfiguration

    if args.mixed_precision not in WEIGHT_DTYPES:
        raise CoEmoGenError(f"--mixed_precision must be no, fp16 or bf16, not '{args.mixed_precision}'")
    if args.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    handlers = [] if args.ddp_timeout is None else [InitProcessGroupKwargs(timeout=timedelta(seconds=args.ddp_timeout))]
    return Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(args.out), logging_dir=str(Path(args.out) / "logs")),
        kwargs_handlers=handlers,
    )


@dataclass
class Optimisation:
    """Everything one optimiser step uses besides the batch: the (prepared) training module and
    optimiser, the trainable parameters, the learning-rate schedule, the GradScaler (active for
    fp16), the autocast context and the clipping norm."""

    accelerator: object
    module: nn.Module
    params: dict[str, nn.Parameter]
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    autocast: torch.autocast
    max_grad_norm: float | None = None

    @classmethod
    def create(
        cls, args: TrainingArguments, accelerator, module: nn.Module, params: dict, optimizer: torch.optim.Optimizer
    ) -> Optimisation:
        """The schedule (diffusers' `get_scheduler`, stepped once per optimiser step) is built on the
        optimiser before `accelerator.prepare` wraps both."""
        from diffusers.optimization import get_scheduler

        lr_scheduler = get_scheduler(
            args.lr_scheduler,
            optimizer=optimizer,
            num_warmup_steps=args.lr_warmup_steps,
            num_training_steps=args.max_train_steps,
            num_cycles=args.lr_num_cycles,
            power=args.lr_power,
        )
        module, optimizer = accelerator.prepare(module, optimizer)
        device = accelerator.device.type
        dtype = WEIGHT_DTYPES[args.mixed_precision]
        return cls(
            accelerator,
            module,
            params,
            optimizer,
            lr_scheduler,
            torch.amp.GradScaler(device, enabled=args.mixed_precision == "fp16"),
            torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32),
            args.max_grad_norm,
        )

    def state_dict(self, micro_step: int) -> dict:
        """The states a checkpoint holds besides the weights and the optimiser."""
        return {
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "micro_step": micro_step,
            "rng": rng_states(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        # Building the schedule set each group's rate to its step-0 value; the checkpoint's is the last one.
        for group, lr in zip(self.optimizer.param_groups, self.lr_scheduler.get_last_lr()):
            group["lr"] = lr
        if state["grad_scaler"]:  # empty when the checkpointed run had no fp16
            self.scaler.load_state_dict(state["grad_scaler"])
        set_rng_states(state["rng"])


def training_step(
    opt: Optimisation,
    batch: dict,
    generator: torch.Generator,
    select_adapters: Callable[[dict], AbstractContextManager],
) -> dict[str, torch.Tensor]:
    """One micro-step: forward under autocast inside the batch's adapter selection (backward too:
    gradient checkpointing re-runs the U-Net there), backward through the GradScaler, and at the end
    of an accumulation: unscale, clip, optimiser step, schedule step, zero the gradients. Returns the
    losses."""
    accelerator = opt.accelerator
    with accelerator.accumulate(opt.module), select_adapters(batch):
        with opt.autocast:
            losses = opt.module(batch, generator)
        accelerator.backward(opt.scaler.scale(losses["loss"]))
        if accelerator.sync_gradients:
            if opt.max_grad_norm is not None:
                opt.scaler.unscale_(opt.optimizer)
                accelerator.clip_grad_norm_(list(opt.params.values()), opt.max_grad_norm)
            opt.scaler.step(opt.optimizer)
            opt.scaler.update()
            opt.lr_scheduler.step()
            opt.optimizer.zero_grad(set_to_none=True)
    return losses


def read_records(manifest: str | Path, taxonomy: Taxonomy) -> tuple[list[ManifestRecord], SkipCounter]:
    skips = SkipCounter()
    records = drop_unreadable(read_manifest(manifest, taxonomy, skips), skips)
    if not records:
        raise CoEmoGenError(f"no usable records in {manifest} ({skips.total} skipped: {dict(skips.reasons)})")
    return records, skips


def run_loop(
    args: TrainingArguments,
    opt: Optimisation,
    loader: torch.utils.data.DataLoader,
    global_step: int,
    select_adapters: Callable[[dict], AbstractContextManager],
    validation: Callable[[], Image.Image],
) -> None:
    """The loop every method shares: `training_step` on each micro-batch (the module's "loss" is
    optimised), then logs, resumable checkpoints and validation grids every so many steps. The random
    draws of micro-step m come from (seed, m, process), so a resumed run continues as the
    uninterrupted one."""
    accelerator, out = opt.accelerator, Path(args.out)
    bar = tqdm(
        total=args.max_train_steps, initial=global_step, desc="train", disable=not accelerator.is_local_main_process
    )
    micro_step = global_step * args.gradient_accumulation_steps
    first_step, timed_from = global_step, None
    batches = iter(loader)
    while global_step < args.max_train_steps:
        batch = next(batches)
        generator = torch.Generator().manual_seed(
            args.seed * 1_000_003 + micro_step * accelerator.num_processes + accelerator.process_index
        )
        losses = training_step(opt, batch, generator, select_adapters)
        micro_step += 1
        if not accelerator.sync_gradients:
            continue
        global_step += 1
        if timed_from is None:  # the first step (allocation, compilation) is left out of the rate
            timed_from = (time.perf_counter(), global_step)
        bar.update(1)
        logs = {k: v.detach().item() for k, v in losses.items()}
        bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()})
        accelerator.log({**logs, "lr": opt.lr_scheduler.get_last_lr()[0]}, step=global_step)
        if not math.isfinite(logs["loss"]):
            raise CoEmoGenError(f"loss became {logs['loss']} at step {global_step}; lower --learning_rate or use fp32")
        if accelerator.is_main_process:
            if args.checkpointing_steps and global_step % args.checkpointing_steps == 0:
                path = out / f"checkpoint-{global_step}"
                save_checkpoint(path, opt.params, opt.optimizer, global_step, opt.state_dict(micro_step))
                prune_checkpoints(out, args.checkpoints_total_limit)
            if args.validation_steps and global_step % args.validation_steps == 0:
                grid = validation()
                with atomic_output(out / "validation" / f"step-{global_step:06d}.png") as tmp:
                    grid.save(tmp, format="PNG")
                if args.report_to == "tensorboard":
                    import numpy as np

                    accelerator.get_tracker("tensorboard").writer.add_image(
                        "validation", np.asarray(grid), global_step, dataformats="HWC"
                    )
    bar.close()
    if timed_from is not None and global_step > timed_from[1]:
        seconds, steps = time.perf_counter() - timed_from[0], global_step - timed_from[1]
        samples = steps * args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes
        cuda = torch.cuda.is_available()
        peak = f", peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if cuda else ""
        accelerator.print(
            f"trained steps {first_step + 1}-{global_step}: {samples / seconds:.2f} samples/s "
            f"({seconds / steps:.3f} s/step after the first){peak}"
        )
    accelerator.wait_for_everyone()


def check_hyperparameters(config_class: type, hyperparameters: dict) -> None:
    """Refuse a hyper-parameter the method does not have, and a bad template, before any loading."""
    unknown = set(hyperparameters) - {f.name for f in config_class.hyperparameters()}
    if unknown:
        raise CoEmoGenError(f"unknown {config_class.__name__} hyper-parameters {sorted(unknown)}")
    check_template(hyperparameters.get("template", "{}"))


def resume(args: TrainingArguments, params: dict, optimizer: torch.optim.Optimizer) -> tuple[int, dict | None]:
    """With `--resume_from_checkpoint`: restore the weights and optimiser in place; returns the step
    to continue from and the checkpoint's other training states (None: a new run)."""
    if not args.resume_from_checkpoint:
        return 0, None
    path = find_checkpoint(Path(args.out), args.resume_from_checkpoint)
    if path is None:
        logger.warning("no checkpoint in %s; starting a new run", args.out)
        return 0, None
    step, state = load_checkpoint(path, params, optimizer)
    logger.info("resumed from %s at step %d", path, step)
    return step, state


def balanced_loader(args: TrainingArguments, dataset, accelerator, global_step: int) -> torch.utils.data.DataLoader:
    """This process's share of balanced batches, from where the run left off."""
    sampler = BalancedBatchSampler(
        dataset.labels(),
        args.train_batch_size,
        args.seed,
        start=global_step * args.gradient_accumulation_steps,
        num_processes=accelerator.num_processes,
        process_index=accelerator.process_index,
    )
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=args.dataloader_num_workers,
        pin_memory=accelerator.device.type == "cuda",
        persistent_workers=args.dataloader_num_workers > 0,
    )


def write_run_records(args: TrainingArguments, records: list, skips: SkipCounter, taxonomy: Taxonomy) -> None:
    """training_args.json and data_summary.json (main process)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "training_args.json", json.dumps(asdict(args), indent=1))
    per_emotion = {e: sum(r.emotion == e for r in records) for e in taxonomy.emotions}
    summary = {"records": len(records), "skipped": skips.total, "skip_reasons": dict(skips.reasons)}
    write_text(out / "data_summary.json", json.dumps({**summary, "per_emotion": per_emotion}, indent=1))


@dataclass
class MethodRun:
    """What a method hands the engine once its model is built (and any stage before the loop has
    run): the frozen base models, the model, the parameters the optimiser updates, the training
    records, the loop's dataset (with `labels()` for the balanced sampler), the module whose
    forward(batch, generator) returns the losses ("loss" is optimised), the adapter selection of a
    batch, the validation grid, and `finalise(out)` (fit what is fitted after training, save the
    run; main process). `extra_records`: files written beside training_args.json."""

    base: BaseModels
    model: nn.Module
    params: dict[str, nn.Parameter]
    records: list[ManifestRecord]
    skips: SkipCounter
    dataset: torch.utils.data.Dataset
    module: nn.Module
    validation: Callable[[], Image.Image]
    finalise: Callable[[Path], None]
    select_adapters: Callable[[dict], AbstractContextManager] = lambda batch: nullcontext()
    extra_records: dict[str, str] = field(default_factory=dict)


class Method:
    """A way to train: `name` (the `--method` value and the run's `method`), `config_class` (its
    hyper-parameters, one `train` flag each) and `build`. A new method is one file defining a
    subclass plus its line in `METHODS` (or `register_method` from a plugin)."""

    name: str
    config_class: type

    def build(self, args: TrainingArguments, taxonomy: Taxonomy, accelerator, hyperparameters: dict) -> MethodRun:
        raise NotImplementedError


# name -> the Method, or "module:class" imported when first used (the methods import this engine)
METHODS: dict[str, Method | str] = {
    "coemogen": "coemogen.training.coemogen:CoEmoGenMethod",
    "emogen": "coemogen.training.emogen:EmoGenMethod",
    "tune": "coemogen.training.tune:TuneMethod",  # `coemogen tune`: reward tuning of a trained run
}


def register_method(method: Method) -> None:
    """Make `method` trainable as `coemogen train --method <method.name>`."""
    if not getattr(method, "name", None) or not getattr(method, "config_class", None):
        raise CoEmoGenError(f"{type(method).__name__} must set `name` and `config_class`")
    METHODS[method.name] = method


def get_method(name: str) -> Method:
    """The registered method `name`, imported on first use."""
    if name not in METHODS:
        raise CoEmoGenError(f"unknown method '{name}'; choose one of {', '.join(METHODS)}")
    method = METHODS[name]
    if isinstance(method, str):
        import importlib

        module, _, cls = method.partition(":")
        method = METHODS[name] = getattr(importlib.import_module(module), cls)()
    return method


def open_cache(args: TrainingArguments) -> FeatureCache:
    """The feature cache of `--cache` (which holds centre crops)."""
    if not args.center_crop:
        raise CoEmoGenError("a feature cache holds centre crops: pass --center_crop with --cache")
    return FeatureCache(args.cache)


def check_cache(
    cache: FeatureCache,
    args: TrainingArguments,
    base: BaseModels,
    records: list[ManifestRecord],
    resolution: int,
    image_token_layer: int | None,
) -> None:
    """Refuse a cache built for other records, base models, resolution, flips or image-token layer,
    naming the `coemogen cache` command that builds the right one."""
    fingerprint = CacheFingerprint.of(base, base.clip_config, records, resolution, args.random_flip, image_token_layer)
    flip = " --random_flip" if args.random_flip else ""
    tokens = f" --cache_image_tokens --image_token_layer {image_token_layer}" if image_token_layer is not None else ""
    cache.check(
        fingerprint,
        f"coemogen cache --manifest {args.manifest} --out {args.cache}.new"
        f" --pretrained_model_name_or_path {base.pretrained_model_name_or_path}"
        f" --clip_model_name_or_path {base.clip_model_name_or_path} --resolution {resolution}{flip}{tokens}"
        f", then pass --cache {args.cache}.new",
    )


def prepare_frozen(base: BaseModels, args: TrainingArguments, device: torch.device) -> None:
    """The frozen base models on `device`, their frozen weights cast to the mixed-precision dtype
    (a VAE that must stay fp32, SDXL's own, is left as it is; trainable parameters, such as HiLoRA's
    inside the U-Net, stay fp32 for the optimiser), then the U-Net's gradient checkpointing,
    channels-last layout and `torch.compile` as the flags ask."""
    weight_dtype = WEIGHT_DTYPES[args.mixed_precision]
    for module in base.frozen_modules():
        module.to(device)
        if weight_dtype == torch.float32 or (module is base.vae and base.vae_in_fp32):
            continue
        for p in module.parameters():
            if not p.requires_grad:
                p.data = p.data.to(weight_dtype)
        for b in module.buffers():
            if b.is_floating_point():
                b.data = b.data.to(weight_dtype)
    if args.gradient_checkpointing:
        base.unet.enable_gradient_checkpointing()
    if args.channels_last:
        base.unet.to(memory_format=torch.channels_last)
    if args.compile_unet:
        base.unet.compile()  # in place: adapter_weights still finds the HiLoRA layers


def build(
    args: TrainingArguments, taxonomy: Taxonomy, accelerator, **hyperparameters
) -> tuple[MethodRun, torch.optim.Optimizer]:
    """The chosen method's model and data, its frozen base models prepared (`prepare_frozen`) and
    AdamW over what it trains."""
    method = get_method(args.method)
    check_hyperparameters(method.config_class, hyperparameters)
    run = method.build(args, taxonomy, accelerator, hyperparameters)
    prepare_frozen(run.base, args, accelerator.device)
    optimizer = make_optimizer(args, list(run.params.values()), accelerator.device, accelerator.num_processes)
    return run, optimizer


def train(args: TrainingArguments, **hyperparameters) -> Path:
    """Train `args.method` on `args.manifest`; returns the run directory (config, safetensors
    weights, clusters). `hyperparameters`: the method's configuration fields (CoEmoGenConfig's
    lora_rank, shared_lora, ...; EmoGenConfig's for `--method emogen`); the rest keep their defaults.
    Raises `CoEmoGenError` for bad input (an unknown method or hyper-parameter, no usable record).

    Example: two steps on a small synthetic world (its pocket models are the default for its data):

    Examples:
        >>> import json, tempfile
        >>> from coemogen.training.config import TrainingArguments
        >>> from coemogen.world.dataset import build_world, read_truth
        >>> from coemogen.world.scenes import describe
        >>> world = build_world(tempfile.mkdtemp(), images_per_emotion=3, seed=0, size=64)
        >>> records = [{"image": p, "emotion": s.emotion, "caption": describe(s)} for p, s in read_truth(world).items()]
        >>> _ = (world / "manifest.jsonl").write_text("\\n".join(map(json.dumps, records)))
        >>> args = TrainingArguments(manifest=str(world / "manifest.jsonl"), out=tempfile.mkdtemp(),
        ...                          max_train_steps=2, train_batch_size=4, validation_steps=0, report_to="none")
        >>> run = train(args, lora_rank=2)  # doctest: +ELLIPSIS
        trained steps 1-2: ... samples/s (... s/step after the first)
        >>> sorted(p.name for p in run.glob("*.safetensors"))
        ['clusters.safetensors', 'hilora.safetensors', 'mapper.safetensors', 'perception_encoder.safetensors']
    """
    out = Path(args.out)
    # 1. The accelerator; the method's model and data on its prepared base models; AdamW; resume.
    taxonomy = Taxonomy.load(args.taxonomy)
    accelerator = make_accelerator(args)
    run, optimizer = build(args, taxonomy, accelerator, **hyperparameters)
    global_step, resumed = resume(args, run.params, optimizer)

    # 2. This process's share of balanced batches from where the run left off; the schedule.
    loader = balanced_loader(args, run.dataset, accelerator, global_step)
    opt = Optimisation.create(args, accelerator, run.module, run.params, optimizer)
    if resumed is not None:
        opt.load_state_dict(resumed)
    if accelerator.is_main_process:
        settings = {**asdict(args), **asdict(run.model.config)}
        accelerator.init_trackers(args.method, config={k: str(v) for k, v in settings.items()})
        write_run_records(args, run.records, run.skips, taxonomy)
        for name, text in run.extra_records.items():
            write_text(out / name, text)

    # 3. The loop, each batch's adapters selected explicitly.
    run_loop(args, opt, loader, global_step, run.select_adapters, run.validation)

    # 4. Finalise (the method's fitted parts and its run directory) and the last validation grid.
    if accelerator.is_main_process:
        run.model.eval()
        run.finalise(out)
        if args.validation_steps != 0:  # 0 switches every validation image off
            with atomic_output(out / "final_grid.png") as tmp:
                run.validation().save(tmp, format="PNG")
    accelerator.end_training()
    return out
