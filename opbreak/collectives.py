"""Alpha-beta model of ring collectives, its fit, and a measured all-reduce sweep.

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

import json
import os
import tempfile
import time
from datetime import timedelta

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from .io import free_port


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


# --------------------------------------------------------------------------- sweep
def _sweep_worker(rank, world, port, sizes, iters, warmup, rounds, repeats, backend, device, timeout_s, out_path):
    """One rank of the sweep, timed the way nccl-tests times it.

    Per size and round: ``warmup`` untimed calls, a barrier, then ``iters``
    back-to-back calls between two host clock reads, the second after a stream
    synchronize; the round's time per call is that interval / iters. Rounds are
    interleaved over sizes, so a burst of host noise spoils one round of every size
    rather than one size. In each round, ``iters`` more calls each synchronized on its own
    give the per-call spread (launch and sync overhead included).
    A round's or call's time is the slowest rank's (the collective ends on all ranks).
    """
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    if backend == "gloo":
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=timeout_s),
    )
    try:
        if device == "cuda":
            torch.cuda.set_device(rank)
        dev = torch.device("cuda", rank) if device == "cuda" else torch.device("cpu")
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        bufs = [torch.ones(max(1, int(s) // 4), dtype=torch.float32, device=dev) for s in sizes]
        batch = [[] for _ in sizes]
        per_call = [[] for _ in sizes]
        for _ in range(repeats):
            group = dist.new_group(backend=backend)  # fresh connections each repeat
            for _ in range(rounds):
                for j, x in enumerate(bufs):
                    batch[j].append(_timed_batch(dist, group, x, iters, warmup, sync))
                    per_call[j].extend(_timed_calls(dist, group, x, iters, sync))
            dist.destroy_process_group(group)
        results = [_slowest(dist, v, dev) for v in (batch, per_call)]
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump(results, f)
    finally:
        dist.destroy_process_group()


def _timed_batch(dist, group, x, iters, warmup, sync):
    for _ in range(warmup):
        dist.all_reduce(x, group=group)
    sync()
    dist.barrier(group=group)
    t0 = time.perf_counter()
    for _ in range(iters):
        dist.all_reduce(x, group=group)
    sync()
    return (time.perf_counter() - t0) / iters


def _timed_calls(dist, group, x, n, sync):
    """n calls, each between two host clock reads ending in a synchronize (launch and sync included)."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        dist.all_reduce(x, group=group)
        sync()
        out.append(time.perf_counter() - t0)
    return out


def _slowest(dist, rows, dev):
    """Element-wise max over ranks of a list of equal-length lists."""
    import torch

    t = torch.tensor(rows, dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.cpu().numpy().tolist()


def allreduce_sweep(
    sizes_bytes,
    world_size: int,
    backend: str = "gloo",
    device: str = "cpu",
    iters: int = 20,
    warmup: int = 5,
    rounds: int = 8,
    repeats: int = 1,
    timeout_s: float = 60.0,
) -> pd.DataFrame:
    """All-reduce of float32 buffers over ``world_size`` spawned processes, nccl-tests style.

    ``time_s``: median over rounds of the back-to-back time per call (nccl-tests
    reports one such mean; the median of ``rounds`` of them resists a noisy round);
    ``time_p10_s`` / ``time_min_s``: the rounds' lower envelope (interference only
    adds time: what the alpha-beta fit uses on shared hosts). ``percall_*``: calls
    synchronized one by one (launch and synchronize included). algbw = size/time,
    busbw = algbw * 2(n-1)/n (nccl-tests' formulas). Call it under
    ``if __name__ == "__main__":`` in scripts: ranks start with 'spawn' (safe with CUDA).
    """
    import torch.multiprocessing as mp

    if backend == "nccl" and device != "cuda":
        raise ValueError("nccl needs device='cuda'")
    sizes = [int(s) // 4 * 4 for s in sizes_bytes]
    if any(s <= 0 for s in sizes):
        raise ValueError("sizes must be >= 4 bytes")
    fd, out_path = tempfile.mkstemp(suffix=".json", prefix="opbreak_sweep_")
    os.close(fd)
    try:
        mp.spawn(
            _sweep_worker,
            args=(
                world_size,
                free_port(),
                sizes,
                iters,
                warmup,
                rounds,
                repeats,
                backend,
                device,
                timeout_s,
                out_path,
            ),
            nprocs=world_size,
            join=True,
        )
        with open(out_path) as f:
            batch, per_call = ([np.asarray(r, dtype=float) for r in part] for part in json.load(f))
    finally:
        os.unlink(out_path)
    return sweep_table(sizes, world_size, batch, per_call, iters)


def sweep_table(sizes, n, batch, per_call, iters) -> pd.DataFrame:
    """The sweep's table from per-round back-to-back times and per-call times (seconds)."""
    times = np.array([np.median(r) for r in batch])
    size_arr = np.asarray(sizes, dtype=float)
    algbw = size_arr / times / 1e9
    return pd.DataFrame(
        {
            "size_bytes": np.asarray(sizes, dtype=np.int64),
            "time_s": times,
            "algbw_GBps": algbw,
            "busbw_GBps": algbw * 2.0 * (n - 1) / n,
            "time_p10_s": [float(np.percentile(r, 10)) for r in batch],
            "time_min_s": [float(r.min()) for r in batch],
            "rounds": [r.size for r in batch],
            "calls_per_round": iters,
            "percall_p10_s": [float(np.percentile(r, 10)) for r in per_call],
            "percall_median_s": [float(np.median(r)) for r in per_call],
            "percall_p90_s": [float(np.percentile(r, 90)) for r in per_call],
        }
    )
