"""`coemogen train`: fit the mapper, visual-perception encoder and HiLoRA on a manifest.

One loop, nanoGPT style: load frozen base models, build the trainable parts, then for each
step encode images (frozen VAE and CLIP), build conditions, predict noise, add L_SEM, step.
Built on accelerate, so `accelerate launch -m coemogen.cli train ...` runs it on many GPUs.

Determinism: the sample order and every random draw of step s come from (seed, s) alone, so a
run resumed from a checkpoint continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from .clip import image_tokens, text_embeds
from .clusters import EmotionClusters
from .conditioning import EmotionConditioner, check_template
from .data.images import ImageLoadError, load_rgb, to_tensor
from .data.manifest import ManifestRecord, SkipCounter, read_manifest
from .errors import CoEmoGenError
from .loaders import BaseModels, load_base_models, resolve_sources
from .modeling import CoEmoGen, CoEmoGenConfig, save_run
from .models.hilora import DEFAULT_TARGETS, HiLoRAGate, hilora_layers
from .pipeline import decode, denoise, image_grid, make_scheduler
from .taxonomy import Taxonomy

logger = logging.getLogger(__name__)


@dataclass
class TrainArgs:
    manifest: str
    out: str
    pretrained_model_name_or_path: str | None = None
    clip_model_name_or_path: str | None = None
    preset: str | None = None
    taxonomy: str | None = None
    resolution: int | None = None  # default: the U-Net sample size times the VAE factor
    train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_train_steps: int = 1000
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    lambda_sem: float = 1.0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    seed: int = 0
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = None
    resume_from_checkpoint: str | None = None
    validation_steps: int | None = None
    report_to: str = "tensorboard"
    mapper_hidden_dim: int = 512
    lora_rank: int = 4
    lora_targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    emotion_lora: bool = True
    group_lora: bool = True
    shared_lora: bool = False
    perception_encoder: bool = True
    image_token_layer: int = -1
    template: str = "{}"
    cluster_components: int = 1
    dataloader_num_workers: int = 0
    method: str = "coemogen"


class ManifestDataset(torch.utils.data.Dataset):
    """Images (float, [0, 1], square) with emotion indices and captions; unreadable images are skipped."""

    def __init__(self, records: list[ManifestRecord], taxonomy: Taxonomy, resolution: int) -> None:
        self.records, self.taxonomy, self.resolution = records, taxonomy, resolution

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        r = self.records[i]
        return {
            "pixels": to_tensor(load_rgb(r.image), self.resolution),
            "label": self.taxonomy.index(r.emotion),
            "caption": r.caption,
        }


def drop_unreadable(records: list[ManifestRecord], skips: SkipCounter) -> list[ManifestRecord]:
    """Open every image once up front so that a bad file is a counted skip, not a crash at step 10k."""
    kept = []
    for r in tqdm(records, desc="check images", unit="img", leave=False):
        try:
            load_rgb(r.image)
            kept.append(r)
        except ImageLoadError as err:
            skips.skip(str(r.image), str(err))
    return kept


class BalancedBatchSampler(torch.utils.data.Sampler):
    """Random oversampling: each epoch every emotion is drawn up to the largest emotion's count.

    Yields the micro-batches of one process from micro-step `start` on; batch m of process p is
    a pure function of (seed, m, p), so resuming never repeats or skips samples.
    """

    def __init__(
        self,
        labels: list[int],
        batch_size: int,
        seed: int,
        start: int = 0,
        num_processes: int = 1,
        process_index: int = 0,
    ) -> None:
        self.labels, self.batch_size, self.seed, self.start = labels, batch_size, seed, start
        self.num_processes, self.process_index = num_processes, process_index
        by_label: dict[int, list[int]] = {}
        for i, y in enumerate(labels):
            by_label.setdefault(y, []).append(i)
        self.by_label = [by_label[k] for k in sorted(by_label)]
        self.epoch_len = max(map(len, self.by_label)) * len(self.by_label)
        self._cache: dict[int, list[int]] = {}

    def epoch_order(self, epoch: int) -> list[int]:
        if epoch not in self._cache:
            g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            top = max(map(len, self.by_label))
            order = []
            for idx in self.by_label:
                extra = torch.randint(0, len(idx), (top - len(idx),), generator=g).tolist()
                order += idx + [idx[j] for j in extra]
            self._cache = {epoch: [order[j] for j in torch.randperm(len(order), generator=g).tolist()]}
        return self._cache[epoch]

    def batch(self, micro_step: int) -> list[int]:
        first = (micro_step * self.num_processes + self.process_index) * self.batch_size
        return [
            self.epoch_order(p // self.epoch_len)[p % self.epoch_len] for p in range(first, first + self.batch_size)
        ]

    def __iter__(self):
        m = self.start
        while True:
            yield self.batch(m)
            m += 1


def collate(items: list[dict]) -> dict:
    return {
        "pixels": torch.stack([it["pixels"] for it in items]),
        "labels": torch.tensor([it["label"] for it in items]),
        "captions": [it["caption"] for it in items],
    }


class CoEmoGenTrainingModule(nn.Module):
    """Frozen base models + trainable CoEmoGen parts; forward returns the losses of one batch."""

    def __init__(self, model: CoEmoGen, base: BaseModels, gate: HiLoRAGate, lambda_sem: float, template: str) -> None:
        super().__init__()
        self.model, self.unet, self.vae = model, base.unet, base.vae
        self.text_encoder, self.clip = base.text_encoder, base.clip
        self.base, self.gate, self.lambda_sem, self.template = base, gate, lambda_sem, template
        self.conditioner = EmotionConditioner(base.tokenizer, base.text_encoder)

    @torch.no_grad()
    def frozen_features(self, pixels: torch.Tensor, captions: list[str], generator: torch.Generator):
        dtype = self.vae.dtype
        posterior = self.vae.encode((pixels * 2 - 1).to(dtype)).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=generator).to(posterior.mean)
        latents = (posterior.mean + posterior.std * noise) * self.vae.config.scaling_factor
        tokens = image_tokens(
            self.clip, self.base.clip_preprocess(pixels.to(self.clip.dtype)), self.model.config.image_token_layer
        )
        ids = self.base.tokenizer(
            captions, padding="max_length", max_length=self.conditioner.max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(pixels.device)
        return latents, tokens, text_embeds(self.clip, ids)

    def forward(
        self, pixels: torch.Tensor, labels: torch.Tensor, captions: list[str], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        latents, tokens, caption_embeds = self.frozen_features(pixels, captions, generator)
        weights = self.model.one_hot(labels)
        visual = self.model.visual_embedding(weights, tokens.float())
        cond, pooled = self.conditioner.encode_embeddings(visual.to(self.text_encoder.dtype), self.template)
        scheduler = self.base.noise_scheduler
        noise = torch.randn(latents.shape, generator=generator).to(latents)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(labels),), generator=generator)
        t = t.to(latents.device)
        noisy = scheduler.add_noise(latents, noise, t)
        if scheduler.config.prediction_type == "epsilon":
            target = noise
        elif scheduler.config.prediction_type == "v_prediction":
            target = scheduler.get_velocity(latents, noise, t)
        else:
            raise CoEmoGenError(f"unsupported prediction type {scheduler.config.prediction_type}")
        # The gates stay set after the forward: gradient checkpointing re-runs the U-Net during backward.
        self.gate.weights = self.model.gates(weights)
        pred = self.unet(noisy, t, encoder_hidden_states=cond).sample
        l_ldm = F.mse_loss(pred.float(), target.float())
        condition = self.clip.text_projection(pooled.to(self.clip.dtype)).float()
        l_sem = (1 - F.cosine_similarity(condition, caption_embeds.float(), dim=-1)).mean()
        return {"loss": l_ldm + self.lambda_sem * l_sem, "l_ldm": l_ldm, "l_sem": l_sem}


def trainable_parameters(model: CoEmoGen, unet: nn.Module) -> dict[str, nn.Parameter]:
    params = {f"model.{k}": p for k, p in model.named_parameters()}
    for name, layer in hilora_layers(unet):
        params[f"unet.{name}.lora_A"] = layer.lora_A
        params[f"unet.{name}.lora_B"] = layer.lora_B
    return params


def save_checkpoint(path: Path, params: dict[str, nn.Parameter], optimizer, step: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: p.detach().cpu().contiguous() for k, p in params.items()}, tmp / "trainable.safetensors")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"global_step": step}))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)  # a checkpoint directory is complete or absent, never half-written


def load_checkpoint(path: Path, params: dict[str, nn.Parameter], optimizer) -> int:
    state = load_file(path / "trainable.safetensors")
    if set(state) != set(params):
        raise CoEmoGenError(f"checkpoint {path} does not match this model configuration")
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(state[k])
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu"))
    return int(json.loads((path / "state.json").read_text())["global_step"])


def find_checkpoint(out: Path, spec: str) -> Path | None:
    if spec != "latest":
        path = Path(spec)
        if not (path / "state.json").is_file():
            raise CoEmoGenError(f"not a checkpoint directory: {spec}")
        return path
    found = sorted(out.glob("checkpoint-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))
    return found[-1] if found else None


def prune_checkpoints(out: Path, limit: int | None) -> None:
    if not limit:
        return
    found = sorted(out.glob("checkpoint-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))
    for old in found[:-limit]:
        shutil.rmtree(old)


@torch.no_grad()
def embed_records(
    module: CoEmoGenTrainingModule, dataset: ManifestDataset, device, batch_size: int = 64, desc: str = "embed"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Visual embeddings e^v of every training image under its own emotion (for the clusters)."""
    out, labels = [], []
    for start in tqdm(range(0, len(dataset), batch_size), desc=desc, leave=False):
        batch = collate([dataset[i] for i in range(start, min(len(dataset), start + batch_size))])
        pixels = batch["pixels"].to(device)
        tokens = image_tokens(
            module.clip,
            module.base.clip_preprocess(pixels.to(module.clip.dtype)),
            module.model.config.image_token_layer,
        )
        out.append(
            module.model.visual_embedding(module.model.one_hot(batch["labels"].to(device)), tokens.float()).cpu()
        )
        labels.append(batch["labels"])
    return torch.cat(out), torch.cat(labels)


