"""Figures of predict mode. Predicted values are always hatched and titled "predicted".

Why a module of its own: a predicted number must never look like a measured one, so
every figure here draws predictions with hatching and a lighter face, and measured
values (where a config has them) solid beside them.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from ...ops import OPS, PHASES
from .common import OTHER_COLOR, PIE_LABEL_MIN, PIE_MIN_SHARE, op_color, save, short

HATCH = "//"


def predicted_pie(pred: pd.DataFrame, config: str, path):
    """Prefill and decode pies of predicted op shares for one config (hatched: predicted)."""
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 5.4))
    shown = []
    order = {o: i for i, o in enumerate(OPS)}
    for ax, phase in zip(axes, PHASES):
        d = pred[(pred["config"] == config) & (pred["phase"] == phase) & (pred["predicted_ms"] > 0)]
        d = d.assign(o=d["op"].map(order)).sort_values("o")
        total = float(d["predicted_ms"].sum())
        if total <= 0:
            ax.axis("off")
            continue
        big = d[d["predicted_ms"] / total >= PIE_MIN_SHARE]
        sizes = list(big["predicted_ms"]) + [total - float(big["predicted_ms"].sum())]
        colors = [op_color(o) for o in big["op"]] + [OTHER_COLOR]
        labels = [f"{100 * v / total:.1f}%" if v / total >= PIE_LABEL_MIN else "" for v in sizes]
        wedges, texts = ax.pie(
            sizes,
            colors=colors,
            labels=labels,
            startangle=90,
            counterclock=False,
            labeldistance=0.72,
            wedgeprops=dict(linewidth=1, edgecolor="white", alpha=0.75),
        )
        for w in wedges:
            w.set_hatch(HATCH)
        for t in texts:
            t.set_fontsize(9)
        ax.set_title(f"{phase} (predicted)\n{total:,.0f} ms", fontsize=11)
        shown += [o for o in big["op"] if o not in shown]
    handles = [Patch(facecolor=op_color(o), hatch=HATCH, edgecolor="white", label=o) for o in shown]
    handles.append(Patch(facecolor=OTHER_COLOR, label=f"other (< {100 * PIE_MIN_SHARE:.0f}% each)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)), fontsize=9, frameon=False)
    fig.suptitle(
        f"PREDICTED operator shares: {short(config, 50)}\n(roofline time / efficiency: predictions, not measurements)",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    save(fig, path)


def predicted_totals(phases: pd.DataFrame, configs, path):
    """Phase totals per config: measured (solid, where measured) beside predicted (hatched), log scale."""
    configs = [c for c in configs if c in set(phases["config"])]
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 1.1 * len(configs) + 4), 5.2))
    x = np.arange(len(configs))
    for ax, phase in zip(axes, PHASES):
        d = phases[phases["phase"] == phase].set_index("config").reindex(configs)
        meas, pred = d["measured_ms"].to_numpy(float), d["predicted_ms"].to_numpy(float)
        ran = d["predicted_ran_ms"].to_numpy(float)
        ax.set_yscale("log")
        ax.bar(x - 0.2, np.where(meas > 0, meas, np.nan), 0.4, color="#4c72b0", label="measured (median)")
        ax.bar(
            x + 0.2,
            np.where(ran > 0, ran, np.nan),
            0.4,
            color="#dd8452",
            alpha=0.6,
            hatch=HATCH,
            edgecolor="#333333",
            linewidth=0.5,
            label="PREDICTED",
        )
        extra = np.where((pred > ran) & (ran > 0), pred - ran, np.nan)  # emulated TP: collectives not run
        if np.isfinite(extra).any():
            ax.bar(
                x + 0.2,
                extra,
                0.4,
                bottom=ran,
                color="#f5d5bf",
                hatch="..",
                edgecolor="#999999",
                linewidth=0.5,
                label="PREDICTED modeled collectives (not run by emulated TP)",
            )
        vals = np.concatenate([meas[meas > 0], pred[pred > 0]])
        if vals.size:
            ax.set_ylim(vals.min() / 3, vals.max() * 1.5)
        for i, v in enumerate(meas):
            if not v > 0:
                ax.text(
                    i - 0.2,
                    0.02,
                    "not measured",
                    transform=ax.get_xaxis_transform(),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    color="#666666",
                    rotation=90,
                )
        ax.set_xticks(x, [short(c, 22) for c in configs], rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("phase time per rank [ms]")
        ax.set_title(f"{phase}: measured vs PREDICTED")
        ax.grid(axis="y", alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    for h, lab in zip(*axes[1].get_legend_handles_labels()):
        if lab not in labels:
            handles.append(h)
            labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    save(fig, path)
