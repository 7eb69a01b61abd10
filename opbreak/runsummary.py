"""The run summary: the last lines of every snakemake run name each failed measurement.

Read from the measure outputs themselves (``results/measure/<config>/rep<k>/provenance.json``):
a failure record (``status: failed``) or a restored store entry whose forced rerun failed
(``rerun_failed``). A study with ``expect_missing_hardware: true`` (predict mode, a multi-host study)
exits 0 when every failure is a missing-hardware one (no GPU driver, too few or other GPUs);
any other failure (timeout, crash, bad weights) makes the run exit 1. A bad measurement file that
stopped aggregate is repeated here as its one line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _one_line(text, n=220) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= n else line[: n - 3] + "..."


def failures(configs: dict, results="results/measure") -> list[dict]:
    out = []
    for name, reps in configs.items():
        for r in reps:
            p = Path(results) / name / f"rep{r}" / "provenance.json"
            try:
                prov = json.loads(p.read_text())
            except (OSError, ValueError, UnicodeDecodeError):
                continue  # not run yet (another target), or a bad file aggregate names
            if not isinstance(prov, dict):
                continue
            if prov.get("status") == "failed":
                out.append(
                    dict(
                        config=name,
                        repeat=r,
                        kind=prov.get("failure_kind") or _kind(prov.get("error", "")),
                        reason=_one_line(prov.get("error", "no reason recorded")),
                        other_specs=prov.get("other_specs", ""),
                    )
                )
            elif isinstance(prov.get("rerun_failed"), dict):
                f = prov["rerun_failed"]
                out.append(
                    dict(
                        config=name,
                        repeat=r,
                        kind=f.get("kind", "error"),
                        reason=_one_line(
                            f"rerun failed: {f.get('error', '')}; kept the stored measurement "
                            f"({prov.get('host')}, {prov.get('finished')})"
                        ),
                    )
                )
    return out


def _kind(error: str) -> str:
    """Failure records written before failure_kind existed."""
    return "missing_hardware" if "has no CUDA" in error or "declares gpu" in error else "error"


def summarize(
    configs: dict,
    expect_missing_hardware=False,
    since=None,
    results="results/measure",
    aggregate_log="logs/aggregate.log",
    out=None,
) -> int:
    """Print the summary; the exit code the run should have (0 or 1)."""
    out = out or sys.stderr
    fails = failures(configs, results)
    total = sum(len(r) for r in configs.values())
    lines = []
    agg = Path(aggregate_log)
    if agg.exists() and (since is None or os.path.getmtime(agg) >= since):
        bad = [ln.strip() for ln in agg.read_text(errors="replace").splitlines() if ln.startswith("opbreak aggregate:")]
        lines += bad[-1:]
    code = 1 if lines else 0
    if fails:
        unexpected = [f for f in fails if not (expect_missing_hardware and f["kind"] == "missing_hardware")]
        lines.append(f"opbreak: {len(fails)} of {total} measurements failed:")
        hinted = set()  # the store's other specs of a config: the same for each of its repeats, said once
        for f in fails:
            lines.append(f"  FAILED {f['config']} rep{f['repeat']}: {f['reason']}")
            if f.get("other_specs") and f["config"] not in hinted:
                hinted.add(f["config"])
                lines.append(f"    {f['config']}: {f['other_specs']}")
        if unexpected:
            code = 1
            if expect_missing_hardware:
                lines.append(f"  {len(unexpected)} of them not for missing hardware: exit status 1")
            else:
                lines.append(
                    "  exit status 1 (a study run where hardware is missing on purpose sets "
                    "expect_missing_hardware: true)"
                )
        else:
            lines.append("  expected: the study sets expect_missing_hardware: true (exit status 0)")
    if lines:
        print("\n".join(lines), file=out)
        out.flush()
    return code
