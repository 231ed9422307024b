"""The first real run: base models always chosen, the diffusers training recipe (schedule, warm-up,
clipping, AdamW settings), complete checkpoints (an fp16 run SIGKILLed and resumed equals the
uninterrupted one) and one `training_step`."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from coemogen.cli import main
from coemogen.cli.parser import build_parser
from coemogen.errors import CoEmoGenError
from coemogen.models.base import resolve_sources
from coemogen.training.checkpoints import rng_states, set_rng_states
from coemogen.training.config import TrainingArguments, split_training_flags
from coemogen.training.loop import Optimisation, make_accelerator, make_optimizer, training_step


@pytest.fixture
def foreign_manifest(tiny_world, tmp_path):
    """The world's images copied out of the world: data that is not a synthetic world's."""
    import shutil

    lines = []
    for i, line in enumerate((tiny_world / "manifest.jsonl").read_text().splitlines()[:4]):
        record = json.loads(line)
        src = tiny_world / record["image"]
        shutil.copy(src, tmp_path / f"{i}.png")
        lines.append(json.dumps({**record, "image": f"{i}.png"}))
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "manifest.jsonl"


def test_base_models_are_chosen_for_data_that_is_not_a_world(foreign_manifest, tiny_world, tmp_path, capsys):
    both = "--preset sd15.*--pretrained_model_name_or_path and --clip_model_name_or_path"
    with pytest.raises(CoEmoGenError, match=both):
        resolve_sources(data=foreign_manifest.parent / "0.png")
    with pytest.raises(CoEmoGenError, match="--clip_model_name_or_path"):
        resolve_sources("some/sd", data=foreign_manifest.parent / "0.png")
    assert resolve_sources(data=tiny_world / "image") == ("coemogen:pocket-sd", "coemogen:pocket-clip")
    assert resolve_sources(preset="sd15")[0] == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert resolve_sources("a", "b") == ("a", "b")
    out = str(tmp_path / "x")
    for argv in (
        ["train", "--manifest", str(foreign_manifest), "--out", out, "--max_train_steps", "1"],
        ["train", "--method", "emogen", "--manifest", str(foreign_manifest), "--out", out],
        ["cache", "--manifest", str(foreign_manifest), "--out", out],
        ["filter", "--captions", str(foreign_manifest), "--out", out + ".jsonl"],
    ):
        assert main(argv) == 2, argv
        assert "--preset sd15" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_recipe_flags_have_diffusers_names_and_meanings():
    parser = build_parser()
    argv = ["train", "--manifest", "m", "--out", "o", "--lr_scheduler", "linear", "--lr_warmup_steps", "2"]
    argv += ["--max_grad_norm", "0.5", "--scale_lr", "--adam_beta1", "0.8", "--adam_beta2", "0.95"]
    argv += ["--weight_decay", "0.1", "--adam_epsilon", "1e-6", "--max_train_steps", "4", "--train_batch_size", "3"]
    argv += ["--gradient_accumulation_steps", "2", "--ddp_timeout", "60"]
    args, _ = split_training_flags(parser.parse_args(argv))
    assert (args.adam_weight_decay, args.max_grad_norm, args.ddp_timeout) == (0.1, 0.5, 60)
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = make_optimizer(args, [weight], torch.device("cpu"), num_processes=2)
    group = optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(1e-3 * 2 * 3 * 2)  # --scale_lr: accumulation x batch x processes
    assert (group["betas"], group["eps"], group["weight_decay"]) == ((0.8, 0.95), 1e-6, 0.1)
    defaults = TrainingArguments(manifest="m", out="o")
    assert (defaults.lr_scheduler, defaults.learning_rate, defaults.max_grad_norm) == ("constant", 1e-3, None)
    group = make_optimizer(defaults, [weight], torch.device("cpu")).param_groups[0]
    assert (group["betas"], group["eps"], group["weight_decay"]) == ((0.9, 0.999), 1e-8, 1e-2)  # torch's AdamW


class _Quadratic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))

    def forward(self, batch, generator):
        return {"loss": (self.w**2).sum() / 2}  # gradient = w, norm 5


def _optimisation(tmp_path, **flags):
    args = TrainingArguments(manifest="m", out=str(tmp_path), report_to="none", max_train_steps=4, **flags)
    module = _Quadratic()
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    return Optimisation.create(args, make_accelerator(args), module, {"w": module.w}, optimizer)


def test_training_step_clips_through_accelerate_and_steps_the_schedule(tmp_path):
    from contextlib import nullcontext

    opt = _optimisation(tmp_path, max_grad_norm=0.5, lr_scheduler="linear", lr_warmup_steps=2)
    lrs = []
    for _ in range(4):
        before = opt.params["w"].detach().clone()
        lr = opt.lr_scheduler.get_last_lr()[0]
        training_step(opt, {}, torch.Generator(), lambda _: nullcontext())
        lrs.append(lr)
        if lr:  # SGD: the update is lr x the clipped gradient, whose norm is max_grad_norm
            assert (before - opt.params["w"].detach()).norm().item() == pytest.approx(lr * 0.5, rel=1e-5)
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 0.5])  # diffusers' linear warm-up then decay
    state = opt.state_dict(micro_step=4)
    assert state["lr_scheduler"]["last_epoch"] == 4 and state["micro_step"] == 4


def test_rng_states_round_trip_through_a_weights_only_load(tmp_path):
    import random

    import numpy as np

    torch.save(rng_states(), tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and (expected[1] == again[1]).all() and expected[2] == again[2]


def _train_command(tiny_models, world, out, *flags):
    cmd = [sys.executable, "-m", "coemogen.cli", "train", "--manifest", str(world / "manifest.jsonl")]
    cmd += ["--out", str(out)]
    cmd += ["--pretrained_model_name_or_path", str(tiny_models[0]), "--clip_model_name_or_path", str(tiny_models[1])]
    cmd += ["--max_train_steps", "6", "--checkpointing_steps", "2", "--train_batch_size", "4", "--report_to", "none"]
    cmd += ["--validation_steps", "0", "--mapper_hidden_dim", "32", "--mixed_precision", "fp16"]
    return cmd + ["--lr_scheduler", "cosine", "--lr_warmup_steps", "2", "--max_grad_norm", "1.0", *flags]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.mark.slow
def test_fp16_run_killed_after_a_checkpoint_and_resumed_equals_the_uninterrupted_run(tiny_models, tiny_world, tmp_path):
    full = tmp_path / "full"
    subprocess.run(_train_command(tiny_models, tiny_world, full), check=True, capture_output=True, env=ENV)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_command(tiny_models, tiny_world, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
    )
    deadline = time.time() + 300
    while not (killed / "checkpoint-2").is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "clusters.safetensors").exists()  # killed before the end
    resumed = subprocess.run(
        _train_command(tiny_models, tiny_world, killed, "--resume_from_checkpoint", "latest"),
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for name in ("mapper", "perception_encoder", "hilora", "clusters"):
        a, b = load_file(full / f"{name}.safetensors"), load_file(killed / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    states = [torch.load(d / "checkpoint-6" / "training_state.pt", weights_only=True) for d in (full, killed)]
    # the GradScaler's growth tracker and the schedule continued, not restarted
    assert states[0]["grad_scaler"] == states[1]["grad_scaler"] and states[0]["grad_scaler"]["_growth_tracker"] == 6
    assert states[0]["lr_scheduler"]["last_epoch"] == states[1]["lr_scheduler"]["last_epoch"] == 6
    assert states[0]["micro_step"] == 6

