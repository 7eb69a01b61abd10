"""CUPTI kernel times from torch.profiler Chrome traces: per op range, per step, per collective call.

Why a trace and not torch's FunctionEvent tree: every kernel, copy and memset in
the trace carries the correlation id of the runtime or driver call that launched
it, so Triton kernels (driver-API launches outside torch's dispatcher) and NCCL
kernels are joined to the op range whose host code launched them.

Timestamps: Kineto writes ``ts`` in microseconds on the host clock it also maps
CUPTI's GPU timestamps to, either absolute or relative to ``baseTimeNanoseconds``.
:func:`trace_base_us` undoes the latter, so kernels of two processes on one host
are on one clock and a collective's per-rank start times can be compared
(:mod:`opbreak.collective_skew`).
"""

from __future__ import annotations

import bisect
from collections import defaultdict

PHASE_TAG = "opbreak/phase/"
OP_TAG = "opbreak/op/"
GPU_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
COLLECTIVE_KERNEL = "nccl"  # NCCL's kernels are named ncclKernel_* / ncclDevKernel_*


def trace_base_us(trace) -> float:
    """Offset that turns the trace's ``ts`` into absolute host-clock microseconds."""
    if isinstance(trace, dict) and trace.get("baseTimeNanoseconds"):
        return float(trace["baseTimeNanoseconds"]) / 1e3
    return 0.0


def _index(trace):
    """Launch times by correlation id, opbreak ranges, and GPU activities of a trace."""
    ev = trace["traceEvents"] if isinstance(trace, dict) else trace
    launch_ts, ranges, gpu = {}, [], []
    for e in ev:
        cat = e.get("cat")
        if cat in ("cuda_runtime", "cuda_driver"):
            c = (e.get("args") or {}).get("correlation")
            if c is not None:
                launch_ts[c] = e["ts"]
        elif cat == "user_annotation" and e.get("name", "").startswith("opbreak/"):
            ranges.append((e["ts"], e["ts"] + e.get("dur", 0), e["name"]))
        elif cat in GPU_CATS:
            gpu.append(e)
    phases = sorted(r for r in ranges if r[2].startswith(PHASE_TAG))
    ops = sorted(r for r in ranges if r[2].startswith(OP_TAG))
    gpu.sort(key=lambda g: g["ts"])
    return launch_ts, phases, ops, gpu


def _covering(ranges, starts, ts, lo):
    """The range in ``ranges`` (sorted by start, none nested) that holds ``ts``, not starting before ``lo``."""
    j = bisect.bisect_right(starts, ts) - 1
    while j >= 0 and ranges[j][1] < ts and ranges[j][0] >= lo:
        j -= 1  # o_proj/ffn continuations after an all_reduce: step back to a covering one
    if j >= 0 and ranges[j][0] <= ts <= ranges[j][1]:
        return ranges[j]
    return None


def kernel_sums_from_trace(trace):
    """Per phase step: GPU time of all activities launched inside it, per op range, and collective calls.

    Returns ``(phase_ms, op_ms, collectives)``: ``phase_ms[idx]`` total GPU ms of
    step ``idx`` (the number after the phase tag), ``op_ms[idx][op]`` per op, and
    ``collectives[idx]`` a list of dicts (op, kernel, start_us, end_us) of the NCCL
    kernels in launch order, on the absolute host clock.
    """
    launch_ts, phases, ops, gpu = _index(trace)
    base = trace_base_us(trace)
    pstarts, ostarts = [p[0] for p in phases], [o[0] for o in ops]
    phase_k = defaultdict(float)
    op_k = defaultdict(lambda: defaultdict(float))
    coll = defaultdict(list)
    for g in gpu:
        ts = launch_ts.get((g.get("args") or {}).get("correlation"))
        if ts is None:
            continue
        i = bisect.bisect_right(pstarts, ts) - 1
        if i < 0 or ts > phases[i][1]:
            continue
        idx = int(phases[i][2].rsplit("/", 1)[1])
        ms = g.get("dur", 0) / 1e3
        phase_k[idx] += ms
        rng = _covering(ops, ostarts, ts, phases[i][0])
        op = rng[2][len(OP_TAG) :] if rng else None
        if op is not None:
            op_k[idx][op] += ms
        if COLLECTIVE_KERNEL in g.get("name", "").lower():
            coll[idx].append(
                dict(
                    op=op or "unattributed",
                    kernel=g["name"][:60],
                    start_us=g["ts"] + base,
                    end_us=g["ts"] + g.get("dur", 0) + base,
                )
            )
    return dict(phase_k), {k: dict(v) for k, v in op_k.items()}, dict(coll)


