"""Decode truth arithmetic on synthetic data: collective wait vs transfer, the phase split, sampled-decode
scaling with the instrumentation's measured cost, and no negative time anywhere."""

import math

import numpy as np
import pandas as pd
import pytest

from opbreak import skew, views
from opbreak.ops import INSTRUMENTATION, OPS
from opbreak.timing import Recorder, scale_to_total, step_plan


def _coll(starts, ends, step=0, call=0, phase="decode", ctx=100):
    return [
        dict(
            config="c",
            repeat=0,
            rank=r,
            phase=phase,
            step=step,
            context_len=ctx,
            call=call,
            op="all_reduce",
            kernel="ncclDevKernel",
            start_us=s,
            end_us=e,
        )
        for r, (s, e) in enumerate(zip(starts, ends))
    ]


def test_wait_is_time_to_the_last_arrival_and_transfer_the_rest():
    calls = skew.split_calls(pd.DataFrame(_coll([1000.0, 1300.0], [1310.0, 1310.0])))
    r0, r1 = calls.set_index("rank").loc[0], calls.set_index("rank").loc[1]
    assert r0["wait_ms"] == pytest.approx(0.3) and r1["wait_ms"] == 0.0  # rank 0 arrived first, waited 300 us
    assert r0["transfer_ms"] == pytest.approx(0.01) and r1["transfer_ms"] == pytest.approx(0.01)
    assert r0["kernel_ms"] == pytest.approx(r0["wait_ms"] + r0["transfer_ms"])
    assert calls.attrs["clipped"] == 0


def test_a_transfer_ending_before_the_last_arrival_is_clipped_and_counted():
    calls = skew.split_calls(pd.DataFrame(_coll([1000.0, 1300.0], [1200.0, 1310.0])))  # clocks disagree
    assert (calls["transfer_ms"] >= 0).all() and calls.attrs["clipped"] == 1


def test_calls_missing_on_a_rank_are_dropped():
    rows = _coll([0.0, 5.0], [10.0, 10.0]) + _coll([20.0, 25.0], [30.0, 30.0], call=1)[:1]
    assert len(skew.split_calls(pd.DataFrame(rows))) == 2


def test_phase_totals_scale_captured_steps_to_every_step():
    rows = [r for s in range(4) for r in _coll([0.0, 100.0], [110.0, 110.0], step=s * 10, ctx=100 + s * 10)]
    calls = skew.split_calls(pd.DataFrame(rows))
    steps = pd.DataFrame(
        [
            dict(config="c", repeat=0, rank=r, phase="decode", step=s, context_len=100 + s)
            for r in (0, 1)
            for s in range(40)
        ]
    )
    tot = skew.phase_totals(calls, steps).set_index("rank")
    assert tot.loc[0, "wait_ms"] == pytest.approx(40 * 0.1) and tot.loc[1, "wait_ms"] == pytest.approx(0.0)
    assert tot.loc[0, "transfer_ms"] == pytest.approx(40 * 0.01) and tot.loc[0, "calls"] == pytest.approx(40)


def _split_inputs(wall, compute, wait, transfer):
    ops = pd.DataFrame(
        [
            dict(
                config="c",
                repeat=0,
                rank=0,
                phase="decode",
                op="ffn",
                time_ms=compute,
                kernel_ms=compute,
                modeled=False,
            )
        ]
    )
    steps = pd.DataFrame(
        [dict(config="c", repeat=0, rank=0, phase="decode", step=i, context_len=i, e2e_ms=wall / 10) for i in range(10)]
    )
    coll = pd.DataFrame([dict(config="c", repeat=0, rank=0, phase="decode", wait_ms=wait, transfer_ms=transfer)])
    return ops, steps, coll


@pytest.mark.parametrize("wait", [1.0, 50.0, 500.0])
def test_phase_split_adds_up_to_the_wall_and_is_never_negative(wait):
    ps = views.phase_split(*_split_inputs(wall=100.0, compute=40.0, wait=wait, transfer=5.0)).iloc[0]
    parts = [ps[p] for p in views.SPLIT_PARTS]
    assert min(parts) >= 0 and sum(parts) == pytest.approx(100.0)
    assert all(0 <= ps[p.replace("_ms", "_share")] <= 1 for p in views.SPLIT_PARTS)
    assert bool(ps["wait_capped"]) == (wait > 55.0)
    assert ps["wall_per_step_ms"] == pytest.approx(10.0)


def test_scale_to_total_clips_negatives_and_adds_up():
    scaled, ov = scale_to_total({"ffn": 10.0, "attention": 30.0, "unattributed": -2.0}, total_ms=50.0, overhead=5.0)
    assert ov == 5.0 and min(scaled.values()) >= 0
    assert sum(scaled.values()) + ov == pytest.approx(50.0)
    scaled, ov = scale_to_total({"ffn": 10.0}, total_ms=50.0, overhead=-3.0)  # a fit can say "faster": clip
    assert ov == 0.0 and sum(scaled.values()) == pytest.approx(50.0)
    scaled, ov = scale_to_total({"ffn": 10.0}, total_ms=50.0, overhead=float("nan"))
    assert ov == 0.0


