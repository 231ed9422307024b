"""Run `coemogen train` under `accelerate launch` and record, per process, what it drew and the
weights it ended with (rank<k>.json in the run directory), for tests/test_multiprocess.py."""

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from coemogen.training import coemogen as coemogen_method
from coemogen.training import data

drawn: list = []
captured: dict = {}
_batch = data.BalancedBatchSampler.batch
_params = coemogen_method.trainable_parameters


def recording_batch(self, micro_step):
    pairs = _batch(self, micro_step)
    drawn.append([[i, d, self.labels[i]] for i, d in pairs])
    return pairs


def capturing_parameters(model, unet):
    captured.update(_params(model, unet))
    return captured


data.BalancedBatchSampler.batch = recording_batch
coemogen_method.trainable_parameters = capturing_parameters

if __name__ == "__main__":
    from coemogen.cli import main

    rank = int(os.environ["RANK"])
    out = Path(sys.argv[sys.argv.index("--out") + 1])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"pid{rank}").write_text(str(os.getpid()))  # for tests that kill one process
    code = main(["train", *sys.argv[1:]])
    digest = hashlib.sha256()
    for name in sorted(captured):
        digest.update(captured[name].detach().to(torch.float32).numpy().tobytes())
    (out / f"rank{rank}.json").write_text(json.dumps({"drawn": drawn, "weights_sha256": digest.hexdigest()}))
    sys.exit(code)
