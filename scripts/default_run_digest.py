"""Train a default CoEmoGen run (every new flag left alone) on a small synthetic world and print the
digests of its weight files, with whichever `coemogen` is importable: run it once on a checkout of an
older commit (`PYTHONPATH=old/src`) and once on this one to check that defaults train bit for bit as
before.

Usage: python scripts/default_run_digest.py OUT_DIR [METHOD]   (METHOD: coemogen, the default, or emogen)
"""

import hashlib
import json
import sys
from pathlib import Path

import torch

import coemogen
from coemogen.training.config import TrainingArguments
from coemogen.training.loop import train
from coemogen.world.dataset import build_world, read_truth
from coemogen.world.scenes import describe


def main() -> None:
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    root = build_world(out / "world", images_per_emotion=4, seed=3, size=64)
    truth = read_truth(root).items()
    lines = [json.dumps({"image": p, "emotion": s.emotion, "caption": describe(s)}) for p, s in truth]
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    args = TrainingArguments(
        manifest=str(root / "manifest.jsonl"),
        out=str(out / "run"),
        max_train_steps=6,
        train_batch_size=4,
        checkpointing_steps=3,
        validation_steps=0,
        report_to="none",
        method=sys.argv[2] if len(sys.argv) > 2 else "coemogen",
    )
    run = train(args)
    print(coemogen.__file__)
    for path in sorted(run.glob("*.safetensors")):
        print(path.stem, hashlib.sha256(path.read_bytes()).hexdigest()[:16])


if __name__ == "__main__":
    main()