def _run(plan, slow_ms=2.0, plain_ms=1.0):
    """A fake decode: instrumented steps take slow_ms longer (synthetic clock, no sleeping)."""
    rec, plain = Recorder("perf_counter"), Recorder("perf_counter", enabled=False)
    t = {"now": 0.0}
    clock = lambda: t["now"]  # noqa: E731
    for r in (rec, plain):
        r._stamp = r.clock.stamp = clock
    for i, mode in enumerate(plan):
        r = rec if mode == "events" else plain
        with r.phase("decode", step=i, context_len=100 + i):
            r.mark("infer_setup")
            t["now"] += 0.0001
            with r.op("attention"):
                t["now"] += (plain_ms + (slow_ms if mode == "events" else 0)) / 1e3
    rec.integrate_sampled("decode", [s for s in plain.steps], len(plan))
    return rec


def test_sampled_decode_adds_up_to_the_measured_phase_with_the_overhead_shown():
    rec = _run(step_plan(64, 8))
    rows = [r for r in rec.op_rows() if r["phase"] == "decode"]
    e2e = sum(s["e2e_ms"] for s in rec.steps)
    assert sum(r["time_ms"] for r in rows) == pytest.approx(e2e, rel=1e-9)
    assert all(r["time_ms"] >= 0 for r in rows)  # no negative time, ever
    inst = next(r for r in rows if r["op"] == INSTRUMENTATION)
    assert inst["time_ms"] == pytest.approx(8 * 2.0, rel=0.05)  # 8 event steps, 2 ms each beyond plain
    attention = next(r for r in rows if r["op"] == "attention")
    # scaled in proportion: near its plain cost (64 ms), far from the instrumented estimate (64 x 3 ms)
    assert 64 * 1.0 <= attention["time_ms"] <= 64 * 1.1 + 0.1
    assert {r["op"] for r in rows} <= set(OPS)


def test_step_plan_modes_are_disjoint_and_counted():
    plan = step_plan(1024, 64, 8)
    assert plan.count("events") == 64 and plan.count("kernels") == 8 and plan.count("plain") == 1024 - 72
    assert plan[0] == "events" and plan[-1] == "events"
    assert step_plan(4, 0, 0) == ["events"] * 4


def test_over_repeats_medians_and_flags():
    df = pd.DataFrame(
        [
            dict(config="c", repeat=k, rank=0, phase="decode", wall_ms=v, wait_capped=k == 1)
            for k, v in enumerate([1.0, 3.0, 100.0])
        ]
    )
    out = views.over_repeats(df).iloc[0]
    assert out["wall_ms"] == 3.0 and bool(out["wait_capped"]) and out["repeats"] == 3


def test_decode_tables_of_a_cpu_run_have_no_kernel_view_and_nothing_negative():
    ops = pd.DataFrame(
        [
            dict(
                config="c",
                repeat=0,
                rank=0,
                phase=p,
                op="ffn",
                time_ms=5.0,
                kernel_ms=np.nan,
                modeled=False,
                time_ms_measured=5.0,
            )
            for p in ("prefill", "decode")
        ]
    )
    steps = pd.DataFrame(
        [
            dict(
                config="c",
                repeat=0,
                rank=0,
                phase=p,
                step=0,
                context_len=1,
                e2e_ms=6.0,
                mode="events",
                phase_added_ms=0.0,
            )
            for p in ("prefill", "decode")
        ]
    )
    t = views.decode_tables(ops, steps, pd.DataFrame(columns=skew.SPLIT_COLUMNS[:6] + ["kernel", "start_us", "end_us"]))
    ps = t["phase_split"]
    assert ps["compute_ms"].isna().all() and ps["host_idle_ms"].isna().all()
    for df in t.values():
        if isinstance(df, pd.DataFrame):
            num = df.select_dtypes("number")
            assert not (num < 0).any().any()
    assert math.isnan(t["rank_ops"]["host_ms"].iloc[0])


def test_a_pair_across_hosts_is_flagged_when_decode_is_host_bound():
    from opbreak.report.decode import HOST_BOUND, host_flags

    prov = [
        dict(config="a", host="h1", host_after=dict(cpu_model="Xeon A")),
        dict(config="b", host="h2", host_after=dict(cpu_model="EPYC B")),
    ]
    ps = pd.DataFrame(
        [
            dict(config=c, rank=0, phase="decode", host_idle_share=share)
            for c, share in (("a", HOST_BOUND + 0.1), ("b", 0.05))
        ]
    )
    pairs = [dict(a="a", b="b")]
    assert len(host_flags(dict(provenance=prov, phase_split=ps), pairs)) == 1
    ps["host_idle_share"] = 0.05  # GPU-bound decode: the host does not set the pace, no flag
    assert host_flags(dict(provenance=prov, phase_split=ps), pairs) == []
    same = [dict(p, host="h1", host_after=dict(cpu_model="Xeon A")) for p in prov]
    assert host_flags(dict(provenance=same, phase_split=ps.assign(host_idle_share=0.9)), pairs) == []
