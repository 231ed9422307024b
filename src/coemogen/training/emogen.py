"""`coemogen train --method emogen`: EmoGen (CVPR 2024) as published, on this package's data and loop.

`train_emogen` reads as its stages: the frozen base models and the data; (1) the image emotion
classifier trained on the run's own training split, its penultimate features the emotion space;
(2) every training image's emotion-space feature; (3) the attribute vocabulary, its CLIP text
features and the per-(attribute, emotion) coefficients; (4) for L_emo, a linear CLIP-space emotion
classifier; (5) the mapper trained with their loss through the shared loop (`loop.run_loop`); (6)
the emotion-space Gaussians. Only the encoder (in its stage) and the mapper learn: the U-Net, VAE,
text encoder and CLIP stay frozen. `docs/baselines.md` compares every step with their code.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from .. import registry
from ..data.images import image_grid
from ..data.manifest import ManifestRecord
from ..errors import CoEmoGenError
from ..io import save_safetensors
from ..models.base import BaseModels, load_base_models, resolve_sources
from ..models.clip import text_embeds
from ..models.clusters import EmotionClusters
from ..models.conditioning import EmotionConditioner, max_length
from ..models.emogen import (
    SMALL_CNN,
    EmoGen,
    EmoGenConfig,
    float_state,
    load_emogen_run,
    load_float_state,
    save_emogen_run,
)
from ..pipelines.pipeline_coemogen import CoEmoGenPipeline
from ..taxonomy import Taxonomy
from .config import TrainingArguments, check_continued_resolution
from .data import BalancedBatchSampler, CachedDataset, ManifestDataset, collate
from .loop import Method, MethodRun, check_cache, diffusion_inputs, frozen_latents, open_cache, read_records

logger = logging.getLogger(__name__)


def target_attribute(record: ManifestRecord) -> str | None:
    """An image's EmoGen attribute: its scene, else its first object (their dataset_balance.py),
    lower-case with spaces (their folder names use underscores; CLIP reads words)."""
    attributes = record.extra.get("attributes") or {}
    if not isinstance(attributes, dict):
        return None
    objects = attributes.get("object")
    value = attributes.get("scene") or (objects[0] if isinstance(objects, list) and objects else None)
    if not isinstance(value, str) or not value.strip():
        return None
    return " ".join(value.lower().replace("_", " ").split())


def attribute_coefficients(
    records: list[ManifestRecord], taxonomy: Taxonomy, threshold: float = 0.0
) -> tuple[list[str], dict[str, list[float]]]:
    """The attribute vocabulary (sorted) and c[a][e] = n(a, e) / n(a): the share of the training
    images with attribute a that evoke emotion e (each of their coefficient rows sums to 1), set to 0
    below `threshold`."""
    counts: dict[str, list[int]] = {}
    for r in records:
        a = target_attribute(r)
        if a is not None:
            counts.setdefault(a, [0] * taxonomy.num_emotions)[taxonomy.index(r.emotion)] += 1
    vocabulary = sorted(counts)
    coefficients = {}
    for a in vocabulary:
        total = sum(counts[a])
        coefficients[a] = [n / total if n / total >= threshold else 0.0 for n in counts[a]]
    return vocabulary, coefficients


class EmoGenDataset(torch.utils.data.Dataset):
    """The training images (or cache rows) with each one's emotion-space feature, attribute index
    (-1: none) and coefficient c for its own emotion."""

    def __init__(self, images, features: torch.Tensor, attribute: torch.Tensor, coefficient: torch.Tensor) -> None:
        self.images, self.features, self.attribute, self.coefficient = images, features, attribute, coefficient
        self.records = images.records

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        i = item[0] if isinstance(item, tuple) else item
        return {
            **self.images[item],
            "emotion_features": self.features[i],
            "attribute": self.attribute[i],
            "coefficient": self.coefficient[i],
        }

    def labels(self) -> list[int]:
        return self.images.labels()


class EmoGenTrainingModule(nn.Module):
    """Frozen base models + EmoGen's mapper; forward returns their loss of one batch, per sample:
    (1 - c) L_LDM + attr_rate c L_attr + emo_rate L_emo, averaged over the batch."""

    def __init__(self, model: EmoGen, base: BaseModels, attribute_embeds: torch.Tensor, random_flip: bool) -> None:
        super().__init__()
        self.model, self.base, self.random_flip = model, base, random_flip
        self.mapper = model.mapper
        self.conditioner = EmotionConditioner(base)
        self.register_buffer("attribute_embeds", attribute_embeds, persistent=False)

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        config = self.model.config
        latents, _, features = frozen_latents(self.base, batch, generator, self.random_flip)
        device = latents.device
        tokens = self.mapper(batch["emotion_features"].to(device).float())
        cond = self.conditioner.encode_embeddings(tokens.to(self.base.text_encoder.dtype), config.template)
        noisy, t, target = diffusion_inputs(self.base.noise_scheduler, latents, generator)
        pred = self.base.unet(noisy, t, **self.base.family.unet_kwargs(cond, features.get("time_ids"))).sample
        l_ldm = ((pred.float() - target.float()) ** 2).mean(dim=(1, 2, 3))
        projection = self.base.text_projection
        semantic = projection(cond.pooled.to(projection.weight.dtype)).float()
        return emogen_losses(
            l_ldm,
            semantic,
            self.attribute_embeds.float(),
            batch["attribute"].to(device),
            batch["coefficient"].to(device).float(),
            self.model.clip_emotion_classifier,
            batch["labels"].to(device),
            config.attr_rate,
            config.emo_rate,
        )


def emogen_losses(
    l_ldm: torch.Tensor,
    semantic: torch.Tensor,
    attribute_embeds: torch.Tensor,
    attribute: torch.Tensor,
    coefficient: torch.Tensor,
    classifier: nn.Module,
    labels: torch.Tensor,
    attr_rate: float,
    emo_rate: float,
) -> dict[str, torch.Tensor]:
    """Their loss for every sample of a batch (theirs reads only the first sample's attribute).

    `l_ldm` (B,): each sample's denoising MSE; `semantic` (B, D): the projected pooled condition;
    L_attr: cross-entropy over the cosine similarities with every attribute's CLIP text feature, the
    target the sample's own attribute (0 without one, as is c); L_emo: cross-entropy of the linear
    CLIP-space emotion classifier on `semantic` (computed only when `emo_rate` > 0)."""
    has = attribute >= 0
    if len(attribute_embeds) == 0:  # no record has attributes: L_attr is 0 (there is no class to score)
        l_attr = torch.zeros_like(l_ldm)
    else:
        scores = F.cosine_similarity(semantic[:, None, :], attribute_embeds[None], dim=-1)
        l_attr = F.cross_entropy(scores, attribute.clamp_min(0), reduction="none") * has
    c = coefficient * has
    if emo_rate > 0:
        l_emo = F.cross_entropy(classifier(semantic.to(classifier.weight.dtype)).float(), labels, reduction="none")
    else:
        l_emo = torch.zeros_like(l_ldm)
    loss = ((1 - c) * l_ldm + attr_rate * c * l_attr + emo_rate * l_emo).mean()
    return {"loss": loss, "l_ldm": l_ldm.mean(), "l_attr": l_attr.mean(), "l_emo": l_emo.mean()}


def train_emotion_encoder(
    model: EmoGen, dataset: ManifestDataset, config: EmoGenConfig, seed: int, device: torch.device
) -> None:
    """Stage 1: the image emotion classifier, cross-entropy on balanced batches of the training
    split for `encoder_epochs` passes, each image mirrored with probability 1/2; deterministic from
    `seed`."""
    encoder = model.emotion_encoder.to(device).train()
    encoder.requires_grad_(True)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=config.encoder_learning_rate)
    sampler = BalancedBatchSampler(dataset.labels(), config.encoder_batch_size, seed + 1)
    g = torch.Generator().manual_seed(seed * 7 + 3)
    with torch.random.fork_rng(devices=[]):  # dropout draws from the seed, the global RNG untouched
        torch.manual_seed(seed)
        steps = math.ceil(config.encoder_epochs * len(dataset) / config.encoder_batch_size)
        for step in tqdm(range(steps), desc="emotion encoder", leave=False):
            batch = collate([dataset[i] for i, _ in sampler.batch(step)])
            pixels = batch["pixels"].to(device)
            flips = (torch.rand(len(pixels), generator=g) < 0.5).to(device).view(-1, 1, 1, 1)
            logits = encoder(torch.where(flips, pixels.flip(-1), pixels))
            loss = F.cross_entropy(logits, batch["labels"].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    encoder.eval().requires_grad_(False)


@torch.no_grad()
def emotion_features(model: EmoGen, dataset: ManifestDataset, device, batch_size: int = 64) -> torch.Tensor:
    """Stage 2: every training image's emotion-space feature (encoder in eval mode, centre view)."""
    out = []
    for start in tqdm(range(0, len(dataset), batch_size), desc="emotion space", leave=False):
        batch = collate([dataset[i] for i in range(start, min(len(dataset), start + batch_size))])
        out.append(model.emotion_encoder.features(batch["pixels"].to(device)).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def word_features(base: BaseModels, words: list[str]) -> torch.Tensor:
    """Projected CLIP text features of words (their `get_text_features` of the attribute names)."""
    if not words:
        return torch.zeros(0, base.clip_config.projection_dim)
    ids = base.tokenizer(
        words, padding="max_length", max_length=max_length(base.tokenizer, base.text_encoder), truncation=True,
        return_tensors="pt",
    ).input_ids.to(base.clip.device)  # fmt: skip
    return text_embeds(base.clip, ids).float()


@torch.no_grad()
def clip_image_features(base: BaseModels, dataset: ManifestDataset, batch_size: int = 64) -> torch.Tensor:
    features = []
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(len(dataset), start + batch_size))])
        pixels = base.clip_preprocess(batch["pixels"].to(base.clip.device, base.clip.dtype))
        features.append(base.clip.get_image_features(pixel_values=pixels).float().cpu())
    return torch.cat(features)


