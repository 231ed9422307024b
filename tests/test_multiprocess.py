"""Two-process training on the CPU (gloo), as `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu
--num_processes 2` runs it (accelerate's own `--cpu` flag starts a single process)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow  # processes launched and killed: the slow tier

WORKER = Path(__file__).parent / "helpers" / "ddp_train.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes() -> list[str]:
    """`accelerate launch` for two local processes (gloo on the CPU with ACCELERATE_USE_CPU=1)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1"]
    cmd += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return cmd + ["--main_process_port", str(_free_port())]


def _command(tiny_models, world, out, *flags):
    cmd = _two_processes() + [str(WORKER), "--manifest", str(world / "manifest.jsonl"), "--out", str(out)]
    cmd += ["--pretrained_model_name_or_path", str(tiny_models[0]), "--clip_model_name_or_path", str(tiny_models[1])]
    cmd += ["--train_batch_size", "4", "--report_to", "none", "--validation_steps", "0", "--mapper_hidden_dim", "32"]
    return [*cmd, *flags]


ENV = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}


def _launch(tiny_models, world, out, *flags):
    proc = subprocess.run(
        _command(tiny_models, world, out, *flags), capture_output=True, text=True, timeout=600, env=ENV
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"rank{k}.json").read_text()) for k in (0, 1)]


