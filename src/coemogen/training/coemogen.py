"""The CoEmoGen method on the training engine (`loop.py`): what it trains (the mapper, the
visual-perception encoder and every HiLoRA adapter), how a batch becomes its condition and gates
(`CoEmoGenTrainingModule`: one-hot emotion -> e^v -> placeholder condition, each sample's adapters
selected by its emotion), its losses (L_LDM + lambda * L_SEM) and what it finalises (the emotion
clusters, fitted on the trained embeddings, and the run directory).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..data.images import image_grid
from ..data.manifest import ManifestRecord, SkipCounter, read_manifest
from ..errors import CoEmoGenError
from ..io import save_safetensors
from ..models.base import BaseModels, load_base_models, resolve_sources
from ..models.clusters import EmotionClusters
from ..models.coemogen import CoEmoGen, CoEmoGenConfig, load_run, save_run
from ..models.conditioning import EmotionConditioner
from ..models.hilora import adapter_weights, hilora_layers
from ..pipelines.pipeline_coemogen import CoEmoGenPipeline
from ..taxonomy import Taxonomy
from .config import TrainingArguments, check_continued_resolution
from .data import CachedDataset, ManifestDataset, collate
from .loop import Method, MethodRun, check_cache, diffusion_inputs, frozen_latents, open_cache, read_records


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

    def batch_embeddings(self, batch: dict) -> torch.Tensor:
        """e^v of the batch's own images under their emotions, with the graph through the mapper and
        the visual-perception encoder (reward tuning's path to them)."""
        device = self.model.membership.device
        tokens = encoder_tokens(self.model, self.base, batch)
        weights = self.model.one_hot(batch["labels"].to(device))
        return self.model.visual_embedding(weights, None if tokens is None else tokens.to(device))

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


def start_config(args: TrainingArguments, hyperparameters: dict) -> CoEmoGenConfig | None:
    """The configuration of the run `--init_from` names (None without one); a continued run keeps it,
    so hyper-parameters given beside it are refused."""
    if not args.init_from:
        return None
    if hyperparameters:
        raise CoEmoGenError(
            f"--init_from continues the run's own configuration; drop {', '.join('--' + k for k in hyperparameters)}"
        )
    config = CoEmoGenConfig.load(args.init_from)
    check_continued_resolution(args, config.resolution)
    return config


class CoEmoGenMethod(Method):
    """CoEmoGen (the paper): mapper + visual-perception encoder + HiLoRA, L_LDM + lambda * L_SEM."""

    name = "coemogen"
    config_class = CoEmoGenConfig

    def build(self, args: TrainingArguments, taxonomy: Taxonomy, accelerator, hyperparameters: dict) -> MethodRun:
        device = accelerator.device
        # The records: the cache's rows (in its order) when training from one, else the manifest's.
        cache, manifest_records = None, None
        if args.cache:
            cache = open_cache(args)
            skips = SkipCounter()
            manifest_records = read_manifest(args.manifest, taxonomy, skips)
            records = [ManifestRecord(Path(r["image"]), r["emotion"], r["caption"]) for r in cache.records()]
        else:
            records, skips = read_records(args.manifest, taxonomy)
        # The frozen base models (a run continued with --init_from keeps its own unless overridden):
        # with a cache holding every CLIP output, only CLIP's text projection.
        start = start_config(args, hyperparameters)
        if start is not None:
            sd = args.pretrained_model_name_or_path or start.pretrained_model_name_or_path
            clip = args.clip_model_name_or_path or start.clip_model_name_or_path
        else:
            sd, clip = resolve_sources(
                args.pretrained_model_name_or_path, args.clip_model_name_or_path, args.preset, records[0].image
            )
        encoder = hyperparameters.get("perception_encoder", True) if start is None else start.perception_encoder
        cache_has_tokens = cache is not None and (cache.has_image_tokens or not encoder)
        base = load_base_models(
            sd,
            clip,
            load_clip="text_projection" if cache_has_tokens else True,
            pretrained_vae_model_name_or_path=args.pretrained_vae_model_name_or_path,
        )
        config = start or CoEmoGenConfig(
            taxonomy=taxonomy.to_dict(),
            embed_dim=base.embed_dim,
            image_dim=base.clip_config.vision_config.hidden_size,
            pretrained_model_name_or_path=sd,
            clip_model_name_or_path=clip,
            resolution=args.resolution or base.default_resolution,
            pretrained_vae_model_name_or_path=args.pretrained_vae_model_name_or_path,
            **{"lora_targets": list(base.family.lora_targets), **hyperparameters},  # the family's, unless given
        )
        if cache is not None:
            layer = config.image_token_layer if config.perception_encoder else None
            check_cache(cache, args, base, manifest_records, config.resolution, layer)
        start_clusters = None
        if start is not None:
            model, start_clusters = load_run(args.init_from, base.unet, taxonomy, require_clusters=False, config=config)
        else:
            with torch.random.fork_rng(devices=[]):  # initial weights from the seed, the global RNG untouched
                torch.manual_seed(args.seed)
                model = CoEmoGen(config)
                model.inject_into(base.unet)
        params = trainable_parameters(model, base.unet)
        for p in params.values():
            p.requires_grad_(True)
        model.to(device)

        # The loop's data and what one batch trains: its own emotion's and group's adapters.
        dataset = ManifestDataset(
            records, taxonomy, config.resolution, args.center_crop, args.seed, base.family.micro_conditioning
        )
        if cache is not None:
            needs_pixels = config.perception_encoder and not cache.has_image_tokens
            dataset = CachedDataset(cache, dataset, load_pixels=needs_pixels, mirrored=args.random_flip)

        def select_adapters(batch: dict):
            return adapter_weights(base.unet, model.gates(model.one_hot(batch["labels"].to(device))))

        def finalise(out: Path) -> None:
            # The clusters live in e^v space: refitted on the trained embeddings, unless nothing that
            # makes e^v was trained (a run continued with its mapper and encoder frozen keeps its own).
            clusters = start_clusters
            if clusters is None or any(p.requires_grad for p in model.parameters()):
                embeddings, labels = embed_records(model, base, dataset, device)
                clusters = EmotionClusters.fit(
                    embeddings, labels, taxonomy.num_emotions, config.cluster_components, seed=args.seed
                )
            save_run(out, model, base.unet, clusters)

        return MethodRun(
            base=base,
            model=model,
            params=params,
            records=records,
            skips=skips,
            dataset=dataset,
            module=CoEmoGenTrainingModule(model, base, args.lambda_sem, args.random_flip),
            select_adapters=select_adapters,
            validation=lambda: validation_grid(model, base, dataset, args.seed, device),
            finalise=finalise,
        )


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
