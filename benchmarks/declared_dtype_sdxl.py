"""An SDXL base in the published shapes (random weights) whose text encoders are declared and stored
in float16, as fp16-published checkpoints are, run through `coemogen train` (2 steps), `export`
and `generate` on the CPU; each command's wall time and peak resident memory (from
`/usr/bin/time -v`) go to `<out>/declared_dtype_sdxl.json`. Before issue 37 the first training step
failed with "expected m1 and m2 to have the same dtype ... Half != float".

    python benchmarks/declared_dtype_sdxl.py --models /tmp/sdxl-shaped --out /tmp/declared
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path


def declare_half_text_encoders(sdxl_dir: Path) -> None:
    """Store both text encoders in float16 with configs that say so (what an fp16 variant ships)."""
    import torch
    import transformers

    for sub in ("text_encoder", "text_encoder_2"):
        config = json.loads((sdxl_dir / sub / "config.json").read_text())
        if config.get("dtype") == "float16":
            continue
        model = getattr(transformers, config["architectures"][0]).from_pretrained(sdxl_dir / sub, dtype=torch.float32)
        model.to(torch.float16).save_pretrained(sdxl_dir / sub)
        config = json.loads((sdxl_dir / sub / "config.json").read_text())
        assert config.get("dtype") == "float16", config.get("dtype")


def timed(argv: list[str], log: Path) -> dict:
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True)
    log.write_text(done.stdout + done.stderr)
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return {
        "command": " ".join(argv[2:]),
        "returncode": done.returncode,
        "wall_s": round(time.perf_counter() - start, 1),
        "peak_rss_gb": round(int(peak.group(1)) / 1024**2, 2) if peak else None,
        "error": done.stderr.strip().splitlines()[-25] if done.returncode else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", required=True, help="where the SDXL-shaped models are (built once, ~15 GB)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--resolution", type=int, default=256)
    a = parser.parse_args()
    from coemogen.testing import build_sdxl_shaped_models
    from coemogen.world.dataset import build_world

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sdxl, clip = build_sdxl_shaped_models(a.models)
    declare_half_text_encoders(sdxl)
    world = out / "world"
    if not (world / "manifest.jsonl").is_file():
        from coemogen.world.dataset import read_truth
        from coemogen.world.scenes import describe

        build_world(world, images_per_emotion=2, seed=0, size=64)
        truth = read_truth(world).items()
        lines = [json.dumps({"image": p, "emotion": s.emotion, "caption": describe(s)}) for p, s in truth]
        (world / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    coemogen = [sys.executable, "-m", "coemogen.cli"]
    run = out / "run"
    steps = [
        ("train", [*coemogen, "train", "--manifest", str(world / "manifest.jsonl"), "--out", str(run),
                   "--pretrained_model_name_or_path", str(sdxl), "--clip_model_name_or_path", str(clip),
                   "--resolution", str(a.resolution), "--max_train_steps", "2", "--train_batch_size", "1",
                   "--validation_steps", "0", "--report_to", "none", "--seed", "0"]),
        ("export", [*coemogen, "export", "--model", str(run), "--out", str(out / "export")]),
        ("generate", [*coemogen, "generate", "--model", str(run), "--emotion", "awe", "--num-images", "1",
                      "--steps", "2",
                      "--out", str(out / "images"), "--seed", "0"]),
    ]  # fmt: skip
    results = {}
    for name, argv in steps:
        results[name] = timed(argv, out / f"{name}.log")
        print(name, results[name], flush=True)
        if results[name]["returncode"]:
            break
    (out / "declared_dtype_sdxl.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
