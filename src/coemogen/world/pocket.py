"""Train the pocket base models (a small CLIP and a small Stable Diffusion 1.x) on the neutral corpus.

They play the roles of openai/clip-vit-large-patch14 and stable-diffusion-v1-5 in the synthetic
world and are saved in exactly those formats, so every loader and pipeline path serves them
unchanged. `coemogen world pocket --out DIR` rebuilds all of them.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..models.clip import ClipImagePreprocessor, image_embeds, text_embeds
from ..taxonomy import Taxonomy
from ..training.fit import fit
from .dataset import neutral_specs
from .renderer import render
from .scenes import describe

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPConfig, CLIPModel, CLIPTextModel, CLIPTokenizer

# Sizes of the shipped pocket SD. Prompted with the true descriptions of world images, the
# (32, 64, 64) U-Net drew content the emotion judge recognised only 45% of the time: the base
# model, not CoEmoGen, capped the world run.
UNET_CHANNELS = (64, 128, 128)
EXTRA_WORDS = "a an the of image photo picture with and person face bag in on this that evokes".split()


def build_tokenizer(captions: list[str], out: Path, extra: list[str]) -> CLIPTokenizer:
    """Byte-pair tokenizer in CLIP's format (vocab.json + merges.txt) trained on the corpus."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=2000, min_frequency=1, initial_alphabet=alphabet, end_of_word_suffix="</w>", show_progress=False
    )
    # Repeat the extra words so that every one of them becomes a single token.
    bpe.train_from_iterator(captions + [" ".join(extra)] * 50, trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = {}
    for token in alphabet + [a + "</w>" for a in alphabet] + list(model["vocab"]):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    for token in ("".join(m) for m in merges):
        vocab.setdefault(token, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    tokenizer.save_pretrained(out)
    return tokenizer


def _images_to_tensor(images) -> torch.Tensor:
    arr = np.stack([np.asarray(im, dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()  # uint8 N,3,H,W


def clip_config(
    tokenizer: CLIPTokenizer, image_size: int, width: int = 128, layers: int = 3, heads: int = 4
) -> CLIPConfig:
    """A small CLIP (ViT with 8-px patches) in the transformers CLIPModel architecture."""
    from transformers import CLIPConfig

    tower = dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers, num_attention_heads=heads)
    return CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **tower,
        ),
        vision_config=dict(image_size=image_size, patch_size=8, **tower),
        projection_dim=width,
    )


def train_clip(
    images: torch.Tensor, captions: list[str], tokenizer: CLIPTokenizer, steps: int, seed: int, out: Path
) -> tuple[CLIPModel, float]:
    """Contrastive training of a small CLIP on (image, caption) pairs; saved to `out`.
    Returns (model, final loss)."""
    from transformers import CLIPImageProcessor, CLIPModel

    torch.manual_seed(seed)
    size = images.shape[-1]
    config = clip_config(tokenizer, size)
    model = CLIPModel(config)
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
    ids = tokenizer(captions, padding="max_length", max_length=48, truncation=True, return_tensors="pt").input_ids

    def step(g: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(captions), (128,), generator=g)
        pixels = (images[idx].float() / 255 - mean) / std
        return model(input_ids=ids[idx], pixel_values=pixels, return_loss=True).loss

    model.train()
    loss = fit(model.parameters(), step, steps, lr=5e-4, seed=seed, desc="pocket clip", weight_decay=0.1, warmup=0.1)
    model.eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return model, loss


def make_vae(block_out_channels: tuple[int, ...], image_size: int) -> AutoencoderKL:
    """An SD-layout AutoencoderKL with 4 latent channels, downsampling 2**(len(blocks) - 1) times."""
    from diffusers import AutoencoderKL

    n = len(block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=block_out_channels,
        norm_num_groups=8,
        sample_size=image_size,
    )


def text_encoder_from_clip(clip: CLIPModel) -> CLIPTextModel:
    """A CLIPTextModel holding the CLIP model's text tower (as SD1.5's is CLIP ViT-L/14's)."""
    from transformers import CLIPTextModel

    text_encoder = CLIPTextModel(clip.config.text_config)
    text_encoder.load_state_dict(clip.text_model.state_dict())
    return text_encoder.eval()


def train_vae(images: torch.Tensor, steps: int, seed: int) -> tuple[AutoencoderKL, torch.Tensor, float]:
    """Train the pocket VAE (constant learning rate); returns (vae, scaled latents of `images`, final loss)."""
    torch.manual_seed(seed)
    vae = make_vae((16, 32, 32), images.shape[-1])

    def step(g: torch.Generator) -> torch.Tensor:
        x = images[torch.randint(0, len(images), (16,), generator=g)].float() / 127.5 - 1
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        return F.mse_loss(recon, x) + 1e-6 * posterior.kl().mean()

    vae.train()
    loss = fit(vae.parameters(), step, steps, lr=1e-3, seed=seed, desc="pocket vae", weight_decay=1e-2, warmup=None)
    vae.eval()
    with torch.no_grad():
        latents = torch.cat(
            [vae.encode(images[i : i + 256].float() / 127.5 - 1).latent_dist.mean for i in range(0, len(images), 256)]
        )
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    return vae, latents * vae.config.scaling_factor, loss


def finetune_decoder(vae: AutoencoderKL, images: torch.Tensor, steps: int, seed: int) -> float:
    """Stable Diffusion's ft-MSE recipe in miniature: the encoder, hence the latent space, stays
    fixed while the decoder learns sharper reconstructions (MSE + 0.5 L1). Returns the final loss."""
    vae.requires_grad_(False)
    trainable = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    for p in trainable:
        p.requires_grad_(True)
    with torch.no_grad():
        latents = torch.cat(
            [vae.encode(images[i : i + 256].float() / 127.5 - 1).latent_dist.mean for i in range(0, len(images), 256)]
        )

    def step(g: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(images), (32,), generator=g)
        x = images[idx].float() / 127.5 - 1
        recon = vae.decode(latents[idx]).sample
        return F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x)

    vae.train()
    loss = fit(trainable, step, steps, lr=5e-4, seed=seed, desc="pocket vae decoder", weight_decay=1e-2, warmup=0.05)
    vae.requires_grad_(True)
    vae.eval()
    return loss


def train_unet(
    latents: torch.Tensor,
    text_states: torch.Tensor,
    empty_state: torch.Tensor,
    steps: int,
    seed: int,
    channels: tuple[int, ...] = UNET_CHANNELS,
    batch_size: int = 32,
) -> tuple[UNet2DConditionModel, DDPMScheduler, float]:
    """Train the pocket U-Net on text-conditioned noise prediction (10% caption dropout for
    classifier-free guidance); returns (unet, its DDPM scheduler, final loss)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=latents.shape[-1],
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=channels,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=text_states.shape[-1],
        attention_head_dim=8,
        norm_num_groups=16,
    )
    scheduler = DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        steps_offset=1,
    )

    def step(g: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(latents), (batch_size,), generator=g)
        x0, cond = latents[idx], text_states[idx].clone()
        drop = torch.rand(batch_size, generator=g) < 0.1  # caption dropout for classifier-free guidance
        cond[drop] = empty_state
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (batch_size,), generator=g)
        pred = unet(scheduler.add_noise(x0, noise, t), t, cond).sample
        return F.mse_loss(pred, noise)

    unet.train()
    loss = fit(
        unet.parameters(),
        step,
        steps,
        lr=4e-4,
        seed=seed,
        desc="pocket unet",
        weight_decay=1e-2,
        warmup=0.05,
        clip_grad_norm=1.0,
    )
    unet.eval()
    return unet, scheduler, loss


@torch.no_grad()
def _encode_text(text_encoder, tokenizer, captions: list[str]) -> torch.Tensor:
    states = []
    for i in range(0, len(captions), 256):
        ids = tokenizer(
            captions[i : i + 256], padding="max_length", max_length=77, truncation=True, return_tensors="pt"
        ).input_ids
        states.append(text_encoder(ids).last_hidden_state)
    return torch.cat(states)


def _model_card(path: Path, title: str, facts: dict) -> None:
    lines = [f"# {title}", "", "Built by `coemogen world pocket` (see coemogen/world/pocket.py).", ""]
    lines += [f"- {k}: {v}" for k, v in facts.items()]
    (path / "README.md").write_text("\n".join(lines) + "\n")


def build_pocket_models(
    out: str | Path,
    corpus_size: int = 6000,
    seed: int = 0,
    size: int = 64,
    clip_steps: int = 800,
    vae_steps: int = 800,
    decoder_steps: int = 2000,
    unet_steps: int = 3500,
) -> dict:
    """Train pocket CLIP, VAE and U-Net; write `out/pocket-clip` and `out/pocket-sd`."""
    from diffusers import StableDiffusionPipeline

    out = Path(out)
    start = time.time()
    specs = list(neutral_specs(corpus_size, seed + 1))
    captions = [describe(s) for s in specs]
    images = _images_to_tensor(render(s, size) for s in tqdm(specs, desc="render corpus"))
    data_hash = hashlib.sha256(images.numpy().tobytes() + "\n".join(captions).encode()).hexdigest()[:16]
    emotion_words = list(Taxonomy.default().emotions)
    tokenizer = build_tokenizer(captions, out / "pocket-clip", EXTRA_WORDS + emotion_words)

    t0 = time.time()
    clip, clip_loss = train_clip(images, captions, tokenizer, clip_steps, seed, out / "pocket-clip")
    clip_time = time.time() - t0
    clip_acc = _clip_retrieval_accuracy(clip, tokenizer, images[:512], captions[:512])
    _model_card(
        out / "pocket-clip",
        "pocket-clip: the synthetic world's CLIP",
        {
            "architecture": "transformers CLIPModel, ViT 64px/8, 3+3 layers, width 128",
            "command": f"coemogen world pocket --out DIR --seed {seed}",
            "seed": seed,
            "steps": clip_steps,
            "corpus": f"{corpus_size} neutral world images",
            "data hash": data_hash,
            "training time (s)": round(clip_time),
            "final contrastive loss": round(clip_loss, 4),
            "image->text top-1 retrieval among 512": round(clip_acc, 3),
        },
    )

    text_encoder = text_encoder_from_clip(clip)
    t0 = time.time()
    vae, latents, vae_loss = train_vae(images, vae_steps, seed)
    decoder_loss = finetune_decoder(vae, images, decoder_steps, seed)
    vae_time = time.time() - t0
    text_states = _encode_text(text_encoder, tokenizer, captions)
    empty_state = _encode_text(text_encoder, tokenizer, [""])[0]
    t0 = time.time()
    unet, scheduler, unet_loss = train_unet(latents, text_states, empty_state, unet_steps, seed)
    unet_time = time.time() - t0
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out / "pocket-sd")
    facts = {
        "command": f"coemogen world pocket --out DIR --seed {seed}",
        "seed": seed,
        "corpus": f"{corpus_size} neutral world images at {size}px",
        "data hash": data_hash,
        "U-Net channels": str(UNET_CHANNELS),
        "steps (VAE, decoder-only fine-tune, U-Net)": f"{vae_steps}, {decoder_steps}, {unet_steps}",
        "VAE training time (s)": round(vae_time),
        "VAE final reconstruction MSE (before / after the decoder fine-tune, MSE + 0.5 L1)": (
            f"{vae_loss:.5f} / {decoder_loss:.5f}"
        ),
        "U-Net training time (s)": round(unet_time),
        "U-Net final noise MSE": round(unet_loss, 4),
        "text encoder": "the pocket CLIP text tower (as SD1.5 uses CLIP ViT-L/14's)",
    }
    _model_card(out / "pocket-sd", "pocket-sd: the synthetic world's Stable Diffusion 1.x", facts)
    facts["total time (s)"] = round(time.time() - start)
    facts["clip retrieval top-1"] = clip_acc
    return facts


@torch.no_grad()
def _clip_retrieval_accuracy(clip, tokenizer, images: torch.Tensor, captions: list[str]) -> float:
    preprocess = ClipImagePreprocessor.from_clip(clip)
    ids = tokenizer(captions, padding=True, return_tensors="pt").input_ids
    img = F.normalize(image_embeds(clip, preprocess(images.float() / 255)), dim=-1)
    txt = F.normalize(text_embeds(clip, ids), dim=-1)
    sims = img @ txt.T
    return float((sims.argmax(1) == torch.arange(len(captions))).float().mean())