@torch.no_grad()
def validation_grid(module: CoEmoGenTrainingModule, dataset: ManifestDataset, seed: int, steps: int = 20):
    """One image per emotion, its visual embedding taken from the emotion's first training image."""
    taxonomy = module.model.taxonomy
    device = next(module.model.parameters()).device
    firsts = [
        next(i for i, r in enumerate(dataset.records) if r.emotion == e)
        for e in taxonomy.emotions
        if any(r.emotion == e for r in dataset.records)
    ]
    batch = collate([dataset[i] for i in firsts])
    pixels = batch["pixels"].to(device)
    tokens = image_tokens(
        module.clip, module.base.clip_preprocess(pixels.to(module.clip.dtype)), module.model.config.image_token_layer
    )
    weights = module.model.one_hot(batch["labels"].to(device))
    visual = module.model.visual_embedding(weights, tokens.float())
    cond, _ = module.conditioner.encode_embeddings(visual.to(module.text_encoder.dtype), module.template)
    uncond = module.conditioner.encode_text([""])[0]
    unet = module.unet
    size = unet.config.sample_size
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn((len(firsts), unet.config.in_channels, size, size), generator=g).to(cond)
    latents = denoise(
        unet,
        make_scheduler("dpm", module.base.noise_scheduler.config),
        latents,
        cond,
        uncond,
        module.gate,
        module.model.gates(weights),
        steps,
        5.0,
    )
    return image_grid(decode(module.vae, latents))


