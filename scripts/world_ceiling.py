"""Where the shipped world run loses emotion accuracy: judge accuracy on real test images, on their
pocket-VAE round trips, and on generated images (same seeds) per decoder and guidance scale.

`--finetune-decoder N` first fine-tunes the pocket VAE's decoder for N steps with the encoder frozen
(the latent space, hence the U-Net and the run, stay valid; Stable Diffusion's ft-MSE VAE did the same).
Usage: python scripts/world_ceiling.py [--finetune-decoder 2000] [--guidance 2.5 5 7.5] [--per-emotion 40]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from coemogen.data.images import to_tensor
from coemogen.evaluation import EVALUATORS
from coemogen.pipeline import CoEmoGenPipeline
from coemogen.taxonomy import Taxonomy
from coemogen.world.dataset import build_world, neutral_specs
from coemogen.world.evaluators import WorldCNN, _load_split
from coemogen.world.pocket import _images_to_tensor
from coemogen.world.scenes import render


def finetune_decoder(vae, steps: int, seed: int = 0):
    images = _images_to_tensor(render(s, 64) for s in neutral_specs(6000, seed + 1))  # the pocket corpus
    vae = copy.deepcopy(vae).requires_grad_(False)
    trainable = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    for p in trainable:
        p.requires_grad_(True)
    with torch.no_grad():
        latents = torch.cat(
            [vae.encode(images[i : i + 256].float() / 127.5 - 1).latent_dist.mean for i in range(0, len(images), 256)]
        )
    opt = torch.optim.AdamW(trainable, lr=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-4, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(steps), desc="decoder"):
        idx = torch.randint(0, len(images), (32,), generator=g)
        x = images[idx].float() / 127.5 - 1
        recon = vae.decode(latents[idx]).sample
        loss = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return vae.eval()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--finetune-decoder", type=int, default=0)
    parser.add_argument("--guidance", type=float, nargs="+", default=[5.0])
    parser.add_argument("--per-emotion", type=int, default=40)
    args = parser.parse_args()
    tax = Taxonomy.default()
    groups = torch.tensor([tax.group_index_of(e) for e in tax.emotions])
    judge = WorldCNN.load(EVALUATORS / "emotion-judge")

    @torch.no_grad()
    def score(pixels: torch.Tensor, targets: torch.Tensor) -> str:
        pred = judge(pixels)["emotion"].argmax(1)
        emo_a, polarity = (pred == targets).float().mean(), (groups[pred] == groups[targets]).float().mean()
        return f"Emo-A {emo_a:.3f}  polarity {polarity:.3f}"

    pipe = CoEmoGenPipeline.from_pretrained(None)
    decoders = {"shipped decoder": pipe.base.vae}
    if args.finetune_decoder:
        decoders["fine-tuned decoder"] = finetune_decoder(pipe.base.vae, args.finetune_decoder)
    world = build_world(Path(tempfile.mkdtemp()) / "world", images_per_emotion=100, seed=0)
    x, y = _load_split(world, "test", 64)[:2]
    x, y = torch.stack(list(x)), torch.as_tensor(y)
    print(f"real test images ({len(y)}): {score(x, y)}")
    for name, vae in decoders.items():
        with torch.no_grad():
            rec = vae.decode(pipe.base.vae.encode(x * 2 - 1).latent_dist.mean).sample.clamp(-1, 1) / 2 + 0.5
        print(f"VAE round trip, {name}: {score(rec, y)}  MSE {F.mse_loss(rec, x):.5f}")
    for name, vae in decoders.items():
        pipe.base.vae = vae
        for guidance in args.guidance:
            pixels, targets = [], []
            for k, emotion in enumerate(tax.emotions):
                out = pipe(emotion, num_images=args.per_emotion, seed=0, guidance_scale=guidance)
                pixels += [to_tensor(im, 64) for im in out.images]
                targets += [k] * args.per_emotion
            print(f"generated, {name}, guidance {guidance}: {score(torch.stack(pixels), torch.tensor(targets))}")


if __name__ == "__main__":
    main()
