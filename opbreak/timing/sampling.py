"""Which decode steps are instrumented, and how a phase total is rebuilt from them.

A decode step runs in one of three modes, chosen before the run (:func:`step_plan`):

- ``plain``: LightLLM's own code, only the step's end to end is timed;
- ``events``: every op bracketed by CUDA events (the wall view: what the stream waits);
- ``kernels``: op ranges under a one-step torch.profiler session (the GPU-busy view, CUPTI).

Plain and instrumented steps alternate in one process, so the instrumentation's cost is
measured, not assumed (:func:`overhead_ms`): the plain steps' end to end, fitted
over context length, is what an instrumented step would have cost without it.
"""

from __future__ import annotations

import numpy as np


def sample_steps(total: int, k: int) -> list[int]:
    """k evenly spaced step indices in [0, total-1], first and last included."""
    if k <= 0 or k >= total:
        return list(range(total))
    if k == 1:
        return [0]
    return sorted({int(round(i * (total - 1) / (k - 1))) for i in range(k)})


def step_plan(total: int, sample: int = 0, kernel_steps: int = 0) -> list[str]:
    """Mode of every decode step: events on ``sample`` evenly spaced steps (all when 0),
    kernels on ``kernel_steps`` steps placed midway between them, plain elsewhere."""
    plan = ["plain"] * total
    for i in sample_steps(total, sample):
        plan[i] = "events"
    if kernel_steps <= 0 or total <= 0:
        return plan
    free = [i for i, m in enumerate(plan) if m == "plain"] or list(range(total))
    for j in range(min(kernel_steps, total)):
        want = (j + 0.5) * total / kernel_steps
        i = min(free, key=lambda s: abs(s - want))  # nearest free step
        plan[i] = "kernels"
        free = [s for s in free if s != i] or [s for s in range(total) if plan[s] == "events"]
        if not free:
            break
    return plan


def integrate_over_context(ctx_sampled, series: dict, ctx_all, method: str = "linear_fit") -> dict:
    """Sum over ``ctx_all`` of each series modeled over context length.

    ``linear_fit`` (default): least-squares line per op (decode op time is constant
    or linear in context); unbiased for the total when the samples are evenly
    spaced, slow steps included. ``robust``: the same, refit without samples whose
    residual exceeds 4 robust sigmas (drops real slow steps, so it underestimates
    the total). ``piecewise``: linear interpolation between samples (trapezoids).
    """
    xs = np.asarray(ctx_sampled, dtype=float)
    order = np.argsort(xs)
    xs = xs[order]
    xa = np.asarray(ctx_all, dtype=float)
    out = {}
    for op, ys in series.items():
        y = np.asarray(ys, dtype=float)[order]
        if len(xs) == 1:
            out[op] = float(y[0] * len(xa))
        elif method == "piecewise" or len(xs) < 3:
            out[op] = float(np.interp(xa, xs, y).sum())
        else:
            keep = _robust_keep(xs, y) if method == "robust" else np.ones(len(xs), bool)
            b, a = np.polyfit(xs[keep], y[keep], 1)
            out[op] = float((a + b * xa).sum())
    return out


def _robust_keep(xs, y):
    keep = np.ones(len(xs), bool)
    for _ in range(2):
        b, a = np.polyfit(xs[keep], y[keep], 1)
        r = y - (a + b * xs)
        mad = np.median(np.abs(r[keep] - np.median(r[keep])))
        if mad <= 0:
            break
        new = np.abs(r) <= 4 * 1.4826 * mad
        if new.sum() < 3 or (new == keep).all():
            break
        keep = new
    return keep


def plain_fit(steps: list[dict]):
    """Line of the plain steps' end to end over context length (None with < 2 plain steps)."""
    plain = [s for s in steps if s.get("mode") == "plain"]
    if len(plain) < 2:
        return None
    x = np.array([s["context_len"] for s in plain], float)
    y = np.array([s["e2e_ms"] for s in plain], float)
    if np.ptp(x) == 0:
        return lambda c: float(np.median(y))
    b, a = np.polyfit(x, y, 1)
    return lambda c: float(a + b * c)


def overhead_ms(steps: list[dict]) -> dict:
    """Per mode: total time the instrumented steps took beyond a plain step of the same context,
    and the median per-step overhead as a fraction (NaN without plain steps to compare)."""
    fit = plain_fit(steps)
    out = {}
    for mode in ("events", "kernels"):
        rows = [s for s in steps if s.get("mode") == mode]
        if fit is None or not rows:
            out[mode] = dict(steps=len(rows), added_ms=float("nan"), per_step=float("nan"))
            continue
        added = np.array([s["e2e_ms"] - fit(s["context_len"]) for s in rows])
        rel = np.array([s["e2e_ms"] / fit(s["context_len"]) - 1 for s in rows])
        out[mode] = dict(steps=len(rows), added_ms=float(added.sum()), per_step=float(np.median(rel)))
    return out


def scale_to_total(estimate: dict, total_ms: float, overhead: float) -> tuple[dict, float]:
    """Scale per-op estimates so they add up to the measured phase minus the instrumentation's cost.

    Returns (scaled ops, the overhead row). The overhead is clipped to [0, total]:
    instrumentation never saves time, and a fit's noise must not make any row
    negative. With a zero estimate nothing is scaled.
    """
    ov = 0.0 if not np.isfinite(overhead) else float(min(max(overhead, 0.0), total_ms))
    est = sum(v for v in estimate.values() if v > 0)
    target = max(total_ms - ov, 0.0)
    if est <= 0:
        return dict(estimate), ov
    k = target / est
    return {op: max(v, 0.0) * k for op, v in estimate.items()}, ov
