"""The default suite's part of the kill-and-resume matrix: a command run as a real subprocess,
killed with SIGKILL at random points, re-run, and compared file by file with an uninterrupted run.
Captioning is killed against a failing server in test_robustness.py; scripts/kill_resume_matrix.py
runs every long command."""

import pytest

from coemogen.kill_resume import Job, check_job, snapshot

pytestmark = pytest.mark.slow  # processes launched and killed: the slow tier


def test_killed_world_build_rerun_gives_the_same_bytes(tmp_path):
    job = Job("world build", ["world", "build", "--images-per-emotion", "12", "--size", "32", "--out", "{out}"])
    result = check_job(job, tmp_path, kills=2, seed=1)
    assert result.kills >= 1 and result.equal, result.differences
    # 96 images and 96 annotations, train/val/test.json, truth.jsonl and info.json
    assert len(snapshot(tmp_path / job.name / "killed", job)) == 2 * 8 * 12 + 5


def test_killed_tune_resumed_from_its_checkpoints_equals_the_uninterrupted_one(tmp_path):
    """`coemogen tune` of the shipped run, SIGKILLed and resumed with `--resume_from_checkpoint latest`,
    ends with the uninterrupted run's weights and records, bit for bit."""
    import json

    from coemogen.world.dataset import build_world, read_truth
    from coemogen.world.scenes import describe

    world = build_world(tmp_path / "world", images_per_emotion=2, seed=0, size=64)
    records = [{"image": p, "emotion": s.emotion, "caption": describe(s)} for p, s in read_truth(world).items()]
    manifest = world / "manifest.jsonl"
    manifest.write_text("\n".join(map(json.dumps, records)) + "\n")
    job = Job(
        "tune",
        ["tune", "--manifest", str(manifest), "--out", "{out}", "--max_train_steps", "12", "--train_batch_size", "2"]
        + ["--num_inference_steps", "4", "--checkpointing_steps", "2", "--resume_from_checkpoint", "latest"]
        + ["--report_to", "none", "--validation_steps", "0"],
        env={"OMP_NUM_THREADS": "1"},
        # the process-wide RNG states a checkpoint keeps for a method's own use: Python's and NumPy's
        # are seeded by the OS at each process start, and every draw of the engine comes from its own
        # per-step generators, so they differ between any two processes without touching the result
        ignore=("checkpoint-*/training_state.pt",),
    )
    result = check_job(job, tmp_path, kills=2, seed=2)
    assert result.kills >= 1 and result.equal, result.differences
    files = snapshot(tmp_path / job.name / "killed", job)
    assert "hilora.safetensors" in files and "tuning.json" in files and "checkpoint-12/optimizer.pt" in files
