"""All-reduce timed several ways side by side in the same rank processes: which part of the sweep is real.

Issue 23: on 2 x H200 NVLink the sweep said ~90 us per all_reduce at 4 KiB-1 MiB where
nccl-tests says 20-28 us. This spawns N ranks (one per GPU, or N gloo ranks on CPU) and, per
size, times ``torch.distributed.all_reduce`` of a float32 buffer with:

  old_sweep    the sweep before issue 23: rounds interleaved over sizes, each round = warm-up
               calls, synchronize, ``dist.barrier``, N back-to-back calls, synchronize; the
               previous size's per-call loop right before it (median over rounds)
  aligned_b2b  the sweep now (nccl-tests' BenchTime): per size, one untimed call + stream sync
               to line the ranks up, N back-to-back calls, one stream sync (median over rounds)
  barrier_b2b  as aligned_b2b, but a ``dist.barrier`` instead of the aligning call
  long_b2b     one aligning call, then ``--long-iters`` back-to-back calls, one sync (the
               "plain loop": per-round costs spread over many calls)
  percall      each call synchronized on its own (median; launch and synchronize included)
  events       the aligned_b2b loops timed by CUDA events on the stream (GPU time)
  graph        N calls captured in one CUDA graph, replayed (host-free floor; CUDA only)

Every time is the slowest rank's, in microseconds per call. Every process gets
opbreak.transport.SAFETY_ENV: NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1,
NVSHMEM_DISABLE_NVLS=1 (NVLink multicast off); ``--no-p2p`` adds the no-p2p transport's
NCCL_P2P_DISABLE=1 (NCCL's host-memory path).

    python bench/sweep_methods.py --gpus 2                 # NVLink (NCCL's choice)
    python bench/sweep_methods.py --gpus 2 --no-p2p        # host-memory path
    python bench/sweep_methods.py --cpu --ranks 2 --sizes 4096 65536 1048576   # gloo, any machine
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import timedelta

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from opbreak.io import free_port  # noqa: E402
from opbreak.transport import SAFETY_ENV, TRANSPORTS  # noqa: E402

METHODS = ("old_sweep", "aligned_b2b", "barrier_b2b", "long_b2b", "percall", "events", "graph")
DEFAULT_SIZES = [4096 * 4**i for i in range(9)]  # 4 KiB .. 256 MiB, factor 4


def _env(no_p2p: bool) -> dict:
    """NVLink multicast off in every rank, and the no-p2p transport's variable with --no-p2p."""
    env = dict(SAFETY_ENV)
    env.update(TRANSPORTS["no-p2p" if no_p2p else "auto"]["env"])
    return env


class _Rank:
    """This rank's process group and the synchronisations the methods use: the stream's (the sweep's),
    the device's (the old sweep's); on CPU neither (a gloo call returns when it is done)."""

    def __init__(self, rank, world, port, args):
        import torch
        import torch.distributed as dist

        self.rank, self.cuda, self.dist = rank, not args.cpu, dist
        backend = "nccl" if self.cuda else "gloo"
        if not self.cuda:
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
            torch.set_num_threads(1)
        else:
            torch.cuda.set_device(rank)
        dist.init_process_group(
            backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timedelta(seconds=120)
        )
        self.dev = torch.device("cuda", rank) if self.cuda else torch.device("cpu")
        self.stream_sync = torch.cuda.current_stream().synchronize if self.cuda else (lambda: None)
        self.device_sync = torch.cuda.synchronize if self.cuda else (lambda: None)
        # as the sweep does: its own group (fresh NCCL communicator), unless --default-group
        self.group = None if args.default_group else dist.new_group(backend=backend)

    def ar(self, x):
        self.dist.all_reduce(x, group=self.group)

    def align(self, x):
        """One untimed call and a stream sync: the ranks leave it together."""
        self.ar(x)
        self.stream_sync()


def old_sweep(r: _Rank, bufs, args, res):
    """old_sweep: the loop as it was (opbreak/collectives.py before issue 23), verbatim in effect."""
    n = args.iters
    for _ in range(args.rounds):
        for j, x in enumerate(bufs):
            for _ in range(args.warmup):
                r.ar(x)
            r.device_sync()
            r.dist.barrier(group=r.group)
            t0 = time.perf_counter()
            for _ in range(n):
                r.ar(x)
            r.device_sync()
            res["old_sweep"][j].append((time.perf_counter() - t0) / n)
            for _ in range(n):  # its per-call loop, which ran right before the next size's round
                r.ar(x)
                r.device_sync()


