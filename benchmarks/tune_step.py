"""The cost of one reward-tuning step against one training step, at the paper's shapes with random
weights (nothing downloaded), side by side in one process.

Variants, each one full optimiser step of the training engine (`training_step`) on a batch mixing
emotions:
  train_step  CoEmoGen's training step from images (VAE encode, CLIP image tokens and caption
              embedding, U-Net with HiLoRA, L_LDM + L_SEM)
  tune_step   `coemogen tune`'s step with both guards: the anchor (the training step's loss on the
              same batch), DDIM without gradients to the last K steps, K steps with their graph and
              the starting run's reference prediction, the VAE decoder and the CLIP emotion reward

The starting run is trained for one step on the random-weight models and the reward head fitted
on the batch's images (both in child processes, beforehand). One child times both variants in
rounds (A B A B ..., so drift of the machine's speed hits both alike; medians over `--repeats`
after `--warmup`); one child per variant measures its peak memory alone (CUDA max allocated, or
peak RSS on the CPU). The ratios are printed last.

Usage: python benchmarks/tune_step.py [--shape sd15|sdxl|pocket] [--resolution 256] [--batch 4]
           [--num_inference_steps 25] [--truncation_steps 1] [--repeats 3] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_step import model_dirs, peak_memory_mb, run, write_batch_data  # noqa: E402

VARIANTS = ["train_step", "tune_step"]


def prepare(data: Path, a: argparse.Namespace, sd: str, clip: str) -> tuple[Path, Path]:
    """The starting run (one training step) and a reward head on the batch's images."""
    start, head = data / "start-run", data / "reward-head"
    if not (start / "clusters.safetensors").is_file():
        cmd = [sys.executable, "-m", "coemogen.cli", "train", "--manifest", str(data / "manifest.jsonl")]
        cmd += ["--out", str(start), "--pretrained_model_name_or_path", sd, "--clip_model_name_or_path", clip]
        cmd += ["--resolution", str(a.resolution), "--max_train_steps", "1", "--train_batch_size", str(a.batch)]
        cmd += ["--validation_steps", "0", "--report_to", "none", "--center_crop"]
        subprocess.run(cmd, check=True, capture_output=True)
    if not (head / "config.json").is_file():
        code = (
            "import sys; from coemogen.evaluation.emotion_head import train_emotion_head; "
            "from coemogen.taxonomy import Taxonomy; "
            "train_emotion_head(sys.argv[1], sys.argv[2], sys.argv[3], Taxonomy.default(), steps=5)"
        )
        manifest = str(data / "manifest.jsonl")
        subprocess.run([sys.executable, "-c", code, manifest, str(head), clip], check=True, capture_output=True)
    return start, head


def make_steps(variants: list[str], a: argparse.Namespace, sd: str, clip: str, device: torch.device) -> dict:
    """{variant: one optimiser step}, each built by the training engine as `train` and `tune` build them."""
    from coemogen.taxonomy import Taxonomy
    from coemogen.training.config import TrainingArguments
    from coemogen.training.data import collate
    from coemogen.training.loop import Optimisation, build, make_accelerator, training_step

    taxonomy = Taxonomy.default()
    data = Path(a.data)
    start, head = prepare(data, a, sd, clip)
    common = dict(
        manifest=str(data / "manifest.jsonl"), out="-", resolution=a.resolution, center_crop=True,
        mixed_precision=a.mixed_precision, gradient_checkpointing=a.gradient_checkpointing, learning_rate=1e-4,
        report_to="none",
    )  # fmt: skip
    builds = {
        "train_step": (
            TrainingArguments(**common, pretrained_model_name_or_path=sd, clip_model_name_or_path=clip),
            {},
        ),
        "tune_step": (
            TrainingArguments(**common, method="tune", init_from=str(start)),
            {
                "reward_model": str(head),
                "num_inference_steps": a.num_inference_steps,
                "truncation_steps": a.truncation_steps,
            },
        ),
    }
    steps = {}
    for name in variants:
        args, settings = builds[name]
        accelerator = make_accelerator(args)
        method_run, optimizer = build(args, taxonomy, accelerator, **settings)
        opt = Optimisation.create(args, accelerator, method_run.module, method_run.params, optimizer)
        batch = collate([method_run.dataset[i] for i in range(a.batch)])

        def step(opt=opt, batch=batch, method_run=method_run):
            training_step(opt, batch, torch.Generator().manual_seed(1), method_run.select_adapters)

        steps[name] = step
    return steps


