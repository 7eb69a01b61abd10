"""Alpha-beta ring model: exact recovery, a real gloo sweep fit, the 4 vs 8 GPU story."""

import numpy as np
import pytest

from opbreak.collectives import (
    fit_alpha_beta,
    ring_allgather_time,
    ring_allreduce_time,
    tp_scaling_explainer,
)
from opbreak.sweep import allreduce_sweep, sweep_table


def test_ring_formula_and_vectorized():
    assert ring_allreduce_time(1e6, 1, 1e9, 1e-5) == 0.0
    assert ring_allreduce_time(1e6, 4, 1e9, 1e-5) == pytest.approx(1.5e-3 + 6e-5)
    t = ring_allreduce_time(np.array([0.0, 1e6]), 8, 1e9, 1e-5)
    np.testing.assert_allclose(t, [14e-5, 1.75e-3 + 14e-5])
    assert ring_allgather_time(1e6, 4, 1e9, 1e-5) == pytest.approx(0.75e-3 + 3e-5)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_fit_exact_recovery(n):
    sizes = np.logspace(10, 27, 12, base=2)
    alpha, bw = 7.5e-6, 123e9
    a, b = fit_alpha_beta(sizes, ring_allreduce_time(sizes, n, bw, alpha), n)
    assert a == pytest.approx(alpha, rel=1e-9)
    assert b == pytest.approx(bw, rel=1e-9)


def test_fit_relative_weighting_keeps_small_messages():
    # 1% multiplicative noise: a relative fit keeps alpha; an absolute one would not
    rng = np.random.default_rng(0)
    sizes = np.logspace(10, 28, 19, base=2)
    t = ring_allreduce_time(sizes, 8, 100e9, 5e-6) * rng.normal(1, 0.01, sizes.size)
    a, b = fit_alpha_beta(sizes, t, 8)
    assert a == pytest.approx(5e-6, rel=0.05)
    assert b == pytest.approx(100e9, rel=0.05)


def test_decode_allreduce_grows_from_4_to_8():
    # A100 NVLink per direction 300 GB/s, 8 us per hop; LLaMA2-70B, batch 20, fp16
    df = tp_scaling_explainer(
        hidden_size=8192, batch=20, input_len=1024, dtype_bytes=2, alpha_s=8e-6, bw_bytes_per_s=300e9
    ).set_index(["phase", "n"])
    dec4, dec8 = df.loc[("decode", 4)], df.loc[("decode", 8)]
    assert dec4["latency_share"] > 0.5 and dec8["latency_share"] > 0.5
    assert dec8["total_s"] > dec4["total_s"]  # more GPUs, slower decode all_reduce
    pre4 = df.loc[("prefill", 4)]
    assert pre4["bandwidth_s"] > 10 * pre4["latency_s"]
    assert df.loc[("prefill", 8), "vs_first_n"] == pytest.approx(
        (1.75 * 20 * 1024 * 8192 * 2 / 300e9 + 14 * 8e-6) / (1.5 * 20 * 1024 * 8192 * 2 / 300e9 + 6 * 8e-6)
    )


SWEEP_SIZES = [64 * 1024 * 2**i for i in range(5)]  # 64 KiB .. 1 MiB: one CPU cache regime


def test_fit_reproduces_real_gloo_sweep():
    """Fit a real 2-process gloo sweep; every size within 10% of the fitted model.

    Fits the lower envelope of individually synchronized calls (``percall_p10_s``, 200 calls a
    size, interleaved over 20 rounds): on this shared 2-vCPU host other processes only ever ADD
    millisecond wake-up delays, which move a median (and a round of back-to-back calls) by 2-5x at
    random and would test the
    neighbours, not the model. Sizes stay in one CPU cache regime (beyond ~2 MiB the per-byte cost
    of a CPU all-reduce jumps, which no single alpha-beta line describes). A sweep is re-measured up
    to 4 times; each attempt must meet the full 10% assertion on its own.
    """
    errors = []
    for _ in range(4):
        df = allreduce_sweep(SWEEP_SIZES, 2, iters=10, rounds=20)  # 200 per-call samples, interleaved
        assert list(df.columns[:4]) == ["size_bytes", "time_s", "algbw_GBps", "busbw_GBps"]
        np.testing.assert_allclose(df["algbw_GBps"], df["size_bytes"] / df["time_s"] / 1e9)
        np.testing.assert_allclose(df["busbw_GBps"], df["algbw_GBps"])  # 2(n-1)/n = 1
        assert (df["time_min_s"] <= df["time_p10_s"]).all()
        assert (df["time_p10_s"] <= df["time_s"]).all()
        assert (df["rounds"] == 20).all() and (df["calls_per_round"] == 10).all()
        assert (df["percall_p10_s"] <= df["percall_median_s"]).all()
        assert (df["percall_median_s"] <= df["percall_p90_s"]).all()
        t = df["percall_p10_s"].to_numpy()
        a, b = fit_alpha_beta(df["size_bytes"], t, 2)
        rel = ring_allreduce_time(df["size_bytes"].to_numpy(), 2, b, a) / t - 1
        errors.append(float(np.abs(rel).max()))
        if errors[-1] < 0.10:
            assert a > 0 and np.isfinite(b)
            return
    pytest.fail(f"alpha-beta fit misses a measured size by >10% in every attempt: {errors}")


def test_sweep_covers_every_size_nccl_tests_style():
    sizes = [1024 * 4**i for i in range(7)] + [8 << 20]
    df = allreduce_sweep(sizes, 2)
    assert df["size_bytes"].tolist() == sizes and (df["time_s"] > 0).all()
    # larger messages never get cheaper per call
    assert df["time_p10_s"].iloc[-1] > df["time_p10_s"].iloc[0]
    # CPU: no CUDA events, no CUDA graph; the timing method is recorded (issue 23)
    assert df[["time_events_s", "graph_time_s", "graph_time_min_s"]].isna().all().all()
    assert (df["timing"] == "aligned-b2b").all()


def test_sweep_table_keeps_old_columns_and_adds_events_and_graph():
    batch = [np.array([3.0, 1.0, 2.0]), np.array([6.0, 4.0, 5.0])]
    per_call = [np.arange(10.0), np.arange(10.0) + 1]
    df = sweep_table(
        [4096, 8192],
        2,
        batch,
        per_call,
        20,
        events=[[1.5, 0.5, 1.0], [4.0, 3.0, 3.5]],
        graphs=[[0.2, 0.1], [float("nan"), float("nan")]],
    )
    old = [
        "size_bytes",
        "time_s",
        "algbw_GBps",
        "busbw_GBps",
        "time_p10_s",
        "time_min_s",
        "rounds",
        "calls_per_round",
        "percall_p10_s",
        "percall_median_s",
        "percall_p90_s",
    ]
    assert list(df.columns[: len(old)]) == old
    assert df["time_s"].tolist() == [2.0, 5.0] and df["time_min_s"].tolist() == [1.0, 4.0]
    assert df["time_events_s"].tolist() == [1.0, 3.5]
    assert df["graph_time_s"].iloc[0] == pytest.approx(0.15) and df["graph_time_min_s"].iloc[0] == 0.1
    assert np.isnan(df["graph_time_s"].iloc[1])  # capture failed on that size: empty, not zero
    bare = sweep_table([4096], 2, batch[:1], per_call[:1], 20)
    assert bare[["time_events_s", "graph_time_s"]].isna().all().all()
