"""Small SD-shaped and CLIP-shaped models built from configs (tests, benchmarks, CI).

They are saved with `save_pretrained` and loaded back through `load_base_models`, the same
path a real stable-diffusion-v1-5 / clip-vit-large-patch14 checkpoint takes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .world.pocket import EXTRA_WORDS, build_tokenizer
from .world.scenes import CONTENT, OBJECTS, SCENES


def build_tiny_models(out: str | Path, width: int = 32, image_size: int = 32, unet_channels: tuple[int, ...] = (32, 64),
                      prediction_type: str = "epsilon", seed: int = 0) -> tuple[Path, Path]:
    """Write `out/sd` (model_index.json + components) and `out/clip`; return both paths."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTextModel

    out = Path(out)
    torch.manual_seed(seed)
    words = EXTRA_WORDS + SCENES + OBJECTS + list(CONTENT)
    tokenizer = build_tokenizer([" ".join(words)], out / "clip", words)
    clip = CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(image_size=image_size, patch_size=8, hidden_size=width, intermediate_size=2 * width,
                           num_hidden_layers=2, num_attention_heads=2),
        projection_dim=width))
    clip.save_pretrained(out / "clip")
    CLIPImageProcessor(size={"shortest_edge": image_size},
                       crop_size={"height": image_size, "width": image_size}).save_pretrained(out / "clip")
    text_encoder = CLIPTextModel(clip.config.text_config)
    text_encoder.load_state_dict(clip.text_model.state_dict())
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(16, 32), norm_num_groups=8, sample_size=image_size)
    n = len(unet_channels)
    unet = UNet2DConditionModel(
        sample_size=image_size // 2, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=unet_channels, down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1), cross_attention_dim=width,
        attention_head_dim=8, norm_num_groups=16)
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              prediction_type=prediction_type, clip_sample=False)
    StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                            safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(out / "sd")
    return out / "sd", out / "clip"
