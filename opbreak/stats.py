"""Statistics over repeats: robust centre, spread, bootstrap CI, outliers.

Modelled on torch.utils.benchmark's Measurement (median and IQR first, a
warning when noisy). Pure functions on numpy arrays and pandas frames.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

MAD_Z = 3.5  # modified z-score cut (Iglewicz & Hoaglin)
CI_LEVEL = 0.95  # every confidence interval the tool prints
CI_PCT = f"{100 * CI_LEVEL:.0f}%"


def bootstrap_ci(x, stat=np.median, level=CI_LEVEL, n_resamples=2000, seed=0):
    """Percentile bootstrap CI of ``stat`` (scipy); NaNs when fewer than 2 values."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2 or np.all(x == x[0]):
        v = float(stat(x)) if len(x) else math.nan
        return (v, v) if len(x) >= 2 else (math.nan, math.nan)
    res = sps.bootstrap(
        (x,),
        stat,
        confidence_level=level,
        n_resamples=n_resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
        vectorized=False,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mad_outliers(x, z=MAD_Z):
    """Boolean mask of values whose modified z-score exceeds ``z``."""
    x = np.asarray(x, dtype=float)
    med = np.median(x)
    mad = sps.median_abs_deviation(x, scale="normal")
    if mad == 0 or not np.isfinite(mad):
        return np.zeros(len(x), dtype=bool)
    return np.abs(x - med) / mad > z


def repeats_for_ci(cv, rel_halfwidth=0.05, level=0.95):
    """Repeats needed for a CI of the mean within +-rel_halfwidth (normal approx.)."""
    if not np.isfinite(cv):
        return math.nan
    z = sps.norm.ppf(0.5 + level / 2)
    return max(2, math.ceil((z * cv / rel_halfwidth) ** 2))


def summarize(x, unstable_cv):
    """The summary row for one set of repeat values."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return dict(
            n=0,
            median_ms=math.nan,
            mean_ms=math.nan,
            std_ms=math.nan,
            iqr_ms=math.nan,
            cv=math.nan,
            ci_lo_ms=math.nan,
            ci_hi_ms=math.nan,
            n_outliers=0,
            unstable=False,
            repeats_for_5pct=math.nan,
        )
    mean = float(np.mean(x))
    std = float(np.std(x, ddof=1)) if n > 1 else math.nan
    cv = std / mean if n > 1 and mean > 0 else math.nan
    lo, hi = bootstrap_ci(x)
    q1, q3 = np.percentile(x, [25, 75])
    return dict(
        n=n,
        median_ms=float(np.median(x)),
        mean_ms=mean,
        std_ms=std,
        iqr_ms=float(q3 - q1),
        cv=cv,
        ci_lo_ms=lo,
        ci_hi_ms=hi,
        n_outliers=int(mad_outliers(x).sum()) if n >= 3 else 0,
        unstable=bool(np.isfinite(cv) and cv > unstable_cv),
        repeats_for_5pct=repeats_for_ci(cv),
    )


def summarize_groups(df, keys, value, unstable_cv):
    rows = []
    for k, g in df.groupby(list(keys), sort=False, dropna=False):
        k = k if isinstance(k, tuple) else (k,)
        rows.append({**dict(zip(keys, k)), **summarize(g[value].to_numpy(), unstable_cv)})
    return pd.DataFrame(rows)


def ratio_ci(a, b, level=0.95, n_resamples=2000, seed=0):
    """Speedup of a over b (median(b)/median(a)) with a two-sample bootstrap CI."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    point = float(np.median(b) / np.median(a))
    if len(a) < 2 or len(b) < 2:
        return point, math.nan, math.nan
    res = sps.bootstrap(
        (a, b),
        lambda x, y: np.median(y) / np.median(x),
        confidence_level=level,
        n_resamples=n_resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
        vectorized=False,
        paired=False,
    )
    return point, float(res.confidence_interval.low), float(res.confidence_interval.high)
