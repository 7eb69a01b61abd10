"""The decode probe's table, its pair speedups, the host setup helpers and the report section (no GPU)."""

import re

import numpy as np
import pandas as pd
import pytest

from opbreak import hostsetup
from opbreak.backends.lightllm_backend.probe import probe_steps
from opbreak.contract import HOST_PAIR_COLUMNS as PAIR_COLUMNS
from opbreak.contract import PROBE_COLUMNS as COLUMNS
from opbreak.host_views import decode_probe, pair_speedups
from opbreak.report.evidence import EvidenceLog
from opbreak.report.host import host_context


def _probe(ctx, setup, issue, coll, drain, samp, replay):
    return dict(
        step=ctx - 100,
        context_len=ctx,
        setup_ms=setup,
        issue_ms=issue,
        collective_call_ms=coll,
        collective_calls=65,
        drain_ms=drain,
        sampling_ms=samp,
        step_ms=setup + issue + drain + samp,
        replay_ms=replay,
        replay_host_ms=0.02,
        replay_max_abs_diff=0.0,
        replays=20,
        near_plain_ms=setup + issue + drain + samp + 0.5,
    )


def _prov(config, repeat, ranks):
    return dict(
        config=config, repeat=repeat, backend_extra={str(r): dict(decode_probe=rows) for r, rows in ranks.items()}
    )


def _steps(config, repeat, rank, per_ms):
    ctx = np.arange(101, 140)
    return pd.DataFrame(
        dict(config=config, repeat=repeat, rank=rank, phase="decode", step=ctx - 101, context_len=ctx, mode="plain")
    ).assign(e2e_ms=per_ms + 0.01 * (ctx - 101))


@pytest.fixture
def study():
    rows_tp2 = [_probe(c, 1.0, 30.0, 3.0, 2.0, 0.5, 7.0) for c in (110, 120, 130)]
    rows_tp1 = [_probe(c, 0.8, 14.0, 0.0, 0.5, 0.5, 11.0) for c in (110, 120, 130)]
    provs = [_prov("tp2", r, {0: rows_tp2, 1: rows_tp2}) for r in (0, 1)] + [
        _prov("tp1", r, {0: rows_tp1}) for r in (0, 1)
    ]
    steps = pd.concat(
        [_steps("tp2", r, k, 33.0) for r in (0, 1) for k in (0, 1)] + [_steps("tp1", r, 0, 15.5) for r in (0, 1)]
    )
    return decode_probe(provs, steps)


def test_probe_table_adds_up_and_is_never_negative(study):
    assert list(study.columns) == COLUMNS
    assert (study["repeats"] == 2).all()
    num = study[[c for c in COLUMNS if c not in ("config", "graph_error", "closure_basis")]]
    assert (num.fillna(0) >= 0).all().all()
    parts = study["setup_ms"] + study["issue_ms"] + study["drain_ms"] + study["sampling_ms"]
    assert np.allclose(parts, study["step_ms"])
    assert np.allclose(study["launch_ms"] + study["collective_call_ms"], study["issue_ms"])
    r = study[(study["config"] == "tp2") & (study["rank"] == 0) & (study["context_len"] == 120)].iloc[0]
    assert r["plain_ms"] == pytest.approx(33.0 + 0.01 * 19)
    assert r["closure"] == pytest.approx(r["step_ms"] / r["near_plain_ms"])
    assert r["closure_basis"] == "plain steps just before"
    assert r["host_over_replay_ms"] == pytest.approx(32.0 - 7.0)


def test_nothing_probed_gives_an_empty_table_with_its_columns():
    empty = decode_probe([dict(config="c", repeat=0, backend_extra={"0": {}})], pd.DataFrame())
    assert empty.empty and list(empty.columns) == COLUMNS
    assert pair_speedups(empty, [dict(a="c", b="d")]).columns.tolist() == PAIR_COLUMNS


def test_pair_speedups_with_and_without_the_host(study):
    hp = pair_speedups(study, [dict(a="tp2", b="tp1", label="TP2 vs TP1"), dict(a="tp2", b="missing")])
    assert len(hp) == 1
    r = hp.iloc[0]
    assert r["speedup_with_host"] == pytest.approx(r["plain_b_ms"] / r["plain_a_ms"])
    assert r["speedup_without_host"] == pytest.approx(11.0 / 7.0)
    assert r["speedup_with_host"] < 1 < r["speedup_without_host"]


