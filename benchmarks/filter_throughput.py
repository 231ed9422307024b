"""CLIP filter scoring throughput with the pocket CLIP: batched vs one image at a time.

Usage: python benchmarks/filter_throughput.py [--images 512] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

from coemogen.captioning.filtering import clip_scores
from coemogen.models.clip import ClipImagePreprocessor
from coemogen.world.paths import POCKET_CLIP
from coemogen.world.renderer import render
from coemogen.world.scenes import CONTENT, describe, sample_scene


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    import random

    rng = random.Random(0)
    clip = CLIPModel.from_pretrained(POCKET_CLIP).eval()
    tok = CLIPTokenizer.from_pretrained(POCKET_CLIP)
    pre = ClipImagePreprocessor.from_clip(clip, CLIPImageProcessor.from_pretrained(POCKET_CLIP))
    with tempfile.TemporaryDirectory() as tmp:
        paths, caps = [], []
        for i in range(args.images):
            spec = sample_scene(rng.choice(list(CONTENT)), rng)
            paths.append(Path(tmp) / f"{i}.jpg")
            render(spec).save(paths[-1])
            caps.append(describe(spec))
        rates = {}
        for name, bs in (("batched", args.batch_size), ("one at a time", 1)):
            t0 = time.perf_counter()
            scores, _ = clip_scores(clip, pre, tok, paths, caps, batch_size=bs)
            rates[name] = args.images / (time.perf_counter() - t0)
    print(f"images={args.images} threads={torch.get_num_threads()} batch={args.batch_size}")
    for name, r in rates.items():
        print(f"{name:>14}: {r:.1f} img/s")
    print(f"speed-up batched / one-at-a-time = {rates['batched'] / rates['one at a time']:.1f}x")


if __name__ == "__main__":
    main()