LAUNCH_CALL = "LaunchKernel"  # cudaLaunchKernel(ExC), cuLaunchKernel(Ex): the host's kernel launches
SYNC_CALL = "Synchronize"  # cudaStreamSynchronize, cudaDeviceSynchronize, cudaEventSynchronize: the host blocks
OUTSIDE_OPS = "(outside ops)"
HOST_FIELDS = ("cpu_ms", "launches", "launch_ms", "syncs", "sync_ms")


def _self_ms(ops):
    """Each op range's host duration minus the ranges nested in it (an all_reduce inside o_proj), in ms."""
    out = []
    for i, (s, e, name) in enumerate(ops):
        inner = sum(e2 - s2 for s2, e2, _ in ops[i + 1 :] if s2 >= s and e2 <= e and s2 < e)
        out.append((name[len(OP_TAG) :], max(e - s - inner, 0.0) / 1e3))
    return out


def host_sums_from_trace(trace):
    """Per phase step, the host side of each op range: its own CPU time, and the CUDA runtime and driver
    calls made inside it, split into kernel launches and host syncs (count and host time, ms).

    Returns ``{step index: {op: {cpu_ms, launches, launch_ms, syncs, sync_ms}}}``; calls outside any op
    range (the step's setup, LightLLM's KV allocation and its ``.item()`` syncs) go under
    ``(outside ops)``. The ranges are the same ``opbreak/op/*`` annotations the GPU-busy view uses.
    """
    ev = trace["traceEvents"] if isinstance(trace, dict) else trace
    ranges = [
        (e["ts"], e["ts"] + e.get("dur", 0), e["name"])
        for e in ev
        if e.get("cat") == "user_annotation" and e.get("name", "").startswith("opbreak/")
    ]
    phases = sorted(r for r in ranges if r[2].startswith(PHASE_TAG))
    ops = sorted(r for r in ranges if r[2].startswith(OP_TAG))
    pstarts, ostarts = [p[0] for p in phases], [o[0] for o in ops]
    out = defaultdict(lambda: defaultdict(lambda: dict.fromkeys(HOST_FIELDS, 0.0)))

    def step_of(ts):
        i = bisect.bisect_right(pstarts, ts) - 1
        return None if i < 0 or ts > phases[i][1] else i

    for (s, _, _), (op, ms) in zip(ops, _self_ms(ops)):
        i = step_of(s)
        if i is not None:
            out[int(phases[i][2].rsplit("/", 1)[1])][op]["cpu_ms"] += ms
    for e in ev:
        if e.get("cat") not in ("cuda_runtime", "cuda_driver"):
            continue
        kind = "launch" if LAUNCH_CALL in e.get("name", "") else "sync" if SYNC_CALL in e.get("name", "") else None
        i = step_of(e["ts"]) if kind else None
        if i is None:
            continue
        rng = _covering(ops, ostarts, e["ts"], phases[i][0])
        cell = out[int(phases[i][2].rsplit("/", 1)[1])][rng[2][len(OP_TAG) :] if rng else OUTSIDE_OPS]
        cell["launches" if kind == "launch" else "syncs"] += 1
        cell[kind + "_ms"] += e.get("dur", 0) / 1e3
    return {k: {op: dict(v) for op, v in d.items()} for k, d in out.items()}
