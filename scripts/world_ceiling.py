"""Where the world run loses emotion accuracy. The independent judge scores, on the same seeds:
real test images; their pocket-VAE round trips; the pocket SD prompted with the true (neutral)
descriptions of world images, i.e. what the base model can draw when told exactly what to draw;
and CoEmoGen's generated images at each guidance scale (at the run's default cluster temperature).

`--finetune-decoder N` adds a variant whose VAE decoder is fine-tuned N more steps with the encoder
frozen (the latent space, hence the U-Net and the run, stay valid).
Usage: python scripts/world_ceiling.py [--guidance 2.5 5 7.5] [--per-emotion 40] [--finetune-decoder 2000]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

from coemogen.data.images import to_tensor
from coemogen.pipelines.pipeline_coemogen import CoEmoGenPipeline
from coemogen.taxonomy import Taxonomy
from coemogen.world.dataset import build_world, neutral_specs, read_truth
from coemogen.world.judges import WorldCNN, _load_split
from coemogen.world.paths import EVALUATORS, POCKET_SD
from coemogen.world.pocket import _images_to_tensor, finetune_decoder
from coemogen.world.renderer import render
from coemogen.world.scenes import describe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--guidance", type=float, nargs="+", default=[5.0])
    parser.add_argument("--per-emotion", type=int, default=40)
    parser.add_argument("--finetune-decoder", type=int, default=0)
    args = parser.parse_args()
    tax = Taxonomy.default()
    groups = torch.tensor([tax.group_index_of(e) for e in tax.emotions])
    judge = WorldCNN.load(EVALUATORS / "emotion-judge")

    @torch.no_grad()
    def score(images: list, targets: list[int]) -> str:
        pixels = torch.stack([to_tensor(im, 64) for im in images]) if not torch.is_tensor(images) else images
        pred, targets = judge(pixels)["emotion"].argmax(1), torch.as_tensor(targets)
        emo_a, polarity = (pred == targets).float().mean(), (groups[pred] == groups[targets]).float().mean()
        return f"Emo-A {emo_a:.3f}  polarity {polarity:.3f}"

    pipe = CoEmoGenPipeline.from_pretrained(None)
    decoders = {"shipped decoder": pipe.base.vae}
    if args.finetune_decoder:
        corpus = _images_to_tensor(render(s, 64) for s in neutral_specs(6000, 1))  # the pocket corpus
        decoders["decoder fine-tuned further"] = copy.deepcopy(pipe.base.vae)
        finetune_decoder(decoders["decoder fine-tuned further"], corpus, args.finetune_decoder, seed=0)

    world = build_world(Path(tempfile.mkdtemp()) / "world", images_per_emotion=100, seed=0)
    x, y = _load_split(world, "test", 64)[:2]
    x, y = torch.stack(list(x)), torch.as_tensor(y)
    print(f"real test images ({len(y)}): {score(x, y)}")
    for name, vae in decoders.items():
        with torch.no_grad():
            rec = vae.decode(pipe.base.vae.encode(x * 2 - 1).latent_dist.mean).sample.clamp(-1, 1) / 2 + 0.5
        print(f"VAE round trip, {name}: {score(rec, y)}  MSE {F.mse_loss(rec, x):.5f}")

    base = StableDiffusionPipeline.from_pretrained(POCKET_SD, safety_checker=None, requires_safety_checker=False)
    base.scheduler = DPMSolverMultistepScheduler.from_config(base.scheduler.config)
    base.set_progress_bar_config(disable=True)
    described = build_world(Path(tempfile.mkdtemp()) / "world", images_per_emotion=args.per_emotion, seed=5)
    prompts: dict[str, list[str]] = {}
    for spec in read_truth(described).values():
        prompts.setdefault(spec.emotion, []).append(describe(spec))
    images, targets = [], []
    for k, emotion in enumerate(tax.emotions):
        for start in range(0, len(prompts[emotion]), 25):
            batch = prompts[emotion][start : start + 25]
            generator = torch.Generator().manual_seed(start)
            images += base(batch, num_inference_steps=25, guidance_scale=5.0, generator=generator).images
            targets += [k] * len(batch)
    print(f"pocket SD prompted with true descriptions (the base model's ceiling): {score(images, targets)}")

    for name, vae in decoders.items():
        pipe.base.vae = vae
        for guidance in args.guidance:
            images, targets = [], []
            for k, emotion in enumerate(tax.emotions):
                images += pipe(emotion, num_images=args.per_emotion, seed=0, guidance_scale=guidance).images
                targets += [k] * args.per_emotion
            print(f"CoEmoGen, {name}, guidance {guidance}: {score(images, targets)}")


if __name__ == "__main__":
    main()
