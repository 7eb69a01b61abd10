"""The per-config breakdown: each config's pie and, per phase, its op table and end-to-end median."""

from __future__ import annotations

import pandas as pd

from ..ops import PHASES
from ..stats import CI_PCT
from .markdown import f_ci, f_int, f_ms, f_pct, finite, md_code, md_escape, md_table, slug
from .tables import NOT_OPS


def per_config_context(t: dict, configs, present, figures: dict) -> list[dict]:
    """Per declared config: its pie, and per phase the op table and the phase's end-to-end median."""
    ops, ps, th = t["ops_summary"], t["phase_summary"], t["theory_ops"]
    per_config = []
    for cfg in configs:
        entry = {
            "name": cfg,
            "name_md": md_escape(cfg),
            "present": cfg in present,
            "pie": figures.get(("pie", cfg)),
            "anchor": "cfg-" + slug(cfg).lower(),
            "phases": [],
        }
        for phase in PHASES:
            tbl = op_table(ops, th, cfg, phase)
            row = ps[(ps["config"] == cfg) & (ps["phase"] == phase)]
            total = ""
            if len(row):
                r = row.iloc[0]
                total = (
                    f"phase end-to-end median {f_ms(r['median_ms'])} ({CI_PCT} CI "
                    f"{f_ci(r['ci_lo_ms'], r['ci_hi_ms'])}, CV {f_pct(r['cv'])}, n = {f_int(r['n'])})"
                )
            entry["phases"].append({"phase": phase, "table": md_table(tbl), "total": total})
        per_config.append(entry)
    return per_config


def op_table(ops: pd.DataFrame, theory: pd.DataFrame, cfg, phase) -> pd.DataFrame:
    """One config and phase: every op's median, CI, CV, share and flags (modeled ops show the theory's time)."""
    d = ops[(ops["config"] == cfg) & (ops["phase"] == phase)]
    th = theory[(theory["config"] == cfg) & (theory["phase"] == phase)].set_index("op") if len(theory) else None
    rows = []
    for _, r in d.iterrows():
        med = r["median_ms"]
        if r["modeled"] and th is not None and r["op"] in th.index:
            med = th.loc[r["op"], "measured_ms"]
            if isinstance(med, pd.Series):
                med = med.iloc[0]
        rows.append(
            {
                "op": md_code(r["op"]),
                "median": f_ms(med),
                CI_PCT + " CI": f_ci(r["ci_lo_ms"], r["ci_hi_ms"]),
                "CV": f_pct(r["cv"]),
                "share": f_pct(r["share"]),
                "calls": f_int(r["calls"]),
                "n": f_int(r["n"]),
                "flags": ", ".join(_op_flags(r)),
            }
        )
    return pd.DataFrame(rows)


def _op_flags(r) -> list[str]:
    """Why a reader should be careful with an op row: unstable, outliers, modeled, framework time."""
    flags = []
    if r["unstable"]:
        flags.append("unstable")
    if finite(r["n_outliers"]) and r["n_outliers"] > 0:
        flags.append(f"{f_int(r['n_outliers'])} outlier(s)")
    if r["modeled"]:
        flags.append("modeled")
    if r["op"] in NOT_OPS:
        flags.append("framework")
    return flags
