"""Stability: the least stable figures, the figures with outlier repeats, and every phase total with its CI."""

from __future__ import annotations

import pandas as pd

from ..stats import CI_PCT
from .markdown import f_ci, f_int, f_ms, f_pct, md_code, md_escape, md_table
from .tables import TARGET_PCT

STABILITY_ROWS = 10  # least stable figures shown; every row is in tables/ops_summary.csv (column unstable)


def stability_context(t: dict, present) -> dict:
    """Unstable ops (by CV), ops with outliers, and every phase total with its CI (measured configs only)."""
    ops, ps = t["ops_summary"], t["phase_summary"]
    unst = ops[ops["unstable"] & ops["config"].isin(present)].sort_values("cv", ascending=False)
    stab_rows = [
        {
            "config": md_escape(r["config"]),
            "phase": r["phase"],
            "op": md_code(r["op"]),
            "CV": f_pct(r["cv"]),
            "median": f_ms(r["median_ms"]),
            "IQR": f_ms(r["iqr_ms"]),
            "outliers": f_int(r["n_outliers"]),
            "n": f_int(r["n"]),
            "repeats for CI < " + TARGET_PCT: f_int(r["repeats_for_5pct"]),
        }
        for _, r in unst.head(STABILITY_ROWS).iterrows()
    ]
    out_rows = ops[(ops["n_outliers"].fillna(0) > 0) & ops["config"].isin(present)]
    outl = [
        {
            "config": md_escape(r["config"]),
            "phase": r["phase"],
            "op": md_code(r["op"]),
            "outliers": f_int(r["n_outliers"]),
            "n": f_int(r["n"]),
            "median": f_ms(r["median_ms"]),
            "mean": f_ms(r["mean_ms"]),
        }
        for _, r in out_rows.iterrows()
    ]
    ps_rows = [
        {
            "config": md_escape(r["config"]),
            "phase": r["phase"],
            "median": f_ms(r["median_ms"]),
            CI_PCT + " CI": f_ci(r["ci_lo_ms"], r["ci_hi_ms"]),
            "CV": f_pct(r["cv"]),
            "IQR": f_ms(r["iqr_ms"]),
            "outliers": f_int(r["n_outliers"]),
            "unstable": "**yes**" if r["unstable"] else "no",
            "repeats for CI < " + TARGET_PCT: f_int(r["repeats_for_5pct"]),
            "n": f_int(r["n"]),
        }
        for _, r in ps[ps["config"].isin(present)].iterrows()
    ]
    return dict(
        stability_table=md_table(pd.DataFrame(stab_rows)),
        stability_more=len(unst) > STABILITY_ROWS,
        outlier_table=md_table(pd.DataFrame(outl)),
        phase_table=md_table(pd.DataFrame(ps_rows)),
    )
