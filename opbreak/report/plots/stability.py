"""Repeat-to-repeat stability (Stability): CV per op and config, and each repeat's phase time against the median."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ...ops import PHASES
from ...stats import mad_outliers
from ..markdown import finite
from .common import no_data, save, short
from .ops import op_grid, style_op_grid


def stability_cv(ops_summary: pd.DataFrame, unstable_cv: float, path, configs=None):
    """Heatmap of CV (%) per op (rows) and config/phase (columns); * marks unstable."""
    d = ops_summary[np.isfinite(ops_summary["cv"])] if len(ops_summary) else ops_summary
    if d.empty:
        fig, ax = plt.subplots(figsize=(6, 3))
        no_data(ax, "no repeat statistics (need >= 2 repeats)")
        save(fig, path)
        return
    piv, flag, cols = op_grid(d, configs or sorted(d["config"].unique()), "cv", "unstable")
    annot = piv.map(lambda v: "" if not np.isfinite(v) else f"{100 * v:.0f}")
    annot = annot.where(~flag.fillna(False).astype(bool), annot + "*")
    fig, ax = plt.subplots(figsize=(1.6 + 0.78 * len(cols), 1.2 + 0.36 * len(piv)))
    sns.heatmap(
        100 * piv,
        annot=annot,
        fmt="",
        cmap="rocket_r",
        vmin=0,
        vmax=max(4 * 100 * unstable_cv, 1),
        cbar_kws={"label": "CV across repeats [%]"},
        linewidths=0.5,
        linecolor="white",
        ax=ax,
        annot_kws={"fontsize": 8},
    )
    style_op_grid(ax, f"Repeat-to-repeat CV per op [%]  (* = unstable: CV > {100 * unstable_cv:.0f}%)")
    save(fig, path)


def repeat_spread(phase_totals_df: pd.DataFrame, phase_summary: pd.DataFrame, configs, path):
    """Each repeat's phase time relative to the config's median; outlier repeats in red."""
    d = phase_totals_df.merge(phase_summary[["config", "phase", "median_ms"]], on=["config", "phase"])
    present = [c for c in configs if c in set(d["config"])]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.9 + 0.45 * max(3, len(present))), squeeze=False)
    for ax, phase in zip(axes[0], PHASES):
        p = d[d["phase"] == phase]
        cf = [c for c in present if c in set(p["config"])]
        if not cf:
            no_data(ax, f"{phase}: no data")
            continue
        for i, c in enumerate(cf):
            v = p.loc[p["config"] == c, "e2e_ms"].to_numpy(float)
            med = p.loc[p["config"] == c, "median_ms"].iloc[0]
            rel = 100 * (v / med - 1)
            out = mad_outliers(v) if len(v) >= 3 else np.zeros(len(v), bool)
            yy = i + (np.linspace(-0.18, 0.18, len(v)) if len(v) > 1 else np.zeros(len(v)))
            ax.scatter(rel[~out], yy[~out], color="#333333", s=16)
            reps = p.loc[p["config"] == c, "repeat"].to_numpy()
            for xv, yv, rp in zip(rel, yy, reps):
                ax.annotate(
                    f"r{int(rp)}" if finite(rp) else "r?",
                    (xv, yv),
                    xytext=(4, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=7,
                    color="#666666",
                )
            if out.any():
                ax.scatter(rel[out], yy[out], color="#d00000", s=30, marker="x", label="outlier (MAD)")
        ax.axvline(0, color="#888888", lw=1)
        ax.set_yticks(np.arange(len(cf)), [short(c, 28) for c in cf])
        ax.invert_yaxis()
        ax.set_xlabel("repeat vs median of repeats [%]  (rN: repeat id)")
        ax.set_title(f"{phase}: spread of repeats")
        ax.grid(axis="x", alpha=0.3)
        h, lab = ax.get_legend_handles_labels()
        if h:
            ax.legend(h[:1], lab[:1], fontsize=8)
    fig.tight_layout()
    save(fig, path)