def _start_until_checkpoint(tiny_models, world, out, *flags) -> subprocess.Popen:
    """A two-process run started in the background, returned once its checkpoint-2 is complete."""
    proc = subprocess.Popen(
        _command(tiny_models, world, out, *flags),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    deadline = time.time() + 300
    while not (out / "checkpoint-2").is_dir() and time.time() < deadline:
        time.sleep(0.05)
    return proc


@pytest.fixture(scope="module")
def two_process_run(tiny_models, tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    ranks = _launch(tiny_models, tiny_world, out, "--max_train_steps", "4", "--checkpointing_steps", "2")
    return out, ranks


def test_processes_draw_different_balanced_samples_and_end_identical(two_process_run):
    _, (rank0, rank1) = two_process_run
    draws0 = {d for batch in rank0["drawn"][:4] for _, d, _ in batch}
    draws1 = {d for batch in rank1["drawn"][:4] for _, d, _ in batch}
    assert len(draws0) == len(draws1) == 16 and not draws0 & draws1  # 4 steps x 4 samples, disjoint
    # Together the 2 x 4 x 4 = 32 draws are one balanced epoch of the 32-image world: 4 per emotion.
    labels = Counter(label for r in (rank0, rank1) for batch in r["drawn"][:4] for _, _, label in batch)
    assert sorted(labels.values()) == [4] * 8
    assert rank0["weights_sha256"] == rank1["weights_sha256"]


def test_one_process_killed_the_other_stops_with_a_clear_message_and_resume_latest_matches(
    two_process_run, tiny_models, tiny_world, tmp_path
):
    full, _ = two_process_run
    out = tmp_path / "run"
    flags = ["--max_train_steps", "400", "--checkpointing_steps", "2"]  # no LR schedule: the length changes nothing
    proc = _start_until_checkpoint(tiny_models, tiny_world, out, *flags)
    os.kill(int((out / "pid1").read_text()), signal.SIGKILL)
    killed_at = time.time()
    _, stderr = proc.communicate(timeout=120)  # no hang: the survivor is stopped, not left waiting
    assert proc.returncode != 0 and time.time() - killed_at < 60
    # Whichever comes first: the launcher's SIGTERM, or the collective failing on the dead peer.
    survivor = ("process 0 of 2: stopped by SIGTERM (another process", "process 0 of 2: another process of this run")
    assert any(f"coemogen: {message}" in stderr or f"coemogen: error: {message}" in stderr for message in survivor)
    assert "--resume_from_checkpoint latest" in stderr
    # Rank 0 cannot finish a step without rank 1, so the latest checkpoint is step 2 (4 if the kill came late).
    latest = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*[0-9]"))
    assert latest <= 4
    ranks = _launch(tiny_models, tiny_world, out, "--max_train_steps", "4", "--resume_from_checkpoint", "latest")
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    for name in ("hilora", "mapper"):
        a, b = load_file(full / f"{name}.safetensors"), load_file(out / f"{name}.safetensors")
        assert all((a[k] == b[k]).all() for k in a), name


def test_ablation_configuration_trains_under_two_processes(tiny_models, tiny_world, tmp_path):
    flags = ["--max_train_steps", "2", "--checkpointing_steps", "0", "--perception_encoder", "false"]
    ranks = _launch(tiny_models, tiny_world, tmp_path / "run", *flags, "--group_lora", "false")
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["perception_encoder"] is False and config["group_lora"] is False


def test_sdxl_trains_under_two_processes(tiny_sdxl_models, tiny_world, tmp_path):
    """The SDXL family's condition and micro-conditions under DDP: both processes end identical."""
    ranks = _launch(tiny_sdxl_models, tiny_world, tmp_path / "run", "--max_train_steps", "2", "--random_flip")
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["embed_dim"] == 80


def test_cache_under_two_processes_equals_the_single_process_cache(tiny_models, tiny_world, tmp_path):
    argv = ["cache", "--manifest", str(tiny_world / "manifest.jsonl"), "--shard_size", "12", "--cache_image_tokens"]
    argv += ["--pretrained_model_name_or_path", str(tiny_models[0]), "--clip_model_name_or_path", str(tiny_models[1])]
    cmd = [*_two_processes(), "-m", "coemogen.cli", *argv, "--out", str(tmp_path / "two")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "process 0: wrote 2 shards" in proc.stdout and "process 1: wrote 1 shards" in proc.stdout
    from coemogen.cli import main

    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    one, two = tmp_path / "one", tmp_path / "two"
    assert sorted(f.name for f in one.iterdir()) == sorted(f.name for f in two.iterdir())
    for name in ("cache.json", "records.jsonl"):
        assert (one / name).read_bytes() == (two / name).read_bytes()
    for shard in one.glob("shard-*.safetensors"):  # equal up to float summation order (1 vs 2 threads)
        a, b = load_file(shard), load_file(two / shard.name)
        assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a)


def test_a_hung_process_ends_the_run_after_ddp_timeout_with_a_clear_message(tiny_models, tiny_world, tmp_path):
    out = tmp_path / "run"
    flags = ["--max_train_steps", "400", "--checkpointing_steps", "2", "--ddp_timeout", "5"]
    proc = _start_until_checkpoint(tiny_models, tiny_world, out, *flags)
    hung = int((out / "pid1").read_text())
    os.kill(hung, signal.SIGSTOP)  # alive but silent: without a timeout the other process waits for ever
    stopped_at = time.time()
    try:
        _, stderr = proc.communicate(timeout=180)
    finally:
        try:
            os.kill(hung, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode != 0 and time.time() - stopped_at < 120
    assert "process 0 of 2: another process of this run stopped or hung past --ddp_timeout" in stderr, stderr[-2000:]
    assert "--resume_from_checkpoint latest" in stderr


def _generate(out, *launcher, num_images="3"):
    cmd = [*launcher, "-m", "coemogen.cli", "generate", "--emotion", "all", "--num-images", num_images]
    cmd += ["--batch-size", "2", "--steps", "2", "--out", str(out), "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _files(out):
    return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_generation_is_shared_across_processes_and_byte_identical_to_one_process(tmp_path):
    _generate(tmp_path / "one", sys.executable)
    launcher = [*_two_processes()[:-2], "--main_process_port", str(_free_port())]
    shared = _generate(tmp_path / "two", *launcher)
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert one.keys() == two.keys() and len([k for k in one if k.suffix == ".png"]) == 8 * 3 + 8  # and grids
    assert all(one[k] == two[k] for k in one)
    shares = [int(line.split("wrote ")[1].split()[0]) for line in shared.stdout.splitlines() if " of 2: wrote" in line]
    # each emotion's batches (images 0-1, then 2) dealt out in turn: process 0 the pairs, 1 the third images
    assert sorted(shares) == [8, 16]
    # resumable: a lost image (and its metadata) is made again, by whichever process owns its batch
    for name in ("fear/fear_0002.png", "awe/awe_0000.json"):
        (tmp_path / "two" / name).unlink()
    _generate(tmp_path / "two", *launcher[:-1], str(_free_port()))
    assert _files(tmp_path / "two") == two


def test_tune_under_two_processes_ends_with_the_same_weights_on_both(tiny_models, tiny_world, tmp_path):
    """`coemogen tune` on the engine under two gloo processes: each samples its own images, the
    gradients are averaged, and both end with the same tuned weights, which moved from the start."""
    from coemogen.evaluation.emotion_head import train_emotion_head
    from coemogen.taxonomy import Taxonomy
    from coemogen.training.config import TrainingArguments
    from coemogen.training.loop import train

    start = train(
        TrainingArguments(
            manifest=str(tiny_world / "manifest.jsonl"), out=str(tmp_path / "start"), max_train_steps=1,
            train_batch_size=4, validation_steps=0, report_to="none", checkpointing_steps=0,
            pretrained_model_name_or_path=str(tiny_models[0]), clip_model_name_or_path=str(tiny_models[1]),
        ),
        mapper_hidden_dim=32,
    )  # fmt: skip
    head = tmp_path / "head"
    train_emotion_head(tiny_world, head, tiny_models[1], Taxonomy.default(), steps=5)
    out = tmp_path / "tuned"
    cmd = _two_processes() + [str(Path(__file__).parent / "helpers" / "ddp_tune.py"), "--model", str(start)]
    cmd += ["--manifest", str(tiny_world / "manifest.jsonl"), "--out", str(out), "--reward_model", str(head)]
    cmd += ["--max_train_steps", "2", "--train_batch_size", "2", "--num_inference_steps", "3"]
    cmd += ["--validation_steps", "0", "--report_to", "none", "--learning_rate", "1e-2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (json.loads((out / f"rank{k}.json").read_text()) for k in (0, 1))
    assert rank0["tensors"] == rank1["tensors"] > 0
    assert rank0["weights_sha256"] == rank1["weights_sha256"]
    before, after = load_file(start / "hilora.safetensors"), load_file(out / "hilora.safetensors")
    assert not all(torch.equal(before[k], v) for k, v in after.items())
