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
from ..models.small import build_tokenizer, clip_config, make_vae, text_encoder_from_clip
from ..taxonomy import Taxonomy
from ..training.fit import fit
from .dataset import neutral_specs
from .renderer import render
from .scenes import describe

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPModel, CLIPTokenizer

# Sizes of the shipped pocket SD. Prompted with the true descriptions of world images, the
# (32, 64, 64) U-Net drew content the emotion judge recognised only 45% of the time: the base
# model, not CoEmoGen, capped the world run.
UNET_CHANNELS = (64, 128, 128)
EXTRA_WORDS = "a an the of image photo picture with and person face bag in on this that evokes".split()


def _images_to_tensor(images) -> torch.Tensor:
    arr = np.stack([np.asarray(im, dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()  # uint8 N,3,H,W


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


# --- The narrative world's pocket models (`coemogen world pocket --content narrative`) -------------

NARRATIVE_CLIP_STEPS = 1200
NARRATIVE_UNET_STEPS = 1500


def _load_unet_checkpoint(path: Path, unet, opt) -> tuple[int, torch.Generator | None]:
    from safetensors.torch import load_file

    if not (path / "unet.safetensors").is_file():
        return 0, None
    unet.load_state_dict(load_file(path / "unet.safetensors"))
    state = torch.load(path / "state.pt", weights_only=True)
    opt.load_state_dict(state["optimizer"])
    g = torch.Generator()
    g.set_state(state["generator"])
    return int(state["step"]), g


def _save_unet_checkpoint(path: Path, unet, opt, step: int, g: torch.Generator) -> None:
    from ..io import atomic_output, save_safetensors

    path.mkdir(parents=True, exist_ok=True)
    with atomic_output(path / "state.pt") as tmp:
        torch.save({"optimizer": opt.state_dict(), "generator": g.get_state(), "step": step}, tmp)
    # the weights last: a checkpoint counts only once both files agree on the step (see _load)
    save_safetensors({k: v.contiguous() for k, v in unet.state_dict().items()}, path / "unet.safetensors")
    with atomic_output(path / "step.txt") as tmp:
        tmp.write_text(str(step))


def finetune_unet(
    unet,
    latents: torch.Tensor,
    text_states: torch.Tensor,
    empty_state: torch.Tensor,
    steps: int,
    seed: int,
    checkpoint: Path,
    lr: float = 2e-4,
    batch_size: int = 32,
    every: int = 100,
    log=print,
) -> list[float]:
    """Fine-tune a pocket U-Net on new (latent, text state) pairs: the same noise-prediction loss and
    10% caption dropout as `train_unet`, AdamW at a constant `lr` after a 5% warm-up, and a
    checkpoint every `every` steps under `checkpoint` so a killed run resumes where it stopped
    (same batches: the generator's state is saved with the weights). Returns the mean loss of
    each block of `every` steps."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        steps_offset=1,
    )
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-2)
    start, g = 0, None
    step_file = checkpoint / "step.txt"
    if step_file.is_file():
        start, g = _load_unet_checkpoint(checkpoint, unet, opt)
        if start != int(step_file.read_text()):  # killed between the two files: redo that block
            raise RuntimeError(f"inconsistent checkpoint in {checkpoint}; delete it to restart")
    g = g or torch.Generator().manual_seed(seed)
    warmup = max(1, steps // 20)
    losses, block = [], []
    unet.train()
    for step in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        idx = torch.randint(0, len(latents), (batch_size,), generator=g)
        x0, cond = latents[idx], text_states[idx].clone()
        cond[torch.rand(batch_size, generator=g) < 0.1] = empty_state
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (batch_size,), generator=g)
        loss = F.mse_loss(unet(scheduler.add_noise(x0, noise, t), t, cond).sample, noise)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        block.append(float(loss.detach()))
        if (step + 1) % every == 0 or step + 1 == steps:
            losses.append(sum(block) / len(block))
            log(f"unet step {step + 1}/{steps}: mean noise MSE {losses[-1]:.4f}")
            block = []
            _save_unet_checkpoint(checkpoint, unet, opt, step + 1, g)
    unet.eval()
    return losses


@torch.no_grad()
def word_order_accuracy(clip, tokenizer, images: torch.Tensor, specs: list) -> dict:
    """Whether CLIP reads who does what: for each image, is its true description scored above the
    same words with the person and the entity swapped ("the dog chases the person" against "the
    person chases the dog")? Reported over all images, and over the images whose swap is itself a
    relation of the world (the chase pair), where only word order tells the two apart."""
    from .narrative import RELATIONS, describe_narrative

    sentences = {r.sentence(r.entity): r.name for r in RELATIONS}
    preprocess = ClipImagePreprocessor.from_clip(clip)
    hits = {"all": [], "swap_is_a_relation": []}
    for image, spec in zip(images, specs):
        true = describe_narrative(spec)
        relation_words = true.split(": ", 1)[1].split(",")[0]
        swapped_words = (
            relation_words.replace("the person", "\0")
            .replace(f"the {spec.entity}", "the person")
            .replace("\0", f"the {spec.entity}")
        )
        ids = tokenizer([true, true.replace(relation_words, swapped_words)], padding=True, return_tensors="pt")
        img = F.normalize(image_embeds(clip, preprocess(image[None].float() / 255)), dim=-1)
        sims = (img @ F.normalize(text_embeds(clip, ids.input_ids), dim=-1).T)[0]
        hits["all"].append(float(sims[0] > sims[1]))
        if swapped_words in sentences:
            hits["swap_is_a_relation"].append(float(sims[0] > sims[1]))
    return {
        f"true description over person/entity swapped ({k}, {len(v)} images)": round(sum(v) / len(v), 3)
        for k, v in hits.items()
        if v
    }


def build_narrative_pocket_models(
    out: str | Path,
    corpus_size: int = 6000,
    seed: int = 0,
    size: int = 64,
    clip_steps: int = NARRATIVE_CLIP_STEPS,
    unet_steps: int = NARRATIVE_UNET_STEPS,
    base_sd: str | Path | None = None,
    log=print,
) -> dict:
    """Pocket CLIP and SD for the narrative world: `out/narrative-pocket-clip`, `out/narrative-pocket-sd`.

    The CLIP (tokenizer, text and vision towers) is trained from scratch on the neutral narrative
    corpus (`narrative.neutral_narrative_specs`: every relation, scene, prop, face and lighting drawn
    independently, so nothing in it implies an emotion); its text encoder has position embeddings
    and the corpus holds relations whose descriptions differ only in word order, so it must read
    order to match them. The VAE is the objects world's pocket VAE unchanged (the same drawing
    style; its reconstruction error on this corpus is reported) and the U-Net is fine-tuned from the
    objects world's pocket U-Net under the new text encoder. Each stage is saved when done and the
    U-Net checkpoints as it goes, so re-running the same command resumes."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPModel, CLIPTokenizer

    from ..io import write_text
    from .narrative import describe_narrative, neutral_narrative_specs
    from .narrative_draw import render_narrative
    from .paths import POCKET_SD

    out = Path(out)
    base_sd = Path(base_sd or POCKET_SD)
    clip_dir, sd_dir = out / "narrative-pocket-clip", out / "narrative-pocket-sd"
    facts_path = out / "narrative-pocket.json"
    facts = json.loads(facts_path.read_text()) if facts_path.is_file() else {}
    start = time.time()
    specs = list(neutral_narrative_specs(corpus_size, seed + 1))
    captions = [describe_narrative(s) for s in specs]
    images = _images_to_tensor(render_narrative(s, size) for s in tqdm(specs, desc="render corpus"))
    data_hash = hashlib.sha256(images.numpy().tobytes() + "\n".join(captions).encode()).hexdigest()[:16]
    command = (
        f"coemogen world pocket --content narrative --out DIR --seed {seed} --corpus-size {corpus_size} "
        f"--clip-steps {clip_steps} --unet-steps {unet_steps}"
    )
    facts.update(command=command, seed=seed, corpus=f"{corpus_size} neutral narrative images at {size}px")
    facts["data hash"] = data_hash

    if (clip_dir / "model.safetensors").is_file():
        clip, tokenizer = CLIPModel.from_pretrained(clip_dir).eval(), CLIPTokenizer.from_pretrained(clip_dir)
        log(f"pocket clip: reusing {clip_dir}")
    else:
        tmp_dir = out / "_narrative-pocket-clip"
        emotion_words = list(Taxonomy.default().emotions)
        tokenizer = build_tokenizer(captions, tmp_dir, EXTRA_WORDS + ["where", "evoking"] + emotion_words)
        t0 = time.time()
        clip, clip_loss = train_clip(images, captions, tokenizer, clip_steps, seed, tmp_dir)
        held_out = list(neutral_narrative_specs(512, seed + 7))
        held_images = _images_to_tensor(render_narrative(s, size) for s in held_out)
        facts["clip"] = {
            "architecture": "transformers CLIPModel, ViT 64px/8, 3+3 layers, width 128, trained from scratch",
            "steps": clip_steps,
            "training time (s)": round(time.time() - t0),
            "final contrastive loss": round(clip_loss, 4),
            "image->text top-1 retrieval among 512 corpus pairs": round(
                _clip_retrieval_accuracy(clip, tokenizer, images[:512], captions[:512]), 3
            ),
            "image->text top-1 retrieval among 512 held-out pairs": round(
                _clip_retrieval_accuracy(clip, tokenizer, held_images, [describe_narrative(s) for s in held_out]), 3
            ),
            **word_order_accuracy(clip, tokenizer, held_images, held_out),
        }
        _model_card(tmp_dir, "narrative-pocket-clip: the narrative world's CLIP", {"command": command, **facts["clip"]})
        tmp_dir.rename(clip_dir)
        write_text(facts_path, json.dumps(facts, indent=1))
        log(json.dumps(facts["clip"]))

    text_encoder = text_encoder_from_clip(clip)
    vae = AutoencoderKL.from_pretrained(base_sd / "vae").eval()
    with torch.no_grad():
        latents, mse = [], []
        for i in range(0, len(images), 256):
            x = images[i : i + 256].float() / 127.5 - 1
            mean = vae.encode(x).latent_dist.mean
            mse.append(float(F.mse_loss(vae.decode(mean).sample, x)) * len(x))
            latents.append(mean * vae.config.scaling_factor)
        latents = torch.cat(latents)
    facts["vae"] = {
        "source": "the objects world's pocket VAE, unchanged (same drawing style)",
        "reconstruction MSE on the narrative corpus ([-1, 1] pixels)": round(sum(mse) / len(images), 5),
    }
    text_states = _encode_text(text_encoder, tokenizer, captions)
    empty_state = _encode_text(text_encoder, tokenizer, [""])[0]
    unet = UNet2DConditionModel.from_pretrained(base_sd / "unet")
    t0 = time.time()
    # batch 16 (the objects world's U-Net trained at 32): half the CPU time per step for a fine-tune
    losses = finetune_unet(
        unet, latents, text_states, empty_state, unet_steps, seed, out / "_unet-checkpoint", batch_size=16, log=log
    )
    facts["unet"] = {
        "source": "fine-tuned from the objects world's pocket U-Net (64, 128, 128) under the new text encoder",
        "steps": unet_steps,
        "batch size": 16,
        "learning rate": "2e-4 constant after a 5% warm-up, AdamW wd 1e-2, grad clip 1.0, 10% caption dropout",
        "training time of the last run (s)": round(time.time() - t0),
        "noise MSE per 100 steps": [round(v, 4) for v in losses],
    }
    scheduler = json.loads((base_sd / "scheduler" / "scheduler_config.json").read_text())
    from diffusers import DDPMScheduler

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDPMScheduler.from_config(scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out / "_narrative-pocket-sd")
    if sd_dir.exists():  # a previous complete run: replaced whole
        import shutil

        shutil.rmtree(sd_dir)
    (out / "_narrative-pocket-sd").rename(sd_dir)
    facts["total time of the last run (s)"] = round(time.time() - start)
    card = {"command": command, "data hash": data_hash, **facts["vae"], **facts["unet"]}
    card["text encoder"] = "the narrative pocket CLIP's text tower"
    _model_card(sd_dir, "narrative-pocket-sd: the narrative world's Stable Diffusion 1.x", card)
    write_text(facts_path, json.dumps(facts, indent=1))
    return facts


@torch.no_grad()
def narrative_ceiling(
    sd_dir: str | Path, evaluators: str | Path, per_relation: int = 8, seed: int = 0, steps: int = 25
) -> dict:
    """What the narrative pocket SD draws when prompted with the true neutral description of a
    scene: for `per_relation` held-out scenes of each relation, the share of generated images whose
    relation (the narrative judges' relation head) and emotion (the emotion judge, against the
    relation's emotion) are right. The ceiling any method built on this base model works under;
    also whether "the dog chases the person" and "the person chases the dog" come out apart."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    from ..data.images import to_tensor
    from .judges import WorldCNN
    from .narrative import RELATIONS, describe_narrative, neutral_narrative_specs

    pipe = StableDiffusionPipeline.from_pretrained(sd_dir, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    emotion_judge = WorldCNN.load(Path(evaluators) / "emotion-judge")
    semantics = WorldCNN.load(Path(evaluators) / "semantics")
    emotions = list(Taxonomy.default().emotions)
    pool = list(neutral_narrative_specs(40 * per_relation * len(RELATIONS), seed + 1000))  # held out of the corpus
    per = {}
    for k, relation in enumerate(RELATIONS):
        specs = [s for s in pool if s.relation == relation.name][:per_relation]
        images = pipe(
            [describe_narrative(s) for s in specs],
            num_inference_steps=steps,
            guidance_scale=5.0,
            generator=torch.Generator().manual_seed(seed + k),
        ).images
        x = torch.stack([to_tensor(im, semantics.config["image_size"]) for im in images])
        rel = semantics(x)["relation"].argmax(1)
        emo = emotion_judge(x)["emotion"].argmax(1)
        per[relation.name] = {
            "relation": float((rel == k).float().mean()),
            "emotion": float((emo == emotions.index(relation.emotion)).float().mean()),
        }
    return {
        "images_per_relation": per_relation,
        "steps": steps,
        "guidance": 5.0,
        "relation_accuracy": round(sum(v["relation"] for v in per.values()) / len(per), 3),
        "emotion_accuracy": round(sum(v["emotion"] for v in per.values()) / len(per), 3),
        "per_relation": {k: {m: round(v, 3) for m, v in d.items()} for k, d in per.items()},
    }
