"""Alpha-beta model of ring collectives and its fit to measured times (the sweep that
measures them is :mod:`opbreak.sweep`).

Why: the seed saw decode all_reduce not get faster (slightly slower) from 4 to 8
A100s and could not say why. In the ring model the message of a tensor-parallel
all_reduce is tokens x hidden on every rank, whatever the GPU count, so

    t(M, n) = 2(n-1)/n * M / B  +  2(n-1) * alpha

never falls with n: the bandwidth term grows 1.5 -> 1.75 M/B from 4 to 8 ranks and
the latency term 6 -> 14 alpha. Decode messages are tiny (batch x hidden), so the
latency term dominates and the op gets slower; prefill messages are large, the
bandwidth term dominates, and the change is small.

Bandwidth convention: ``bw_bytes_per_s`` (B) is the PER-DIRECTION link bandwidth
(half of the bidirectional totals datasheets quote, see config/hardware.yaml).
Message sizes follow nccl-tests: all_reduce size = the buffer, all_gather size = the
gathered output; algbw = size / time, busbw = algbw * 2(n-1)/n for all_reduce.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import nnls


# --------------------------------------------------------------------------- model
def ring_allreduce_time(msg_bytes, n, bw_bytes_per_s, alpha_s):
    """Ring all-reduce time 2(n-1)/n * M/B + 2(n-1)*alpha; 0 for n == 1. Vectorized."""
    m = np.asarray(msg_bytes, dtype=float)
    n_ = np.asarray(n, dtype=float)
    t = 2.0 * (n_ - 1.0) / n_ * m / bw_bytes_per_s + 2.0 * (n_ - 1.0) * alpha_s
    t = np.where(n_ <= 1, 0.0, t)
    return t if t.ndim else float(t)


def ring_allgather_time(msg_bytes, n, bw_bytes_per_s, alpha_s):
    """Ring all-gather of a gathered output of M bytes: (n-1)/n * M/B + (n-1)*alpha."""
    m = np.asarray(msg_bytes, dtype=float)
    n_ = np.asarray(n, dtype=float)
    t = (n_ - 1.0) / n_ * m / bw_bytes_per_s + (n_ - 1.0) * alpha_s
    t = np.where(n_ <= 1, 0.0, t)
    return t if t.ndim else float(t)


def allreduce_terms(msg_bytes, n, bw_bytes_per_s, alpha_s) -> pd.DataFrame:
    """Split ring all-reduce time into its latency and bandwidth terms (per call)."""
    m = np.atleast_1d(np.asarray(msg_bytes, dtype=float))
    n_ = np.broadcast_to(np.asarray(n, dtype=float), m.shape)
    lat = np.where(n_ <= 1, 0.0, 2.0 * (n_ - 1.0) * alpha_s)
    bwt = np.where(n_ <= 1, 0.0, 2.0 * (n_ - 1.0) / n_ * m / bw_bytes_per_s)
    tot = lat + bwt
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(tot > 0, lat / tot, np.nan)
    return pd.DataFrame(
        {
            "n": n_.astype(int),
            "msg_bytes": m,
            "latency_s": lat,
            "bandwidth_s": bwt,
            "total_s": tot,
            "latency_share": share,
        }
    )


def tp_scaling_explainer(
    *,
    hidden_size: int,
    batch: int,
    input_len: int,
    dtype_bytes: int,
    alpha_s: float,
    bw_bytes_per_s: float,
    ns=(4, 8),
) -> pd.DataFrame:
    """Why decode all_reduce does not speed up from 4 to 8 GPUs (the seed's open question).

    Per all_reduce call: decode message = batch x hidden x dtype_bytes, prefill message =
    batch x input_len x hidden x dtype_bytes, both independent of n. Returns one row per
    (phase, n) with the latency/bandwidth split and ``vs_first_n`` = total_s / total_s at
    ns[0] (> 1 means slower with more GPUs).
    """
    msgs = {
        "prefill": batch * input_len * hidden_size * dtype_bytes,
        "decode": batch * hidden_size * dtype_bytes,
    }
    parts = []
    for phase, m in msgs.items():
        df = allreduce_terms(np.full(len(ns), m), np.asarray(ns), bw_bytes_per_s, alpha_s)
        df.insert(0, "phase", phase)
        df["vs_first_n"] = df["total_s"] / df["total_s"].iloc[0]
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def fit_alpha_beta(sizes_bytes, times_s, n: int) -> tuple[float, float]:
    """Fit (alpha_s, bw_bytes_per_s) of the ring all-reduce model to measured times.

    The model is linear in (alpha, 1/B): t = 2(n-1)*alpha + 2(n-1)/n*M * (1/B). We
    minimise the sum of squared RELATIVE errors ((t_model - t)/t)^2, so 1 KiB messages
    weigh as much as 1 GiB ones, with non-negativity (scipy.optimize.nnls).
    """
    if n < 2:
        raise ValueError("an all-reduce over n < 2 ranks has no cost to fit")
    m = np.asarray(sizes_bytes, dtype=float)
    t = np.asarray(times_s, dtype=float)
    if m.shape != t.shape or m.size < 2:
        raise ValueError("need >= 2 (size, time) pairs of equal length")
    if np.any(t <= 0):
        raise ValueError("times must be positive")
    a = np.column_stack([np.full_like(m, 2.0 * (n - 1)), 2.0 * (n - 1) / n * m])
    # scale columns so nnls is well conditioned, then undo
    w = a / t[:, None]
    scale = np.abs(w).max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(w / scale, np.ones_like(t))
    coef = coef / scale
    alpha, inv_bw = float(coef[0]), float(coef[1])
    bw = 1.0 / inv_bw if inv_bw > 0 else float("inf")
    return alpha, bw


def fit_sweep(sweep: pd.DataFrame | None, n: int) -> dict | None:
    """(alpha, B) of a config's link fitted to its measured sweep's table (:mod:`opbreak.sweep`), or
    None where there is nothing to fit (no sweep, fewer than two sizes, one rank): then the catalog's
    link stands (:func:`opbreak.hardware.catalog_link`)."""
    if n < 2 or sweep is None or len(sweep) < 2:
        return None
    # Fit the 10th percentile: interference on shared hosts only ever adds time (sweeps of
    # earlier versions have no percentiles: their median).
    col = "time_p10_s" if "time_p10_s" in sweep else "time_s"
    alpha, bw = fit_alpha_beta(sweep["size_bytes"], sweep[col], n)
    return dict(alpha_s=alpha, bw_bytes_per_s=bw, source="fit")
