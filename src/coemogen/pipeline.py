"""CoEmoGenPipeline: emotion (or mix) -> images, following diffusers conventions.

Reads top to bottom: load the base models and a run, sample visual embeddings from the emotion
clusters, encode them through the frozen text encoder, switch on each sample's HiLoRA
adapters, denoise with classifier-free guidance, decode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .conditioning import EmotionConditioner, check_template
from .errors import CoEmoGenError
from .loaders import SHIPPED_RUN, BaseModels, load_base_models
from .modeling import CoEmoGen, load_run
from .models.hilora import HiLoRAGate, hilora_gate, hilora_layers
from .taxonomy import Taxonomy

SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "dpm": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "pndm": "PNDMScheduler",
    "ddpm": "DDPMScheduler",
}


def make_scheduler(name: str, base_scheduler_config):
    import diffusers

    if name not in SCHEDULERS:
        raise CoEmoGenError(f"unknown scheduler '{name}'; choose from {', '.join(SCHEDULERS)}")
    return getattr(diffusers, SCHEDULERS[name]).from_config(base_scheduler_config)


@torch.no_grad()
def denoise(
    unet,
    scheduler,
    latents: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    gate: HiLoRAGate,
    gates: torch.Tensor,
    num_inference_steps: int,
    guidance_scale: float,
    progress: bool = False,
) -> torch.Tensor:
    """Classifier-free guided sampling with per-sample HiLoRA gates (applied to both halves).

    When every sample shares one gate vector, the adapters are merged into the weights for the
    loop (exactly the same maths, no LoRA cost per step) and unmerged afterwards.
    """
    from tqdm import tqdm

    scheduler.set_timesteps(num_inference_steps, device=latents.device)
    latents = latents * scheduler.init_noise_sigma
    layers = [layer for _, layer in hilora_layers(unet)]
    uniform = bool((gates == gates[:1]).all())
    if uniform:
        for layer in layers:
            layer.merge(gates[0])
    gate.weights = gates
    context = torch.cat([uncond.expand_as(cond), cond]) if guidance_scale > 1 else cond
    try:
        for t in tqdm(scheduler.timesteps, desc="denoise", disable=not progress, leave=False):
            model_in = torch.cat([latents] * 2) if guidance_scale > 1 else latents
            model_in = scheduler.scale_model_input(model_in, t)
            pred = unet(model_in, t, encoder_hidden_states=context).sample
            if guidance_scale > 1:
                pred_uncond, pred_cond = pred.chunk(2)
                pred = pred_uncond + guidance_scale * (pred_cond - pred_uncond)
            latents = scheduler.step(pred, t, latents).prev_sample
    finally:
        gate.weights = None
        if uniform:
            for layer in layers:
                layer.unmerge()
    return latents


@torch.no_grad()
def decode(vae, latents: torch.Tensor) -> list[Image.Image]:
    images = vae.decode(latents / vae.config.scaling_factor).sample
    arr = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]


def image_grid(images: list[Image.Image], columns: int | None = None) -> Image.Image:
    columns = columns or min(len(images), 8)
    rows = (len(images) + columns - 1) // columns
    w, h = images[0].size
    grid = Image.new("RGB", (columns * w, rows * h), "white")
    for i, im in enumerate(images):
        grid.paste(im, ((i % columns) * w, (i // columns) * h))
    return grid


@dataclass
class CoEmoGenOutput:
    images: list[Image.Image]
    metadata: list[dict]


class CoEmoGenPipeline:
    """Generate emotion-evoking images from a trained run (the Python API behind `coemogen generate`)."""

    def __init__(self, base: BaseModels, model: CoEmoGen, clusters, gate: HiLoRAGate, device: str = "cpu") -> None:
        self.base, self.model, self.clusters, self.gate, self.device = base, model, clusters, gate, device
        self.conditioner = EmotionConditioner(base.tokenizer, base.text_encoder)

    @property
    def taxonomy(self) -> Taxonomy:
        return self.model.taxonomy

    @classmethod
    def from_pretrained(
        cls,
        run_dir: str | Path | None = None,
        pretrained_model_name_or_path: str | None = None,
        clip_model_name_or_path: str | None = None,
        device: str | None = None,
        taxonomy: Taxonomy | None = None,
        torch_dtype: torch.dtype | None = None,
    ) -> CoEmoGenPipeline:
        """Load a run directory (default: the shipped synthetic-world run) and its base models.

        The base models recorded in the run are used unless overridden (e.g. a local SD1.5 copy).
        """
        run_dir = Path(run_dir) if run_dir is not None else SHIPPED_RUN
        if not run_dir.is_dir():
            raise CoEmoGenError(f"run directory not found: {run_dir}")
        config = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").is_file() else {}
        base = load_base_models(
            pretrained_model_name_or_path or config.get("pretrained_model_name_or_path", ""),
            clip_model_name_or_path or config.get("clip_model_name_or_path", ""),
            torch_dtype,
        )
        model, clusters = load_run(run_dir, base.unet, taxonomy)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        for module in (base.unet, base.vae, base.text_encoder, model):
            module.to(device)
        model.eval()
        return cls(base, model, clusters, hilora_gate(base.unet), device)

    def sample_visual_embeddings(
        self, mixes: list[dict[str, float]], seeds: list[int], temperature: float = 1.0
    ) -> tuple[torch.Tensor, list]:
        """One e^v per image: for a mix, the weighted sum of samples from each emotion's cluster."""
        rows, components = [], []
        for mix, seed in zip(mixes, seeds):
            g = torch.Generator().manual_seed(seed)
            vec = torch.zeros(self.clusters.means.shape[-1])
            picked = {}
            for emotion, weight in mix.items():
                sample, component = self.clusters.sample(self.taxonomy.index(emotion), g, temperature)
                vec += weight * sample
                picked[emotion] = component
            rows.append(vec)
            components.append(picked)
        return torch.stack(rows), components

    @torch.no_grad()
    def __call__(
        self,
        emotion: str | list[str],
        num_images: int = 1,
        seed: int = 0,
        template: str | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 5.0,
        scheduler: str = "dpm",
        batch_size: int = 16,
        progress: bool = False,
        cluster_temperature: float | None = None,
    ) -> CoEmoGenOutput:
        """`emotion`: a name, a mix "amusement:0.5,awe:0.5", or a list (one per image, cycled).

        Image i uses seed + i for its cluster sample and initial noise, so an image does not
        depend on how many others are generated with it. `cluster_temperature` defaults to the run's.
        """
        if cluster_temperature is None:
            cluster_temperature = self.model.config.cluster_temperature
        specs = [emotion] if isinstance(emotion, str) else list(emotion)
        mixes = [self.taxonomy.parse_mix(specs[i % len(specs)]) for i in range(num_images)]
        template = check_template(template or self.model.config.template)
        sched = make_scheduler(scheduler, self.base.noise_scheduler.config)
        unet, vae = self.base.unet, self.base.vae
        size = unet.config.sample_size
        dtype = unet.dtype
        uncond = self.conditioner.encode_text([""])[0].to(self.device, dtype)
        images, metadata = [], []
        for start in range(0, num_images, batch_size):
            idx = list(range(start, min(num_images, start + batch_size)))
            seeds = [seed + i for i in idx]
            ev, components = self.sample_visual_embeddings([mixes[i] for i in idx], seeds, cluster_temperature)
            cond, _ = self.conditioner.encode_embeddings(ev.to(self.device, dtype), template)
            weights = self.model.mix_weights([mixes[i] for i in idx]).to(self.device)
            gates = self.model.gates(weights)
            latents = torch.stack(
                [
                    torch.randn((unet.config.in_channels, size, size), generator=torch.Generator().manual_seed(s))
                    for s in seeds
                ]
            ).to(self.device, dtype)
            latents = denoise(
                unet, sched, latents, cond, uncond, self.gate, gates, num_inference_steps, guidance_scale, progress
            )
            images += decode(vae, latents)
            for i, s, comp in zip(idx, seeds, components):
                metadata.append(
                    {
                        "index": i,
                        "emotion": max(mixes[i], key=mixes[i].get),
                        "weights": mixes[i],
                        "seed": s,
                        "cluster_component": comp,
                        "template": template,
                        "scheduler": scheduler,
                        "num_inference_steps": num_inference_steps,
                        "guidance_scale": guidance_scale,
                        "cluster_temperature": cluster_temperature,
                    }
                )
        return CoEmoGenOutput(images, metadata)


def save_images(output: CoEmoGenOutput, out_dir: str | Path, prefix: str = "") -> Path:
    """Write PNGs, one metadata JSON per image and a grid."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for image, meta in zip(output.images, output.metadata):
        stem = f"{prefix}{meta['emotion']}_{meta['index']:04d}"
        image.save(out_dir / f"{stem}.png")
        (out_dir / f"{stem}.json").write_text(json.dumps(meta, indent=1))
    image_grid(output.images).save(out_dir / f"{prefix}grid.png")
    return out_dir


def images_to_array(images: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(im) for im in images])
