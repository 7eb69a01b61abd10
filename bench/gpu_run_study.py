"""Run a study's measure jobs for the GPU this host has (the `--until measure` equivalent).

Each repeat is its own process (python -m opbreak.measure), as the pipeline runs
it; a failing job (e.g. CUDA OOM) is logged and the others go on. Configs that
declare another GPU are skipped: they are not run here.

  python bench/gpu_run_study.py config/studies/single-gpu.yaml [--only NAME ...]
      [--set name:field=value ...] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opbreak.config import resolve  # noqa: E402
from opbreak.hardware import load_catalog, match_device_name  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("study")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--extra", default=None, help="YAML list of extra config entries (e.g. an OOM probe)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--results", default="results")
    args = ap.parse_args(argv)
    cfg = yaml.safe_load(Path(args.study).read_text())
    if args.extra:
        cfg["configs"] = cfg["configs"] + yaml.safe_load(args.extra)
    import torch

    cat = load_catalog(cfg.get("hardware_catalog", "config/hardware.yaml"))
    here = match_device_name(cat, torch.cuda.get_device_name(0)) if torch.cuda.is_available() else "cpu"
    summary = []
    for entry in cfg["configs"]:
        name = entry["name"]
        if args.only and name not in args.only:
            continue
        spec = resolve(cfg, name, root=str(ROOT))
        if spec["gpu"] != here:
            print(f"skip {name}: declares {spec['gpu']}, this host has {here}", flush=True)
            continue
        specp = Path(args.results) / "specs" / f"{name}.json"
        specp.parent.mkdir(parents=True, exist_ok=True)
        specp.write_text(json.dumps(spec, indent=1))
        reps = args.repeats or entry.get("repeats") or cfg.get("repeats", 3)
        for r in range(reps):
            out = Path(args.results) / "measure" / name / f"rep{r}"
            log = Path(args.results) / "logs" / f"{name}.rep{r}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            t0 = time.time()
            with open(log, "w") as f:
                p = subprocess.run([sys.executable, "-m", "opbreak.measure", "--spec", str(specp), "--repeat", str(r),
                                    "--outdir", str(out)], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
            dt = time.time() - t0
            tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
            status = "ok" if p.returncode == 0 else f"FAILED rc={p.returncode}"
            print(f"{name} rep{r}: {status} in {dt:.1f} s :: {tail[0] if tail else ''}", flush=True)
            summary.append(dict(config=name, repeat=r, rc=p.returncode, seconds=dt, last_line=tail[0] if tail else ""))
    Path(args.results, "run_summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
