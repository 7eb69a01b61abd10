"""Operator timing shared by every backend.

A backend brackets work with ``rec.phase(...)`` (timed end to end on its own
clock) and ``rec.op(name)`` (one mark on enter, one on exit). Every instant
between two marks belongs to exactly one segment: the op that was entered, or
``host_gap`` after an op exited and before the next one entered. ``rec.mark(name)``
starts a segment without an exit mark (it ends at the next mark): cheaper, used
for framework work such as ``infer_setup``. What the marks do not cover inside a
phase is ``unattributed``: computed, never dropped.

Clocks (``method``):

- ``perf_counter``: host clock; exact for synchronous (CPU) work.
- ``cuda_events`` (default on CUDA): one CUDA event per boundary, recorded on the
  current stream from a preallocated, reused pool (no per-op allocation), read
  after the phase synchronizes. The time of a segment is GPU time between two
  boundaries, so GPU idle time while the host launches (decode is launch-bound)
  lands in the segment where the host was, typically ``host_gap``.
- ``blocking_host``: perf_counter under CUDA_LAUNCH_BLOCKING=1 (the seed's method;
  the measure CLI sets the variable before CUDA starts), kept so the report can
  show how far it is off.
- ``torch_profiler``: ops become ``torch.profiler.record_function`` ranges; per
  op the CUPTI kernel time launched inside its ranges is summed. Phase end to end
  is still timed with CUDA events; ``host_gap`` is the phase time no kernel ran
  (end to end minus the phase's kernel time) and ``unattributed`` the kernel
  time outside any op range. The Chrome trace is kept (``export_trace``).

Sampled decode (``integrate_sampled``): only some decode steps are instrumented;
per-op time is fitted with a least-squares line over context length and summed over every step, while
the phase end to end stays the measured sum over all steps.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

from .ops import OPS, UNATTRIBUTED

HOST_GAP = "host_gap"
METHODS = ("perf_counter", "cuda_events", "blocking_host", "torch_profiler")
_PHASE_TAG = "opbreak/phase/"
_OP_TAG = "opbreak/op/"


class _HostClock:
    """perf_counter marks; exact for synchronous (CPU or blocking) work."""

    def begin(self):
        pass

    stamp = staticmethod(time.perf_counter)

    def resolve(self, stamps):
        return [s * 1e3 for s in stamps]  # ms, relative origin irrelevant

    def release(self, stamps):
        pass


class _CudaClock:
    """CUDA events from a preallocated pool, reused every phase; resolved after one synchronize.

    A stamp is one pool lookup and one cudaEventRecord through the C binding
    (no Python Event.record frame, no current_stream() lookup per stamp).
    """

    def __init__(self, torch, prealloc=4096):
        self.torch = torch
        self.pool = [torch.cuda.Event(enable_timing=True) for _ in range(prealloc)]
        self.n = 0
        self.stream = None
        self._record = torch._C._CudaEventBase.record

    def begin(self):
        self.n = 0
        self.stream = self.torch.cuda.current_stream()

    def stamp(self):
        n = self.n
        try:
            ev = self.pool[n]
        except IndexError:
            self.pool.extend(self.torch.cuda.Event(enable_timing=True) for _ in range(len(self.pool)))
            ev = self.pool[n]
        self.n = n + 1
        self._record(ev, self.stream)
        return ev

    def resolve(self, stamps):
        if not stamps:
            return []
        stamps[-1].synchronize()
        first = stamps[0]
        return [0.0] + [first.elapsed_time(e) for e in stamps[1:]]

    def release(self, stamps):
        self.n = 0


def make_clock(method: str):
    if method in ("perf_counter", "blocking_host"):
        return _HostClock()
    if method in ("cuda_events", "torch_profiler"):
        import torch

        return _CudaClock(torch, prealloc=4096 if method == "cuda_events" else 8)
    raise ValueError(f"unknown timing method {method!r}; use one of {METHODS}")


class _Op:
    """Reusable context manager of one op name: two appends, no allocation per call.

    Calls are counted from the marks when the phase closes, not here."""

    __slots__ = ("rec", "name", "count")

    def __init__(self, rec, name, count):
        self.rec, self.name, self.count = rec, name, count

    def __enter__(self):
        rec = self.rec
        names = rec._names
        if names is not None:
            names.append(self.name)
            rec._stamps.append(rec._stamp())
            if not self.count:
                rec._nocount.append(self.name)
        return None

    def __exit__(self, *exc):
        rec = self.rec
        if rec._names is not None:
            rec._names.append(HOST_GAP)
            rec._stamps.append(rec._stamp())
        return False


class _OpEnter(_Op):
    """Enter mark only (``exit_marks=False``): the op's segment runs to the next mark, so the
    host time between ops (Python, launches) belongs to the op whose code is running."""

    __slots__ = ()

    def __exit__(self, *exc):
        return False


class _NullOp:
    __slots__ = ()

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


_NULL = _NullOp()


class _ProfOp:
    """record_function range named after the op (torch_profiler method)."""

    __slots__ = ("rec", "name", "count", "rf")

    def __init__(self, rec, name, count):
        self.rec, self.name, self.count, self.rf = rec, name, count, None

    def __enter__(self):
        rec = self.rec
        if rec._phase is not None:
            if self.count:
                rec.calls[(rec._phase, self.name)] += 1
            self.rf = rec._torch.autograd.profiler.record_function(_OP_TAG + self.name)
            self.rf.__enter__()
        return None

    def __exit__(self, *exc):
        if self.rf is not None:
            rf, self.rf = self.rf, None
            rf.__exit__(*exc)
        return False


class Recorder:
    """Collects per-(phase, op) time and calls, and per-step end-to-end time.

    ``enabled=False`` makes every op a no-op except phase timing, so the same
    code path measures plain end-to-end for overhead comparisons.
    """

    def __init__(self, method: str = "perf_counter", enabled: bool = True):
        self.method = method
        self.enabled = enabled
        self.clock = make_clock(method)
        self._stamp = self.clock.stamp
        self.op_ms = defaultdict(float)  # (phase, op) -> ms
        self.calls = defaultdict(int)  # (phase, op) -> count
        self.steps = []  # dicts: phase, step, context_len, e2e_ms, attributed_ms
        self.step_ops = []  # per step (aligned with steps): {op: ms}
        self.modeled = defaultdict(lambda: [0, 0])  # (phase, op) -> [calls, bytes]
        self.meta = {}  # what was done (sampled decode, profiler), for the backend's extra
        self._names = None  # segment names while a phase is open (marks mode)
        self._stamps = None
        self._nocount = []
        self.exit_marks = True  # False: enter marks only (half the events; no host_gap segments)
        self._phase = None
        self._ops = {}
        self._prof = None
        self._prof_phases = {}  # step index -> phase name, for profiler parsing
        if method == "torch_profiler":
            import torch

            self._torch = torch

    # -- phases -----------------------------------------------------------
    @contextmanager
    def phase(self, name: str, step: int = 0, context_len: int = 0):
        if self._phase is not None:
            raise RuntimeError(f"phase {name!r} opened inside phase {self._phase!r}")
        prof = self.method == "torch_profiler" and self.enabled
        self._phase = name
        marks = self.enabled and not prof
        self._names = [] if marks else None
        self._stamps = [] if marks else None
        rf = None
        if prof:
            rf = self._torch.autograd.profiler.record_function(f"{_PHASE_TAG}{name}/{len(self.steps)}")
            rf.__enter__()
        self.clock.begin()
        start = self.clock.stamp()
        try:
            yield self
        finally:
            end = self.clock.stamp()
            if rf is not None:
                rf.__exit__(None, None, None)
            names, stamps = self._names, self._stamps
            self._names = self._stamps = self._phase = None
            allstamps = [start] + (stamps or []) + [end]
            t = self.clock.resolve(allstamps)
            e2e = t[-1] - t[0]
            per = {}
            attributed = 0.0
            for i, op in enumerate(names or ()):
                dt = t[i + 2] - t[i + 1]
                per[op] = per.get(op, 0.0) + dt
                attributed += dt
            for op, dt in per.items():
                self.op_ms[(name, op)] += dt
            if names:
                calls = self.calls
                for op in names:
                    if op != HOST_GAP:
                        calls[(name, op)] += 1
                for op in self._nocount:
                    calls[(name, op)] -= 1
            self._nocount = []
            if not prof:
                self.op_ms[(name, UNATTRIBUTED)] += e2e - attributed
            if prof:
                self._prof_phases[len(self.steps)] = name
            self.steps.append(
                dict(phase=name, step=step, context_len=context_len, e2e_ms=e2e, attributed_ms=attributed,
                     instrumented=bool(self.enabled))
            )
            self.step_ops.append(per)
            self.clock.release(allstamps)

    # -- ops --------------------------------------------------------------
    def op(self, name: str, count: bool = True):
        """Context manager around one op; ``count=False`` continues an op without adding a call."""
        if not self.enabled:
            return _NULL
        key = (name, count)
        o = self._ops.get(key)
        if o is None:
            if name not in OPS or name == UNATTRIBUTED:
                raise KeyError(f"op {name!r} is not in the operator vocabulary (opbreak.ops.OPS)")
            cls = _ProfOp if self.method == "torch_profiler" else (_Op if self.exit_marks else _OpEnter)
            o = self._ops[key] = cls(self, name, count)
        return o

    def set_exit_marks(self, flag: bool):
        """Enter+exit marks (host_gap segments between ops) or enter marks only (cheaper)."""
        self.exit_marks = bool(flag)
        self._ops.clear()

    def mark(self, name: str):
        """Start a segment named ``name`` that ends at the next mark (one clock read)."""
        if not self.enabled or self._phase is None:
            return
        if self._names is not None:
            if name not in OPS or name == UNATTRIBUTED:
                raise KeyError(f"op {name!r} is not in the operator vocabulary (opbreak.ops.OPS)")
            self._names.append(name)
            self._stamps.append(self._stamp())
        else:
            self.calls[(self._phase, name)] += 1

    def record_modeled(self, op: str, nbytes: int):
        """A collective that emulated TP did not execute: its size, for theory to time."""
        if self._phase is None:
            raise RuntimeError("record_modeled outside a phase")
        if not self.enabled:
            return
        entry = self.modeled[(self._phase, op)]
        entry[0] += 1
        entry[1] += int(nbytes)

    # -- torch.profiler ---------------------------------------------------
    @contextmanager
    def session(self):
        """Wrap the measured run: starts torch.profiler for the torch_profiler method, else nothing."""
        if self.method != "torch_profiler" or not self.enabled:
            yield self
            return
        from torch.profiler import ProfilerActivity, profile

        prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=False)
        prof.__enter__()
        try:
            yield self
        finally:
            prof.__exit__(None, None, None)
            self._prof = prof
            self._parse_profile(prof)

    def _parse_profile(self, prof):
        """Kernel time per op range and per phase step; host_gap/unattributed close each step.

        Parsed from the Chrome trace (kept for export): every kernel, copy and
        memset is joined to the runtime/driver call that launched it, so Triton
        kernels (driver-API launches that torch's FunctionEvent tree does not
        attach to record_function ranges) are counted too.
        """
        import json
        import os
        import tempfile

        fd, raw = tempfile.mkstemp(suffix=".json", prefix="opbreak-trace-")
        os.close(fd)
        prof.export_chrome_trace(raw)
        self._trace_raw = raw
        with open(raw) as f:
            phase_kernel, op_kernel = kernel_sums_from_trace(json.load(f))
        for idx, phase in self._prof_phases.items():
            row = self.steps[idx]
            kern = phase_kernel.get(idx, 0.0)
            per = dict(op_kernel.get(idx, {}))
            named = sum(per.values())
            per[HOST_GAP] = per.get(HOST_GAP, 0.0) + row["e2e_ms"] - kern
            for op, dt in per.items():
                self.op_ms[(phase, op)] += dt
            self.op_ms[(phase, UNATTRIBUTED)] += kern - named
            row["attributed_ms"] = named + per[HOST_GAP]
            row["kernel_ms"] = kern
            self.step_ops[idx] = per
        self.meta["torch_profiler"] = dict(
            kernel_ms_total=sum(phase_kernel.values()), steps_profiled=len(self._prof_phases),
            host_gap="phase end to end minus GPU time of the kernels launched in it (GPU idle)",
            unattributed="GPU time of kernels launched outside any op range")

    def export_trace(self, path):
        """Chrome trace (Perfetto) of the profiled run; gzip when the path ends in .gz."""
        raw = getattr(self, "_trace_raw", None)
        if raw is None:
            return None
        import gzip
        import shutil

        path = str(path)
        if path.endswith(".gz"):
            with open(raw, "rb") as f, gzip.open(path, "wb", compresslevel=6) as g:
                shutil.copyfileobj(f, g)
        else:
            shutil.copyfile(raw, path)
        return path

    # -- sampled decode ---------------------------------------------------
    def integrate_sampled(self, phase: str, plain: "Recorder", total_steps: int):
        """Estimate per-op totals of ``phase`` over all steps from the instrumented ones.

        ``self`` holds the instrumented steps, ``plain`` the others (end to end only).
        Per-op time per step is interpolated linearly over context length
        (piecewise, i.e. trapezoids between sampled steps) and summed over every
        step; ``unattributed`` is the measured end to end of all steps minus
        that estimate, so the phase total stays measured, not modeled.
        """
        idx = [i for i, s in enumerate(self.steps) if s["phase"] == phase]
        if not idx:
            return
        ctx_s = [self.steps[i]["context_len"] for i in idx]
        others = [s for s in plain.steps if s["phase"] == phase]
        all_steps = sorted([self.steps[i] for i in idx] + others, key=lambda s: s["step"])
        ctx_all = [s["context_len"] for s in all_steps]
        ops = sorted({op for i in idx for op in self.step_ops[i]}, key=OPS.index)
        series = {op: [self.step_ops[i].get(op, 0.0) for i in idx] for op in ops}
        est = integrate_over_context(ctx_s, series, ctx_all)
        e2e_all = sum(s["e2e_ms"] for s in all_steps)
        for key in [k for k in self.op_ms if k[0] == phase]:
            del self.op_ms[key]
        for op, v in est.items():
            self.op_ms[(phase, op)] = v
        self.op_ms[(phase, UNATTRIBUTED)] = e2e_all - sum(est.values())
        n_s, n_all = len(idx), len(all_steps)
        for key in [k for k in self.calls if k[0] == phase]:
            self.calls[key] = int(round(self.calls[key] * n_all / n_s))
        for key in [k for k in self.modeled if k[0] == phase]:
            self.modeled[key][0] = int(round(self.modeled[key][0] * n_all / n_s))
            self.modeled[key][1] = int(round(self.modeled[key][1] * n_all / n_s))
        keep = [(s, o) for s, o in zip(self.steps, self.step_ops) if s["phase"] != phase]
        merged = keep + [(s, {}) for s in all_steps]
        for s in others:
            s["instrumented"] = False
        self.steps = [s for s, _ in merged]
        self.step_ops = [o if o else {} for _, o in merged]
        self.meta[f"{phase}_sample"] = dict(
            instrumented_steps=[self.steps_index(s) for s in all_steps if s.get("instrumented")],
            total_steps=total_steps, sampled=n_s, method="least-squares line per op over context length (opbreak.timing.integrate_over_context)",
            e2e_ms_all_steps=e2e_all, estimated_attributed_ms=sum(est.values()),
        )

    @staticmethod
    def steps_index(s):
        return int(s["step"])

    # -- results ----------------------------------------------------------
    def op_rows(self):
        """Tidy rows (phase, op, time_ms, calls, modeled, modeled_bytes)."""
        rows = []
        keys = set(self.op_ms) | set(self.modeled)
        for phase, op in sorted(keys, key=lambda k: (k[0], OPS.index(k[1]))):
            if (phase, op) in self.modeled:
                calls, nbytes = self.modeled[(phase, op)]
                rows.append(dict(phase=phase, op=op, time_ms=float("nan"), calls=calls, modeled=True, modeled_bytes=nbytes))
            if (phase, op) in self.op_ms:
                rows.append(
                    dict(phase=phase, op=op, time_ms=self.op_ms[(phase, op)], calls=self.calls.get((phase, op), 0),
                         modeled=False, modeled_bytes=0)
                )
        return rows

    def phase_closure(self):
        """Per phase: end to end, attributed to named ops (incl. host_gap/infer_setup), and the share."""
        out = {}
        for phase in {s["phase"] for s in self.steps}:
            e2e = sum(s["e2e_ms"] for s in self.steps if s["phase"] == phase)
            named = sum(v for (p, op), v in self.op_ms.items() if p == phase and op != UNATTRIBUTED)
            out[phase] = dict(e2e_ms=e2e, attributed_ms=named, closure=named / e2e if e2e else float("nan"))
        return out


def sample_steps(total: int, k: int) -> list[int]:
    """k evenly spaced step indices in [0, total-1], first and last included."""
    if k <= 0 or k >= total:
        return list(range(total))
    if k == 1:
        return [0]
    return sorted({int(round(i * (total - 1) / (k - 1))) for i in range(k)})


def integrate_over_context(ctx_sampled, series: dict, ctx_all, method: str = "linear_fit") -> dict:
    """Sum over ``ctx_all`` of each series modeled over context length.

    ``linear_fit`` (default): least-squares line per op (decode op time is
    constant or linear in context); unbiased for the total when the samples are
    evenly spaced, slow steps included. ``robust``: the same, refit without
    samples whose residual exceeds 4 robust sigmas (drops real slow steps, so it
    underestimates the total). ``piecewise``: linear interpolation between
    samples (trapezoids).
    """
    import numpy as np

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
            keep = np.ones(len(xs), bool)
            for _ in range(2 if method == "robust" else 0):
                b, a = np.polyfit(xs[keep], y[keep], 1)
                r = y - (a + b * xs)
                mad = np.median(np.abs(r[keep] - np.median(r[keep])))
                if mad <= 0:
                    break
                new = np.abs(r) <= 4 * 1.4826 * mad
                if new.sum() < 3 or (new == keep).all():
                    break
                keep = new
            b, a = np.polyfit(xs[keep], y[keep], 1)
            out[op] = float((a + b * xa).sum())
    return out


def kernel_sums_from_trace(trace: dict):
    """Per phase step: GPU time of all kernels/copies launched inside it, and per op range.

    A GPU activity belongs to the op whose CPU record_function range holds the
    runtime or driver call that launched it (joined on the correlation id), so
    Triton kernels (launched through the driver API, outside torch's dispatcher)
    count too.
    """
    import bisect
    from collections import defaultdict

    ev = trace["traceEvents"] if isinstance(trace, dict) else trace
    launch_ts = {}
    ranges = []  # (start, end, name)
    gpu = []
    for e in ev:
        cat = e.get("cat")
        if cat in ("cuda_runtime", "cuda_driver"):
            c = (e.get("args") or {}).get("correlation")
            if c is not None:
                launch_ts[c] = e["ts"]
        elif cat == "user_annotation" and e.get("name", "").startswith("opbreak/"):
            ranges.append((e["ts"], e["ts"] + e.get("dur", 0), e["name"]))
        elif cat in ("kernel", "gpu_memcpy", "gpu_memset"):
            gpu.append(e)
    phases = sorted((s, t, n) for s, t, n in ranges if n.startswith(_PHASE_TAG))
    ops = sorted((s, t, n) for s, t, n in ranges if n.startswith(_OP_TAG))
    pstarts = [p[0] for p in phases]
    ostarts = [o[0] for o in ops]
    phase_k = defaultdict(float)
    op_k = defaultdict(lambda: defaultdict(float))
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
        j = bisect.bisect_right(ostarts, ts) - 1
        while j >= 0 and ops[j][1] < ts and ops[j][0] >= phases[i][0]:
            j -= 1  # ranges do not nest here except o_proj/ffn continuations; step back to a covering one
        if j >= 0 and ops[j][0] <= ts <= ops[j][1]:
            op_k[idx][ops[j][2][len(_OP_TAG):]] += ms
    return dict(phase_k), {k: dict(v) for k, v in op_k.items()}
