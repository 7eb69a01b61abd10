"""Phase-level time per config (Decode and phase totals): decode step latency against context, phase totals."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker

from ...ops import PHASES
from .common import CI, config_colors, no_data, save, short


def decode_steps(steps: pd.DataFrame, theory_steps: pd.DataFrame, configs, path):
    """Decode step latency vs context length: median over repeats, band = min..max."""
    fig, ax = plt.subplots(figsize=(9, 4.8))
    d = steps[steps["phase"] == "decode"] if len(steps) else steps
    cols = config_colors(configs)
    drawn = has_bound = False
    for cfg in configs:
        s = d[d["config"] == cfg]
        if s.empty:
            continue
        g = s.groupby("context_len")["e2e_ms"].agg(["median", "min", "max"]).reset_index()
        ax.plot(g["context_len"], g["median"], color=cols[cfg], lw=1.4, label=short(cfg, 30))
        ax.fill_between(g["context_len"], g["min"], g["max"], color=cols[cfg], alpha=0.18, lw=0)
        t = theory_steps[theory_steps["config"] == cfg] if len(theory_steps) else theory_steps
        if len(t) and np.isfinite(t["t_bound_ms"]).any():
            t = t.sort_values("context_len")
            ax.plot(t["context_len"], t["t_bound_ms"], color=cols[cfg], lw=1.2, ls="--")
            has_bound = True
        drawn = True
    if not drawn:
        no_data(ax, "no decode steps")
    else:
        ax.set_xlabel("context length (tokens in the KV cache)")
        ax.set_ylabel("decode step latency [ms]")
        lines = [ln.get_ydata() for ln in ax.get_lines()]
        ymin = min((np.nanmin(v) for v in lines if len(v)), default=1)
        ymax = max((np.nanmax(v) for v in lines if len(v)), default=1)
        if ymin > 0 and ymax / ymin > 20:  # roofline far below measured: log scale keeps both readable
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        handles.append(plt.Line2D([], [], color="#333333", lw=1.4, label="solid: measured (median)"))
        if has_bound:
            handles.append(plt.Line2D([], [], color="#333333", lw=1.2, ls="--", label="dashed: roofline bound"))
        ax.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        ax.set_title("Decode step latency vs context length (line: median of repeats, band: min-max)")
    save(fig, path)


def phase_totals(phase_summary: pd.DataFrame, phase_totals_df: pd.DataFrame, configs, path):
    """Prefill and decode end-to-end per config: median bar, CI whisker, one dot per repeat."""
    present = [c for c in configs if c in set(phase_summary["config"])]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.9 + 0.45 * max(3, len(present))), squeeze=False)
    cols = config_colors(configs)
    for ax, phase in zip(axes[0], PHASES):
        s = phase_summary[phase_summary["phase"] == phase].set_index("config")
        cf = [c for c in present if c in s.index]
        if not cf:
            no_data(ax, f"{phase}: no data")
            continue
        y = np.arange(len(cf))
        med = s.loc[cf, "median_ms"].to_numpy(float)
        err = np.nan_to_num(
            np.vstack([med - s.loc[cf, "ci_lo_ms"].to_numpy(float), s.loc[cf, "ci_hi_ms"].to_numpy(float) - med])
        )
        ax.barh(y, med, color=[cols[c] for c in cf], alpha=0.75, xerr=np.clip(err, 0, None), capsize=3)
        t = phase_totals_df[phase_totals_df["phase"] == phase]
        for i, c in enumerate(cf):
            v = t.loc[t["config"] == c, "e2e_ms"].to_numpy(float)
            ax.scatter(
                v,
                np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)) if len(v) > 1 else [i] * len(v),
                color="black",
                s=12,
                zorder=5,
            )
        ax.set_yticks(y, [short(c, 28) for c in cf])
        ax.invert_yaxis()
        ax.set_xlabel(f"phase end-to-end [ms]  (bar: median, whisker: {CI}, dots: repeats)")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(5))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1e4 else f"{v:g}"))
        ax.set_title(phase)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save(fig, path)
