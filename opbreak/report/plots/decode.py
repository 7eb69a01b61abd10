"""Decode truth: the phase split per rank, and per-rank op time in both views (wall and GPU-busy)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb
from matplotlib.patches import Patch

from ...ops import OPS
from .common import no_data, op_color, save, stacked_barh

PART_COLORS = {"compute": "#1f77b4", "transfer": "#d62728", "wait": "#ff9896", "host_idle": "#bbbbbb"}
PART_NAMES = {
    "compute": "GPU busy: compute kernels (CUPTI)",
    "transfer": "collective transfer (CUPTI)",
    "wait": "collective wait for the last rank (CUPTI, upper bound)",
    "host_idle": "GPU idle: waiting for the host (wall - the rest)",
}


def phase_split(ps: pd.DataFrame, configs, phase: str, path):
    """Horizontal stacked bars per (config, rank): wall per step split into its four parts."""
    d = ps[(ps["phase"] == phase) & ps["compute_ms"].notna()]
    d = d[d["config"].isin(configs)]
    d = d.assign(order=d["config"].map({c: i for i, c in enumerate(configs)})).sort_values(["order", "rank"])
    fig, ax = plt.subplots(figsize=(9, 0.5 * max(len(d), 2) + 1.6))
    if d.empty:
        no_data(ax, "no CUPTI kernel steps (kernel_steps: 0 or no GPU)")
        save(fig, path)
        return
    y = np.arange(len(d))[::-1]
    stacked_barh(ax, y, [(d[f"{p}_per_step_ms"], PART_NAMES[p], color) for p, color in PART_COLORS.items()])
    ax.set_yticks(y, [f"{c}  rank {int(r)}" for c, r in zip(d["config"], d["rank"])], fontsize=8)
    unit = "ms per step" if phase == "decode" else "ms"
    ax.set_xlabel(f"{phase} wall time, {unit} (median over repeats; measured)")
    ax.margins(x=0.03)
    ax.set_title(f"Where a {phase} step goes, per rank: GPU busy, collectives, GPU idle for the host", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.6 / max(len(d), 2)), ncol=2, fontsize=8, frameon=False)
    save(fig, path)


def rank_ops(ro: pd.DataFrame, cfg: str, phase: str, path):
    """One config: per op, wall (solid) and GPU-busy (hatched) time of every rank."""
    d = ro[(ro["config"] == cfg) & (ro["phase"] == phase) & ro["op"].isin(OPS)]
    fig, ax = plt.subplots(figsize=(10, 3.8))
    if d.empty:
        no_data(ax)
        save(fig, path)
        return
    ops = [o for o in OPS if o in set(d["op"])]
    ranks = sorted(int(r) for r in d["rank"].unique())
    w = 0.8 / (2 * len(ranks))
    x = np.arange(len(ops))
    handles = []
    for i, r in enumerate(ranks):
        dr = d[d["rank"] == r].set_index("op").reindex(ops)
        shade = 1.0 - 0.35 * i
        for j, (col, hatch) in enumerate((("wall_ms", None), ("kernel_ms", "///"))):
            off = (2 * i + j - len(ranks) + 0.5) * w
            colors = [_shade(op_color(o), shade) for o in ops]
            ax.bar(
                x + off,
                dr[col].fillna(0),
                w,
                color=colors if hatch is None else "white",
                edgecolor=colors,
                hatch=hatch,
                linewidth=0.8,
            )
            grey = _shade("#444444", shade)
            view = "wall (events)" if hatch is None else "GPU-busy (CUPTI)"
            handles.append(
                Patch(
                    facecolor=grey if hatch is None else "white", edgecolor=grey, hatch=hatch, label=f"rank {r}: {view}"
                )
            )
    ax.set_xticks(x, ops, rotation=35, ha="right", fontsize=8)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylabel(f"{phase} time, ms (symlog)")
    ax.set_title(f"{cfg} {phase}: every rank, wall vs GPU-busy per op (measured; lighter = higher rank)", fontsize=10)
    ax.legend(handles=handles, fontsize=7, ncol=len(ranks), frameon=False)
    save(fig, path)


def _shade(hex_color: str, k: float):
    """The colour lightened towards white (k = 1: unchanged): a lighter shade per higher rank."""
    return tuple(1 - (1 - c) * k for c in to_rgb(hex_color))
