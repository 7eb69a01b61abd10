"""The measure step's all-reduce size sweep, timed as nccl-tests times it (algbw, busbw): runner and CLI.

Per size: warm-up, then rounds of [one aligning call + stream sync, N calls back to back, one
stream sync] (nccl-tests' BenchTime, no barrier); on CUDA also CUDA events around the same loops
and a CUDA graph of N calls replayed (the host-free floor). See :func:`allreduce_sweep`.

Runs on the config's own ranks and transport (gloo on CPU; NCCL on GPUs with the
config's ``transport`` environment, :mod:`opbreak.transport`) so the theory step
fits the alpha-beta model (:mod:`opbreak.collectives`) to this machine and this path
rather than a datasheet. Measuring lives here, the model there: the theory step reads
the sweep's table and never starts a rank.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import timedelta

import numpy as np
import pandas as pd

from . import transport
from .io import free_port, write_csv_atomic

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


def main(argv=None):
    ap = argparse.ArgumentParser(prog="opbreak-sweep", description=__doc__)
    ap.add_argument("--config-name", required=True)
    ap.add_argument("--world", type=int, required=True, help="ranks (the config's tp)")
    ap.add_argument("--device", choices=["cpu", "cuda"], required=True)
    ap.add_argument("--transport", choices=sorted(transport.TRANSPORTS), default="auto")
    ap.add_argument("--gpu-ids", default="", help="GPUs of the link's config (CUDA_VISIBLE_DEVICES), e.g. 0,1")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", type=int, nargs="+", required=True, help="message sizes in bytes")
    ap.add_argument("--iters", type=int, default=20, help="back-to-back calls per timed round")
    ap.add_argument("--rounds", type=int, default=8, help="timed rounds per size")
    ap.add_argument("--warmup", type=int, default=5, help="untimed calls per size before its rounds")
    ap.add_argument("--no-graph", action="store_true", help="skip the CUDA graph replay (graph_time_s empty)")
    args = ap.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and args.gpu_ids and "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_VISIBLE_DEVICES"] = args.gpu_ids
    with tempfile.TemporaryDirectory(prefix="opbreak-sweep-") as logs:
        transport.apply(args.transport, logs if cuda else None)
        df = allreduce_sweep(
            args.sizes,
            args.world,
            backend="nccl" if cuda else "gloo",
            device=args.device,
            iters=args.iters,
            rounds=args.rounds,
            warmup=args.warmup,
            graph=not args.no_graph,
        )
        used = ",".join(transport.used(logs)) if cuda else "gloo/tcp"
    df.insert(0, "config", args.config_name)
    df.insert(1, "world_size", args.world)
    df.insert(2, "transport", args.transport)
    df["nccl_used"] = used
    write_csv_atomic(df, args.out)
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
