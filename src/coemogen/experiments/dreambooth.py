"""The DreamBooth baseline of the paper's table, as the diffusers DreamBooth-LoRA recipe trains it
(examples/dreambooth/train_dreambooth_lora.py): per emotion a rare-token identifier and a U-Net LoRA
(rank 4 on the attention projections, text encoder frozen) trained on that emotion's images, with
prior preservation on class images the base model draws from the class prompt. Generation prompts
"an image of <identifier>" with that emotion's LoRA loaded through `load_lora_weights`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ..data.images import crop_top_left, load_rgb, to_tensor
from ..errors import CoEmoGenError
from ..models.base import load_base_models
from ..models.conditioning import EmotionConditioner, TextCondition
from ..pipelines.folders import save_image
from ..pipelines.pipeline_coemogen import CoEmoGenOutput, base_pipeline
from ..world.paths import POCKET_SD

# Rare letter strings (DreamBooth's "sks"), one per emotion; none is a word of any caption.
IDENTIFIERS = ("sks", "zwx", "qjv", "vph", "kxo", "bqz", "jfu", "wyg", "hxm", "ozq", "fvk", "ujd")
LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]


@dataclass(frozen=True)
class DreamBoothConfig:
    """The recipe's settings. `steps` per emotion; each step draws `instance_batch` of the emotion's
    images and as many class images (prior preservation doubles the batch)."""

    steps: int = 150
    instance_batch: int = 4
    rank: int = 4
    learning_rate: float = 1e-3  # the world rows' rate (the recipe's 1e-4 is for SD1.5)
    prior_loss_weight: float = 1.0
    num_class_images: int = 50
    class_prompt: str = "an image"
    inference_steps: int = 20
    guidance_scale: float = 5.0


def identifier(emotions: Sequence[str], emotion: str) -> str:
    index = list(emotions).index(emotion)
    if index >= len(IDENTIFIERS):
        raise CoEmoGenError(f"DreamBooth has {len(IDENTIFIERS)} identifiers; the taxonomy has {len(emotions)}")
    return IDENTIFIERS[index]


def class_images(out: Path, config: DreamBoothConfig, seed: int, base: str | Path = POCKET_SD) -> list[Path]:
    """The prior-preservation set: `num_class_images` base-model images of the class prompt in
    `out`, made once (images already there are kept, as the recipe does)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"class_{i:04d}.png" for i in range(config.num_class_images)]
    missing = [i for i, p in enumerate(paths) if not p.is_file()]
    if missing:
        pipe = base_pipeline(base)
        for i in tqdm(missing, desc="class images"):
            image = pipe(
                config.class_prompt,
                num_inference_steps=config.inference_steps,
                guidance_scale=config.guidance_scale,
                generator=torch.Generator().manual_seed(seed + i),
            ).images[0]
            save_image(image, {"emotion": "class", "index": i, "seed": seed + i}, out)  # class_0000.png, ...
    return paths


def train_dreambooth_lora(
    instance_images: Sequence[str | Path],
    instance_prompt: str,
    class_image_paths: Sequence[Path],
    out: str | Path,
    config: DreamBoothConfig,
    seed: int,
    base: str | Path = POCKET_SD,
) -> Path:
    """Train one subject's U-Net LoRA; write `pytorch_lora_weights.safetensors` into `out`. Any
    registered base-model family (`models/families/`): its text condition and U-Net inputs."""
    from diffusers import DDPMScheduler
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    if not instance_images:
        raise CoEmoGenError(f"DreamBooth: no instance images for '{instance_prompt}'")
    torch.manual_seed(seed)  # the LoRA's initial weights, as the recipe's set_seed
    models = load_base_models(str(base), "unused", load_clip=False)
    unet, vae, family = models.unet, models.vae, models.family
    unet.add_adapter(
        LoraConfig(r=config.rank, lora_alpha=config.rank, init_lora_weights="gaussian", target_modules=LORA_TARGETS)
    )
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    noise_scheduler = DDPMScheduler.from_config(models.noise_scheduler.config)
    resolution = models.default_resolution
    conditioner = EmotionConditioner(models)

    def images_and_time_ids(paths: Sequence) -> tuple[torch.Tensor, torch.Tensor | None]:
        images = [load_rgb(p) for p in paths]
        sizes = torch.tensor([[im.height, im.width] for im in images])
        crops = torch.tensor([crop_top_left(im.size, resolution) for im in images])
        pixels = torch.stack([to_tensor(im, resolution) * 2 - 1 for im in images])
        return pixels, family.time_ids(sizes, crops, (resolution, resolution))

    with torch.no_grad():
        instance_pixels, instance_ids = images_and_time_ids(instance_images)
        class_pixels, class_ids = images_and_time_ids(class_image_paths)
        instance_latents = vae.encode(instance_pixels).latent_dist
        class_latents = vae.encode(class_pixels).latent_dist
        prompts = TextCondition.cat([conditioner.encode_text([p]) for p in (instance_prompt, config.class_prompt)])
    g = torch.Generator().manual_seed(seed)
    n = config.instance_batch
    unet.train()
    for _ in tqdm(range(config.steps), desc=f"dreambooth {instance_prompt}", leave=False):
        pick = torch.randint(0, len(instance_images), (n,), generator=g)
        pick_class = torch.randint(0, len(class_image_paths), (n,), generator=g)
        latents = torch.cat(
            [sample(dist, idx, g) for dist, idx in ((instance_latents, pick), (class_latents, pick_class))]
        )
        latents = latents * vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=g)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(latents),), generator=g)
        noisy = noise_scheduler.add_noise(latents, noise, t)
        context = prompts.map(lambda x: x.repeat_interleave(n, dim=0))
        time_ids = None if instance_ids is None else torch.cat([instance_ids[pick], class_ids[pick_class]])
        pred = unet(noisy, t, **family.unet_kwargs(context, time_ids)).sample
        instance_pred, class_pred = pred.chunk(2)
        instance_noise, class_noise = noise.chunk(2)
        # The recipe's prior-preservation loss: instance MSE + weight * class MSE.
        loss = F.mse_loss(instance_pred, instance_noise) + config.prior_loss_weight * F.mse_loss(
            class_pred, class_noise
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    out = Path(out)
    family.diffusers_pipeline_class().save_lora_weights(
        out, unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)), safe_serialization=True
    )
    return out / "pytorch_lora_weights.safetensors"


def sample(dist, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Latents of the chosen images drawn from their VAE posteriors (the recipe samples each step)."""
    mean, std = dist.mean[idx], dist.std[idx]
    return mean + std * torch.randn(mean.shape, generator=g)


def dreambooth_images(
    lora_dir: str | Path,
    prompt: str,
    emotion: str,
    num_images: int,
    seed: int,
    config: DreamBoothConfig,
    base=POCKET_SD,
) -> CoEmoGenOutput:
    """`num_images` of `prompt` from the base model with the LoRA in `lora_dir` loaded."""
    from diffusers.utils import logging as diffusers_logging

    pipe = base_pipeline(base)
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # "no LoRA keys for the text encoder": the recipe trains none
    try:
        pipe.load_lora_weights(str(lora_dir))
    finally:
        diffusers_logging.set_verbosity(level)
    images: list[Image.Image] = pipe(
        [prompt] * num_images,
        num_inference_steps=config.inference_steps,
        guidance_scale=config.guidance_scale,
        generator=[torch.Generator().manual_seed(seed + i) for i in range(num_images)],
    ).images
    meta = [{"index": i, "emotion": emotion, "seed": seed + i, "prompt": prompt} for i in range(num_images)]
    return CoEmoGenOutput(images, meta)
