"""Figures of the report: seaborn/matplotlib on the Agg backend.

One colour per operator in every figure (:data:`OP_COLORS`, keyed by
:data:`opbreak.ops.OPS`); configs get their own palette (:func:`config_colors`).
Every function takes tidy tables (the aggregate/theory CSVs), writes one PNG and
returns nothing; numbers drawn on a figure are table values, never computed
totals. Functions never raise on empty input: they draw a "no data" panel so the
report always renders.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from .ops import OP_COLORS, OPS, PHASES, order_ops  # noqa: E402
from .stats import CI_PCT  # noqa: E402

CI = f"{CI_PCT} CI"

OTHER_COLOR = "#f2f2f2"
UNKNOWN_COLOR = "#000000"
PHASE_MARKERS = {"prefill": "o", "decode": "^"}
DPI = 110
PIE_MIN_SHARE = 0.03  # slices below this are folded into "other" (listed in the legend)
PIE_LABEL_MIN = 0.06  # slices below this get no percentage label on the pie itself


def fmt_ms(v) -> str:
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"


def op_color(op: str) -> str:
    return OP_COLORS.get(op, UNKNOWN_COLOR)


def config_colors(configs) -> dict:
    pal = sns.color_palette("colorblind", max(3, len(configs)))
    return {c: pal[i % len(pal)] for i, c in enumerate(configs)}


def _save(fig, path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def _no_data(ax, what="no data"):
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="#666666", fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def _short(text: str, n: int = 40) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


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
    order = {o: i for i, o in enumerate(OPS)}
    for ax, phase in zip(axes, PHASES):
        d = ops_summary[(ops_summary["config"] == config) & (ops_summary["phase"] == phase)]
        d = d[np.isfinite(d["median_ms"]) & (d["median_ms"] > 0)]
        vals = [(r.op, float(r.median_ms), float(r.share), False) for r in d.itertuples()]
        m = modeled[(modeled["config"] == config) & (modeled["phase"] == phase)] if len(modeled) else modeled
        for r in m.itertuples() if len(m) else []:
            if np.isfinite(r.measured_ms) and r.measured_ms > 0:
                vals.append((r.op, float(r.measured_ms), math.nan, True))
        if not vals:
            _no_data(ax, f"{phase}: no data")
            continue
        total = sum(v for _, v, _, _ in vals)
        vals.sort(key=lambda t: order.get(t[0], 99))
        big = [t for t in vals if t[1] / total >= PIE_MIN_SHARE]
        small = [t for t in vals if t[1] / total < PIE_MIN_SHARE]
        sizes = [t[1] for t in big]
        colors = [op_color(t[0]) for t in big]
        labels = []
        for _op, v, share, is_mod in big:
            labels.append(
                "" if is_mod or not np.isfinite(share) or v / total < PIE_LABEL_MIN else f"{100 * share:.1f}%"
            )
        if small:
            sizes.append(sum(t[1] for t in small))
            colors.append(OTHER_COLOR)
            labels.append("")
        wedges, _ = ax.pie(
            sizes, colors=colors, startangle=90, counterclock=False, wedgeprops=dict(linewidth=1, edgecolor="white")
        )
        for w, tt in zip(wedges, big):
            if tt[3]:
                w.set_hatch("//")
                any_modeled = True
        if small:
            wedges[-1].set_edgecolor("#bbbbbb")
        for w, lab in zip(wedges, labels):
            if not lab:
                continue
            ang = np.deg2rad((w.theta2 + w.theta1) / 2)
            x, y = 0.68 * np.cos(ang), 0.68 * np.sin(ang)
            rgb = matplotlib.colors.to_rgb(w.get_facecolor())
            lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
            ax.text(
                x,
                y,
                lab,
                ha="center",
                va="center",
                fontsize=10,
                color="white" if lum < 0.55 else "black",
                fontweight="bold",
            )
        ph = d["phase_median_ms"].dropna()
        title = phase if ph.empty else f"{phase}\n(phase median {fmt_ms(ph.iloc[0])} ms)"
        ax.set_title(title, fontsize=11)
        ax.set_aspect("equal")
        if small:
            names = _wrap(", ".join(order_ops([tt[0] for tt in small])), 44)
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
        legend_ops += [tt[0] for tt in big if tt[0] not in legend_ops]
    handles = [Patch(facecolor=op_color(o), edgecolor="white", label=o) for o in order_ops(legend_ops)]
    handles.append(Patch(facecolor=OTHER_COLOR, edgecolor="#bbbbbb", label="other (listed under the pie)"))
    if any_modeled:
        handles.append(Patch(facecolor="white", edgecolor="#333333", hatch="//", label="modeled (theory time)"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.9, 0.5), frameon=False, fontsize=9)
    fig.suptitle(f"Operator share of phase time: {_short(config, 60)}", fontsize=12, y=1.0)
    fig.subplots_adjust(left=0.02, right=0.9, top=0.86, wspace=0.08)
    _save(fig, path)


def _wrap(text, width):
    out, line = [], ""
    for word in text.split(", "):
        if line and len(line) + len(word) + 2 > width:
            out.append(line + ",")
            line = word
        else:
            line = f"{line}, {word}" if line else word
    out.append(line)
    return "\n".join(out)


# --------------------------------------------------------------------------- pairs
def pair_bars(ops_summary: pd.DataFrame, a: str, b: str, label: str, path):
    """Per-op median time of A (solid) and B (hatched), CI whiskers, per phase."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.9 + 0.42 * _n_ops(ops_summary, [a, b])), squeeze=False)
    for ax, phase in zip(axes[0], PHASES):
        d = ops_summary[(ops_summary["phase"] == phase) & ops_summary["config"].isin([a, b])]
        d = d[np.isfinite(d["median_ms"])]
        if d.empty:
            _no_data(ax, f"{phase}: no data")
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
        Patch(facecolor="#999999", edgecolor="#333333", label=f"A: {_short(a)}"),
        Patch(facecolor="#999999", alpha=0.55, hatch="///", edgecolor="#333333", label=f"B: {_short(b)}"),
    ]
    fig.legend(handles=handles, loc="upper center", ncol=2, bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.suptitle(_short(label, 80), y=1.06)
    fig.tight_layout()
    _save(fig, path)


def _n_ops(df, configs):
    return max(3, df[df["config"].isin(configs)].groupby("phase")["op"].nunique().max() if len(df) else 3)


END_TO_END_COLOR = "#555555"
SPEEDUP_TICKS = sorted({2.0**k for k in range(-10, 11)} | {0.75, 1.5, 3.0, 6.0, 12.0})


def pair_speedup(pairs: pd.DataFrame, label: str, a: str, b: str, path):
    """Speedup of A over B per op (bars from 1, log scale) with bootstrap-CI whiskers;
    black diamond = roofline ratio; red tick label = flagged (measured/theory off)."""
    d = pairs[(pairs["a"] == a) & (pairs["b"] == b)]
    nops = max(3, d.groupby("phase")["op"].nunique().max() if len(d) else 3)
    fig, axes = plt.subplots(1, 2, figsize=(12, 1.3 + 0.42 * nops), squeeze=False)
    for ax, phase in zip(axes[0], PHASES):
        p = d[(d["phase"] == phase) & np.isfinite(d["speedup"]) & (d["speedup"] > 0)]
        if p.empty:
            _no_data(ax, f"{phase}: no comparable ops")
            continue
        ops = order_ops([o for o in p["op"].unique() if o != "end_to_end"])
        if "end_to_end" in set(p["op"]):
            ops = ["end_to_end"] + ops
        p = p.drop_duplicates("op").set_index("op").loc[ops]
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
        ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
        flagged = p["flagged"].astype(bool).to_numpy()
        names = [
            o + (" (modeled)" if bool(p["modeled"].get(o, False)) else "") + (" ≠" if f else "")
            for o, f in zip(ops, flagged)
        ]
        ax.set_yticks(y, names)
        for tl, f in zip(ax.get_yticklabels(), flagged):
            if f:
                tl.set_color("#c00000")
                tl.set_fontweight("bold")
        ax.invert_yaxis()
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
    fig.suptitle(f"{_short(label, 80)}:  A = {_short(a)}, B = {_short(b)}", y=1.05)
    fig.tight_layout()
    _save(fig, path)


# --------------------------------------------------------------------------- decode / totals
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
        ax.plot(g["context_len"], g["median"], color=cols[cfg], lw=1.4, label=_short(cfg, 30))
        ax.fill_between(g["context_len"], g["min"], g["max"], color=cols[cfg], alpha=0.18, lw=0)
        t = theory_steps[theory_steps["config"] == cfg] if len(theory_steps) else theory_steps
        if len(t) and np.isfinite(t["t_bound_ms"]).any():
            t = t.sort_values("context_len")
            ax.plot(t["context_len"], t["t_bound_ms"], color=cols[cfg], lw=1.2, ls="--")
            has_bound = True
        drawn = True
    if not drawn:
        _no_data(ax, "no decode steps")
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
    _save(fig, path)


def phase_totals(phase_summary: pd.DataFrame, phase_totals_df: pd.DataFrame, configs, path):
    """Prefill and decode end-to-end per config: median bar, CI whisker, one dot per repeat."""
    present = [c for c in configs if c in set(phase_summary["config"])]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.9 + 0.45 * max(3, len(present))), squeeze=False)
    cols = config_colors(configs)
    for ax, phase in zip(axes[0], PHASES):
        s = phase_summary[phase_summary["phase"] == phase].set_index("config")
        cf = [c for c in present if c in s.index]
        if not cf:
            _no_data(ax, f"{phase}: no data")
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
        ax.set_yticks(y, [_short(c, 28) for c in cf])
        ax.invert_yaxis()
        ax.set_xlabel(f"phase end-to-end [ms]  (bar: median, whisker: {CI}, dots: repeats)")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
        ax.xaxis.set_major_formatter(
            matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1e4 else f"{v:g}")
        )
        ax.set_title(phase)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def _op_grid(d: pd.DataFrame, configs, value: str, extra: str):
    """Op x "config phase" grids of ``value`` and ``extra``, ops in vocabulary order, columns in config order."""
    order = {c: i for i, c in enumerate(configs)}
    d = d.assign(
        col=d["config"].map(lambda c: _short(c, 22)) + " " + d["phase"],
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


def _style_op_grid(ax, title):
    """Op labels in their figure colours, rotated column labels, the title."""
    for t in ax.get_yticklabels():
        t.set_color(op_color(t.get_text()) if t.get_text() not in ("host_gap", "unattributed") else "#333333")
        t.set_fontweight("bold")
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(title)
    plt.setp(ax.get_xticklabels(), rotation=35, ha="right", rotation_mode="anchor", fontsize=8)


# --------------------------------------------------------------------------- stability
def stability_cv(ops_summary: pd.DataFrame, unstable_cv: float, path, configs=None):
    """Heatmap of CV (%) per op (rows) and config/phase (columns); * marks unstable."""
    d = ops_summary[np.isfinite(ops_summary["cv"])] if len(ops_summary) else ops_summary
    if d.empty:
        fig, ax = plt.subplots(figsize=(6, 3))
        _no_data(ax, "no repeat statistics (need >= 2 repeats)")
        _save(fig, path)
        return
    piv, flag, cols = _op_grid(d, configs or sorted(d["config"].unique()), "cv", "unstable")
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
    _style_op_grid(ax, f"Repeat-to-repeat CV per op [%]  (* = unstable: CV > {100 * unstable_cv:.0f}%)")
    _save(fig, path)


def _fin(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _phase_key(s):
    return s.map(lambda v: PHASES.index(v) if v in PHASES else v)


def repeat_spread(phase_totals_df: pd.DataFrame, phase_summary: pd.DataFrame, configs, path):
    """Each repeat's phase time relative to the config's median; outlier repeats in red."""
    from .stats import mad_outliers

    d = phase_totals_df.merge(phase_summary[["config", "phase", "median_ms"]], on=["config", "phase"])
    present = [c for c in configs if c in set(d["config"])]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.9 + 0.45 * max(3, len(present))), squeeze=False)
    for ax, phase in zip(axes[0], PHASES):
        p = d[d["phase"] == phase]
        cf = [c for c in present if c in set(p["config"])]
        if not cf:
            _no_data(ax, f"{phase}: no data")
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
                    f"r{int(rp)}" if _fin(rp) else "r?",
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
        ax.set_yticks(np.arange(len(cf)), [_short(c, 28) for c in cf])
        ax.invert_yaxis()
        ax.set_xlabel("repeat vs median of repeats [%]  (rN: repeat id)")
        ax.set_title(f"{phase}: spread of repeats")
        ax.grid(axis="x", alpha=0.3)
        h, lab = ax.get_legend_handles_labels()
        if h:
            ax.legend(h[:1], lab[:1], fontsize=8)
    fig.tight_layout()
    _save(fig, path)


