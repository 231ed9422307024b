"""Training-step throughput and peak memory at the paper's shapes, with random weights (nothing downloaded).

Variants, each one full optimiser step on a batch that mixes every emotion:
  coemogen         CoEmoGen's step from images: VAE encode, CLIP image tokens and caption embedding, U-Net with HiLoRA
  coemogen_cached  the same step from a feature cache (`coemogen cache --cache_image_tokens`): no VAE or CLIP forward
  lora_recipe      the diffusers text-to-image LoRA recipe: VAE encode + text encoder + U-Net with a peft rank-8 LoRA
  hilora_unet      the U-Net alone with HiLoRA (10 adapters x rank 4, each sample its emotion's and group's)
  lora_unet        the U-Net alone with a peft rank-8 LoRA (same inputs): hilora_unet / lora_unet is the adapter cost

With only the U-Net variants (hilora_unet, lora_unet) the two share one U-Net's frozen weights (each
wraps its own adapters around the same tensors): two SDXL U-Nets would not fit a 24 GB machine.

The batch is read from images on disk and, for coemogen_cached, from a cache made by `coemogen cache`
beforehand, exactly as training reads them. For each batch size one child process times every variant
in rounds (A B C ... A B C ..., so drift of the machine's speed hits all alike; medians over `--repeats`
rounds after warm-up), and one child per variant measures its peak memory alone (CUDA max allocated, or
peak RSS on the CPU). Ratios are printed last.

Usage: python benchmarks/train_step.py --shape sd15|sdxl|pocket [--resolution 256] [--batch 1 4 8] [--repeats 3]
           [--mixed_precision bf16] [--gradient_checkpointing] [--compile] [--models DIR] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

VARIANTS = ["coemogen", "coemogen_cached", "lora_recipe", "hilora_unet", "lora_unet"]
LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
CAPTIONS = [
    "a person laughing at a clown in a sunny park",
    "a vast mountain range under a starry night sky",
    "a cat asleep on a warm windowsill",
    "a crowd cheering at a fireworks show",
    "a man shouting at a broken car in the rain",
    "rotten food in a dirty kitchen sink",
    "a dark alley with a shadow behind a door",
    "an empty chair beside a grave in the fog",
]


def model_dirs(shape: str, models: str | None) -> tuple[str, str]:
    from coemogen.testing import build_sd15_shaped_models, build_sdxl_shaped_models
    from coemogen.world.paths import POCKET_CLIP, POCKET_SD

    if shape == "pocket":
        return str(POCKET_SD), str(POCKET_CLIP)
    build = build_sdxl_shaped_models if shape == "sdxl" else build_sd15_shaped_models
    root = Path(models or Path(tempfile.gettempdir()) / f"coemogen-{shape}-random")
    return tuple(str(p) for p in build(root))


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def write_batch_data(root: Path, batch: int, resolution: int, sd: str, clip: str, with_cache: bool = True) -> Path:
    """`batch` random images mixing every emotion, their manifest, and (`with_cache`) a feature cache
    made by `coemogen cache --cache_image_tokens` (in a child process, so its memory is not counted)."""
    from PIL import Image

    from coemogen.taxonomy import Taxonomy

    root.mkdir(parents=True, exist_ok=True)
    emotions = Taxonomy.default().emotions
    g = torch.Generator().manual_seed(0)
    lines = []
    for i in range(batch):
        pixels = (torch.rand(resolution, resolution, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(root / f"{i}.png")
        lines.append(json.dumps({"image": f"{i}.png", "emotion": emotions[i % 8], "caption": CAPTIONS[i % 8]}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    if with_cache and not (root / "cache" / "cache.json").is_file():
        cmd = [sys.executable, "-m", "coemogen.cli", "cache", "--manifest", str(root / "manifest.jsonl")]
        cmd += ["--out", str(root / "cache"), "--resolution", str(resolution), "--cache_image_tokens"]
        cmd += ["--pretrained_model_name_or_path", sd, "--clip_model_name_or_path", clip, "--batch_size", "1"]
        subprocess.run(cmd, check=True, capture_output=True)
    return root


def make_steps(variants: list[str], a: argparse.Namespace, sd: str, clip: str, device: torch.device) -> dict:
    """{variant: a function doing one optimiser step}, built as training builds them. The CoEmoGen variants
    share one HiLoRA U-Net and the LoRA variants one peft U-Net. Alone, coemogen_cached loads from its cache
    as training does (no CLIP tower); beside coemogen it reuses that variant's models (the same compute)."""
    from coemogen.data.manifest import read_manifest
    from coemogen.models.hilora import adapter_weights
    from coemogen.taxonomy import Taxonomy
    from coemogen.training.cache import FeatureCache
    from coemogen.training.config import TrainingArguments
    from coemogen.training.data import CachedDataset, ManifestDataset, collate
    from coemogen.training.loop import WEIGHT_DTYPES, Optimisation, build, make_accelerator, training_step

    taxonomy = Taxonomy.default()
    data = Path(a.data)
    records = read_manifest(data / "manifest.jsonl", taxonomy)
    images = ManifestDataset(records, taxonomy, a.resolution)
    dtype = WEIGHT_DTYPES[a.mixed_precision]
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    args = TrainingArguments(
        manifest=str(data / "manifest.jsonl"),
        out="-",
        pretrained_model_name_or_path=sd,
        clip_model_name_or_path=clip,
        resolution=a.resolution,
        mixed_precision=a.mixed_precision,
        gradient_checkpointing=a.gradient_checkpointing,
        compile_unet=a.compile,
        learning_rate=1e-4,
        center_crop=True,
        max_grad_norm=a.max_grad_norm,
        report_to="none",
    )
    steps = {}
    if set(variants) <= {"hilora_unet", "lora_unet"}:
        return unet_only_steps(variants, a, sd, clip, device, dtype)
    if {"coemogen", "coemogen_cached", "hilora_unet"} & set(variants):
        features = FeatureCache(data / "cache")
        if variants == ["coemogen_cached"]:  # alone, it loads as training from the cache does
            args = replace(args, cache=str(data / "cache"))
        accelerator = make_accelerator(args)
        run, optimizer = build(args, taxonomy, accelerator)
        unet = run.base.unet
        # The trainer's own step: autocast, GradScaler (fp16), clipping, optimiser and schedule.
        opt = Optimisation.create(args, accelerator, run.module, run.params, optimizer)
        optimizer = opt.optimizer
        batches = {
            "coemogen": collate([images[i] for i in range(len(images))]),
            "coemogen_cached": collate([CachedDataset(features, images, False)[i] for i in range(len(images))]),
        }
        gates = run.model.gates(run.model.one_hot(batches["coemogen"]["labels"].to(device)))

        def coemogen_step(batch):
            def step():
                training_step(opt, batch, torch.Generator().manual_seed(1), lambda _: adapter_weights(unet, gates))

            return step

        for name in ("coemogen", "coemogen_cached"):
            steps[name] = coemogen_step(batches[name])
        latents, cond = unet_inputs(a, run.base, device, dtype)

        def hilora_unet_step():
            with adapter_weights(unet, gates), autocast:
                unet_step(unet, latents, cond)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        steps["hilora_unet"] = hilora_unet_step

    if {"lora_recipe", "lora_unet"} & set(variants):
        from peft import LoraConfig

        from coemogen.models.base import load_base_models
        from coemogen.models.conditioning import EmotionConditioner

        base = load_base_models(sd, clip, load_clip=False)
        for m in (base.vae, *base.text_encoders, base.unet):
            m.to(device, torch.float32 if m is base.vae and base.vae_in_fp32 else dtype)
        lora = LoraConfig(r=8, lora_alpha=8, init_lora_weights="gaussian", target_modules=LORA_TARGETS)
        base.unet.add_adapter(lora)
        params = [p for p in base.unet.parameters() if p.requires_grad]
        for p in params:
            p.data = p.data.float()  # trainable LoRA weights in fp32, as the diffusers recipe casts them
        if a.gradient_checkpointing:
            base.unet.enable_gradient_checkpointing()
        if a.compile:
            base.unet.compile()
        lora_optimizer = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda" or None)
        lora_unet = base.unet
        plain_latents, plain_cond = unet_inputs(a, base, device, dtype)

        def lora_unet_step():
            with autocast:
                unet_step(lora_unet, plain_latents, plain_cond)
            lora_optimizer.step()
            lora_optimizer.zero_grad(set_to_none=True)

        batch = collate([images[i] for i in range(len(images))])
        pixels = batch["pixels"].to(device)
        conditioner = EmotionConditioner(base)
        recipe_time_ids = unet_inputs(a, base, device, dtype)[1].get("added_cond_kwargs", {}).get("time_ids")

        def lora_recipe_step():  # diffusers examples/text_to_image/train_text_to_image_lora(_sdxl).py, one step
            with autocast:
                with torch.no_grad():
                    recipe_latents = base.vae.encode((pixels * 2 - 1).to(base.vae.dtype)).latent_dist.sample()
                    recipe_latents = recipe_latents * base.vae.config.scaling_factor
                    recipe_cond = conditioner.encode_text(batch["captions"])
                unet_step(lora_unet, recipe_latents.to(dtype), base.family.unet_kwargs(recipe_cond, recipe_time_ids))
            lora_optimizer.step()
            lora_optimizer.zero_grad(set_to_none=True)

        steps["lora_unet"], steps["lora_recipe"] = lora_unet_step, lora_recipe_step
    return {name: steps[name] for name in variants}


