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
NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1 (NVLink multicast
off); ``--no-p2p`` adds NCCL_P2P_DISABLE=1 (NCCL's host-memory path).

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

SAFETY_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
METHODS = ("old_sweep", "aligned_b2b", "barrier_b2b", "long_b2b", "percall", "events", "graph")
DEFAULT_SIZES = [4096 * 4**i for i in range(9)]  # 4 KiB .. 256 MiB, factor 4


def _env(no_p2p: bool) -> dict:
    env = dict(SAFETY_ENV)
    if no_p2p:
        env["NCCL_P2P_DISABLE"] = "1"
    return env


def _worker(rank, world, port, args, env, out_path):
    os.environ.update(env)  # inherited already (set before spawn); set again so no rank can miss it
    import numpy as np
    import torch
    import torch.distributed as dist

    cuda = not args.cpu
    backend = "nccl" if cuda else "gloo"
    if not cuda:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        torch.set_num_threads(1)
    else:
        torch.cuda.set_device(rank)
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timedelta(seconds=120)
    )
    dev = torch.device("cuda", rank) if cuda else torch.device("cpu")
    stream_sync = torch.cuda.current_stream().synchronize if cuda else (lambda: None)
    device_sync = torch.cuda.synchronize if cuda else (lambda: None)
    n, rounds, warmup = args.iters, args.rounds, args.warmup
    bufs = [torch.zeros(max(1, s // 4), dtype=torch.float32, device=dev) for s in args.sizes]
    res = {m: [[] for _ in bufs] for m in METHODS}

    # as the sweep does: its own group (fresh NCCL communicator), unless --default-group
    group = None if args.default_group else dist.new_group(backend=backend)

    def ar(x):
        dist.all_reduce(x, group=group)

    def align(x):
        ar(x)
        stream_sync()

    # --- old_sweep: the loop as it was (opbreak/collectives.py before issue 23), verbatim in effect
    for _ in range(rounds):
        for j, x in enumerate(bufs):
            for _ in range(warmup):
                ar(x)
            device_sync()
            dist.barrier(group=group)
            t0 = time.perf_counter()
            for _ in range(n):
                ar(x)
            device_sync()
            res["old_sweep"][j].append((time.perf_counter() - t0) / n)
            for _ in range(n):  # its per-call loop, which ran right before the next size's round
                ar(x)
                device_sync()

    # --- the other methods, per size, methods interleaved within each round
    for j, x in enumerate(bufs):
        for _ in range(warmup):
            ar(x)
        stream_sync()
        for _ in range(rounds):
            align(x)
            if cuda:
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
            t0 = time.perf_counter()
            for _ in range(n):
                ar(x)
            if cuda:
                e1.record()
            stream_sync()
            res["aligned_b2b"][j].append((time.perf_counter() - t0) / n)
            res["events"][j].append(e0.elapsed_time(e1) / 1e3 / n if cuda else float("nan"))

            dist.barrier(group=group)
            t0 = time.perf_counter()
            for _ in range(n):
                ar(x)
            stream_sync()
            res["barrier_b2b"][j].append((time.perf_counter() - t0) / n)

            calls = []
            for _ in range(n):
                t0 = time.perf_counter()
                ar(x)
                stream_sync()
                calls.append(time.perf_counter() - t0)
            res["percall"][j].append(float(np.median(calls)))
        align(x)
        t0 = time.perf_counter()
        for _ in range(args.long_iters):
            ar(x)
        stream_sync()
        res["long_b2b"][j].append((time.perf_counter() - t0) / args.long_iters)

    # --- graph: n calls captured once per size, replayed `rounds` times
    for j, x in enumerate(bufs):
        ok, g = 1.0, None
        if cuda and not args.no_graph:
            try:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(3):
                        ar(x)
                torch.cuda.current_stream().wait_stream(side)
                stream_sync()
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    for _ in range(n):
                        ar(x)
            except Exception as e:  # noqa: BLE001
                print(f"rank {rank}: graph capture failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                ok = 0.0
        else:
            ok = 0.0
        flag = torch.tensor([1.0 - ok], device=dev)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            res["graph"][j] = [float("nan")]
            continue
        g.replay()
        stream_sync()
        for _ in range(rounds):
            align(x)
            t0 = time.perf_counter()
            g.replay()
            stream_sync()
            res["graph"][j].append((time.perf_counter() - t0) / n)
        del g

    # slowest rank per method and size (median over rounds first, on each rank)
    med = [[float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan") for v in res[m]] for m in METHODS]
    mins = [[float(np.nanmin(v)) if np.isfinite(v).any() else float("nan") for v in res[m]] for m in METHODS]
    t = torch.tensor([med, mins], dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump(t.cpu().tolist(), f)
    dist.barrier()
    dist.destroy_process_group()


def main(argv=None):
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
    env = _env(args.no_p2p)
    os.environ.update(env)
    import numpy as np
    import pandas as pd
    import torch
    import torch.multiprocessing as mp

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from opbreak.io import free_port

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
    path = "host-memory (NCCL_P2P_DISABLE=1)" if args.no_p2p else "NCCL's choice"
    what = f"{world} gloo ranks on CPU" if args.cpu else f"{world} GPUs ({torch.cuda.get_device_name(0)}), {path}"
    print(f"# all_reduce float32, {what}; torch {torch.__version__}", end="")
    if not args.cpu:
        print(f", NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}", end="")
    print(f"\n# us per call, slowest rank, median over {args.rounds} rounds of {args.iters} calls (long_b2b: one loop)")
    grp = "default" if args.default_group else "new_group"
    print(f"# env: {' '.join(f'{k}={v}' for k, v in env.items())}; group: {grp}")
    show = df[["size_bytes"] + [f"{m}_us" for m in METHODS]].copy()
    show.columns = ["size"] + list(METHODS)
    print(show.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print("# minimum over rounds:")
    show = df[["size_bytes"] + [f"{m}_min_us" for m in METHODS]].copy()
    show.columns = ["size"] + list(METHODS)
    print(show.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    if args.out:
        df.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
