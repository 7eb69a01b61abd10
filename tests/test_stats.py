"""Statistics over repeats behave as documented."""

import math

import numpy as np
import pytest

from opbreak.stats import bootstrap_ci, mad_outliers, ratio_ci, repeats_for_ci, summarize


def test_summary_of_known_values():
    s = summarize([10.0, 11.0, 12.0, 13.0, 14.0], unstable_cv=0.2)  # CV 0.13
    assert s["median_ms"] == 12.0 and s["mean_ms"] == 12.0
    assert s["std_ms"] == pytest.approx(np.std([10, 11, 12, 13, 14], ddof=1))
    assert s["cv"] == pytest.approx(s["std_ms"] / 12.0)
    assert s["ci_lo_ms"] <= 12.0 <= s["ci_hi_ms"] and s["ci_lo_ms"] >= 10 and s["ci_hi_ms"] <= 14
    assert not s["unstable"]


def test_unstable_flag_follows_threshold():
    x = [10.0, 20.0, 10.0, 20.0]
    assert summarize(x, unstable_cv=0.1)["unstable"]
    assert not summarize(x, unstable_cv=0.9)["unstable"]


def test_mad_flags_the_outlier_only():
    x = np.array([10.0, 10.2, 9.9, 10.1, 10.0, 30.0])
    assert mad_outliers(x).tolist() == [False] * 5 + [True]
    assert summarize(x, 0.1)["n_outliers"] == 1


def test_bootstrap_ci_covers_true_median_most_of_the_time():
    rng = np.random.default_rng(1)
    hits = 0
    for i in range(100):
        x = rng.normal(5.0, 1.0, 30)
        lo, hi = bootstrap_ci(x, seed=i)
        hits += lo <= 5.0 <= hi
    assert 85 <= hits <= 100


def test_single_value_has_no_ci():
    lo, hi = bootstrap_ci([3.0])
    assert math.isnan(lo) and math.isnan(hi)
    assert math.isnan(summarize([3.0], 0.1)["cv"])


def test_ratio_ci_brackets_the_speedup():
    a = np.array([1.0, 1.1, 0.9, 1.05])
    b = 2 * a
    point, lo, hi = ratio_ci(a, b)
    assert point == pytest.approx(2.0) and lo <= 2.0 <= hi


def test_repeats_for_ci_grows_with_cv():
    assert repeats_for_ci(0.01) == 2
    assert repeats_for_ci(0.10) == math.ceil((1.959964 * 0.10 / 0.05) ** 2)
    assert repeats_for_ci(0.2) > repeats_for_ci(0.1)
