"""Training data: the manifest as a dataset, the balanced per-process sampler, batching."""

from __future__ import annotations

import torch
from tqdm import tqdm

from ..data.images import ImageLoadError, crop_top_left, load_rgb, resized_size, to_tensor
from ..data.manifest import ManifestRecord, SkipCounter
from ..taxonomy import Taxonomy


class ManifestDataset(torch.utils.data.Dataset):
    """Images (float, [0, 1], square) with emotion indices and captions.

    Indexed by record (centre crop) or, from the training sampler, by (record, draw): with
    `center_crop=False` the crop position is random, drawn from (seed, draw) so a resumed run
    crops exactly as the uninterrupted one (the diffusers `--center_crop` meaning).
    `micro_conditioning` (SDXL): each item also carries its image's `original_size` (height, width),
    `crop_top_left` (top, left) and the mirror image's `flipped_crop_top_left`.
    """

    def __init__(
        self,
        records: list[ManifestRecord],
        taxonomy: Taxonomy,
        resolution: int,
        center_crop: bool = True,
        seed: int = 0,
        micro_conditioning: bool = False,
    ) -> None:
        self.records, self.taxonomy, self.resolution = records, taxonomy, resolution
        self.center_crop, self.seed, self.micro_conditioning = center_crop, seed, micro_conditioning

    def __len__(self) -> int:
        return len(self.records)

    def crop(self, draw: int | None) -> tuple[float, float]:
        if self.center_crop or draw is None:
            return (0.5, 0.5)
        x, y = torch.rand(2, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + draw)).tolist()
        return (x, y)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        i, draw = item if isinstance(item, tuple) else (item, None)
        r = self.records[i]
        image, crop = load_rgb(r.image), self.crop(draw)
        item = {
            "pixels": to_tensor(image, self.resolution, crop),
            "label": self.taxonomy.index(r.emotion),
            "caption": r.caption,
        }
        if self.micro_conditioning:
            top, left = crop_top_left(image.size, self.resolution, crop)
            mirrored_left = resized_size(image.size, self.resolution)[0] - self.resolution - left
            item["original_size"] = torch.tensor([image.height, image.width])
            item["crop_top_left"] = torch.tensor([top, left])
            item["flipped_crop_top_left"] = torch.tensor([top, mirrored_left])
        return item

    def labels(self) -> list[int]:
        return [self.taxonomy.index(r.emotion) for r in self.records]


class CachedDataset(torch.utils.data.Dataset):
    """Rows of a feature cache (coemogen/training/cache.py), plus the images themselves when the
    visual-perception encoder needs image tokens the cache does not hold. `mirrored`: also read the
    mirror images' features (a run with flip augmentation)."""

    def __init__(self, cache, images: ManifestDataset, load_pixels: bool, mirrored: bool = True) -> None:
        self.cache, self.images, self.load_pixels, self.mirrored = cache, images, load_pixels, mirrored
        self.records = images.records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        i = item[0] if isinstance(item, tuple) else item
        r = self.records[i]
        row = {"label": self.images.taxonomy.index(r.emotion), "caption": r.caption, **self.cache.row(i, self.mirrored)}
        if self.load_pixels:
            row["pixels"] = self.images[item]["pixels"]
        return row

    def labels(self) -> list[int]:
        return self.images.labels()


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

    def batch(self, micro_step: int) -> list[tuple[int, int]]:
        """(record index, draw) pairs; the draw numbers every sample drawn in the run, across processes."""
        first = (micro_step * self.num_processes + self.process_index) * self.batch_size
        return [
            (self.epoch_order(p // self.epoch_len)[p % self.epoch_len], p)
            for p in range(first, first + self.batch_size)
        ]

    def __iter__(self):
        m = self.start
        while True:
            yield self.batch(m)
            m += 1


def collate(items: list[dict]) -> dict:
    """Stack every tensor field; labels become a tensor and captions stay a list."""
    batch = {k: torch.stack([it[k] for it in items]) for k, v in items[0].items() if isinstance(v, torch.Tensor)}
    batch["labels"] = torch.tensor([it["label"] for it in items])
    batch["captions"] = [it["caption"] for it in items]
    return batch
