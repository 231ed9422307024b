"""`coemogen cache`: what the frozen networks give for each training record, computed once.

Per record: the VAE latent distribution (mean and std, so training still samples a latent), and
the mirror image's when flip augmentation is on; the CLIP text embedding of the caption (L_SEM's
target); optionally the CLIP image tokens v_i the visual-perception encoder reads (half precision).

Layout of a cache directory:

    cache.json               fingerprint: base models, resolution, flip, token layer, manifest digest
    records.jsonl            the cached records in row order (image, emotion, caption)
    shard-00000.safetensors  rows [0, shard_size), one tensor per feature, memory-mapped when read

Shards are written atomically (temporary file + rename), so a killed run re-run computes only
the missing ones and gives the same cache; under `accelerate launch` process k of n writes shards
k, k + n, ... `coemogen train --cache` refuses a cache whose fingerprint differs from the run's
and says which part differs and how to rebuild.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from tqdm import tqdm

from ..data.manifest import ManifestRecord, SkipCounter, read_manifest
from ..errors import CoEmoGenError
from ..io import save_safetensors, write_text
from ..models.base import BaseModels
from ..models.clip import text_embeds
from ..models.conditioning import max_length

logger = logging.getLogger(__name__)
CACHE_VERSION = 1
SHARD = "shard-{:05d}.safetensors"
# SDXL's per-record micro-conditions (the mirror image's crop too: flipping moves the crop's left edge).
MICRO_CONDITIONS = ["original_size", "crop_top_left", "flipped_crop_top_left"]


def records_digest(records: list[ManifestRecord]) -> str:
    """sha256 over every record's (image path, emotion, caption), in manifest order."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([str(r.image), r.emotion, r.caption]).encode())
    return h.hexdigest()


IGNORED_CONFIG_KEYS = {"dtype", "torch_dtype", "transformers_version"}  # how it was loaded, not what it is


def _config_digest(config) -> str:
    """Digest of a model configuration (diffusers FrozenDict or transformers PretrainedConfig)."""

    def architecture(values):
        if not isinstance(values, dict):
            return values
        return {
            k: architecture(v) for k, v in values.items() if not str(k).startswith("_") and k not in IGNORED_CONFIG_KEYS
        }

    values = architecture(config.to_dict() if hasattr(config, "to_dict") else dict(config))
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class CacheFingerprint:
    """Everything a cached feature depends on; two caches are interchangeable iff these are equal."""

    pretrained_model_name_or_path: str
    clip_model_name_or_path: str
    vae_config: str
    clip_config: str
    resolution: int
    random_flip: bool
    image_token_layer: int | None  # None: image tokens not cached
    manifest_records: str
    num_manifest_records: int
    version: int = CACHE_VERSION
    pretrained_vae_model_name_or_path: str | None = None
    micro_conditioning: bool = False  # each record's original size and crop (SDXL)

    @classmethod
    def of(
        cls,
        base: BaseModels,
        clip_config,
        records: list[ManifestRecord],
        resolution: int,
        random_flip: bool,
        image_token_layer: int | None,
    ) -> CacheFingerprint:
        return cls(
            pretrained_model_name_or_path=str(base.pretrained_model_name_or_path),
            clip_model_name_or_path=str(base.clip_model_name_or_path),
            vae_config=_config_digest(base.vae.config),
            clip_config=_config_digest(clip_config),
            resolution=resolution,
            random_flip=random_flip,
            image_token_layer=image_token_layer,
            manifest_records=records_digest(records),
            num_manifest_records=len(records),
            pretrained_vae_model_name_or_path=base.pretrained_vae_model_name_or_path,
            micro_conditioning=base.family.micro_conditioning,
        )

    def differences(self, other: CacheFingerprint) -> list[str]:
        """Human-readable 'field: cache has X, this run needs Y' for each differing part."""
        mine, theirs = asdict(self), asdict(other)
        return [f"{k}: the cache has {mine[k]!r}, this run needs {theirs[k]!r}" for k in mine if mine[k] != theirs[k]]