def unet_inputs(a, base, device, dtype) -> tuple[torch.Tensor, dict]:
    """Random latents and the U-Net's condition keyword arguments (SDXL: with the added inputs)."""
    from coemogen.models.conditioning import TextCondition

    g = torch.Generator().manual_seed(0)
    size = a.resolution // base.vae_scale_factor
    latents = torch.randn(a.batch, 4, size, size, generator=g).to(device, dtype)
    config = base.unet.config
    hidden = torch.randn(a.batch, 77, config.cross_attention_dim, generator=g).to(device, dtype)
    text_embeds = None
    if base.family.micro_conditioning:  # the added pooled text embedding: what the six time ids leave
        width = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        text_embeds = torch.randn(a.batch, width, generator=g).to(device, dtype)
    condition = TextCondition(hidden, hidden[:, 0], text_embeds)
    sizes = torch.tensor([[a.resolution, a.resolution]] * a.batch)
    time_ids = base.family.time_ids(sizes, torch.zeros_like(sizes), (a.resolution, a.resolution))
    return latents, base.family.unet_kwargs(condition, None if time_ids is None else time_ids.to(device))


def unet_step(unet, latents, kwargs: dict):
    noise = torch.randn_like(latents)
    t = torch.randint(0, 1000, (len(latents),), device=latents.device)
    pred = unet(latents + noise, t, **kwargs).sample
    F.mse_loss(pred.float(), noise.float()).backward()


