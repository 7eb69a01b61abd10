"""Operator timing shared by every backend (opbreak.timing), on the CPU.

The Recorder's closure and marks, which decode steps are sampled and how sampled
steps integrate over context length, and the profiler-trace join. No GPU or
LightLLM needed: these run everywhere.
"""

import math

import pytest

from opbreak.ops import OPS, UNATTRIBUTED
from opbreak.timing import Recorder, integrate_over_context, sample_steps


def test_sample_steps():
    s = sample_steps(1024, 64)
    assert s[0] == 0 and s[-1] == 1023 and len(s) == 64
    assert sample_steps(10, 0) == list(range(10))


def test_integration_is_exact_for_linear_costs():
    ctx_all = list(range(1025, 2049))
    idx = sample_steps(len(ctx_all), 16)
    ctx_s = [ctx_all[i] for i in idx]
    f = lambda c: 0.5 + 1e-3 * c  # noqa: E731
    est = integrate_over_context(ctx_s, {"attention": [f(c) for c in ctx_s]}, ctx_all)
    assert math.isclose(est["attention"], sum(f(c) for c in ctx_all), rel_tol=1e-9)


def test_recorder_closure_and_sampled_decode():
    import time

    rec = Recorder("perf_counter")
    plain = Recorder("perf_counter", enabled=False)
    steps = sample_steps(12, 4)
    for i in range(12):
        r = rec if i in steps else plain
        with r.phase("decode", step=i, context_len=100 + i):
            r.mark("infer_setup")
            with r.op("attention"):
                time.sleep(0.001)
            with r.op("ffn"):
                pass
    rec.integrate_sampled("decode", plain.steps, 12)
    rows = {r["op"]: r for r in rec.op_rows() if r["phase"] == "decode"}
    total = sum(r["time_ms"] for r in rows.values())
    e2e = sum(s["e2e_ms"] for s in rec.steps)
    assert len(rec.steps) == 12 and sum(s["instrumented"] for s in rec.steps) == len(steps)
    assert math.isclose(total, e2e, rel_tol=1e-9)  # attributed + unattributed = measured end to end
    assert rows["attention"]["calls"] == 12
    assert rows["attention"]["time_ms"] > 0.9 * 12  # ~1 ms a step, interpolated to all 12
    assert rec.meta["decode_sample"]["sampled"] == 4
    assert set(rows) <= set(OPS)


def test_recorder_marks_partition_the_phase():
    rec = Recorder("perf_counter")
    with rec.phase("prefill"):
        rec.mark("infer_setup")
        with rec.op("embedding"):
            pass
        with rec.op("o_proj"):
            pass
        with rec.op("o_proj", count=False):
            pass
    c = rec.phase_closure()["prefill"]
    assert c["closure"] > 0.5
    assert rec.calls[("prefill", "o_proj")] == 1
    got = sum(v for (p, _), v in rec.op_ms.items() if p == "prefill")
    assert math.isclose(got, rec.steps[0]["e2e_ms"], rel_tol=1e-9)
    with pytest.raises(KeyError):
        rec.op("not_an_op")
    with pytest.raises(KeyError):
        rec.op(UNATTRIBUTED)


def test_profiler_trace_join_counts_driver_launched_kernels():
    from opbreak.timing import kernel_sums_from_trace

    ev = [
        {"cat": "user_annotation", "name": "opbreak/phase/decode/3", "ts": 0, "dur": 100},
        {"cat": "user_annotation", "name": "opbreak/op/attn_norm", "ts": 10, "dur": 10},
        {"cat": "user_annotation", "name": "opbreak/op/ffn", "ts": 30, "dur": 20},
        {"cat": "cuda_driver", "name": "cuLaunchKernelEx", "ts": 12, "args": {"correlation": 1}},  # Triton
        {"cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 35, "args": {"correlation": 2}},
        {"cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 60, "args": {"correlation": 3}},  # outside ops
        {"cat": "kernel", "name": "_rms_norm_fwd_fused", "ts": 500, "dur": 1000, "args": {"correlation": 1}},
        {"cat": "kernel", "name": "gemm", "ts": 1600, "dur": 3000, "args": {"correlation": 2}},
        {"cat": "kernel", "name": "add", "ts": 4700, "dur": 500, "args": {"correlation": 3}},
    ]
    phase, ops, coll = kernel_sums_from_trace({"traceEvents": ev})
    assert phase == {3: 4.5}
    assert ops == {3: {"attn_norm": 1.0, "ffn": 3.0}}
    assert coll == {}  # no NCCL kernel in this trace


def test_torch_profiler_on_cpu_runs_and_records_no_negative_time():
    """The torch_profiler method and a KernelCapture session run on a CPU torch backend step: no GPU, so no
    kernel time, but phases, calls and the trace parse work and nothing is negative."""
    import torch

    from opbreak.timing import KernelCapture

    rec = Recorder("torch_profiler")
    with rec.session():
        with rec.phase("decode", step=0, context_len=10):
            with rec.op("ffn"):
                torch.ones(64, 64) @ torch.ones(64, 64)
    rows = rec.op_rows()
    assert rows and all(r["time_ms"] >= 0 for r in rows if r["time_ms"] == r["time_ms"])
    assert rec.calls[("decode", "ffn")] == 1
    kcap = KernelCapture()
    for step in range(2):
        with kcap.session(), kcap.phase("decode", step=step, context_len=10 + step):
            with kcap.op("attention"):
                torch.ones(32, 32).sum()
    assert [c["step"] for c in kcap.captured] == [0, 1]
    assert all(c["kernel_ms"] == 0.0 and c["collectives"] == [] for c in kcap.captured)  # CPU: no kernels
    assert kcap.kernel_view("decode", [10, 11, 12]) == {("decode", "unattributed"): 0.0}
