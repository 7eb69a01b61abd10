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

from ..contract import BOOL_COLS, TABLES, TEXT_COLS, THEORY_TABLES
from ..ops import HOST_OPS, PHASE_OF
from ..stats import repeats_for_ci

# File shown in evidence rows (relative to the repository root).
TABLE_PATHS = {
    k: ("results/theory/" if k in THEORY_TABLES else "results/aggregate/") + f for k, (f, _) in TABLES.items()
}


def _default(fn, name):
    return inspect.signature(fn).parameters[name].default


# The statistics' own settings, so no level or target is typed into the report.
TARGET_PCT = f"{100 * _default(repeats_for_ci, 'rel_halfwidth'):.0f}%"
NOT_OPS = set(HOST_OPS)  # framework time (opbreak.ops)


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
