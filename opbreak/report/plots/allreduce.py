"""All-reduce (Theory): the alpha-beta ring model against the measured size sweep and in-phase calls,
and how the model's latency and bandwidth terms grow with the rank count."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker

from ...ops import OP_COLORS, PHASES
from .common import PHASE_MARKERS, no_data, save, short

AR_COLOR = OP_COLORS["all_reduce"]
NCCL_TESTS_COLOR = "#1f77b4"


def allreduce(ar: pd.DataFrame, configs, path):
    """All-reduce per config: left, the measured size sweep and in-phase calls against the
    alpha-beta ring model; right, the model's latency and bandwidth terms as the rank count grows."""
    present = [c for c in configs if c in set(ar["config"])] if len(ar) else []
    n = max(1, len(present))
    fig, axes = plt.subplots(n, 2, figsize=(12.5, 4.3 * n), squeeze=False, gridspec_kw={"width_ratios": [1.25, 1]})
    if not present:
        no_data(axes[0, 0], "no all-reduce rows (single-rank configs only?)")
        axes[0, 1].set_visible(False)
        save(fig, path)
        return
    for (ax, ax2), cfg in zip(axes, present):
        d = ar[(ar["config"] == cfg) & (ar["size_bytes"] > 0)]
        _size_panel(ax, d, cfg)
        sc = d[d["kind"] == "tp_scaling"]
        if sc.empty:
            ax2.set_visible(False)
            continue
        _scaling_panel(ax2, sc)
    fig.tight_layout()
    save(fig, path)


# --------------------------------------------------------------------------- left: time against message size
def _size_panel(ax, d: pd.DataFrame, cfg):
    """Time per all-reduce against message size, log-log: sweep, nccl-tests and in-phase calls with their models;
    the title carries the fitted alpha and B."""
    sw = d[d["kind"] == "sweep"].sort_values("size_bytes")
    ph = d[d["kind"] == "phase"]
    _draw_sweep(ax, sw)
    nt = d[d["kind"] == "nccl_tests"].sort_values("size_bytes")
    _draw_nccl_tests(ax, nt)
    _draw_phase_calls(ax, ph)
    if sw.empty and ph.empty and nt.empty:
        no_data(ax, "no measured sizes")
    else:
        _size_axes(ax)
    ax.set_title(short(cfg, 40) + _fit_note(d), fontsize=10)


def _draw_sweep(ax, sw: pd.DataFrame):
    """The study's size sweep (torch.distributed), its CUDA graph where measured, and the ring model fitted to it."""
    if len(sw):
        ax.scatter(sw["size_bytes"], sw["measured_ms"], color=AR_COLOR, s=22, label="sweep, measured")
        ax.plot(sw["size_bytes"], sw["model_ms"], color="#333333", lw=1.2, label="ring model")
        if "graph_ms" in sw and sw["graph_ms"].notna().any():
            ax.scatter(sw["size_bytes"], sw["graph_ms"], marker="x", color="#555555", s=22, label="sweep, CUDA graph")


def _draw_nccl_tests(ax, nt: pd.DataFrame):
    """NCCL's floor (nccl-tests), and the model fitted to it."""
    if len(nt):
        ax.scatter(
            nt["size_bytes"],
            nt["measured_ms"],
            marker="s",
            facecolor="none",
            edgecolor=NCCL_TESTS_COLOR,
            s=26,
            label="nccl-tests",
        )
        ax.plot(
            nt["size_bytes"],
            nt["model_ms"],
            color=NCCL_TESTS_COLOR,
            lw=1.0,
            ls="--",
            label="ring model, nccl-tests fit",
        )


def _draw_phase_calls(ax, ph: pd.DataFrame):
    """Each phase's all-reduce call: measured (filled) and the model's time at its size (hollow)."""
    for phase in PHASES:
        p = ph[ph["phase"] == phase]
        if len(p):
            ax.scatter(
                p["size_bytes"],
                p["measured_ms"],
                marker=PHASE_MARKERS[phase],
                s=80,
                color=AR_COLOR,
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


def _size_axes(ax):
    """Log-log axes with plain 1-2-5 time ticks, and the legend under the panel."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("message size [bytes]")
    ax.set_ylabel("time per all-reduce [ms]")
    ax.grid(alpha=0.3, which="both", lw=0.4)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(0.0, -0.16), ncol=3, frameon=False)


def _fit_note(d: pd.DataFrame) -> str:
    """': alpha .. us, B .. GB/s (source, n ranks)' of the config's first fitted row, or '' without a fit."""
    fit = d.dropna(subset=["alpha_us", "bw_GBps"]).head(1)
    if not len(fit):
        return ""
    f = fit.iloc[0]
    return f": alpha {f['alpha_us']:.3g} us, B {f['bw_GBps']:.3g} GB/s ({f['source']}, {int(f['n'])} ranks)"


# --------------------------------------------------------------------------- right: the model as ranks grow
def _scaling_panel(ax2, sc: pd.DataFrame):
    """Per rank count, each phase's model time split into its latency and bandwidth terms, relative to the
    fewest ranks (prefill plain, decode dotted), each bar labelled with its model time per call."""
    width = 0.38
    ns = sorted(sc["n"].dropna().unique())
    x = np.arange(len(ns))
    for k, phase in enumerate(PHASES):
        p = sc[sc["phase"] == phase].set_index("n")
        if not p.empty:
            _scaling_bars(ax2, p, phase, ns, x + (k - 0.5) * width, width, "" if k == 0 else "..")
    ax2.set_ylim(top=ax2.get_ylim()[1] * 1.18)
    ax2.set_xticks(x, [f"{int(v)}" for v in ns])
    ax2.set_xlabel("ranks in the ring")
    ax2.set_ylabel("model time, relative to the fewest ranks")
    ax2.set_title("ring model as ranks grow (same link); labels: model time per call", fontsize=10)
    ax2.grid(axis="y", alpha=0.3)
    ax2.legend(fontsize=7, loc="upper left", ncol=1)


def _scaling_bars(ax2, p: pd.DataFrame, phase, ns, xs, width, hatch):
    """One phase's stacked latency + bandwidth bars at each rank count, and its model time above each bar."""
    lat = np.array([p["t_latency_ms"].get(v, np.nan) for v in ns], float)
    bw = np.array([p["t_bandwidth_ms"].get(v, np.nan) for v in ns], float)
    tot = np.array([p["model_ms"].get(v, np.nan) for v in ns], float)
    ref = tot[np.isfinite(tot) & (tot > 0)][0] if (np.isfinite(tot) & (tot > 0)).any() else 1.0
    ax2.bar(xs, lat / ref, width, color="#555555", edgecolor="white", hatch=hatch, label=f"{phase}: latency term")
    ax2.bar(
        xs,
        bw / ref,
        width,
        bottom=lat / ref,
        color=AR_COLOR,
        edgecolor="white",
        hatch=hatch,
        label=f"{phase}: bandwidth term",
    )
    size = p["size_bytes"].iloc[0]
    for xi, tt in zip(xs, tot):
        if np.isfinite(tt):
            ax2.text(xi, tt / ref, f"{phase[0].upper()}\n{tt:.3g} ms", ha="center", va="bottom", fontsize=7)
    ax2.plot([], [], " ", label=f"{phase[0].upper()} = {phase}, {size:.4g} B message")