def run_child(a: argparse.Namespace) -> list[dict]:
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
        return [{"variant": a.child[0], "peak_mb": round(peak_memory_mb(device))}]
    rows = [{"variant": n, "s_per_step": round(statistics.median(v), 3), "all_s": [round(x, 3) for x in v]}
            for n, v in times.items()]  # fmt: skip
    if len(rows) == 1:  # --separate: this child's peak is this variant's alone
        rows[0]["peak_mb"] = round(peak_memory_mb(device))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="sd15", choices=["sd15", "sdxl", "pocket"])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--num_inference_steps", type=int, default=25)
    parser.add_argument("--truncation_steps", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--mixed_precision", default="no", choices=["no", "bf16", "fp16"])
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", help="folder for the random-weight SD1.5- or SDXL-shaped models (built once)")
    parser.add_argument("--out", help="also write the results as JSON")
    parser.add_argument(
        "--separate",
        action="store_true",
        help="time each variant in its own child (which also gives its peak): one set of models in memory at a "
        "time, for machines where both do not fit; the rounds are then not interleaved",
    )
    parser.add_argument("--child", nargs="+", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--timing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.child:
        print("RESULT " + json.dumps(run_child(a)), flush=True)
        return

    sd, clip = model_dirs(a.shape, a.models)
    data = write_batch_data(Path(tempfile.mkdtemp(prefix="coemogen-tune-step-")), a.batch, a.resolution, sd, clip,
                            with_cache=False)  # fmt: skip
    prepare(data, a, sd, clip)
    common = ["--shape", a.shape, "--resolution", str(a.resolution), "--batch", str(a.batch), "--data", str(data)]
    common += ["--num_inference_steps", str(a.num_inference_steps), "--truncation_steps", str(a.truncation_steps)]
    common += ["--repeats", str(a.repeats), "--warmup", str(a.warmup), "--mixed_precision", a.mixed_precision]
    common += ["--device", a.device] + ["--gradient_checkpointing"] * a.gradient_checkpointing
    common += ["--models", a.models] if a.models else []
    child = [sys.executable, __file__, *common]
    if a.separate:
        timing = {v: run(child + ["--timing", "--child", v], variant=v)[0] for v in VARIANTS}
        memory = {v: {k: r[k] for k in ("peak_mb", "error") if k in r} for v, r in timing.items()}
    else:
        timing = {r["variant"]: r for r in run(child + ["--timing", "--child", *VARIANTS])}
        memory = {v: run(child + ["--child", v], variant=v)[0] for v in VARIANTS}
    results = [{**timing.get(v, {"variant": v}), **memory[v]} for v in VARIANTS]
    settings = (
        f"shape={a.shape} resolution={a.resolution} batch={a.batch} device={a.device} "
        f"mixed_precision={a.mixed_precision} gradient_checkpointing={a.gradient_checkpointing} "
        f"num_inference_steps={a.num_inference_steps} truncation_steps={a.truncation_steps} repeats={a.repeats}"
        f" separate={a.separate}"
    )
    print(f"\n{settings}  torch {torch.__version__}")
    print("| variant | s/step (median) | every round (s) | peak memory (MB) |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['variant']} | {r.get('s_per_step', r.get('error'))} | {r.get('all_s', '-')} | "
              f"{r.get('peak_mb', r.get('error'))} |")  # fmt: skip
    by = {r["variant"]: r for r in results}
    ratios = {}
    if by["train_step"].get("s_per_step") and by["tune_step"].get("s_per_step"):
        ratios["time"] = by["tune_step"]["s_per_step"] / by["train_step"]["s_per_step"]
        print(f"tune step / training step, time: {ratios['time']:.2f}")
    if by["train_step"].get("peak_mb") and by["tune_step"].get("peak_mb"):
        ratios["peak_memory"] = by["tune_step"]["peak_mb"] / by["train_step"]["peak_mb"]
        print(f"tune step / training step, peak memory: {ratios['peak_memory']:.2f}")
    if a.out:
        Path(a.out).write_text(
            json.dumps({"settings": settings, "torch": torch.__version__, "results": results, "ratios": ratios})
        )


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    main()
