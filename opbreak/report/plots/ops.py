"""Per-operator figures: the seed's pies of op shares per config, and the op x config grids of the heatmaps."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb
from matplotlib.patches import Patch

from ...ops import OPS, PHASES, order_ops
from .common import OTHER_COLOR, PIE_LABEL_MIN, PIE_MIN_SHARE, fmt_ms, no_data, op_color, save, short, wrap


# --------------------------------------------------------------------------- pies
def pie_config(ops_summary: pd.DataFrame, modeled: pd.DataFrame, config: str, path):
    """The seed's figure: prefill and decode pies of op shares for one config.

    Slices are op medians (ops_summary.median_ms); labels are the table's ``share``
    (op median / phase median). Modeled ops (no measured time) are drawn hatched
    with their theory time and no percentage. Slices under PIE_MIN_SHARE of the
    drawn total fold into one light "other" slice; the ops in it are listed under
    that phase's pie.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 5.4))
    legend_ops = []
    any_modeled = False
    for ax, phase in zip(axes, PHASES):
        d = ops_summary[(ops_summary["config"] == config) & (ops_summary["phase"] == phase)]
        d = d[np.isfinite(d["median_ms"]) & (d["median_ms"] > 0)]
        vals = _slices(d, modeled, config, phase)
        if not vals:
            no_data(ax, f"{phase}: no data")
            continue
        big, small, total = _fold_small(vals)
        any_modeled = _draw_pie(ax, big, small, total) or any_modeled
        _title_pie(ax, phase, d, small)
        legend_ops += [tt[0] for tt in big if tt[0] not in legend_ops]
    _pie_legend(fig, legend_ops, any_modeled)
    fig.suptitle(f"Operator share of phase time: {short(config, 60)}", fontsize=12, y=1.0)
    fig.subplots_adjust(left=0.02, right=0.9, top=0.86, wspace=0.08)
    save(fig, path)


def _slices(d: pd.DataFrame, modeled: pd.DataFrame, config: str, phase: str) -> list[tuple]:
    """(op, ms, share, modeled) per slice: measured ops with their table share, then modeled ops (no share)."""
    vals = [(r.op, float(r.median_ms), float(r.share), False) for r in d.itertuples()]
    m = modeled[(modeled["config"] == config) & (modeled["phase"] == phase)] if len(modeled) else modeled
    for r in m.itertuples() if len(m) else []:
        if np.isfinite(r.measured_ms) and r.measured_ms > 0:
            vals.append((r.op, float(r.measured_ms), math.nan, True))
    return vals


def _fold_small(vals: list[tuple]):
    """The slices in op order, split into those drawn alone and those under PIE_MIN_SHARE (one "other" slice)."""
    total = sum(v for _, v, _, _ in vals)
    order = {o: i for i, o in enumerate(OPS)}
    vals = sorted(vals, key=lambda t: order.get(t[0], 99))
    big = [t for t in vals if t[1] / total >= PIE_MIN_SHARE]
    small = [t for t in vals if t[1] / total < PIE_MIN_SHARE]
    return big, small, total


def _draw_pie(ax, big, small, total) -> bool:
    """The wedges, modeled ones hatched, percentages on the large ones; True when a wedge is modeled."""
    sizes = [t[1] for t in big]
    colors = [op_color(t[0]) for t in big]
    labels = [
        "" if is_mod or not np.isfinite(share) or v / total < PIE_LABEL_MIN else f"{100 * share:.1f}%"
        for _op, v, share, is_mod in big
    ]
    if small:
        sizes.append(sum(t[1] for t in small))
        colors.append(OTHER_COLOR)
        labels.append("")
    wedges, _ = ax.pie(
        sizes, colors=colors, startangle=90, counterclock=False, wedgeprops=dict(linewidth=1, edgecolor="white")
    )
    any_modeled = False
    for w, tt in zip(wedges, big):
        if tt[3]:
            w.set_hatch("//")
            any_modeled = True
    if small:
        wedges[-1].set_edgecolor("#bbbbbb")
    for w, lab in zip(wedges, labels):
        if lab:
            _label_wedge(ax, w, lab)
    return any_modeled


def _label_wedge(ax, w, lab):
    """A percentage inside its wedge, white on dark colours and black on light ones."""
    ang = np.deg2rad((w.theta2 + w.theta1) / 2)
    x, y = 0.68 * np.cos(ang), 0.68 * np.sin(ang)
    rgb = to_rgb(w.get_facecolor())
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    ax.text(
        x, y, lab, ha="center", va="center", fontsize=10, color="white" if lum < 0.55 else "black", fontweight="bold"
    )


def _title_pie(ax, phase, d, small):
    """The phase and its median above the pie, and the ops folded into "other" under it."""
    ph = d["phase_median_ms"].dropna()
    title = phase if ph.empty else f"{phase}\n(phase median {fmt_ms(ph.iloc[0])} ms)"
    ax.set_title(title, fontsize=11)
    ax.set_aspect("equal")
    if small:
        names = wrap(", ".join(order_ops([tt[0] for tt in small])), 44)
        ax.text(
            0.5,
            -0.04,
            f"other (each < {100 * PIE_MIN_SHARE:.0f}%):\n{names}",
            transform=ax.transAxes,
            ha="center",
            va="top",
            fontsize=8.5,
            color="#444444",
        )


def _pie_legend(fig, legend_ops, any_modeled):
    """One legend for both pies: the drawn ops in op order, "other", and the hatch of modeled ops if any."""
    handles = [Patch(facecolor=op_color(o), edgecolor="white", label=o) for o in order_ops(legend_ops)]
    handles.append(Patch(facecolor=OTHER_COLOR, edgecolor="#bbbbbb", label="other (listed under the pie)"))
    if any_modeled:
        handles.append(Patch(facecolor="white", edgecolor="#333333", hatch="//", label="modeled (theory time)"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.9, 0.5), frameon=False, fontsize=9)


# --------------------------------------------------------------------------- op x config grids (heatmaps)
def op_grid(d: pd.DataFrame, configs, value: str, extra: str):
    """Op x "config phase" grids of ``value`` and ``extra``, ops in vocabulary order, columns in config order."""
    order = {c: i for i, c in enumerate(configs)}
    d = d.assign(
        col=d["config"].map(lambda c: short(c, 22)) + " " + d["phase"],
        _o=d["config"].map(lambda c: order.get(c, 999)) * 10
        + d["phase"].map(lambda p: PHASES.index(p) if p in PHASES else 9),
    )
    cols = list(dict.fromkeys(d.sort_values("_o")["col"]))
    piv = d.pivot_table(index="op", columns="col", values=value, aggfunc="first")
    piv = piv.reindex(index=order_ops(piv.index), columns=cols)
    other = d.pivot_table(index="op", columns="col", values=extra, aggfunc="first").reindex(
        index=piv.index, columns=cols
    )
    return piv, other, cols


def style_op_grid(ax, title):
    """Op labels in their figure colours, rotated column labels, the title."""
    for t in ax.get_yticklabels():
        t.set_color(op_color(t.get_text()) if t.get_text() not in ("host_gap", "unattributed") else "#333333")
        t.set_fontweight("bold")
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(title)
    plt.setp(ax.get_xticklabels(), rotation=35, ha="right", rotation_mode="anchor", fontsize=8)
