"""The README's main command (`coemogen generate --emotion awe --num-images 8`) timed as a whole
process, alternating between this checkout and another one (an older commit's `src`), so drift of
the machine's speed hits both alike; prints each run and the medians and their ratio.

    git worktree add /tmp/before <commit>
    python benchmarks/main_command.py --other-src /tmp/before/src --runs 5

Both use the same installed libraries and the shipped run; each run writes into a fresh folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src"


def one_run(src: Path) -> float:
    with tempfile.TemporaryDirectory() as out:
        code = f"import sys; sys.path.insert(0, {str(src)!r}); from coemogen.cli import main; sys.exit(main())"
        argv = [sys.executable, "-c", code, "generate", "--emotion", "awe", "--num-images", "8", "--out", out]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--other-src", required=True, help="the `src` folder of the checkout to compare with")
    parser.add_argument("--runs", type=int, default=5)
    a = parser.parse_args()
    one_run(HERE), one_run(Path(a.other_src))  # warm-up: the page cache holds both
    ours, theirs = [], []
    for i in range(a.runs):
        ours.append(one_run(HERE))
        theirs.append(one_run(Path(a.other_src)))
        print(f"run {i}: this checkout {ours[-1]:.2f} s, other {theirs[-1]:.2f} s", flush=True)
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    print(f"median: this checkout {m_ours:.2f} s, other {m_theirs:.2f} s, ratio {m_ours / m_theirs:.3f}")


if __name__ == "__main__":
    main()
