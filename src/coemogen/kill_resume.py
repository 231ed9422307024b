"""Kill-and-resume checks for long commands (tests and scripts/kill_resume_matrix.py).

A `Job` is a `coemogen` command line writing into one output folder. `check_job` runs it once
uninterrupted, then in a second folder starts it, sends SIGKILL after a random delay (several
times, at different points, each start resuming the last), lets a final run finish, and compares
the two folders file by file: bytes equal, after the output folder's own path is replaced by a
marker, lines sorted where their order is free and volatile fields dropped.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CoEmoGenError

TEXT_SUFFIXES = {".json", ".jsonl", ".md", ".html", ".txt", ".csv"}


@dataclass
class Job:
    """`argv`: coemogen arguments, '{out}' standing for the output folder. `ignore`: globs of files
    whose content is volatile (timings, TensorBoard logs); `unordered`: JSONL files whose line order
    is free; `volatile_keys`: keys dropped from their records (e.g. seconds per item)."""

    name: str
    argv: list[str]
    ignore: tuple[str, ...] = ()
    unordered: tuple[str, ...] = ()
    volatile_keys: tuple[str, ...] = ()
    env: dict = field(default_factory=dict)


@dataclass
class JobResult:
    name: str
    kills: int  # SIGKILLs that landed while the command was running
    runs: int  # starts in the killed folder, the finishing run included
    equal: bool
    differences: list[str]
    reference_seconds: float


def command_line(job: Job, out: Path) -> list[str]:
    return [sys.executable, "-m", "coemogen.cli", *(a.replace("{out}", str(out)) for a in job.argv)]


def environment(job: Job) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **job.env}


def run_to_completion(job: Job, out: Path, timeout: float = 1800) -> float:
    """Run the job until it exits; returns its seconds; a failure is an error with its output."""
    start = time.monotonic()
    proc = subprocess.run(command_line(job, out), capture_output=True, text=True, env=environment(job), timeout=timeout)
    if proc.returncode != 0:
        raise CoEmoGenError(f"{job.name}: exit status {proc.returncode}\n{proc.stderr[-3000:]}")
    return time.monotonic() - start


def kill_and_resume(job: Job, out: Path, kills: int, reference_seconds: float, rng: random.Random) -> tuple[int, int]:
    """Start the job `kills` times, each killed with SIGKILL after a random share (20-95%) of the
    uninterrupted run's time, then let one run finish. Returns (kills that landed, runs)."""
    landed = 0
    for _ in range(kills):
        proc = subprocess.Popen(
            command_line(job, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment(job)
        )
        try:
            proc.wait(timeout=rng.uniform(0.2, 0.95) * reference_seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            landed += 1
    run_to_completion(job, out)
    return landed, kills + 1


def _normalised(path: Path, out: Path, job: Job, relative: str) -> bytes:
    data = path.read_bytes()
    if path.suffix not in TEXT_SUFFIXES:
        return data
    text = data.decode("utf-8", errors="replace").replace(str(out), "{out}")
    if any(fnmatch.fnmatch(relative, pattern) for pattern in job.unordered):
        lines = []
        for line in text.splitlines():
            record = json.loads(line)
            for key in job.volatile_keys:
                record.pop(key, None)
            lines.append(json.dumps(record, sort_keys=True))
        text = "\n".join(sorted(lines))
    return text.encode()


def snapshot(out: Path, job: Job) -> dict[str, str]:
    """relative path -> sha256 of the normalised content, for every file the job wrote."""
    digests = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        relative = str(path.relative_to(out))
        if any(fnmatch.fnmatch(relative, pattern) for pattern in job.ignore):
            continue
        digests[relative] = hashlib.sha256(_normalised(path, out, job, relative)).hexdigest()
    return digests


def differences(reference: dict[str, str], resumed: dict[str, str]) -> list[str]:
    missing = [f"missing {k}" for k in sorted(set(reference) - set(resumed))]
    extra = [f"extra {k}" for k in sorted(set(resumed) - set(reference))]
    changed = [f"differs {k}" for k in sorted(set(reference) & set(resumed)) if reference[k] != resumed[k]]
    return missing + extra + changed


def check_job(job: Job, work: Path, kills: int = 3, seed: int = 0) -> JobResult:
    """Uninterrupted run in work/<name>/reference, killed-and-resumed runs in work/<name>/killed."""
    reference, killed = work / job.name / "reference", work / job.name / "killed"
    seconds = run_to_completion(job, reference)
    landed, runs = kill_and_resume(job, killed, kills, seconds, random.Random(f"{seed}:{job.name}"))
    diff = differences(snapshot(reference, job), snapshot(killed, job))
    return JobResult(job.name, landed, runs, not diff, diff, seconds)
