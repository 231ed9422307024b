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