def unet_only_steps(variants: list[str], a, sd: str, clip: str, device, dtype) -> dict:
    """hilora_unet and lora_unet on one U-Net's frozen weights: a twin module shares every base
    tensor; HiLoRA (10 adapters x rank 4, each sample its emotion's and group's) wraps the layers of
    one, a peft rank-8 LoRA those of the other, both in fp32 as in training. Only the adapters of
    `variants` are added (a memory child measures one)."""
    import copy

    from peft import LoraConfig

    from coemogen.models.base import load_base_models
    from coemogen.models.coemogen import CoEmoGen, CoEmoGenConfig
    from coemogen.models.hilora import adapter_weights
    from coemogen.taxonomy import Taxonomy

    base = load_base_models(sd, clip, load_clip=False)
    embed_dim = base.embed_dim
    base.text_encoders.clear()  # only the U-Net is stepped
    base.unet.to(device, dtype)
    twin = copy.deepcopy(base.unet, memo={id(p): p for p in base.unet.parameters()})
    taxonomy = Taxonomy.default()
    config = CoEmoGenConfig(
        taxonomy=taxonomy.to_dict(), embed_dim=embed_dim, image_dim=1024, pretrained_model_name_or_path=sd,
        clip_model_name_or_path=clip, resolution=a.resolution,
    )  # fmt: skip
    torch.manual_seed(0)
    model = CoEmoGen(config)
    if "hilora_unet" in variants:
        model.inject_into(base.unet)
    if "lora_unet" in variants:
        twin.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights="gaussian", target_modules=LORA_TARGETS))
    labels = torch.arange(a.batch) % taxonomy.num_emotions
    gates = model.gates(model.one_hot(labels)).to(device)
    latents, kwargs = unet_inputs(a, base, device, dtype)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    steps = {}
    for name, unet in (("hilora_unet", base.unet), ("lora_unet", twin)):
        if name not in variants:
            continue
        params = [p for n, p in unet.named_parameters() if "lora" in n]
        for p in params:
            p.data, p.requires_grad = p.data.float(), True
        optimizer = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda" or None)
        if a.gradient_checkpointing:
            unet.enable_gradient_checkpointing()

        def step(unet=unet, optimizer=optimizer, selection=name == "hilora_unet"):
            with adapter_weights(base.unet, gates) if selection else nullcontext(), autocast:
                unet_step(unet, latents, kwargs)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        steps[name] = step
    return steps


