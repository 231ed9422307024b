"""Disk full and read-only outputs for the long commands (Linux, as root: it mounts a small tmpfs).

For each command of scripts/kill_resume_matrix.py (run that first: its uninterrupted outputs are the
reference), the output folder is a tmpfs of a quarter of the reference output's size: the command
must stop with exit status 2 and a message naming the path, no traceback, and nothing
half-written that looks complete. Then the tmpfs is grown (as if space were freed) and the same
command re-run must finish with outputs equal to the reference. Last, the tmpfs is remounted
read-only and the command run again into a new folder there. Prints a Markdown table.

    sudo python scripts/disk_full_matrix.py --work /tmp/krm
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from kill_resume_matrix import inputs, jobs  # noqa: E402

from coemogen.kill_resume import command_line, differences, environment, snapshot  # noqa: E402
from coemogen.tables import format_table  # noqa: E402

SKIPPED = {"caption (openai:)", "demo", "bench paper-table"}  # a server to keep up; the longest runs


def half_written(folder: Path) -> list[str]:
    """Files that look complete but are not (a torn last JSONL line is repaired by the re-run)."""
    bad = []
    for path in (p for p in folder.rglob("*") if p.is_file()):
        try:
            if path.suffix in (".png", ".jpg"):
                Image.open(path).load()
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".safetensors":
                load_file(path)
            elif path.suffix == ".jsonl":
                for line in path.read_text().splitlines()[:-1]:
                    json.loads(line)
            elif ".tmp-" in path.name:
                bad.append(f"{path.name} (temporary left behind)")
        except Exception as err:  # noqa: BLE001 - any failure to read is the finding
            bad.append(f"{path.name}: {type(err).__name__}")
    return bad


def mount(folder: Path, options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", default="kill-resume-work")
    args = parser.parse_args()
    work = Path(args.work)
    paths = inputs(work)
    rows = []
    for job in jobs(paths, "http://127.0.0.1:9/v1"):
        reference = work / job.name / "reference"
        if job.name in SKIPPED or not reference.is_dir():
            continue
        size = sum(p.stat().st_size for p in reference.rglob("*") if p.is_file())
        mnt = work / "disk-full" / job.name.replace(" ", "-").replace(":", "").replace("(", "").replace(")", "")
        out = mnt / "out"
        mount(mnt, f"size={max(4096, size // 4)}")
        try:
            full = subprocess.run(command_line(job, out), capture_output=True, text=True, env=environment(job))
            clear = full.returncode == 2 and "could not write" in full.stderr and str(mnt) in full.stderr
            clean = half_written(out) if out.exists() else []
            subprocess.run(["mount", "-o", f"remount,size={size * 4 + 2**24}", str(mnt)], check=True)
            resumed = subprocess.run(command_line(job, out), capture_output=True, text=True, env=environment(job))
            diff = differences(snapshot(reference, job), snapshot(out, job)) if resumed.returncode == 0 else ["failed"]
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
            ro = subprocess.run(command_line(job, mnt / "again"), capture_output=True, text=True, env=environment(job))
            ro_clear = ro.returncode == 2 and "choose a writable output folder" in ro.stderr
        finally:
            subprocess.run(["umount", str(mnt)])
        start = full.stderr.find("coemogen: error")  # progress bars may share its line
        message = full.stderr[start:].splitlines()[0] if start >= 0 else "-"
        rows.append(
            {
                "command": f"`{job.name}`",
                "disk": f"{max(4096, size // 4) // 1024} KiB",
                "disk full: exit 2, path named, no traceback": "yes"
                if clear and "Traceback" not in full.stderr
                else "NO",
                "half-written files": len(clean),
                "re-run after freeing space equals the reference": "yes" if not diff else f"NO ({diff[:2]})",
                "read-only: clear error": "yes" if ro_clear and "Traceback" not in ro.stderr else "NO",
                "message": message.replace(str(mnt), "MNT")[:110],
            }
        )
        print(format_table(rows[-1:], list(rows[-1])), flush=True)
    print(format_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