def aligned_b2b(r: _Rank, x, n):
    """aligned_b2b (host clock) and events (CUDA events around the same loop; NaN on CPU), s per call."""
    r.align(x)
    if r.cuda:
        import torch

        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
    t0 = time.perf_counter()
    for _ in range(n):
        r.ar(x)
    if r.cuda:
        e1.record()
    r.stream_sync()
    host = (time.perf_counter() - t0) / n
    return host, (e0.elapsed_time(e1) / 1e3 / n if r.cuda else float("nan"))


def barrier_b2b(r: _Rank, x, n):
    """barrier_b2b: a barrier instead of the aligning call, then n back-to-back calls; s per call."""
    r.dist.barrier(group=r.group)
    t0 = time.perf_counter()
    for _ in range(n):
        r.ar(x)
    r.stream_sync()
    return (time.perf_counter() - t0) / n


def percall(r: _Rank, x, n):
    """percall: each call synchronized on its own; the median call, s."""
    calls = []
    for _ in range(n):
        t0 = time.perf_counter()
        r.ar(x)
        r.stream_sync()
        calls.append(time.perf_counter() - t0)
    return float(np.median(calls))


def long_b2b(r: _Rank, x, iters):
    """long_b2b: one aligning call, then one long loop; s per call."""
    r.align(x)
    t0 = time.perf_counter()
    for _ in range(iters):
        r.ar(x)
    r.stream_sync()
    return (time.perf_counter() - t0) / iters


def interleaved(r: _Rank, bufs, args, res):
    """aligned_b2b, events, barrier_b2b and percall per size, interleaved within each round; then long_b2b."""
    for j, x in enumerate(bufs):
        for _ in range(args.warmup):
            r.ar(x)
        r.stream_sync()
        for _ in range(args.rounds):
            host, events = aligned_b2b(r, x, args.iters)
            res["aligned_b2b"][j].append(host)
            res["events"][j].append(events)
            res["barrier_b2b"][j].append(barrier_b2b(r, x, args.iters))
            res["percall"][j].append(percall(r, x, args.iters))
        res["long_b2b"][j].append(long_b2b(r, x, args.long_iters))