def train_clip_emotion_classifier(
    model: EmoGen, features: torch.Tensor, labels: torch.Tensor, steps: int, seed: int
) -> None:
    """Stage 4 (L_emo): the linear emotion classifier on CLIP image features of the training images
    (their Clip_emotion_classifier: Linear(768, 8) on `get_image_features`), full-batch AdamW."""
    head = model.clip_emotion_classifier.cpu().float().train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head.reset_parameters()
    head.requires_grad_(True)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = F.cross_entropy(head(features), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    head.eval().requires_grad_(False)


def resolve_encoder(config_values: dict, data_defaults: dict, resolution: int) -> dict:
    """The emotion encoder's defaults: those a registered client gives for the data (the synthetic
    world: the small CNN, randomly initialised), else their ImageNet-initialised ResNet-50 at 224 px."""
    values = dict(config_values)
    for key in ("emotion_encoder", "emotion_encoder_weights"):
        if key in data_defaults:
            values.setdefault(key, data_defaults[key])
    values.setdefault("emotion_encoder", "resnet50")
    if values["emotion_encoder"] != SMALL_CNN:
        values.setdefault("emotion_encoder_weights", "DEFAULT")
    values.setdefault("encoder_image_size", resolution if values["emotion_encoder"] == SMALL_CNN else 224)
    return values


class EmoGenMethod(Method):
    """EmoGen (CVPR 2024) as published: its stages before the loop, then the mapper alone."""

    name = "emogen"
    config_class = EmoGenConfig

    def build(self, args: TrainingArguments, taxonomy: Taxonomy, accelerator, hyperparameters: dict) -> MethodRun:
        out, device = Path(args.out), accelerator.device
        # The data and the frozen base models (CLIP whole: attribute words, L_emo).
        records, skips = read_records(args.manifest, taxonomy)
        start = None
        if args.init_from:  # a continued run: its configuration, encoder, L_emo classifier and mapper
            if hyperparameters:
                raise CoEmoGenError(
                    "--init_from continues the run's own configuration; drop "
                    + ", ".join("--" + k for k in hyperparameters)
                )
            start = EmoGenConfig.load(args.init_from)
            check_continued_resolution(args, start.resolution)
            sd = args.pretrained_model_name_or_path or start.pretrained_model_name_or_path
            clip = args.clip_model_name_or_path or start.clip_model_name_or_path
        else:
            sd, clip = resolve_sources(
                args.pretrained_model_name_or_path, args.clip_model_name_or_path, args.preset, records[0].image
            )
        base = load_base_models(sd, clip, pretrained_vae_model_name_or_path=args.pretrained_vae_model_name_or_path)
        resolution = start.resolution if start else args.resolution or base.default_resolution
        config = start or EmoGenConfig(
            taxonomy=taxonomy.to_dict(),
            embed_dim=base.embed_dim,
            clip_dim=base.clip_config.projection_dim,
            pretrained_model_name_or_path=sd,
            clip_model_name_or_path=clip,
            resolution=resolution,
            pretrained_vae_model_name_or_path=args.pretrained_vae_model_name_or_path,
            **resolve_encoder(hyperparameters, registry.data_defaults(records[0].image), resolution),
        )
        if start is not None:
            model, _ = load_emogen_run(args.init_from, config, taxonomy, require_clusters=False)
        else:
            with torch.random.fork_rng(devices=[]):  # initial weights from the seed, the global RNG untouched
                torch.manual_seed(args.seed)
                model = EmoGen(config)
        model.requires_grad_(False)  # each stage switches on what it trains
        for module in base.frozen_modules():
            module.to(device)
        images = ManifestDataset(records, taxonomy, resolution, center_crop=True, seed=args.seed)

        # 1. The emotion encoder (the continued run's, or kept from an interrupted run being resumed).
        encoder_file = out / "emotion_encoder.safetensors"
        if start is not None:
            model.emotion_encoder.to(device).eval()
        elif args.resume_from_checkpoint and encoder_file.is_file():
            load_float_state(model.emotion_encoder, encoder_file, f"run '{out}'")
            model.emotion_encoder.to(device).eval()
        else:
            train_emotion_encoder(model, images, config, args.seed, device)
            if accelerator.is_main_process:
                save_safetensors(float_state(model.emotion_encoder), encoder_file)
        # 2. The emotion space; 3. attributes and coefficients; 4. L_emo's classifier.
        features = emotion_features(model, images, device)
        labels = torch.tensor(images.labels())
        vocabulary, coefficients = attribute_coefficients(records, taxonomy, config.threshold)
        index = {a: i for i, a in enumerate(vocabulary)}
        targets = [target_attribute(r) for r in records]
        attribute = torch.tensor([index.get(a, -1) if a else -1 for a in targets])
        coefficient = torch.tensor(
            [coefficients[a][labels[i]] if a in coefficients else 0.0 for i, a in enumerate(targets)]
        )
        if not vocabulary and config.attr_rate > 0:
            logger.warning("no record of %s has attributes (scene/object): L_attr is 0 throughout", args.manifest)
        if config.emo_rate > 0 and start is None:
            train_clip_emotion_classifier(
                model, clip_image_features(base, images), labels, config.classifier_steps, args.seed
            )
        model.to(device)

        # 5. The mapper, trained with their loss by the engine's loop.
        params = {f"mapper.{k}": p for k, p in model.mapper.named_parameters()}
        for p in params.values():
            p.requires_grad_(True)
        step_images = ManifestDataset(
            records, taxonomy, resolution, args.center_crop, args.seed, base.family.micro_conditioning
        )
        if args.cache:
            step_images = cached_images(args, base, records, step_images)
        attribute_embeds = word_features(base, vocabulary).to(device)
        attributes = {
            "vocabulary": vocabulary,
            "coefficients": coefficients,
            "records_with_attribute": int((attribute >= 0).sum()),
            "records": len(records),
        }

        def finalise(out: Path) -> None:  # 6. the emotion-space Gaussians (their mean and std per emotion)
            clusters = EmotionClusters.fit(features, labels, taxonomy.num_emotions, 1, seed=args.seed)
            save_emogen_run(out, model, clusters, attributes)

        return MethodRun(
            base=base,
            model=model,
            params=params,
            records=records,
            skips=skips,
            dataset=EmoGenDataset(step_images, features, attribute, coefficient),
            module=EmoGenTrainingModule(model, base, attribute_embeds, args.random_flip),
            validation=lambda: validation_grid(model, base, images, features, args.seed, device),
            finalise=finalise,
            extra_records={"attributes.json": json.dumps(attributes, indent=1)},
        )


def cached_images(args: TrainingArguments, base: BaseModels, records: list, images: ManifestDataset):
    """The feature cache's rows in the manifest's order (latents; EmoGen needs no image tokens)."""
    cache = open_cache(args)
    cached = [Path(r["image"]) for r in cache.records()]
    if cached != [r.image for r in records]:
        raise CoEmoGenError(f"the cache {args.cache} was built from other records than {args.manifest}")
    check_cache(cache, args, base, records, images.resolution, None)
    return CachedDataset(cache, images, load_pixels=False, mirrored=args.random_flip)


@torch.no_grad()
def validation_grid(
    model: EmoGen, base: BaseModels, images: ManifestDataset, features: torch.Tensor, seed: int, device
) -> Image.Image:
    """One image per emotion, the token mapped from the emotion's first training image's feature."""
    firsts = {}
    for i, r in enumerate(images.records):
        firsts.setdefault(r.emotion, i)
    emotions = [e for e in model.taxonomy.emotions if e in firsts]
    tokens = model.token_embeddings(features[[firsts[e] for e in emotions]])
    pipeline = CoEmoGenPipeline(base, model, clusters=None, device=device)
    output = pipeline(emotions, num_images=len(emotions), seed=seed, num_inference_steps=20, visual_embeds=tokens)
    return image_grid(output.images)