class FeatureCache:
    """A finished cache directory, read lazily: each shard is memory-mapped on first use."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_file = self.path / "cache.json"
        if not meta_file.is_file():
            raise CoEmoGenError(f"{self.path} is not a feature cache (no cache.json); make one with `coemogen cache`")
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CoEmoGenError(
                f"{meta_file} is not valid JSON ({err}); rebuild the cache with `coemogen cache`"
            ) from None
        if not isinstance(meta, dict) or meta.get("fingerprint", {}).get("version") != CACHE_VERSION:
            raise CoEmoGenError(
                f"{self.path} was made by another cache format version; rebuild it with `coemogen cache`"
            )
        self.fingerprint = CacheFingerprint(**meta["fingerprint"])
        self.shard_size, self.num_rows = int(meta["shard_size"]), int(meta["num_rows"])
        self.features: list[str] = list(meta["features"])
        missing = [s for s in range(self.num_shards) if not (self.path / SHARD.format(s)).is_file()]
        if missing:
            raise CoEmoGenError(
                f"cache {self.path} is incomplete ({len(missing)} of {self.num_shards} shards missing, e.g. "
                f"{SHARD.format(missing[0])}); re-run the same `coemogen cache` command to finish it"
            )
        self._shards: dict[int, object] = {}

    @property
    def num_shards(self) -> int:
        return (self.num_rows + self.shard_size - 1) // self.shard_size

    @property
    def has_image_tokens(self) -> bool:
        return self.fingerprint.image_token_layer is not None

    def records(self) -> list[dict]:
        lines = (self.path / "records.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def check(self, expected: CacheFingerprint, rebuild_hint: str) -> None:
        """Refuse a stale or foreign cache, naming each differing part. Image tokens may be absent
        (they are then computed on the fly) but not from another layer; mirror images may be
        cached for a run that does not flip."""
        mine = asdict(self.fingerprint)
        if mine["image_token_layer"] is None or expected.image_token_layer is None:
            mine["image_token_layer"] = expected.image_token_layer
        if mine["random_flip"] and not expected.random_flip:
            mine["random_flip"] = False
        diffs = CacheFingerprint(**mine).differences(expected)
        if diffs:
            raise CoEmoGenError(
                f"the feature cache {self.path} does not match this run:\n  "
                + "\n  ".join(diffs)
                + f"\nRebuild it: {rebuild_hint}"
            )

    def row(self, i: int, mirrored: bool = True) -> dict[str, torch.Tensor]:
        """The cached features of row i (float32; image tokens stay float16 until used); the mirror
        images' only with `mirrored` (a run that does not flip reads none of them)."""
        shard, j = divmod(i, self.shard_size)
        if shard not in self._shards:
            self._shards[shard] = self._open_shard(shard)
        handle = self._shards[shard]
        names = [n for n in self.features if mirrored or not n.startswith("flipped_")]
        return {name: handle.get_slice(name)[j] for name in names}

    def _open_shard(self, shard: int):
        """Memory-map a shard after checking its header: the cache's features, one row per record."""
        path = self.path / SHARD.format(shard)
        rows = min(self.shard_size, self.num_rows - shard * self.shard_size)
        try:
            handle = safe_open(str(path), framework="pt")
        except SafetensorError as err:
            raise CoEmoGenError(f"cache shard {path} is not a readable safetensors file ({err})") from None
        for name in self.features:
            shape = handle.get_slice(name).get_shape() if name in handle.keys() else None
            if not shape or shape[0] != rows:
                raise CoEmoGenError(
                    f"cache shard {path}: feature '{name}' has shape {shape}, expected {rows} rows; "
                    "delete the shard and re-run `coemogen cache` to rewrite it"
                )
        return handle

    def __getstate__(self) -> dict:  # data-loader workers open their own memory maps
        return {**self.__dict__, "_shards": {}}