def test_report_sentences_cite_only_table_cells(study):
    hp = pair_speedups(study, [dict(a="tp2", b="tp1", label="TP2 vs TP1")])
    log = EvidenceLog()
    ctx = host_context(dict(decode_probe=study, host_pairs=hp, provenance=[]), ["tp1", "tp2"], log, {})
    assert ctx["any"] and len(ctx["sentences"]) == 4  # tp1 rank 0, tp2 ranks 0 and 1, one pair
    shown = {e.shown for e in log.rows}
    for s in ctx["sentences"]:
        body = re.sub(r"\*\*[^*]+\*\*", "", s.text)  # config names may hold digits
        for num in re.findall(r"\d+(?:\.\d+)?", body):
            assert any(num in v for v in shown), (num, s.text)


def test_probe_steps_spread_over_the_decode():
    assert probe_steps(256) == [3, 128, 254]
    assert probe_steps(2) == [1] and probe_steps(0) == []
    assert all(0 <= s < 5 for s in probe_steps(5))


def test_cpu_lists_and_pinning():
    assert hostsetup.parse_cpulist("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert hostsetup.compress([0, 1, 2, 3, 8, 10, 11]) == "0-3,8,10-11"
    cpus = list(range(32))
    assert hostsetup.choose_cpus("none", 0, 2, cpus, None) is None
    a, b = (hostsetup.choose_cpus("disjoint", r, 2, cpus, None) for r in (0, 1))
    assert a == list(range(16)) and b == list(range(16, 32))
    assert hostsetup.choose_cpus("numa", 1, 2, cpus, list(range(8, 16))) == list(range(12, 16))
    assert hostsetup.choose_cpus("numa", 0, 2, cpus, None) == a  # node unknown: disjoint
    assert all(hostsetup.choose_cpus("disjoint", r, 3, [0, 1], None) for r in range(3))  # more ranks than CPUs


def _trace():
    """A Kineto-like trace of one decode step: setup with a sync outside ops, o_proj holding an all_reduce."""
    ann = lambda name, ts, dur: dict(cat="user_annotation", name=name, ts=ts, dur=dur)  # noqa: E731
    rt = lambda name, ts, dur: dict(cat="cuda_runtime", name=name, ts=ts, dur=dur, args={})  # noqa: E731
    return dict(
        traceEvents=[
            ann("opbreak/phase/decode/7", 0, 1000),
            rt("cudaStreamSynchronize", 10, 40),  # LightLLM's .item() before the stack
            ann("opbreak/op/o_proj", 100, 300),
            rt("cudaLaunchKernel", 110, 5),
            ann("opbreak/op/all_reduce", 150, 100),
            rt("cuLaunchKernelEx", 160, 7),
            rt("cudaLaunchKernel", 300, 5),  # the residual add, back in o_proj
            ann("opbreak/op/sampling", 500, 200),
            rt("cudaMemcpyAsync", 510, 3),  # neither a launch nor a sync
            rt("cudaStreamSynchronize", 520, 150),
            rt("cudaLaunchKernel", 1500, 5),  # after the step: not counted
        ]
    )


def test_host_side_of_each_op_from_a_trace():
    from opbreak.timing.profiler import OUTSIDE_OPS, host_sums_from_trace

    h = host_sums_from_trace(_trace())[7]
    assert h[OUTSIDE_OPS] == dict(cpu_ms=0.0, launches=0, launch_ms=0.0, syncs=1, sync_ms=0.04)
    assert h["o_proj"]["launches"] == 2 and h["o_proj"]["cpu_ms"] == pytest.approx(0.2)  # 300 - nested 100 us
    assert h["all_reduce"]["launches"] == 1 and h["all_reduce"]["launch_ms"] == pytest.approx(0.007)
    assert h["sampling"]["syncs"] == 1 and h["sampling"]["sync_ms"] == pytest.approx(0.15)
    assert sum(v["launches"] for v in h.values()) == 3


def test_host_ops_table_and_sync_sentence():
    from opbreak.host_views import HOST_OP_COLUMNS, host_ops
    from opbreak.report.host import sync_sentences

    ops = {"decode": {"sampling": dict(cpu_ms=0.2, launches=2, launch_ms=0.01, syncs=1, sync_ms=0.15)}}
    provs = [dict(config="c", repeat=r, backend_extra={"0": dict(host_ops=ops)}) for r in (0, 1)]
    ho = host_ops(provs)
    assert list(ho.columns) == HOST_OP_COLUMNS and len(ho) == 1 and ho["repeats"].iloc[0] == 2
    log = EvidenceLog()
    (s,) = sync_sentences(dict(host_ops=ho), ["c"], log)
    assert "`sampling` 1 (0.15 ms)" in s.text and len(s.evidence) == 2
    assert host_ops([dict(config="c", repeat=0)]).columns.tolist() == HOST_OP_COLUMNS
