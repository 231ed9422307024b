"""`coemogen train`: fit the mapper, visual-perception encoder and HiLoRA on a manifest.

`train` reads in four named steps: load the components (frozen base models, the CoEmoGen model
with its HiLoRA, the optimiser), build the data, run the loop, finalise (fit the emotion clusters,
save the run). One step of the loop: encode images (frozen VAE and CLIP), build conditions,
predict noise under each sample's adapters, add L_SEM, step. Built on accelerate, so
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
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from ..data.images import image_grid
from ..data.manifest import ManifestRecord, SkipCounter, read_manifest
from ..errors import CoEmoGenError
from ..io import atomic_output, save_safetensors, write_text
from ..models.base import BaseModels, load_base_models, resolve_sources
from ..models.clusters import EmotionClusters
from ..models.coemogen import CoEmoGen, CoEmoGenConfig, load_run, save_run
from ..models.conditioning import EmotionConditioner, check_template
from ..models.hilora import adapter_weights, hilora_layers
from ..pipelines.pipeline_coemogen import CoEmoGenPipeline
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
from .data import BalancedBatchSampler, CachedDataset, ManifestDataset, collate, drop_unreadable

logger = logging.getLogger(__name__)
WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@torch.no_grad()
def encoder_tokens(model: CoEmoGen, base: BaseModels, batch: dict, prefix: str = "") -> torch.Tensor | None:
    """The CLIP image tokens v_i the visual-perception encoder reads (fp32): from the feature cache
    when the batch holds them, else computed from its pixels; None without the encoder."""
    if not model.config.perception_encoder:
        return None
    if f"{prefix}image_tokens" in batch:
        return batch[f"{prefix}image_tokens"].float()
    if base.clip is None:
        raise CoEmoGenError(
            "the visual-perception encoder needs CLIP image tokens: not in the cache, and CLIP released"
        )
    pixels = batch["pixels"].to(next(base.clip.parameters()).device)
    return base.image_tokens(pixels, model.config.image_token_layer).float()


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


class CoEmoGenTrainingModule(nn.Module):
    """Frozen base models + trainable CoEmoGen parts; forward returns the losses of one batch.

    A batch holds images (`pixels`) or rows of a feature cache (`latent_mean`, `caption_embeds`,
    ...), or both when the cache lacks the image tokens. Call it (and its backward) inside
    `adapter_weights(unet, model.gates(...))`: the adapters each sample trains are selected
    explicitly by the caller.
    """

    def __init__(self, model: CoEmoGen, base: BaseModels, lambda_sem: float, random_flip: bool = False) -> None:
        super().__init__()
        self.model, self.unet, self.vae = model, base.unet, base.vae
        self.text_encoder = base.text_encoder
        self.base, self.lambda_sem, self.random_flip = base, lambda_sem, random_flip
        self.conditioner = EmotionConditioner(base)

    @torch.no_grad()
    def frozen_features(self, batch: dict, generator: torch.Generator):
        """Sampled VAE latents, CLIP image tokens (None without the encoder), caption embeddings and
        the micro-conditions (None but for SDXL), each sample mirrored with probability 1/2 under
        `random_flip`."""
        latents, batch, features = frozen_latents(self.base, batch, generator, self.random_flip)
        tokens = encoder_tokens(self.model, self.base, {**batch, **features})
        return latents, tokens, features["caption_embeds"], features.get("time_ids")

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        latents, tokens, caption_embeds, time_ids = self.frozen_features(batch, generator)
        labels = batch["labels"].to(latents.device)
        visual = self.model.visual_embedding(self.model.one_hot(labels), tokens)
        cond = self.conditioner.encode_embeddings(visual.to(self.text_encoder.dtype), self.model.config.template)
        noisy, t, target = diffusion_inputs(self.base.noise_scheduler, latents, generator)
        pred = self.unet(noisy, t, **self.base.family.unet_kwargs(cond, time_ids)).sample
        l_ldm = F.mse_loss(pred.float(), target.float())
        condition = self.text_projection(cond.pooled).float()
        l_sem = (1 - F.cosine_similarity(condition, caption_embeds.float(), dim=-1)).mean()
        return {"loss": l_ldm + self.lambda_sem * l_sem, "l_ldm": l_ldm, "l_sem": l_sem}

    def text_projection(self, pooled: torch.Tensor) -> torch.Tensor:
        projection = self.base.text_projection
        return projection(pooled.to(projection.weight.dtype))


def trainable_parameters(model: CoEmoGen, unet: nn.Module) -> dict[str, nn.Parameter]:
    """What the optimiser updates: the mapper, the encoder when it is used, every HiLoRA adapter."""
    params = {
        f"model.{name}.{k}": p
        for name, module in model.named_children()
        if module in model.trainable_modules()
        for k, p in module.named_parameters()
    }
    for name, layer in hilora_layers(unet):
        params[f"unet.{name}.lora_A"] = layer.lora_A
        params[f"unet.{name}.lora_B"] = layer.lora_B
    return params


@dataclass
class Components:
    base: BaseModels
    model: CoEmoGen
    params: dict[str, nn.Parameter]
    optimizer: torch.optim.Optimizer


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


def load_components(
    args: TrainingArguments,
    taxonomy: Taxonomy,
    device: torch.device,
    cache: tuple[FeatureCache, list[ManifestRecord]] | None = None,
    data: Path | None = None,
    num_processes: int = 1,
    **hyperparameters,
) -> Components:
    """Frozen base models (cast to the mixed-precision dtype), the model with its HiLoRA, AdamW.

    `cache`: a feature cache and the manifest's records, checked against this run's fingerprint.
    When the cache holds every CLIP output the run needs, only CLIP's text projection (for L_SEM)
    is loaded, not its towers. `data`: a training image (the pocket models are the default only for
    a synthetic world's)."""
    sd, clip = resolve_sources(args.pretrained_model_name_or_path, args.clip_model_name_or_path, args.preset, data)
    encoder = hyperparameters.get("perception_encoder", True)
    cache_has_tokens = cache is not None and (cache[0].has_image_tokens or not encoder)
    base = load_base_models(
        sd,
        clip,
        load_clip="text_projection" if cache_has_tokens else True,
        pretrained_vae_model_name_or_path=args.pretrained_vae_model_name_or_path,
    )
    config = CoEmoGenConfig(
        taxonomy=taxonomy.to_dict(),
        embed_dim=base.embed_dim,
        image_dim=base.clip_config.vision_config.hidden_size,
        pretrained_model_name_or_path=sd,
        clip_model_name_or_path=clip,
        resolution=args.resolution or base.default_resolution,
        pretrained_vae_model_name_or_path=args.pretrained_vae_model_name_or_path,
        **hyperparameters,
    )
    if cache is not None:
        features, manifest_records = cache
        features.check(cache_fingerprint(args, base, config, manifest_records), cache_command(args, config))
    with torch.random.fork_rng(devices=[]):  # initial weights from the seed, the global RNG untouched
        torch.manual_seed(args.seed)
        model = CoEmoGen(config)
        model.inject_into(base.unet)
    params = trainable_parameters(model, base.unet)
    for p in params.values():
        p.requires_grad_(True)
    for module in base.frozen_modules():
        module.to(device)
    weight_dtype = WEIGHT_DTYPES[args.mixed_precision]
    if weight_dtype != torch.float32:
        for module in (None if base.vae_in_fp32 else base.vae, *base.text_encoders, base.clip, base.text_projection):
            if module is not None:
                module.to(weight_dtype)
        # Cast the frozen U-Net weights only: the HiLoRA parameters stay in fp32 for the optimiser.
        for name, p in base.unet.named_parameters():
            if not name.endswith(("lora_A", "lora_B")):
                p.data = p.data.to(weight_dtype)
    if args.gradient_checkpointing:
        base.unet.enable_gradient_checkpointing()
    if args.channels_last:
        base.unet.to(memory_format=torch.channels_last)
    if args.compile_unet:
        base.unet.compile()  # in place: adapter_weights still finds the HiLoRA layers
    optimizer = make_optimizer(args, list(params.values()), torch.device(device), num_processes)
    return Components(base, model.to(device), params, optimizer)


def cache_fingerprint(
    args: TrainingArguments, base: BaseModels, config: CoEmoGenConfig, records: list[ManifestRecord]
) -> CacheFingerprint:
    """The fingerprint a feature cache for this run must have (image tokens: the encoder's layer)."""
    layer = config.image_token_layer if config.perception_encoder else None
    return CacheFingerprint.of(base, base.clip_config, records, config.resolution, args.random_flip, layer)


def cache_command(args: TrainingArguments, config: CoEmoGenConfig) -> str:
    """The `coemogen cache` command that builds the cache this run needs."""
    flip = " --random_flip" if args.random_flip else ""
    tokens = (
        f" --cache_image_tokens --image_token_layer {config.image_token_layer}" if config.perception_encoder else ""
    )
    return (
        f"coemogen cache --manifest {args.manifest} --out {args.cache}.new"
        f" --pretrained_model_name_or_path {config.pretrained_model_name_or_path}"
        f" --clip_model_name_or_path {config.clip_model_name_or_path} --resolution {config.resolution}{flip}{tokens}"
        f", then pass --cache {args.cache}.new"
    )


def read_records(manifest: str | Path, taxonomy: Taxonomy) -> tuple[list[ManifestRecord], SkipCounter]:
    skips = SkipCounter()
    records = drop_unreadable(read_manifest(manifest, taxonomy, skips), skips)
    if not records:
        raise CoEmoGenError(f"no usable records in {manifest} ({skips.total} skipped: {dict(skips.reasons)})")
    return records, skips


@torch.no_grad()
def embed_records(
    model: CoEmoGen, base: BaseModels, dataset: ManifestDataset | CachedDataset, device, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Visual embeddings e^v of every training image under its own emotion (for the clusters)."""
    out, labels = [], []
    for start in tqdm(range(0, len(dataset), batch_size), desc="fit clusters", leave=False):
        batch = collate([dataset[i] for i in range(start, min(len(dataset), start + batch_size))])
        weights = model.one_hot(batch["labels"].to(device))
        tokens = encoder_tokens(model, base, batch)
        out.append(model.visual_embedding(weights, None if tokens is None else tokens.to(device)).cpu())
        labels.append(batch["labels"])
    return torch.cat(out), torch.cat(labels)


@torch.no_grad()
def validation_grid(model: CoEmoGen, base: BaseModels, dataset: ManifestDataset | CachedDataset, seed: int, device):
    """One image per emotion from the generation pipeline, e^v from the emotion's first training image."""
    firsts = {}
    for i, r in enumerate(dataset.records):
        firsts.setdefault(r.emotion, i)
    order = [firsts[e] for e in model.taxonomy.emotions if e in firsts]
    batch = collate([dataset[i] for i in order])
    tokens = encoder_tokens(model, base, batch)
    visual = model.visual_embedding(
        model.one_hot(batch["labels"].to(device)), None if tokens is None else tokens.to(device)
    )
    pipeline = CoEmoGenPipeline(base, model, clusters=None, device=device)
    emotions = [dataset.records[i].emotion for i in order]
    output = pipeline(emotions, num_images=len(order), seed=seed, num_inference_steps=20, visual_embeds=visual)
    return image_grid(output.images)


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


def write_run_records(args: TrainingArguments, config, records: list, skips: SkipCounter, taxonomy: Taxonomy) -> None:
    """training_args.json and data_summary.json (main process)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "training_args.json", json.dumps(asdict(args), indent=1))
    per_emotion = {e: sum(r.emotion == e for r in records) for e in taxonomy.emotions}
    summary = {"records": len(records), "skipped": skips.total, "skip_reasons": dict(skips.reasons)}
    write_text(out / "data_summary.json", json.dumps({**summary, "per_emotion": per_emotion}, indent=1))


def train(args: TrainingArguments, **hyperparameters) -> Path:
    """Run training; returns the run directory (config, safetensors weights, clusters).

    `hyperparameters`: the method's configuration fields (CoEmoGenConfig's lora_rank, shared_lora,
    ...; EmoGenConfig's for `args.method == "emogen"`); the rest keep their defaults.
    """
    if args.method == "emogen":
        from .emogen import train_emogen

        return train_emogen(args, **hyperparameters)
    out = Path(args.out)
    check_hyperparameters(CoEmoGenConfig, hyperparameters)

    # 1. Data records (the cache's, when training from one) and the accelerator.
    taxonomy = Taxonomy.load(args.taxonomy)
    if args.cache:
        if not args.center_crop:
            raise CoEmoGenError("a feature cache holds centre crops: pass --center_crop with --cache")
        features = FeatureCache(args.cache)
        skips = SkipCounter()
        manifest_records = read_manifest(args.manifest, taxonomy, skips)
        records = [ManifestRecord(Path(r["image"]), r["emotion"], r["caption"]) for r in features.records()]
    else:
        records, skips = read_records(args.manifest, taxonomy)
    accelerator = make_accelerator(args)

    # 2. Components: frozen base models, the model and its HiLoRA, the optimiser; resume.
    cache = (features, manifest_records) if args.cache else None
    parts = load_components(
        args, taxonomy, accelerator.device, cache, records[0].image, accelerator.num_processes, **hyperparameters
    )
    model, base, params = parts.model, parts.base, parts.params
    global_step, resumed = resume(args, params, parts.optimizer)

    # 3. Data: this process's share of balanced batches, from where the run left off.
    dataset = ManifestDataset(
        records, taxonomy, model.config.resolution, args.center_crop, args.seed, base.family.micro_conditioning
    )
    if args.cache:
        needs_pixels = model.config.perception_encoder and not features.has_image_tokens
        dataset = CachedDataset(features, dataset, load_pixels=needs_pixels, mirrored=args.random_flip)
    loader = balanced_loader(args, dataset, accelerator, global_step)
    training_module = CoEmoGenTrainingModule(model, base, args.lambda_sem, args.random_flip)
    opt = Optimisation.create(args, accelerator, training_module, params, parts.optimizer)
    if resumed is not None:
        opt.load_state_dict(resumed)
    if accelerator.is_main_process:
        settings = {**asdict(args), **asdict(model.config)}
        accelerator.init_trackers("coemogen", config={k: str(v) for k, v in settings.items()})
        write_run_records(args, model.config, records, skips, taxonomy)

    # 4. The loop, each batch's HiLoRA adapters selected explicitly.
    def select_adapters(batch: dict):
        return adapter_weights(base.unet, model.gates(model.one_hot(batch["labels"].to(accelerator.device))))

    def validation() -> Image.Image:
        return validation_grid(model, base, dataset, args.seed, accelerator.device)

    run_loop(args, opt, loader, global_step, select_adapters, validation)

    # 5. Finalise: fit the emotion clusters on the trained embeddings, save the run.
    if accelerator.is_main_process:
        model.eval()
        embeddings, labels = embed_records(model, base, dataset, accelerator.device)
        clusters = EmotionClusters.fit(
            embeddings, labels, taxonomy.num_emotions, model.config.cluster_components, seed=args.seed
        )
        save_run(out, model, base.unet, clusters)
        if args.validation_steps != 0:  # 0 switches every validation image off
            with atomic_output(out / "final_grid.png") as tmp:
                validation_grid(model, base, dataset, args.seed, accelerator.device).save(tmp, format="PNG")
    accelerator.end_training()
    return out


def refit_clusters(
    run_dir: str | Path, manifest: str | Path, components: int = 1, seed: int = 0, temperature: float | None = None
) -> EmotionClusters:
    """Refit a trained run's emotion clusters (e.g. another number of mixture components), and
    optionally set the run's default sampling temperature."""
    run_dir = Path(run_dir)
    config = CoEmoGenConfig.load(run_dir)
    base = load_base_models(
        config.pretrained_model_name_or_path,
        config.clip_model_name_or_path,
        pretrained_vae_model_name_or_path=config.pretrained_vae_model_name_or_path,
    )
    model, _ = load_run(run_dir, base.unet, require_clusters=False, config=config)
    records, _ = read_records(manifest, model.taxonomy)
    dataset = ManifestDataset(records, model.taxonomy, config.resolution)
    embeddings, labels = embed_records(model.eval(), base, dataset, "cpu")
    clusters = EmotionClusters.fit(embeddings, labels, model.taxonomy.num_emotions, components, seed=seed)
    save_safetensors(clusters.state_dict(), run_dir / "clusters.safetensors")
    config.cluster_components = components
    if temperature is not None:
        config.cluster_temperature = temperature
    config.save(run_dir)
    return clusters
