"""The table contract: which CSVs the report reads, their columns and types.

:func:`read_tables` is the report's only reader. Missing or empty files give empty
tables with the contract's columns, so a failed or partial study still renders
(and says what is missing) instead of crashing.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..ops import FRAMEWORK_OPS, PHASE_OF, UNATTRIBUTED
from ..stats import repeats_for_ci
from .decode import DECODE_BOOL_COLS, DECODE_TABLES
from .predict import PREDICT_TABLES, PREDICT_TEXT_COLS

STATS_COLS = [
    "n",
    "median_ms",
    "mean_ms",
    "std_ms",
    "iqr_ms",
    "cv",
    "ci_lo_ms",
    "ci_hi_ms",
    "n_outliers",
    "unstable",
    "repeats_for_5pct",
]
TABLES = {
    "ops_summary": (
        "ops_summary.csv",
        [
            "config",
            "phase",
            "op",
            *STATS_COLS,
            "calls",
            "modeled",
            "modeled_bytes",
            "phase_median_ms",
            "share",
            "layer_scale",
        ],
    ),
    "phase_summary": ("phase_summary.csv", ["config", "phase", *STATS_COLS]),
    "phase_totals": ("phase_totals.csv", ["config", "repeat", "phase", "e2e_ms", "steps", "phase_added_ms"]),
    "ops_repeats": ("ops_repeats.csv", ["config", "repeat", "rank", "phase", "op", "time_ms", "calls", "modeled"]),
    "steps": ("steps.csv", ["config", "repeat", "phase", "step", "context_len", "e2e_ms"]),
    "theory_ops": (
        "ops.csv",
        [
            "config",
            "phase",
            "op",
            "flops",
            "bytes",
            "comm_bytes",
            "calls_theory",
            "intensity",
            "t_compute_ms",
            "t_memory_ms",
            "t_link_ms",
            "t_bound_ms",
            "bound",
            "measured_ms",
            "modeled",
            "achieved_tflops",
            "achieved_GBps",
            "efficiency",
            "peak_tflops",
            "mem_bw_GBps",
            "link_GBps",
        ],
    ),
    "pairs": (
        "pairs.csv",
        [
            "label",
            "a",
            "b",
            "phase",
            "op",
            "view",
            "time_a_ms",
            "time_b_ms",
            "speedup",
            "speedup_lo",
            "speedup_hi",
            "bound",
            "resource_ratio",
            "theory_speedup",
            "measured_over_theory",
            "flagged",
            "modeled",
        ],
    ),
    "failures": ("failures.csv", ["config", "repeat", "error", "path"]),
    "vanilla": ("vanilla_vs_exact.csv", ["model", "component", "vanilla_flops", "exact_flops", "ratio"]),
    "allreduce": (
        "allreduce.csv",
        [
            "config",
            "kind",
            "n",
            "size_bytes",
            "measured_ms",
            "model_ms",
            "alpha_us",
            "bw_GBps",
            "source",
            "t_latency_ms",
            "t_bandwidth_ms",
            "phase",
        ],
    ),
    "decode_steps": ("decode_steps.csv", ["config", "step", "context_len", "t_bound_ms", "measured_ms"]),
    "ceilings": ("ceilings.csv", ["config", "gpu", "peak_tflops", "mem_bw_GBps", "link_GBps", "source"]),
}
TABLES.update(PREDICT_TABLES)  # predict mode: results/theory/predicted*.csv, efficiencies.csv, seed_claims.csv
TABLES.update(DECODE_TABLES)  # decode truth: results/aggregate/{rank_ops,collectives,phase_split,capture_cost}.csv
# File shown in evidence rows (relative to the repository root).
THEORY_TABLES = ("theory_ops", "pairs", "vanilla", "allreduce", "decode_steps", "ceilings", *PREDICT_TABLES)
TABLE_PATHS = {
    k: ("results/theory/" if k in THEORY_TABLES else "results/aggregate/") + f for k, (f, _) in TABLES.items()
}
BOOL_COLS = ("unstable", "modeled", "flagged") + DECODE_BOOL_COLS
TEXT_COLS = (
    "config",
    "phase",
    "op",
    "view",
    "label",
    "a",
    "b",
    "bound",
    "model",
    "component",
    "kind",
    "source",
    "gpu",
    "error",
    "path",
) + PREDICT_TEXT_COLS


def _default(fn, name):
    return inspect.signature(fn).parameters[name].default


# The statistics' own settings, so no level or target is typed into the report.
TARGET_PCT = f"{100 * _default(repeats_for_ci, 'rel_halfwidth'):.0f}%"
NOT_OPS = set(FRAMEWORK_OPS) | {UNATTRIBUTED}


def _bool(s: pd.Series) -> pd.Series:
    if s.dtype == bool:
        return s
    return s.map(lambda v: str(v).strip().lower() in ("true", "1", "yes"))


def normalize(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Give a table its contract columns (missing ones NaN), typed booleans and text keys."""
    df = df.copy()
    if name == "vanilla" and "vanilla_flops" not in df and "seed_flops" in df:
        df = df.rename(columns={"seed_flops": "vanilla_flops"})
    for c in TABLES[name][1]:
        if c not in df:
            df[c] = np.nan
    for c in BOOL_COLS:
        if c in df:
            df[c] = _bool(df[c].fillna(False))
    for c in TEXT_COLS:
        if c in df:
            df[c] = df[c].map(lambda v: "" if pd.isna(v) else str(v)).astype(object)
    for c in TABLES[name][1]:
        if c not in TEXT_COLS and c not in BOOL_COLS:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df


def read_tables(paths: dict) -> dict:
    """paths: table name -> CSV path (+ 'provenance' -> JSON). Missing or empty files give empty tables."""
    out = {}
    for name, (_, cols) in TABLES.items():
        p = paths.get(name)
        df = pd.DataFrame(columns=cols)
        if p and Path(p).exists() and Path(p).stat().st_size > 0:
            try:
                df = pd.read_csv(p, keep_default_na=True, dtype={c: str for c in TEXT_COLS})
            except pd.errors.EmptyDataError:
                pass
        out[name] = normalize(name, df)
    out["provenance"] = _read_provenance(paths.get("provenance"))
    return out


def _read_provenance(p) -> list:
    """The per-repeat provenance records; a missing or broken file gives none (the report says so)."""
    prov = []
    if p and Path(p).exists():
        try:
            prov = json.loads(Path(p).read_text() or "[]")
        except json.JSONDecodeError:
            prov = []
    return prov if isinstance(prov, list) else [prov]


def phase_sort(df):
    """Rows in phase order (prefill before decode), not alphabetical."""
    return df.assign(_p=df["phase"].map(PHASE_OF)).sort_values(["_p"]).drop(columns="_p")
