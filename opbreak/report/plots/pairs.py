"""A declared pair A vs B (Comparisons): per-op times side by side, and per-op speedups against the roofline."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.patches import Patch

from ...ops import PHASES, order_ops
from .common import CI, no_data, op_color, save, short

END_TO_END_COLOR = "#555555"
SPEEDUP_TICKS = sorted({2.0**k for k in range(-10, 11)} | {0.75, 1.5, 3.0, 6.0, 12.0})


def pair_bars(ops_summary: pd.DataFrame, a: str, b: str, label: str, path):
    """Per-op median time of A (solid) and B (hatched), CI whiskers, per phase."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.9 + 0.42 * _n_ops(ops_summary, [a, b])), squeeze=False)
    for ax, phase in zip(axes[0], PHASES):
        d = ops_summary[(ops_summary["phase"] == phase) & ops_summary["config"].isin([a, b])]
        d = d[np.isfinite(d["median_ms"])]
        if d.empty:
            no_data(ax, f"{phase}: no data")
            continue
        ops = order_ops(d["op"].unique())
        y = np.arange(len(ops))
        h = 0.38
        for cfg, off, hatch, alpha in [(a, -h / 2, None, 1.0), (b, h / 2, "///", 0.55)]:
            sub = d[d["config"] == cfg].set_index("op")
            vals = np.array([sub["median_ms"].get(o, np.nan) for o in ops], float)
            lo = np.array([sub["ci_lo_ms"].get(o, np.nan) for o in ops], float)
            hi = np.array([sub["ci_hi_ms"].get(o, np.nan) for o in ops], float)
            err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
            err = np.nan_to_num(err)
            ax.barh(
                y + off,
                np.nan_to_num(vals),
                height=h,
                color=[op_color(o) for o in ops],
                alpha=alpha,
                hatch=hatch,
                edgecolor="#333333",
                linewidth=0.5,
                xerr=err,
                ecolor="#222222",
                capsize=2,
            )
        ax.set_yticks(y, ops)
        ax.invert_yaxis()
        vmax, vmin = d["median_ms"].max(), d.loc[d["median_ms"] > 0, "median_ms"].min()
        if vmin > 0 and vmax / vmin > 200:
            ax.set_xscale("log")
        ax.set_xlabel(f"median time per phase [ms] ({CI})")
        ax.set_title(phase)
        ax.grid(axis="x", alpha=0.3)
    handles = [
        Patch(facecolor="#999999", edgecolor="#333333", label=f"A: {short(a)}"),
        Patch(facecolor="#999999", alpha=0.55, hatch="///", edgecolor="#333333", label=f"B: {short(b)}"),
    ]
    fig.legend(handles=handles, loc="upper center", ncol=2, bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.suptitle(short(label, 80), y=1.06)
    fig.tight_layout()
    save(fig, path)


def _n_ops(df, configs):
    """Rows of the tallest phase panel (at least 3): the figure's height follows it."""
    return max(3, df[df["config"].isin(configs)].groupby("phase")["op"].nunique().max() if len(df) else 3)


def pair_speedup(pairs: pd.DataFrame, label: str, a: str, b: str, path):
    """Speedup of A over B per op (bars from 1, log scale) with bootstrap-CI whiskers;
    black diamond = roofline ratio; red tick label = flagged (measured/theory off)."""
    d = pairs[(pairs["a"] == a) & (pairs["b"] == b)]
    nops = max(3, d.groupby("phase")["op"].nunique().max() if len(d) else 3)
    fig, axes = plt.subplots(1, 2, figsize=(12, 1.3 + 0.42 * nops), squeeze=False)
    for ax, phase in zip(axes[0], PHASES):
        p = d[(d["phase"] == phase) & np.isfinite(d["speedup"]) & (d["speedup"] > 0)]
        if p.empty:
            no_data(ax, f"{phase}: no comparable ops")
            continue
        p = _end_to_end_first(p)
        _draw_speedups(ax, p)
        _speedup_axis(ax, p)
        _label_ops(ax, p)
        ax.set_xlabel("speedup of A over B = time(B) / time(A)\n(log scale; right of 1: A faster)")
        ax.set_title(phase)
        ax.grid(axis="x", alpha=0.3)
    handles = [
        plt.Line2D(
            [], [], marker="D", color="w", markerfacecolor="black", markersize=7, label="theory (roofline ratio)"
        ),
        plt.Line2D([], [], color="#222222", lw=1, label=f"{CI} (bootstrap)"),
        Patch(facecolor="white", edgecolor="white", label="red label ≠: flagged, off theory"),
    ]
    fig.legend(handles=handles, loc="upper center", ncol=3, bbox_to_anchor=(0.5, 1.0), frameon=False, fontsize=9)
    fig.suptitle(f"{short(label, 80)}:  A = {short(a)}, B = {short(b)}", y=1.05)
    fig.tight_layout()
    save(fig, path)


def _end_to_end_first(p: pd.DataFrame) -> pd.DataFrame:
    """One row per op, indexed by op: end to end first, then the ops in vocabulary order."""
    ops = order_ops([o for o in p["op"].unique() if o != "end_to_end"])
    if "end_to_end" in set(p["op"]):
        ops = ["end_to_end"] + ops
    return p.drop_duplicates("op").set_index("op").loc[ops]


def _draw_speedups(ax, p: pd.DataFrame):
    """Bars from 1 to the measured speedup with CI whiskers, the roofline ratio as a diamond, the line at 1."""
    ops = list(p.index)
    y = np.arange(len(ops))
    sp = p["speedup"].to_numpy(float)
    lo = np.nan_to_num(sp - p["speedup_lo"].to_numpy(float))
    hi = np.nan_to_num(p["speedup_hi"].to_numpy(float) - sp)
    colors = [END_TO_END_COLOR if o == "end_to_end" else op_color(o) for o in ops]
    ax.barh(y, sp - 1.0, left=1.0, color=colors, edgecolor="#333333", linewidth=0.5, height=0.7)
    ax.errorbar(
        sp,
        y,
        xerr=np.vstack([np.clip(lo, 0, None), np.clip(hi, 0, None)]),
        fmt="none",
        ecolor="#222222",
        capsize=3,
        lw=1,
    )
    th = p["theory_speedup"].to_numpy(float)
    ok = np.isfinite(th) & (th > 0)
    ax.scatter(
        th[ok],
        y[ok],
        marker="D",
        color="black",
        edgecolor="white",
        linewidth=0.8,
        zorder=5,
        s=42,
        label="theory (roofline)",
    )
    ax.axvline(1.0, color="#444444", lw=1)
    if "end_to_end" in ops:
        ax.axhline(0.5, color="#999999", lw=0.8, ls=":")


def _speedup_axis(ax, p: pd.DataFrame):
    """Log2 x axis spanning every speedup, CI bound and roofline ratio (and 1), with round ticks."""
    sp = p["speedup"].to_numpy(float)
    th = p["theory_speedup"].to_numpy(float)
    ok = np.isfinite(th) & (th > 0)
    ax.set_xscale("log", base=2)
    vals = np.concatenate(
        [sp, th[ok], p["speedup_hi"].dropna().to_numpy(float), p["speedup_lo"].dropna().to_numpy(float), [1.0]]
    )
    vals = vals[np.isfinite(vals) & (vals > 0)]
    lo_x, hi_x = vals.min() / 1.4, vals.max() * 1.4
    ax.set_xlim(lo_x, hi_x)
    ticks = [v for v in SPEEDUP_TICKS if lo_x <= v <= hi_x]
    if len(ticks) > 9:
        ticks = [v for v in ticks if math.log2(v) == int(math.log2(v))]
    ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))


def _label_ops(ax, p: pd.DataFrame):
    """Op names on the y axis, "(modeled)" where theory stood in, flagged rows red and marked ≠."""
    ops = list(p.index)
    flagged = p["flagged"].astype(bool).to_numpy()
    names = [
        o + (" (modeled)" if bool(p["modeled"].get(o, False)) else "") + (" ≠" if f else "")
        for o, f in zip(ops, flagged)
    ]
    ax.set_yticks(np.arange(len(ops)), names)
    for tl, f in zip(ax.get_yticklabels(), flagged):
        if f:
            tl.set_color("#c00000")
            tl.set_fontweight("bold")
    ax.invert_yaxis()
