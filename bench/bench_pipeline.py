"""Pipeline cost on this machine: the default config end to end, and a no-op dry run.

Targets (issue 2): default pipeline <= 180 s on 2 cores; no-op `snakemake -n` <= 2 s.
Runs in a temp copy of the workflow; prints a table. Usage: python bench/bench_pipeline.py [--repeats 3]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import copy_workflow  # noqa: E402


def timed(cmd, cwd):
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3, help="no-op dry runs to time")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        wf = copy_workflow(Path(d) / "wf")
        sm = [sys.executable, "-m", "snakemake", "--cores", str(args.cores)]
        full = timed(sm + ["report/all.md"], wf)
        noop = [timed(sm + ["-n", "report/all.md"], wf) for _ in range(args.repeats)]
    rows = [
        ("default pipeline, end to end", full, 180.0, 1),
        (f"no-op dry run (median of {len(noop)})", statistics.median(noop), 2.0, len(noop)),
    ]
    print(f"{'measurement':40s} {'seconds':>9s} {'target':>8s} {'ok':>4s}")
    for name, sec, target, _ in rows:
        print(f"{name:40s} {sec:9.2f} {target:8.1f} {'yes' if sec <= target else 'NO':>4s}")


if __name__ == "__main__":
    main()
