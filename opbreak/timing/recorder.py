"""The Recorder: per-(phase, op) time from marks on one clock, per-step end to end.

A backend brackets work with ``rec.phase(...)`` (timed end to end on its own
clock) and ``rec.op(name)`` (one mark on enter, one on exit). Every instant
between two marks belongs to exactly one segment: the op that was entered, or
``host_gap`` after an op exited and before the next one entered. ``rec.mark(name)``
starts a segment without an exit mark (it ends at the next mark): cheaper, used
for framework work such as ``infer_setup``. What the marks do not cover inside a
phase is ``unattributed``: computed, never dropped.

The clock (``method``) is one of :mod:`.clocks`. Under ``torch_profiler`` ops become
``record_function`` ranges instead of marks; per op the CUPTI kernel time launched
inside its ranges is summed (:mod:`.profiler`), and ``host_gap`` is the phase time
no kernel ran.

:class:`~.kernel_capture.KernelCapture` is a Recorder for the GPU-busy view of chosen
steps only (one profiler session per step), next to the wall view of the event steps
(:mod:`.sampling`).
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager

from ..ops import INSTRUMENTATION, OPS, UNATTRIBUTED
from .clocks import make_clock
from .profiler import OP_TAG, PHASE_TAG, kernel_sums_from_trace
from .sampling import integrate_over_context, overhead_ms, scale_to_total

HOST_GAP = "host_gap"


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
            self.rf = rec._torch.autograd.profiler.record_function(OP_TAG + self.name)
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

    mode = "events"  # what an enabled recorder's steps are (KernelCapture: "kernels")

    def __init__(self, method: str = "perf_counter", enabled: bool = True):
        self.method = method
        self.enabled = enabled
        self.clock = make_clock(method)
        self._stamp = self.clock.stamp
        self.op_ms = defaultdict(float)  # (phase, op) -> ms
        self.calls = defaultdict(int)  # (phase, op) -> count
        self.steps = []  # dicts: phase, step, context_len, e2e_ms, attributed_ms, mode
        self.step_ops = []  # per step (aligned with steps): {op: ms}
        self.modeled = defaultdict(lambda: [0, 0])  # (phase, op) -> [calls, bytes]
        self.meta = {}  # what was done (sampled decode, profiler), for the backend's extra
        self._names = None  # segment names while a phase is open (marks mode)
        self._stamps = None
        self._nocount = []
        self.exit_marks = True  # False: enter marks only (half the events; no host_gap segments)
        self._phase = None
        self._ops = {}
        self._prof_phases = {}  # step index -> phase name, for profiler parsing
        self._trace_raw = None
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
            rf = self._torch.autograd.profiler.record_function(f"{PHASE_TAG}{name}/{len(self.steps)}")
            rf.__enter__()
        self.clock.begin()
        start = self.clock.stamp()
        try:
            yield self
        finally:
            end = self.clock.stamp()
            if rf is not None:
                rf.__exit__(None, None, None)
            self._close_phase(name, step, context_len, start, end, prof)

    def _close_phase(self, name, step, context_len, start, end, prof):
        names, stamps = self._names, self._stamps
        self._names = self._stamps = self._phase = None
        allstamps = [start] + (stamps or []) + [end]
        t = self.clock.resolve(allstamps)
        e2e = t[-1] - t[0]
        per = {}
        for i, op in enumerate(names or ()):
            per[op] = per.get(op, 0.0) + t[i + 2] - t[i + 1]
        attributed = sum(per.values())
        for op, dt in per.items():
            self.op_ms[(name, op)] += dt
        for op in names or ():
            if op != HOST_GAP:
                self.calls[(name, op)] += 1
        for op in self._nocount:
            self.calls[(name, op)] -= 1
        self._nocount = []
        if prof:
            self._prof_phases[len(self.steps)] = name
        else:
            self.op_ms[(name, UNATTRIBUTED)] += e2e - attributed
        self.steps.append(
            dict(
                phase=name,
                step=step,
                context_len=context_len,
                e2e_ms=e2e,
                attributed_ms=attributed,
                instrumented=bool(self.enabled),
                mode=self.mode if self.enabled else "plain",
            )
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
            _check_op(name)
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
            _check_op(name)
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
        """Run under torch.profiler for the torch_profiler method (else nothing); parsed on exit."""
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
            trace = self._load_trace(prof)
            self._parse_host(trace)
            self._parse_profile(*kernel_sums_from_trace(trace))
            self._prof_phases = {}

    def _load_trace(self, prof):
        import json
        import os
        import tempfile

        fd, raw = tempfile.mkstemp(suffix=".json", prefix="opbreak-trace-")
        os.close(fd)
        prof.export_chrome_trace(raw)
        if self._trace_raw is None:
            self._trace_raw = raw  # the first session's trace is kept for export
        with open(raw) as f:
            trace = json.load(f)
        if raw != self._trace_raw:
            os.unlink(raw)
        return trace

    def _parse_host(self, trace):
        """The host side of the profiled steps: kept by :class:`KernelCapture` only."""

    def _parse_profile(self, phase_kernel, op_kernel, collectives):
        """Kernel time per op and step; host_gap (GPU idle) and unattributed close each step."""
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
            kernel_ms_total=self.meta.get("torch_profiler", {}).get("kernel_ms_total", 0.0)
            + sum(phase_kernel.values()),
            host_gap="phase end to end minus GPU time of the kernels launched in it (GPU idle)",
            unattributed="GPU time of kernels launched outside any op range",
        )

    def export_trace(self, path):
        """Chrome trace (Perfetto) of the (first) profiled session; gzip when the path ends in .gz."""
        raw = self._trace_raw
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
    def integrate_sampled(self, phase: str, others: list[dict], total_steps: int):
        """Per-op totals of ``phase`` over all steps from this recorder's (event) steps.

        ``others``: the phase's other steps (plain and kernel-capture), end to end only.
        Per-op time per step (``unattributed`` included) is fitted over context length
        and summed over every step (:func:`.sampling.integrate_over_context`), then
        scaled so that ops + ``instrumentation`` = the measured end to end of all steps,
        where ``instrumentation`` is what the instrumented steps cost beyond plain ones
        (:func:`.sampling.overhead_ms`). No row can come out negative.
        """
        idx = [i for i, s in enumerate(self.steps) if s["phase"] == phase]
        if not idx:
            return
        series = self._step_series(idx)
        all_steps = sorted([self.steps[i] for i in idx] + list(others), key=lambda s: s["step"])
        est = integrate_over_context(
            [self.steps[i]["context_len"] for i in idx], series, [s["context_len"] for s in all_steps]
        )
        e2e_all = sum(s["e2e_ms"] for s in all_steps)
        ov = overhead_ms(all_steps)
        added = sum(v["added_ms"] for v in ov.values() if v["steps"] and v["added_ms"] == v["added_ms"])
        scaled, ov_ms = scale_to_total(est, e2e_all, added)
        for key in [k for k in self.op_ms if k[0] == phase]:
            del self.op_ms[key]
        self.op_ms.update({(phase, op): v for op, v in scaled.items()})
        self.op_ms[(phase, INSTRUMENTATION)] = ov_ms
        self._scale_counts(phase, len(idx), len(all_steps))
        self._replace_steps(phase, all_steps)
        self.meta[f"{phase}_sample"] = dict(
            instrumented_steps=[int(s["step"]) for s in all_steps if s.get("mode") == "events"],
            total_steps=total_steps,
            sampled=len(idx),
            e2e_ms_all_steps=e2e_all,
            estimated_ms=sum(est.values()),
            scale=(e2e_all - ov_ms) / sum(est.values()) if sum(est.values()) else 1.0,
            instrumentation_ms=ov_ms,
            overhead=ov,
            method="least-squares line per op over context length, scaled to the measured phase minus overhead",
        )

    def _step_series(self, idx):
        per = [dict(self.step_ops[i]) for i in idx]
        for p, i in zip(per, idx):
            p[UNATTRIBUTED] = self.steps[i]["e2e_ms"] - sum(p.values())
        ops = sorted({op for p in per for op in p}, key=OPS.index)
        return {op: [p.get(op, 0.0) for p in per] for op in ops}

    def _scale_counts(self, phase, n_s, n_all):
        for key in [k for k in self.calls if k[0] == phase]:
            self.calls[key] = int(round(self.calls[key] * n_all / n_s))
        for key in [k for k in self.modeled if k[0] == phase]:
            self.modeled[key][0] = int(round(self.modeled[key][0] * n_all / n_s))
            self.modeled[key][1] = int(round(self.modeled[key][1] * n_all / n_s))

    def _replace_steps(self, phase, all_steps):
        keep = [(s, o) for s, o in zip(self.steps, self.step_ops) if s["phase"] != phase]
        self.steps = [s for s, _ in keep] + list(all_steps)
        self.step_ops = [o for _, o in keep] + [{} for _ in all_steps]

    # -- results ----------------------------------------------------------
    def op_rows(self, kernel_ms: dict | None = None):
        """Tidy rows (phase, op, time_ms, kernel_ms, calls, modeled, modeled_bytes).

        ``kernel_ms``: (phase, op) -> GPU-busy ms from a :class:`KernelCapture` (NaN where absent).
        """
        kernel_ms = kernel_ms or {}
        rows = []
        keys = set(self.op_ms) | set(self.modeled) | set(kernel_ms)
        for phase, op in sorted(keys, key=lambda k: (k[0], OPS.index(k[1]))):
            if (phase, op) in self.modeled:
                calls, nbytes = self.modeled[(phase, op)]
                rows.append(
                    dict(
                        phase=phase,
                        op=op,
                        time_ms=float("nan"),
                        kernel_ms=float("nan"),
                        calls=calls,
                        modeled=True,
                        modeled_bytes=nbytes,
                    )
                )
            if (phase, op) in self.op_ms or (phase, op) in kernel_ms:
                rows.append(
                    dict(
                        phase=phase,
                        op=op,
                        time_ms=self.op_ms.get((phase, op), 0.0),
                        kernel_ms=kernel_ms.get((phase, op), float("nan")),
                        calls=self.calls.get((phase, op), 0),
                        modeled=False,
                        modeled_bytes=0,
                    )
                )
        return rows

    def phase_closure(self):
        """Per phase: end to end, attributed to named ops (incl. host_gap/infer_setup), and the share."""
        out = {}
        for phase in {s["phase"] for s in self.steps}:
            e2e = sum(s["e2e_ms"] for s in self.steps if s["phase"] == phase)
            named = sum(
                v for (p, op), v in self.op_ms.items() if p == phase and op not in (UNATTRIBUTED, INSTRUMENTATION)
            )
            out[phase] = dict(e2e_ms=e2e, attributed_ms=named, closure=named / e2e if e2e else float("nan"))
        return out


def _check_op(name):
    if name not in OPS or name in (UNATTRIBUTED, INSTRUMENTATION):
        raise KeyError(f"op {name!r} is not in the operator vocabulary (opbreak.ops.OPS)")
