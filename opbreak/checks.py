"""Every measure output is checked before it is used: one line naming the file and the problem.

A measurement folder (``results/measure/<config>/rep<k>/`` or a store entry) holds ``ops.csv``,
``steps.csv``, ``collectives.csv`` (absent in measurements of earlier versions: read as "not captured")
and ``provenance.json``. :func:`read_measurement` reads and checks them against the config's spec:
columns and types, the expected ranks x phases x core ops, finite non-negative times, no duplicate
rows, the provenance's recorded spec. Files of earlier versions of this tool (no ``kernel_ms``, steps
with ``instrumented`` instead of ``mode``, no ``collectives.csv``) load; the columns they lack stay
empty and the report shows them as not captured.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pandas as pd

from .contract import (
    MEASURE_COLLECTIVES_REQUIRED,
    MEASURE_OPS_NUMERIC,
    MEASURE_OPS_REQUIRED,
    MEASURE_STEPS_NUMERIC,
    MEASURE_STEPS_REQUIRED,
)
from .identity import spec_diffs
from .ops import CORE_OPS, PHASES


class ProvenanceError(ValueError):
    """A measurement filed under a config it was not measured for (or on too few devices)."""


def check_provenance(prov: dict, spec: dict, path: str):
    """Reject a result whose recorded spec is not the config it is filed under."""
    recorded = prov.get("spec", {})
    diffs = spec_diffs(recorded, spec)  # opbreak.identity: one notion of "the same measurement"
    if prov.get("config") != spec["name"] or diffs:
        shown = ", ".join(f"{k}: recorded {recorded.get(k)!r} vs config {spec.get(k)!r}" for k in diffs[:5])
        raise ProvenanceError(
            f"{path}: measured under a different config than {spec['name']!r} ({shown or 'name differs'}); "
            "delete it or rerun the measure job (snakemake --forcerun measure)"
        )
    if spec["device"] == "cuda" and prov.get("status") != "failed":
        if prov.get("device_count", 0) < max(1, spec["num_gpus"]):
            raise ProvenanceError(
                f"{path}: ran on {prov.get('device_count')} devices, "
                f"config {spec['name']!r} declares {spec['num_gpus']}"
            )


class MeasureFileError(ValueError):
    """A measure output that cannot be used; the message is one line naming the file and the problem."""


def _bad(path, problem):
    return MeasureFileError(f"{path}: {problem}; delete it (the store or a rerun restores the repeat)")


def read_json(path) -> dict:
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise _bad(path, "missing") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise _bad(path, f"not valid JSON ({type(e).__name__}: {str(e).splitlines()[0][:80]})") from None
    if not isinstance(data, dict):
        raise _bad(path, f"not a JSON object but {type(data).__name__}")
    return data


def read_csv(path, required, numeric=(), signed=()) -> pd.DataFrame:
    """A CSV with the required columns; numeric columns numeric, finite and (unless ``signed``) non-negative."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise _bad(path, "missing") from None
    except UnicodeDecodeError as e:
        raise _bad(path, f"not a text CSV (undecodable byte at offset {e.start})") from None
    if not text.strip():
        raise _bad(path, "empty file (not even a header)")
    if not text.endswith("\n"):
        raise _bad(path, "truncated (the last line has no end)")
    try:
        df = pd.read_csv(io.StringIO(text))
    except Exception as e:  # pandas' parser errors vary by version
        raise _bad(path, f"not a readable CSV ({type(e).__name__}: {str(e).splitlines()[0][:80]})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise _bad(path, f"lacks columns {missing}")
    for c in numeric:
        if c not in df.columns:
            continue
        col = df[c]
        if col.dtype == object:
            num = pd.to_numeric(col, errors="coerce")
            bad = num.isna() & col.notna()
            if bad.any():
                i = int(bad.idxmax())
                raise _bad(path, f"column {c!r} row {i + 2}: {col[i]!r} is not a number")
            col = num
        vals = col.dropna()
        if len(vals) and not vals.map(math.isfinite).all():
            i = int(vals[~vals.map(math.isfinite)].index[0])
            raise _bad(path, f"column {c!r} row {i + 2}: {col[i]} is not finite")
        if c not in signed and (vals < 0).any():
            i = int(vals[vals < 0].index[0])
            raise _bad(path, f"column {c!r} row {i + 2}: {col[i]} is negative")
        df[c] = col
    return df


def world_of(spec) -> int:
    return 1 if spec["emulate_tp"] else int(spec["tp"])


def check_ops(df, path, spec, repeat=None):
    """Expected ranks x phases x core ops, each (rank, phase, op) once, times present."""
    modeled = df["modeled"].astype(str).str.lower().isin(("true", "1"))
    gap = df["time_ms"].isna() & ~modeled  # modeled rows (emulated TP's collectives) have no measured time
    if gap.any():
        i = int(gap.idxmax())
        raise _bad(path, f"column 'time_ms' row {i + 2}: empty (NaN) in a measured row")
    if set(df["config"].astype(str)) != {spec["name"]}:
        raise _bad(path, f"rows of config(s) {sorted(set(df['config'].astype(str)))}, expected {spec['name']!r}")
    if repeat is not None and set(df["repeat"]) != {repeat}:
        raise _bad(path, f"rows of repeat(s) {sorted(set(df['repeat']))}, expected {repeat}")
    dup = df.duplicated(["rank", "phase", "op", "modeled"])
    if dup.any():
        r = df[dup].iloc[0]
        raise _bad(path, f"duplicate row for rank {r['rank']}, {r['phase']}, {r['op']}")
    ranks = set(range(world_of(spec)))
    if set(df["rank"]) != ranks:
        raise _bad(
            path,
            f"ranks {sorted(set(df['rank']))}, expected {sorted(ranks)} (tp {spec['tp']}; {len(df)} rows: cut off?)",
        )
    core = set(CORE_OPS)
    if spec["tp"] > 1 and not spec["emulate_tp"]:
        core.add("all_reduce")
    for rank in sorted(ranks):
        for phase in PHASES:
            got = set(df[(df["rank"] == rank) & (df["phase"] == phase)]["op"])
            lack = sorted(core - got)
            if lack:
                raise _bad(path, f"rank {rank} {phase} lacks ops {lack} ({len(df)} rows: cut off?)")


def upgrade(ops, steps):
    """Measurements of earlier versions in today's columns; what they did not capture stays empty."""
    ops = ops.copy()
    if "kernel_ms" not in ops:
        ops["kernel_ms"] = float("nan")  # no GPU-busy view then: not captured
    if "modeled_bytes" not in ops:
        ops["modeled_bytes"] = 0
    ops["modeled"] = ops["modeled"].astype(str).str.lower().isin(("true", "1"))
    if "mode" not in steps:
        steps = steps.copy()
        if "instrumented" in steps:
            inst = steps["instrumented"].astype(str).str.lower().isin(("true", "1"))
            steps["mode"] = inst.map({True: "events", False: "plain"})
        else:
            steps["mode"] = "events"
    if "attributed_ms" not in steps:
        steps["attributed_ms"] = float("nan")
    return ops, steps


def read_measurement(folder, spec, repeat=None, names=None):
    """(prov, ops, steps, collectives or None) of one checked measurement folder.

    ``names`` maps 'ops', 'steps', 'collectives', 'prov' to paths (default: the folder's files).
    A failure record (provenance status failed) returns empty frames.
    """
    folder = Path(folder) if folder is not None else None
    names = names or {
        k: folder / f
        for k, f in (
            ("ops", "ops.csv"),
            ("steps", "steps.csv"),
            ("collectives", "collectives.csv"),
            ("prov", "provenance.json"),
        )
    }
    prov = read_json(names["prov"])
    try:
        check_provenance(prov, spec, str(names["prov"]))
    except ProvenanceError as e:
        raise MeasureFileError(str(e)) from None
    if repeat is not None and prov.get("repeat") != repeat:
        raise _bad(names["prov"], f"records repeat {prov.get('repeat')!r}, filed under repeat {repeat}")
    if prov.get("status") == "failed":
        return prov, None, None, None
    ops = read_csv(names["ops"], MEASURE_OPS_REQUIRED, MEASURE_OPS_NUMERIC)
    check_ops(ops, names["ops"], spec, repeat)
    steps = read_csv(names["steps"], MEASURE_STEPS_REQUIRED, MEASURE_STEPS_NUMERIC)
    if steps.empty or set(steps["phase"]) != set(PHASES):
        raise _bad(names["steps"], f"phases {sorted(set(steps['phase']))}, expected {list(PHASES)}")
    ops, steps = upgrade(ops, steps)
    coll = None
    cpath = names.get("collectives")
    if cpath is not None and Path(cpath).exists():
        coll = read_csv(cpath, MEASURE_COLLECTIVES_REQUIRED, ("start_us", "end_us"), signed=("start_us", "end_us"))
    return prov, ops, steps, coll