def graph_capture(r: _Rank, x, args):
    """``--iters`` calls captured in one CUDA graph; None unless every rank captured (or on CPU, --no-graph)."""
    import torch

    ok, g = 1.0, None
    if r.cuda and not args.no_graph:
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    r.ar(x)
            torch.cuda.current_stream().wait_stream(side)
            r.stream_sync()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                for _ in range(args.iters):
                    r.ar(x)
        except Exception as e:  # noqa: BLE001
            print(f"rank {r.rank}: graph capture failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            ok = 0.0
    else:
        ok = 0.0
    flag = torch.tensor([1.0 - ok], device=r.dev)
    r.dist.all_reduce(flag, op=r.dist.ReduceOp.MAX)
    return None if flag.item() > 0 else g


def graph(r: _Rank, bufs, args, res):
    """graph: the calls captured once per size, replayed ``--rounds`` times after an aligning call; s per call."""
    for j, x in enumerate(bufs):
        g = graph_capture(r, x, args)
        if g is None:
            res["graph"][j] = [float("nan")]
            continue
        g.replay()
        r.stream_sync()
        for _ in range(args.rounds):
            r.align(x)
            t0 = time.perf_counter()
            g.replay()
            r.stream_sync()
            res["graph"][j].append((time.perf_counter() - t0) / args.iters)
        del g


def slowest_rank(r: _Rank, res, out_path):
    """Slowest rank per method and size (median and minimum over rounds first, on each rank); rank 0 writes them."""
    import torch

    med = [[float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan") for v in res[m]] for m in METHODS]
    mins = [[float(np.nanmin(v)) if np.isfinite(v).any() else float("nan") for v in res[m]] for m in METHODS]
    t = torch.tensor([med, mins], dtype=torch.float64, device=r.dev)
    r.dist.all_reduce(t, op=r.dist.ReduceOp.MAX)
    if r.rank == 0:
        with open(out_path, "w") as f:
            json.dump(t.cpu().tolist(), f)


def _worker(rank, world, port, args, env, out_path):
    os.environ.update(env)  # inherited already (set before spawn); set again so no rank can miss it
    import torch

    r = _Rank(rank, world, port, args)
    bufs = [torch.zeros(max(1, s // 4), dtype=torch.float32, device=r.dev) for s in args.sizes]
    res = {m: [[] for _ in bufs] for m in METHODS}
    old_sweep(r, bufs, args, res)
    interleaved(r, bufs, args, res)
    graph(r, bufs, args, res)
    slowest_rank(r, res, out_path)
    r.dist.barrier()
    r.dist.destroy_process_group()


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", type=int, default=2, help="ranks on GPUs 0..N-1 (CUDA_VISIBLE_DEVICES picks them)")
    ap.add_argument("--cpu", action="store_true", help="gloo ranks on the CPU instead (a test anywhere)")
    ap.add_argument("--ranks", type=int, default=2, help="ranks with --cpu")
    ap.add_argument("--no-p2p", action="store_true", help="NCCL_P2P_DISABLE=1: NCCL's host-memory path")
    ap.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES, help="bytes (default 4 KiB..256 MiB x4)")
    ap.add_argument("--iters", type=int, default=20, help="calls per timed loop (nccl-tests -n)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed calls per size (nccl-tests -w)")
    ap.add_argument("--rounds", type=int, default=8, help="timed loops per size and method")
    ap.add_argument("--long-iters", type=int, default=500, help="calls of the long_b2b loop")
    ap.add_argument("--no-graph", action="store_true", help="skip the CUDA graph method")
    ap.add_argument("--default-group", action="store_true", help="use the default group, not a new_group as the sweep")
    ap.add_argument("--out", help="also write the table as CSV here")
    args = ap.parse_args(argv)
    args.sizes = [s // 4 * 4 for s in args.sizes]
    return args


def print_table(df, args, world, env):
    """The header (what ran, with which environment) and the medians' and minima's tables, us per call."""
    import torch

    path = "host-memory (NCCL_P2P_DISABLE=1)" if args.no_p2p else "NCCL's choice"
    what = f"{world} gloo ranks on CPU" if args.cpu else f"{world} GPUs ({torch.cuda.get_device_name(0)}), {path}"
    print(f"# all_reduce float32, {what}; torch {torch.__version__}", end="")
    if not args.cpu:
        print(f", NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}", end="")
    print(f"\n# us per call, slowest rank, median over {args.rounds} rounds of {args.iters} calls (long_b2b: one loop)")
    grp = "default" if args.default_group else "new_group"
    print(f"# env: {' '.join(f'{k}={v}' for k, v in env.items())}; group: {grp}")
    for title, suffix in ((None, "_us"), ("# minimum over rounds:", "_min_us")):
        if title:
            print(title)
        show = df[["size_bytes"] + [f"{m}{suffix}" for m in METHODS]].copy()
        show.columns = ["size"] + list(METHODS)
        print(show.to_string(index=False, float_format=lambda v: f"{v:.1f}"))


def main(argv=None):
    args = parse_args(argv)
    env = _env(args.no_p2p)
    os.environ.update(env)
    import pandas as pd
    import torch
    import torch.multiprocessing as mp

    world = args.ranks if args.cpu else args.gpus
    if not args.cpu and torch.cuda.device_count() < world:
        sys.exit(f"need {world} GPUs, see {torch.cuda.device_count()} (use --cpu for gloo ranks)")
    fd, out_path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        mp.spawn(_worker, args=(world, free_port(), args, env, out_path), nprocs=world, join=True)
        med, mins = json.load(open(out_path))
    finally:
        os.unlink(out_path)
    df = pd.DataFrame({"size_bytes": args.sizes})
    for i, m in enumerate(METHODS):
        df[f"{m}_us"] = np.asarray(med[i]) * 1e6
    for i, m in enumerate(METHODS):
        df[f"{m}_min_us"] = np.asarray(mins[i]) * 1e6
    print_table(df, args, world, env)
    if args.out:
        df.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
