"""The decode probe: one decode step split on the host clock, per config and rank."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .common import no_data, save, stacked_barh

COLORS = ["#8c564b", "#ff7f0e", "#d62728", "#bbbbbb", "#2ca02c"]


def host_split(mid: pd.DataFrame, parts: list, path):
    """Horizontal stacked bars per (config, rank): the probed step's host split; the plain step (black tick)
    and the layer stack replayed from a CUDA graph (blue bar under it) for comparison."""
    d = mid[mid["step_ms"].notna()]
    fig, ax = plt.subplots(figsize=(9.5, 0.55 * max(len(d), 2) + 1.8))
    if d.empty:
        no_data(ax, "no probed decode steps (decode_graph: false)")
        save(fig, path)
        return
    y = np.arange(len(d))[::-1]
    stacked_barh(ax, y + 0.12, [(d[col], label, color) for (col, label), color in zip(parts, COLORS)], height=0.55)
    ax.barh(y - 0.3, d["replay_ms"].fillna(0), height=0.18, color="#1f77b4", label="layer stack, CUDA-graph replay")
    ax.scatter(d["plain_ms"], y + 0.12, marker="|", s=400, color="black", label="plain step (timed run)", zorder=3)
    if "near_plain_ms" in d:
        ax.scatter(
            d["near_plain_ms"], y + 0.12, marker="D", s=28, color="black", label="plain step (just before)", zorder=3
        )
    ax.set_yticks(y, [f"{c}  rank {int(r)}  ctx {int(x)}" for c, r, x in zip(d["config"], d["rank"], d["context_len"])])
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("ms per decode step (host clock; median over repeats; measured)")
    ax.set_title("One decode step from the host's side, and its layer stack without the host", fontsize=10)
    ax.margins(x=0.03)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1 - 0.3 / max(len(d), 2)), ncol=2, fontsize=8, frameon=False)
    save(fig, path)