def run_child(a: argparse.Namespace) -> list[dict]:
    """Timing child (several variants): warm-up, then `repeats` rounds each stepping every variant once,
    so drift of the machine's speed hits all alike. Memory child (one variant): its peak after warm-up
    plus one step."""
    device = torch.device(a.device)
    sd, clip = model_dirs(a.shape, a.models)
    steps = make_steps(a.child, a, sd, clip, device)
    times = {name: [] for name in steps}
    for _ in range(a.warmup):
        for step in steps.values():
            step()
    for _ in range(a.repeats if a.timing else 1):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    if not a.timing:
        return [{"variant": a.child[0], "batch": a.batch, "peak_mb": round(peak_memory_mb(device))}]
    rows = []
    for name, values in times.items():
        s = statistics.median(values)
        rows.append(
            {"variant": name, "batch": a.batch, "s_per_step": round(s, 4), "samples_per_s": round(a.batch / s, 3)}
        )
    return rows


def run(cmd: list[str], variant: str | None = None) -> list[dict]:
    """A child's result rows, or one row with the error."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        return [{"variant": variant, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}]
    return json.loads(lines[-1][7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="sd15", choices=["sd15", "sdxl", "pocket"])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--mixed_precision", default="no", choices=["no", "bf16", "fp16"])
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--max_grad_norm", type=float, help="clip as the trainer does (default: no clipping)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", help="folder for the random-weight SD1.5- or SDXL-shaped models (built once)")
    parser.add_argument("--out", help="also write the results as JSON")
    parser.add_argument("--child", nargs="+", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--timing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.child:
        a.batch = a.batch[0]
        print("RESULT " + json.dumps(run_child(a)), flush=True)
        return

    sd, clip = model_dirs(a.shape, a.models)  # build the random-weight models once, before the children
    scratch = Path(tempfile.mkdtemp(prefix="coemogen-train-step-"))
    common = ["--shape", a.shape, "--resolution", str(a.resolution), "--repeats", str(a.repeats)]
    common += ["--warmup", str(a.warmup), "--mixed_precision", a.mixed_precision, "--device", a.device]
    common += ["--gradient_checkpointing"] * a.gradient_checkpointing + ["--compile"] * a.compile
    common += ["--models", a.models] if a.models else []
    common += ["--max_grad_norm", str(a.max_grad_norm)] if a.max_grad_norm is not None else []
    results = []
    for batch in a.batch:
        with_cache = bool({"coemogen", "coemogen_cached"} & set(a.variants))  # what reads the cache
        data = write_batch_data(scratch / f"batch{batch}-{a.resolution}", batch, a.resolution, sd, clip, with_cache)
        child = [sys.executable, __file__, "--batch", str(batch), "--data", str(data), *common]
        timing = run(child + ["--timing", "--child", *a.variants])
        memory = {v: run(child + ["--child", v], variant=v)[0] for v in a.variants}
        for row in timing if len(timing) == len(a.variants) else [{"variant": v} for v in a.variants]:
            row = {"batch": batch, **row, **memory[row["variant"]]}
            results.append(row)
            print(json.dumps(row), flush=True)

    settings = f"shape={a.shape} resolution={a.resolution} device={a.device} mixed_precision={a.mixed_precision}"
    settings += f" gradient_checkpointing={a.gradient_checkpointing} compile={a.compile} repeats={a.repeats}"
    print(f"\n{settings}  torch {torch.__version__}")
    print("| batch | variant | s/step | samples/s | peak memory (MB) |\n|---|---|---|---|---|")
    for r in results:
        cells = [r.get(k, r.get("error", "failed")) for k in ("s_per_step", "samples_per_s", "peak_mb")]
        print(f"| {r['batch']} | {r['variant']} | " + " | ".join(map(str, cells)) + " |")
    by = {(r["variant"], r["batch"]): r.get("s_per_step") for r in results}
    for batch in a.batch:
        ratios = {
            "uncached / cached CoEmoGen step (speed-up of the cache, target >= 1.3)": ("coemogen", "coemogen_cached"),
            "cached CoEmoGen step / LoRA recipe step (target <= 1.10)": ("coemogen_cached", "lora_recipe"),
            "HiLoRA U-Net step / peft LoRA-r8 U-Net step (target <= 1.05)": ("hilora_unet", "lora_unet"),
        }
        for label, (x, y) in ratios.items():
            if by.get((x, batch)) and by.get((y, batch)):
                print(f"batch {batch}: {label}: {by[(x, batch)] / by[(y, batch)]:.3f}")
    if a.out:
        Path(a.out).write_text(json.dumps({"settings": settings, "torch": torch.__version__, "results": results}))


if __name__ == "__main__":
    main()
