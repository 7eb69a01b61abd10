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
TIMING = "aligned-b2b"  # the sweep's timing method, recorded in its table (see _sweep_worker)


def _sweep_worker(
    rank, world, port, sizes, iters, warmup, rounds, repeats, backend, device, timeout_s, out_path, graph
):
    """One rank of the sweep, timed the way nccl-tests times it (``src/common.cu`` BenchTime).

    Per size, in order: ``warmup`` untimed calls, then ``rounds`` timed loops, each: one untimed
    call and a stream synchronize (nccl-tests' own "sync" call: it lines the ranks up on the GPU,
    no barrier object), then ``iters`` calls launched back to back between two host clock reads, the
    second after one synchronize of the stream the calls complete on; time per call = interval /
    iters. On CUDA the same loop is also timed by two CUDA events around it (GPU time). Then,
    separately (so they never precede a timed loop), ``rounds`` x ``iters`` calls each synchronized
    on its own give the per-call spread (launch and synchronize included), interleaved over sizes.
    On CUDA with ``graph``, ``iters`` calls are captured in one CUDA graph per size and replayed
    ``rounds`` times: the host-free floor of the same collective.
    A loop's or call's time is the slowest rank's (the collective ends on all ranks).

    Earlier versions interleaved every timed round over sizes with a ``dist.barrier`` and the
    previous size's per-call loop just before it; see issue 23 and ``bench/sweep_methods.py``.
    """
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    if backend == "gloo":
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    cuda = device == "cuda"
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=timeout_s),
    )
    try:
        dev = torch.device("cuda", rank) if cuda else torch.device("cpu")
        sync = torch.cuda.current_stream().synchronize if cuda else (lambda: None)
        # zeros: a sum of zeros stays finite however often it is reduced
        bufs = [torch.zeros(max(1, int(s) // 4), dtype=torch.float32, device=dev) for s in sizes]
        batch = [[] for _ in sizes]
        events = [[] for _ in sizes]
        per_call = [[] for _ in sizes]
        for _ in range(repeats):
            group = dist.new_group(backend=backend)  # fresh connections each repeat
            for j, x in enumerate(bufs):
                for _ in range(warmup):
                    dist.all_reduce(x, group=group)
                sync()
                for _ in range(rounds):
                    host_s, gpu_s = _timed_loop(dist, group, x, iters, sync, cuda)
                    batch[j].append(host_s)
                    events[j].append(gpu_s)
            for _ in range(rounds):
                for j, x in enumerate(bufs):
                    per_call[j].extend(_timed_calls(dist, group, x, iters, sync))
            dist.destroy_process_group(group)
        results = [_slowest(dist, v, dev) for v in (batch, events, per_call)]
        graphs = [[float("nan")] * max(1, rounds) for _ in sizes]
        if cuda and graph:
            graphs = _graph_times(dist, bufs, iters, rounds, sync, dev, backend)
        results.append(_slowest(dist, graphs, dev))
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump(results, f)
    finally:
        dist.destroy_process_group()


def _align(dist, group, x, sync):
    """nccl-tests' untimed "sync" call before a timed loop: one call, then a stream synchronize."""
    dist.all_reduce(x, group=group)
    sync()


def _timed_loop(dist, group, x, iters, sync, cuda):
    """(host seconds per call, CUDA-event seconds per call or NaN) of ``iters`` back-to-back calls."""
    import torch

    _align(dist, group, x, sync)
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
    t0 = time.perf_counter()
    for _ in range(iters):
        dist.all_reduce(x, group=group)
    if cuda:
        end.record()
    sync()
    host = (time.perf_counter() - t0) / iters
    gpu = start.elapsed_time(end) / 1e3 / iters if cuda else float("nan")
    return host, gpu


def _timed_calls(dist, group, x, n, sync):
    """n calls, each between two host clock reads ending in a synchronize (launch and sync included)."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        dist.all_reduce(x, group=group)
        sync()
        out.append(time.perf_counter() - t0)
    return out


def _graph_times(dist, bufs, iters, rounds, sync, dev, backend):
    """Per size, seconds per call of a CUDA graph of ``iters`` captured calls, replayed ``rounds`` times.

    The ranks agree (an all-reduce of a failure flag) that every rank captured before any replays:
    a rank replaying alone would wait for its peer forever. NaN where capture failed."""
    import torch

    group = dist.new_group(backend=backend)
    out = []
    try:
        for x in bufs:
            ok, g = 1.0, None
            try:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):  # warm up off the capture (torch.cuda.graph's rule)
                    for _ in range(3):
                        dist.all_reduce(x, group=group)
                torch.cuda.current_stream().wait_stream(side)
                sync()
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    for _ in range(iters):
                        dist.all_reduce(x, group=group)
            except Exception as e:  # noqa: BLE001 - any capture failure means: no graph column for this size
                print(f"opbreak sweep: CUDA graph capture of all_reduce failed ({type(e).__name__}: {e})", flush=True)
                ok = 0.0
            flag = torch.tensor([1.0 - ok], device=dev)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item() > 0:
                out.append([float("nan")] * rounds)
                continue
            g.replay()  # warm replay
            sync()
            times = []
            for _ in range(rounds):
                _align(dist, group, x, sync)
                t0 = time.perf_counter()
                g.replay()
                sync()
                times.append((time.perf_counter() - t0) / iters)
            out.append(times)
            del g
    finally:
        dist.destroy_process_group(group)
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
    graph: bool = True,
) -> pd.DataFrame:
    """All-reduce of float32 buffers over ``world_size`` spawned processes, nccl-tests style.

    ``time_s``: median over rounds of the back-to-back time per call (nccl-tests
    reports one such mean; the median of ``rounds`` of them resists a noisy round);
    ``time_p10_s`` / ``time_min_s``: the rounds' lower envelope (interference only
    adds time: what the alpha-beta fit uses on shared hosts). ``time_events_s``: the same loops
    timed by CUDA events (GPU time; NaN on CPU). ``graph_time_s`` / ``graph_time_min_s``: a
    CUDA graph of ``iters`` calls replayed (the host-free floor; NaN on CPU, without ``graph``
    or where capture failed). ``percall_*``: calls synchronized one by one (launch and
    synchronize included). algbw = size/time, busbw = algbw * 2(n-1)/n (nccl-tests'
    formulas). Call it under ``if __name__ == "__main__":`` in scripts: ranks start with
    'spawn' (safe with CUDA).
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
                graph,
            ),
            nprocs=world_size,
            join=True,
        )
        with open(out_path) as f:
            batch, events, per_call, graphs = ([np.asarray(r, dtype=float) for r in part] for part in json.load(f))
    finally:
        os.unlink(out_path)
    return sweep_table(sizes, world_size, batch, per_call, iters, events=events, graphs=graphs)


def _nanstat(f, rows):
    out = []
    for r in rows:
        r = np.asarray(r, dtype=float)
        r = r[np.isfinite(r)]
        out.append(float(f(r)) if r.size else float("nan"))
    return out


def sweep_table(sizes, n, batch, per_call, iters, events=None, graphs=None) -> pd.DataFrame:
    """The sweep's table from per-round back-to-back times and per-call times (seconds).

    ``events``: per size, the rounds' CUDA-event times per call; ``graphs``: per size, the CUDA
    graph replays' times per call (both optional; NaN columns without them)."""
    times = np.array([np.median(r) for r in batch])
    size_arr = np.asarray(sizes, dtype=float)
    algbw = size_arr / times / 1e9
    nan_rows = [[float("nan")] for _ in sizes]
    events = nan_rows if events is None else events
    graphs = nan_rows if graphs is None else graphs
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
            "time_events_s": _nanstat(np.median, events),
            "graph_time_s": _nanstat(np.median, graphs),
            "graph_time_min_s": _nanstat(np.min, graphs),
            "timing": TIMING,
        }
    )