def bytes_per_record(base: BaseModels, resolution: int, random_flip: bool, image_tokens: bool) -> int:
    """Disk bytes one record takes in the cache."""
    latent = base.vae.config.latent_channels * (resolution // base.vae_scale_factor) ** 2 * 4 * 2  # mean + std, fp32
    copies = 2 if random_flip else 1
    text = base.clip_config.projection_dim * 4
    total = latent * copies + text
    if image_tokens:
        vision = base.clip_config.vision_config
        tokens = (vision.image_size // vision.patch_size) ** 2 + 1
        total += tokens * vision.hidden_size * 2 * copies
    return total


@torch.no_grad()
def compute_features(
    base: BaseModels, pixels: torch.Tensor, captions: list[str], random_flip: bool, image_token_layer: int | None
) -> dict[str, torch.Tensor]:
    """The cached features of one batch of images in [0, 1] and their captions."""
    views = {"": pixels, "flipped_": pixels.flip(-1)} if random_flip else {"": pixels}
    out = {}
    for prefix, images in views.items():
        posterior = base.vae.encode((images * 2 - 1).to(base.vae.dtype)).latent_dist
        out[f"{prefix}latent_mean"] = posterior.mean.float()
        out[f"{prefix}latent_std"] = posterior.std.float()
        if image_token_layer is not None:
            out[f"{prefix}image_tokens"] = base.image_tokens(images, image_token_layer).half()
    ids = base.tokenizer(
        captions, padding="max_length", max_length=max_length(base.tokenizer, base.text_encoder), truncation=True,
        return_tensors="pt",
    ).input_ids.to(pixels.device)  # fmt: skip
    out["caption_embeds"] = text_embeds(base.clip, ids).float()
    return out


def build_cache(
    dataset,
    base: BaseModels,
    out: str | Path,
    fingerprint: CacheFingerprint,
    shard_size: int = 256,
    batch_size: int = 16,
    process_index: int = 0,
    num_processes: int = 1,
    device: str | torch.device = "cpu",
) -> list[int]:
    """Write this process's missing shards of `dataset` (a ManifestDataset of the cached records).

    The main process writes cache.json and records.jsonl; a cache.json from another fingerprint is
    refused, never overwritten. Returns the shard numbers written now.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "fingerprint": asdict(fingerprint),
        "shard_size": shard_size,
        "num_rows": len(dataset),
        "features": _feature_names(fingerprint),
    }
    meta_file = out / "cache.json"
    if meta_file.is_file():
        old = json.loads(meta_file.read_text())
        if old != meta:
            diffs = CacheFingerprint(**old["fingerprint"]).differences(fingerprint) if "fingerprint" in old else []
            raise CoEmoGenError(
                f"{out} already holds a different cache ({'; '.join(diffs) or 'shard layout differs'}); "
                "choose another --out or delete it"
            )
    elif process_index == 0:
        write_text(out / "records.jsonl", "".join(json.dumps(_record_row(r)) + "\n" for r in dataset.records))
        write_text(meta_file, json.dumps(meta, indent=1))
    num_shards = (len(dataset) + shard_size - 1) // shard_size
    mine = [s for s in range(process_index, num_shards, num_processes) if not (out / SHARD.format(s)).is_file()]
    written = []
    bar = tqdm(total=sum(min(shard_size, len(dataset) - s * shard_size) for s in mine), desc="cache", unit="img")
    for shard in mine:
        rows = range(shard * shard_size, min(len(dataset), (shard + 1) * shard_size))
        parts: dict[str, list[torch.Tensor]] = {}
        for start in range(rows.start, rows.stop, batch_size):
            items = [dataset[i] for i in range(start, min(rows.stop, start + batch_size))]
            pixels = torch.stack([it["pixels"] for it in items]).to(device)
            features = compute_features(
                base, pixels, [it["caption"] for it in items], fingerprint.random_flip, fingerprint.image_token_layer
            )
            for name in MICRO_CONDITIONS if fingerprint.micro_conditioning else ():
                features[name] = torch.stack([it[name] for it in items])
            for k, v in features.items():
                parts.setdefault(k, []).append(v.cpu())
            bar.update(len(items))
        save_safetensors({k: torch.cat(v).contiguous() for k, v in parts.items()}, out / SHARD.format(shard))
        written.append(shard)
    bar.close()
    return written


def _feature_names(fingerprint: CacheFingerprint) -> list[str]:
    names = ["latent_mean", "latent_std"]
    if fingerprint.image_token_layer is not None:
        names.append("image_tokens")
    if fingerprint.random_flip:
        names += ["flipped_" + n for n in names]
    names.append("caption_embeds")
    if fingerprint.micro_conditioning:
        names += MICRO_CONDITIONS
    return names


def _record_row(r: ManifestRecord) -> dict:
    return {"image": str(r.image), "emotion": r.emotion, "caption": r.caption}


def run_cache_command(args, process_index: int = 0, num_processes: int = 1, device="cpu") -> Path:
    """`coemogen cache`: load the base models, print the disk cost, write this process's shards."""
    from ..models.base import load_base_models, resolve_sources
    from ..taxonomy import Taxonomy
    from .data import ManifestDataset, drop_unreadable

    taxonomy = Taxonomy.load(args.taxonomy)
    skips = SkipCounter()
    manifest_records = read_manifest(args.manifest, taxonomy, skips)
    records = drop_unreadable(manifest_records, skips)
    if not records:
        raise CoEmoGenError(f"no usable records in {args.manifest} ({skips.total} skipped)")
    sd, clip = resolve_sources(
        args.pretrained_model_name_or_path, args.clip_model_name_or_path, args.preset, records[0].image
    )
    base = load_base_models(sd, clip, pretrained_vae_model_name_or_path=args.pretrained_vae_model_name_or_path)
    for module in base.frozen_modules():
        module.to(device)
    resolution = args.resolution or base.default_resolution
    layer = args.image_token_layer if args.cache_image_tokens else None
    fingerprint = CacheFingerprint.of(base, base.clip_config, manifest_records, resolution, args.random_flip, layer)
    per_record = bytes_per_record(base, resolution, args.random_flip, layer is not None)
    if process_index == 0:
        print(
            f"caching {len(records)} records at {resolution} px: {per_record / 1e6:.3f} MB per record, "
            f"{per_record * len(records) / 1e9:.2f} GB in all ({skips.total} records skipped)"
        )
    dataset = ManifestDataset(records, taxonomy, resolution, micro_conditioning=base.family.micro_conditioning)
    written = build_cache(
        dataset, base, args.out, fingerprint, args.shard_size, args.batch_size, process_index, num_processes, device
    )
    print(f"process {process_index}: wrote {len(written)} shards to {args.out}")
    return Path(args.out)