# --------------------------------------------------------------------------- theory
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
        _no_data(axes[0, 0], "no theory rows")
        _save(fig, path)
        return
    used_ops = set()
    for ax, cfg in zip(axes.flat, present):
        t = theory_ops[(theory_ops["config"] == cfg)]
        t = t[
            np.isfinite(t["intensity"])
            & (t["intensity"] > 0)
            & np.isfinite(t["achieved_tflops"])
            & (t["achieved_tflops"] > 0)
        ]
        c = ceilings[ceilings["config"] == cfg] if len(ceilings) else ceilings
        if t.empty:
            _no_data(ax, "no op with FLOPs and bytes")
            ax.set_title(_short(cfg, 50))
            continue
        ridge = [
            r.peak_tflops * 1e3 / r.mem_bw_GBps
            for r in c.itertuples()
            if _fin(r.peak_tflops) and _fin(r.mem_bw_GBps) and r.mem_bw_GBps > 0
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
            used_ops.update(p["op"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity [FLOP/byte]")
        ax.set_ylabel("achieved [TFLOP/s]")
        ax.set_title(_short(cfg, 50))
        ax.grid(alpha=0.3, which="both", lw=0.4)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
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
    fig.tight_layout()
    _save(fig, path)


def efficiency(theory_ops: pd.DataFrame, configs, path):
    """Heatmap of roofline efficiency (t_bound / measured, %) per op and config/phase."""
    d = theory_ops[np.isfinite(theory_ops["efficiency"])] if len(theory_ops) else theory_ops
    if d.empty:
        fig, ax = plt.subplots(figsize=(6, 3))
        _no_data(ax, "no efficiency rows")
        _save(fig, path)
        return
    piv, bound, cols = _op_grid(d, configs, "efficiency", "bound")
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
    _style_op_grid(ax, "Roofline efficiency per op [%]  (letter: bound resource C=compute, M=memory, L=link)")
    _save(fig, path)


def allreduce(ar: pd.DataFrame, configs, path):
    """All-reduce per config: left, the measured size sweep and in-phase calls against the
    alpha-beta ring model; right, the model's latency and bandwidth terms as the rank count grows."""
    present = [c for c in configs if c in set(ar["config"])] if len(ar) else []
    n = max(1, len(present))
    fig, axes = plt.subplots(n, 2, figsize=(12.5, 4.3 * n), squeeze=False, gridspec_kw={"width_ratios": [1.25, 1]})
    if not present:
        _no_data(axes[0, 0], "no all-reduce rows (single-rank configs only?)")
        axes[0, 1].set_visible(False)
        _save(fig, path)
        return
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    for (ax, ax2), cfg in zip(axes, present):
        d = ar[(ar["config"] == cfg) & (ar["size_bytes"] > 0)]
        sw = d[d["kind"] == "sweep"].sort_values("size_bytes")
        ph = d[d["kind"] == "phase"]
        if len(sw):
            ax.scatter(
                sw["size_bytes"], sw["measured_ms"], color=OP_COLORS["all_reduce"], s=22, label="sweep, measured"
            )
            ax.plot(sw["size_bytes"], sw["model_ms"], color="#333333", lw=1.2, label="ring model")
            if "graph_ms" in sw and sw["graph_ms"].notna().any():
                ax.scatter(
                    sw["size_bytes"], sw["graph_ms"], marker="x", color="#555555", s=22, label="sweep, CUDA graph"
                )
        nt = d[d["kind"] == "nccl_tests"].sort_values("size_bytes")
        if len(nt):  # NCCL's floor (nccl-tests), and the model fitted to it
            ax.scatter(
                nt["size_bytes"],
                nt["measured_ms"],
                marker="s",
                facecolor="none",
                edgecolor="#1f77b4",
                s=26,
                label="nccl-tests",
            )
            ax.plot(
                nt["size_bytes"], nt["model_ms"], color="#1f77b4", lw=1.0, ls="--", label="ring model, nccl-tests fit"
            )
        for phase in PHASES:
            p = ph[ph["phase"] == phase]
            if len(p):
                ax.scatter(
                    p["size_bytes"],
                    p["measured_ms"],
                    marker=PHASE_MARKERS[phase],
                    s=80,
                    color=OP_COLORS["all_reduce"],
                    edgecolor="black",
                    label=f"{phase} call, measured",
                )
                ax.scatter(
                    p["size_bytes"],
                    p["model_ms"],
                    marker=PHASE_MARKERS[phase],
                    s=80,
                    facecolor="none",
                    edgecolor="black",
                    label=f"{phase} call, model",
                )
        fit = d.dropna(subset=["alpha_us", "bw_GBps"]).head(1)
        sub = ""
        if len(fit):
            f = fit.iloc[0]
            sub = f": alpha {f['alpha_us']:.3g} us, B {f['bw_GBps']:.3g} GB/s ({f['source']}, {int(f['n'])} ranks)"
        if sw.empty and ph.empty and nt.empty:
            _no_data(ax, "no measured sizes")
        else:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("message size [bytes]")
            ax.set_ylabel("time per all-reduce [ms]")
            ax.grid(alpha=0.3, which="both", lw=0.4)
            ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(0.0, -0.16), ncol=3, frameon=False)
        ax.set_title(_short(cfg, 40) + sub, fontsize=10)
        sc = d[d["kind"] == "tp_scaling"]
        if sc.empty:
            ax2.set_visible(False)
            continue
        width = 0.38
        ns = sorted(sc["n"].dropna().unique())
        x = np.arange(len(ns))
        for k, phase in enumerate(PHASES):
            p = sc[sc["phase"] == phase].set_index("n")
            if p.empty:
                continue
            lat = np.array([p["t_latency_ms"].get(v, np.nan) for v in ns], float)
            bw = np.array([p["t_bandwidth_ms"].get(v, np.nan) for v in ns], float)
            tot = np.array([p["model_ms"].get(v, np.nan) for v in ns], float)
            ref = tot[np.isfinite(tot) & (tot > 0)][0] if (np.isfinite(tot) & (tot > 0)).any() else 1.0
            xs = x + (k - 0.5) * width
            ax2.bar(
                xs,
                lat / ref,
                width,
                color="#555555",
                edgecolor="white",
                hatch="" if k == 0 else "..",
                label=f"{phase}: latency term",
            )
            ax2.bar(
                xs,
                bw / ref,
                width,
                bottom=lat / ref,
                color=OP_COLORS["all_reduce"],
                edgecolor="white",
                hatch="" if k == 0 else "..",
                label=f"{phase}: bandwidth term",
            )
            size = p["size_bytes"].iloc[0]
            for xi, tt in zip(xs, tot):
                if np.isfinite(tt):
                    ax2.text(xi, tt / ref, f"{phase[0].upper()}\n{tt:.3g} ms", ha="center", va="bottom", fontsize=7)
            ax2.plot([], [], " ", label=f"{phase[0].upper()} = {phase}, {size:.4g} B message")
        ax2.set_ylim(top=ax2.get_ylim()[1] * 1.18)
        ax2.set_xticks(x, [f"{int(v)}" for v in ns])
        ax2.set_xlabel("ranks in the ring")
        ax2.set_ylabel("model time, relative to the fewest ranks")
        ax2.set_title("ring model as ranks grow (same link); labels: model time per call", fontsize=10)
        ax2.grid(axis="y", alpha=0.3)
        ax2.legend(fontsize=7, loc="upper left", ncol=1)
    fig.tight_layout()
    _save(fig, path)
