"""Run `coemogen tune` under `accelerate launch` and record, per process, the digest of the weights it
tuned (rank<k>.json in the run directory), for tests/test_multiprocess.py."""

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from coemogen.training import tune as tune_method

captured: dict = {}
_tuned = tune_method.tuned_parameters


def capturing_parameters(run, tune_encoders):
    captured.update(_tuned(run, tune_encoders))
    return captured


tune_method.tuned_parameters = capturing_parameters

if __name__ == "__main__":
    from coemogen.cli import main

    rank = int(os.environ["RANK"])
    out = Path(sys.argv[sys.argv.index("--out") + 1])
    out.mkdir(parents=True, exist_ok=True)
    code = main(["tune", *sys.argv[1:]])
    digest = hashlib.sha256()
    for name in sorted(captured):
        digest.update(captured[name].detach().to(torch.float32).numpy().tobytes())
    (out / f"rank{rank}.json").write_text(json.dumps({"weights_sha256": digest.hexdigest(), "tensors": len(captured)}))
    sys.exit(code)