def train(args: TrainArgs) -> Path:
    """Run training; returns the run directory (config, safetensors weights, clusters)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import ProjectConfiguration

    out = Path(args.out)
    check_template(args.template)
    if args.mixed_precision not in {"no", "fp16", "bf16"}:
        raise CoEmoGenError(f"--mixed_precision must be no, fp16 or bf16, not '{args.mixed_precision}'")
    taxonomy = Taxonomy.load(args.taxonomy)
    skips = SkipCounter()
    records = read_manifest(args.manifest, taxonomy, skips)
    records = drop_unreadable(records, skips)
    if not records:
        raise CoEmoGenError(f"no usable records in {args.manifest} ({skips.total} skipped: {dict(skips.reasons)})")
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.mixed_precision, torch.float32)

    sd, clip = resolve_sources(args.pretrained_model_name_or_path, args.clip_model_name_or_path, args.preset)
    base = load_base_models(sd, clip)
    resolution = args.resolution or base.unet.config.sample_size * 2 ** (len(base.vae.config.block_out_channels) - 1)
    config = CoEmoGenConfig(
        taxonomy=taxonomy.to_dict(),
        embed_dim=base.text_encoder.config.hidden_size,
        image_dim=base.clip.config.vision_config.hidden_size,
        pretrained_model_name_or_path=sd,
        clip_model_name_or_path=clip,
        resolution=resolution,
        mapper_hidden_dim=args.mapper_hidden_dim,
        lora_rank=args.lora_rank,
        lora_alpha=float(args.lora_rank),
        lora_targets=list(args.lora_targets),
        emotion_lora=args.emotion_lora,
        group_lora=args.group_lora,
        shared_lora=args.shared_lora,
        perception_encoder=args.perception_encoder,
        image_token_layer=args.image_token_layer,
        template=args.template,
        cluster_components=args.cluster_components,
        method=args.method,
    )
    torch.manual_seed(args.seed)  # initial weights of mapper, encoder and LoRA A
    model = CoEmoGen(config)
    gate = model.inject_into(base.unet)
    params = trainable_parameters(model, base.unet)
    for p in params.values():
        p.requires_grad_(True)
    for module in (base.vae, base.text_encoder, base.clip, base.unet):
        module.to(accelerator.device)
    if weight_dtype != torch.float32:
        for module in (base.vae, base.text_encoder, base.clip):
            module.to(weight_dtype)
        # Cast the frozen U-Net weights only: the HiLoRA parameters stay in fp32 for the optimiser.
        for name, p in base.unet.named_parameters():
            if not name.endswith(("lora_A", "lora_B")):
                p.data = p.data.to(weight_dtype)
    if args.gradient_checkpointing:
        base.unet.enable_gradient_checkpointing()
    module = CoEmoGenTrainingModule(model, base, gate, args.lambda_sem, args.template)
    optimizer = torch.optim.AdamW(list(params.values()), lr=args.learning_rate, weight_decay=args.weight_decay)

    global_step = 0
    if args.resume_from_checkpoint:
        path = find_checkpoint(out, args.resume_from_checkpoint)
        if path is None:
            logger.warning("no checkpoint in %s; starting a new run", out)
        else:
            global_step = load_checkpoint(path, params, optimizer)
            accelerator.print(f"resumed from {path} at step {global_step}")
    dataset = ManifestDataset(records, taxonomy, resolution)
    sampler = BalancedBatchSampler(
        [taxonomy.index(r.emotion) for r in records],
        args.train_batch_size,
        args.seed,
        start=global_step * args.gradient_accumulation_steps,
        num_processes=accelerator.num_processes,
        process_index=accelerator.process_index,
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=args.dataloader_num_workers
    )
    module, optimizer = accelerator.prepare(module, optimizer)
    inner = accelerator.unwrap_model(module)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        accelerator.init_trackers("coemogen", config={k: str(v) for k, v in asdict(args).items()})
        (out / "data_summary.json").write_text(
            json.dumps(
                {
                    "records": len(records),
                    "skipped": skips.total,
                    "skip_reasons": dict(skips.reasons),
                    "per_emotion": {e: sum(r.emotion == e for r in records) for e in taxonomy.emotions},
                },
                indent=1,
            )
        )

    bar = tqdm(
        total=args.max_train_steps, initial=global_step, desc="train", disable=not accelerator.is_local_main_process
    )
    micro_step = global_step * args.gradient_accumulation_steps
    batches = iter(loader)
    while global_step < args.max_train_steps:
        batch = next(batches)
        generator = torch.Generator().manual_seed(
            args.seed * 1_000_003 + micro_step * accelerator.num_processes + accelerator.process_index
        )
        with accelerator.accumulate(module):
            losses = module(
                batch["pixels"].to(accelerator.device),
                batch["labels"].to(accelerator.device),
                batch["captions"],
                generator,
            )
            accelerator.backward(losses["loss"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        micro_step += 1
        if not accelerator.sync_gradients:
            continue
        global_step += 1
        bar.update(1)
        logs = {k: v.detach().item() for k, v in losses.items()}
        bar.set_postfix(loss=f"{logs['loss']:.4f}", l_sem=f"{logs['l_sem']:.3f}")
        accelerator.log(logs, step=global_step)
        if not math.isfinite(logs["loss"]):
            raise CoEmoGenError(f"loss became {logs['loss']} at step {global_step}; lower --learning_rate or use fp32")
        if accelerator.is_main_process:
            if args.checkpointing_steps and global_step % args.checkpointing_steps == 0:
                save_checkpoint(out / f"checkpoint-{global_step}", params, optimizer, global_step)
                prune_checkpoints(out, args.checkpoints_total_limit)
            if args.validation_steps and global_step % args.validation_steps == 0:
                grid = validation_grid(inner, dataset, args.seed)
                (out / "validation").mkdir(exist_ok=True)
                grid.save(out / "validation" / f"step-{global_step:06d}.png")
                if args.report_to == "tensorboard":
                    import numpy as np

                    accelerator.get_tracker("tensorboard").writer.add_image(
                        "validation", np.asarray(grid), global_step, dataformats="HWC"
                    )
    bar.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        model.eval()
        embeddings, labels = embed_records(inner, dataset, accelerator.device, desc="fit clusters")
        clusters = EmotionClusters.fit(
            embeddings, labels, taxonomy.num_emotions, args.cluster_components, seed=args.seed
        )
        save_run(out, model, base.unet, clusters)
        validation_grid(inner, dataset, args.seed).save(out / "final_grid.png")
    accelerator.end_training()
    # Accelerate keeps its settings in a process-wide singleton; clear them (not the process
    # group) so a later train() call in this process may use another precision.
    AcceleratorState._reset_state(reset_partial_state=False)
    return out


def refit_clusters(
    run_dir: str | Path, manifest: str | Path, components: int = 1, seed: int = 0, temperature: float | None = None
) -> EmotionClusters:
    """Refit a trained run's emotion clusters (e.g. another number of mixture components), and
    optionally set the run's default sampling temperature."""
    from .modeling import load_run
    from .models.hilora import hilora_gate

    run_dir = Path(run_dir)
    config = CoEmoGenConfig.load(run_dir)
    base = load_base_models(config.pretrained_model_name_or_path, config.clip_model_name_or_path)
    model, _ = load_run(run_dir, base.unet, require_clusters=False)
    skips = SkipCounter()
    records = drop_unreadable(read_manifest(manifest, model.taxonomy, skips), skips)
    if not records:
        raise CoEmoGenError(f"no usable records in {manifest}")
    module = CoEmoGenTrainingModule(model.eval(), base, hilora_gate(base.unet), 0.0, config.template)
    dataset = ManifestDataset(records, model.taxonomy, config.resolution)
    embeddings, labels = embed_records(module, dataset, "cpu", desc="fit clusters")
    clusters = EmotionClusters.fit(embeddings, labels, model.taxonomy.num_emotions, components, seed=seed)
    save_file(clusters.state_dict(), run_dir / "clusters.safetensors")
    config.cluster_components = components
    if temperature is not None:
        config.cluster_temperature = temperature
    config.save(run_dir)
    return clusters
