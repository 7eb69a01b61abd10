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
import socket
import tempfile
import time
from datetime import timedelta

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


# --------------------------------------------------------------------------- sweep
def _free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sweep_worker(rank, world, port, sizes, iters, warmup, rounds, repeats, backend,
                  device, timeout_s, out_path):
    """One rank of the sweep: times each all_reduce call individually.

    Sizes are interleaved over ``rounds`` rounds (each round: one untimed call, then
    iters/rounds timed calls per size) so bursts of host noise spread over all sizes
    instead of spoiling one.
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
            dev = torch.device("cuda", rank)
            sync = torch.cuda.synchronize
        else:
            dev = torch.device("cpu")

            def sync():
                return None

        bufs = [torch.ones(max(1, int(s) // 4), dtype=torch.float32, device=dev) for s in sizes]
        per_round = max(1, -(-iters // rounds))
        pooled = [[] for _ in sizes]
        for _ in range(repeats):
            # a fresh group = fresh connections: a connection stuck in a slow mode
            # (seen on loaded virtual hosts) spoils one repeat, not the result
            group = dist.new_group(backend=backend)
            for x in bufs:
                for _ in range(warmup):
                    dist.all_reduce(x, group=group)
            sync()
            times = [[] for _ in sizes]
            for _ in range(rounds):
                for j, x in enumerate(bufs):
                    dist.all_reduce(x, group=group)  # untimed: re-warm after previous size
                    sync()
                    for _ in range(per_round):
                        t0 = time.perf_counter()
                        dist.all_reduce(x, group=group)
                        sync()
                        times[j].append(time.perf_counter() - t0)
            # the slowest rank defines each call's time (the collective ends on all ranks)
            t = torch.tensor(times, dtype=torch.float64, device=dev)
            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
            for j, row in enumerate(t.cpu().numpy().tolist()):
                pooled[j].extend(row)
            dist.destroy_process_group(group)
        results = pooled
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump(results, f)
    finally:
        dist.destroy_process_group()


def allreduce_sweep(
    sizes_bytes,
    world_size: int,
    backend: str = "gloo",
    device: str = "cpu",
    iters: int = 40,
    warmup: int = 3,
    rounds: int = 8,
    repeats: int = 1,
    timeout_s: float = 60.0,
) -> pd.DataFrame:
    """Measure all_reduce of float32 buffers over ``world_size`` spawned processes.

    Per repeat (a fresh process group each): ``warmup`` untimed calls per size, then
    ``iters`` individually timed calls per size, interleaved over ``rounds`` rounds;
    a call's time is the slowest rank's. time_s = median over all timed calls (not
    nccl-tests' mean: loaded or virtual hosts add millisecond wake-up hiccups that
    swamp a mean). time_p10_s / time_min_s are the lower envelope: interference only
    ever adds time, so on a shared host they estimate the uncontended link best and
    are what to fit alpha-beta to there. calls = timed calls per size.
    algbw = size/time, busbw = algbw * 2(n-1)/n (nccl-tests). Call it under
    ``if __name__ == "__main__":`` in scripts:
    ranks are started with the 'spawn' method (safe with CUDA).
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
            args=(world_size, _free_port(), sizes, iters, warmup, rounds, repeats,
                  backend, device, timeout_s, out_path),
            nprocs=world_size,
            join=True,
        )
        with open(out_path) as f:
            per_call = [np.asarray(r, dtype=float) for r in json.load(f)]
    finally:
        os.unlink(out_path)
    times = np.array([np.median(r) for r in per_call])
    size_arr = np.asarray(sizes, dtype=float)
    algbw = size_arr / times / 1e9
    n = world_size
    return pd.DataFrame(
        {
            "size_bytes": np.asarray(sizes, dtype=np.int64),
            "time_s": times,
            "algbw_GBps": algbw,
            "busbw_GBps": algbw * 2.0 * (n - 1) / n,
            "time_p10_s": [float(np.percentile(r, 10)) for r in per_call],
            "time_min_s": [float(r.min()) for r in per_call],
            "calls": [r.size for r in per_call],
        }
    )
