"""Training data: the manifest as a dataset, the balanced per-process sampler, batching."""

from __future__ import annotations

import torch
from tqdm import tqdm

from ..data.images import ImageLoadError, load_rgb, to_tensor
from ..data.manifest import ManifestRecord, SkipCounter
from ..taxonomy import Taxonomy


class ManifestDataset(torch.utils.data.Dataset):
    """Images (float, [0, 1], square) with emotion indices and captions."""

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

    def labels(self) -> list[int]:
        return [self.taxonomy.index(r.emotion) for r in self.records]


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
