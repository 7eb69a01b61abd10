"""Pipeline cost on this machine: the default config end to end, and a no-op dry run.

Targets (issue 2): default pipeline <= 180 s on 2 cores; no-op `snakemake -n` <= 2 s.
Runs in a temp copy of the workflow; prints a table. Usage: python bench/bench_pipeline.py [--repeats 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import copy_workflow  # noqa: E402


def timed(cmd, cwd, env=None):
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True, env=env)
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
        # the same on a host whose SLURM client answers at once (a stub scontrol that fails fast)
        stub = Path(d) / "stub"
        stub.mkdir()
        (stub / "scontrol").write_text("#!/bin/sh\nexit 1\n")
        (stub / "scontrol").chmod(0o755)
        env = dict(os.environ, PATH=f"{stub}{os.pathsep}{os.environ['PATH']}")
        noop_fast = [timed(sm + ["-n", "report/all.md"], wf, env) for _ in range(args.repeats)]
    start = timed([sys.executable, "-c", "import snakemake.cli"], ".")
    rows = [
        ("default pipeline, end to end", full, 180.0),
        (f"no-op dry run (median of {len(noop)})", statistics.median(noop), 2.0),
        ("  of which: import snakemake.cli", start, None),
    ]
    probe = slurm_probe_seconds()
    if probe is not None:
        rows.append(("  of which: slurm plugin's scontrol probe", probe, None))
    rows.append(("no-op dry run, SLURM client failing fast", statistics.median(noop_fast), 2.0))
    print(f"{'measurement':44s} {'seconds':>9s} {'target':>8s} {'ok':>4s}")
    for name, sec, target in rows:
        ok = "" if target is None else ("yes" if sec <= target else "NO")
        print(f"{name:44s} {sec:9.2f} {'' if target is None else f'{target:8.1f}':>8s} {ok:>4s}")
    if probe is not None and probe > 1:
        print(
            "note: snakemake-executor-plugin-slurm runs `scontrol show config` when Snakemake starts; on a host\n"
            "whose SLURM client finds no controller that call waits for its timeout on every start."
        )


def slurm_probe_seconds():
    """Time of the SLURM plugin's import-time probe when scontrol exists and fails (no controller)."""
    import shutil

    if not shutil.which("scontrol"):
        return None
    t = time.perf_counter()
    p = subprocess.run(["scontrol", "show", "config"], capture_output=True, timeout=60)
    return None if p.returncode == 0 else time.perf_counter() - t


if __name__ == "__main__":
    main()
