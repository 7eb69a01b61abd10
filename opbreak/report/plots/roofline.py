"""The roofline (Theory): each op's achieved throughput against its intensity, and its efficiency per config."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch

from ...ops import PHASES, order_ops
from ..markdown import finite
from .common import PHASE_MARKERS, no_data, op_color, save, short
from .ops import op_grid, style_op_grid


def roofline(theory_ops: pd.DataFrame, ceilings: pd.DataFrame, configs, path):
    """Small multiples, one per config: achieved TFLOP/s vs arithmetic intensity with
    the config's ceilings (compute roof and memory slope; datasheet solid, measured dashed)."""
    present = [c for c in configs if c in set(theory_ops["config"])] if len(theory_ops) else []
    n = max(1, len(present))
    ncol = min(2, n)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.2 * ncol, 4.6 * nrow), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    if not present:
        no_data(axes[0, 0], "no theory rows")
        save(fig, path)
        return
    used_ops = set()
    for ax, cfg in zip(axes.flat, present):
        t = _placed_ops(theory_ops, cfg)
        c = ceilings[ceilings["config"] == cfg] if len(ceilings) else ceilings
        if t.empty:
            no_data(ax, "no op with FLOPs and bytes")
            ax.set_title(short(cfg, 50))
            continue
        _draw_roofs(ax, c, t)
        used_ops.update(_draw_ops(ax, t))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity [FLOP/byte]")
        ax.set_ylabel("achieved [TFLOP/s]")
        ax.set_title(short(cfg, 50))
        ax.grid(alpha=0.3, which="both", lw=0.4)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    _roofline_legend(fig, used_ops)
    fig.tight_layout()
    save(fig, path)


def _placed_ops(theory_ops: pd.DataFrame, cfg) -> pd.DataFrame:
    """A config's ops that have a place on log axes: positive intensity and throughput (not collectives)."""
    t = theory_ops[(theory_ops["config"] == cfg)]
    return t[
        np.isfinite(t["intensity"])
        & (t["intensity"] > 0)
        & np.isfinite(t["achieved_tflops"])
        & (t["achieved_tflops"] > 0)
    ]


def _draw_roofs(ax, c: pd.DataFrame, t: pd.DataFrame):
    """One roof per ceilings row (datasheet solid, measured dashed), over a span that shows the ridge and every op."""
    ridge = [
        r.peak_tflops * 1e3 / r.mem_bw_GBps
        for r in c.itertuples()
        if finite(r.peak_tflops) and finite(r.mem_bw_GBps) and r.mem_bw_GBps > 0
    ]
    lo_x = min([t["intensity"].min()] + [x / 10 for x in ridge]) / 2
    hi_x = max([t["intensity"].max()] + [x * 3 for x in ridge]) * 2
    xs = np.geomspace(lo_x, hi_x, 200)
    for row in c.itertuples():
        ls = "-" if str(row.source) == "datasheet" else "--"
        if np.isfinite(row.peak_tflops) and np.isfinite(row.mem_bw_GBps):
            roof = np.minimum(row.peak_tflops, row.mem_bw_GBps * xs / 1e3)
            ax.plot(
                xs,
                roof,
                color="#333333",
                ls=ls,
                lw=1.3,
                label=f"{row.source}: {row.peak_tflops:.4g} TFLOP/s, {row.mem_bw_GBps:.4g} GB/s",
            )


def _draw_ops(ax, t: pd.DataFrame) -> set:
    """Each op as a point in its colour, the marker saying the phase; returns the ops drawn."""
    used = set()
    for phase in PHASES:
        p = t[t["phase"] == phase]
        ax.scatter(
            p["intensity"],
            p["achieved_tflops"],
            c=[op_color(o) for o in p["op"]],
            marker=PHASE_MARKERS[phase],
            s=55,
            edgecolor="black",
            linewidth=0.5,
            zorder=5,
        )
        used.update(p["op"])
    return used


def _roofline_legend(fig, used_ops):
    """One legend for every panel: op colours, then phase markers."""
    handles = [Patch(facecolor=op_color(o), edgecolor="black", label=o) for o in order_ops(used_ops)]
    handles += [
        plt.Line2D(
            [],
            [],
            marker=PHASE_MARKERS[p],
            color="w",
            markeredgecolor="black",
            markerfacecolor="#bbbbbb",
            markersize=8,
            label=p,
        )
        for p in PHASES
    ]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=9)


def efficiency(theory_ops: pd.DataFrame, configs, path):
    """Heatmap of roofline efficiency (t_bound / measured, %) per op and config/phase."""
    d = theory_ops[np.isfinite(theory_ops["efficiency"])] if len(theory_ops) else theory_ops
    if d.empty:
        fig, ax = plt.subplots(figsize=(6, 3))
        no_data(ax, "no efficiency rows")
        save(fig, path)
        return
    piv, bound, cols = op_grid(d, configs, "efficiency", "bound")
    ab = {"compute": "C", "memory": "M", "link": "L"}
    annot = pd.DataFrame("", index=piv.index, columns=cols)
    for i in piv.index:
        for j in cols:
            v = piv.at[i, j]
            if np.isfinite(v):
                annot.at[i, j] = f"{100 * v:.3g}\n{ab.get(bound.at[i, j], '')}"
    fig, ax = plt.subplots(figsize=(1.6 + 0.8 * len(cols), 1.2 + 0.45 * len(piv)))
    sns.heatmap(
        100 * piv.clip(upper=1.0),
        annot=annot,
        fmt="",
        cmap="viridis",
        vmin=0,
        vmax=100,
        ax=ax,
        cbar_kws={"label": "efficiency = roofline time / measured [%]"},
        linewidths=0.5,
        linecolor="white",
        annot_kws={"fontsize": 7},
    )
    style_op_grid(ax, "Roofline efficiency per op [%]  (letter: bound resource C=compute, M=memory, L=link)")
    save(fig, path)
