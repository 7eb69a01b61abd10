"""Operator timing shared by every backend.

A backend brackets work with ``rec.phase(...)`` (timed end to end on its own
clock) and ``rec.op(name)`` (one mark on enter, one on exit). Every instant
between two marks belongs to exactly one segment: the op that was entered, or
``host_gap`` after an op exited and before the next one entered. What the marks
do not cover inside a phase is ``unattributed``: computed, never dropped.

Clocks: ``perf_counter`` (CPU, synchronous work), ``cuda_events`` (default on
CUDA: events in the stream, read after the phase synchronizes) and
``blocking_host`` (perf_counter under CUDA_LAUNCH_BLOCKING=1, the seed's method,
kept so the report can show how far it is off).
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

from .ops import OPS, UNATTRIBUTED

HOST_GAP = "host_gap"
METHODS = ("perf_counter", "cuda_events", "blocking_host", "torch_profiler")


class _HostClock:
    """perf_counter marks; exact for synchronous (CPU or blocking) work."""

    def stamp(self):
        return time.perf_counter()

    def resolve(self, stamps):
        return [s * 1e3 for s in stamps]  # ms, relative origin irrelevant

    def release(self, stamps):
        pass


class _CudaClock:
    """CUDA events from a reusable pool; resolved after one synchronize."""

    def __init__(self, torch):
        self.torch = torch
        self.pool = []

    def stamp(self):
        ev = self.pool.pop() if self.pool else self.torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev

    def resolve(self, stamps):
        if not stamps:
            return []
        stamps[-1].synchronize()
        first = stamps[0]
        return [0.0] + [first.elapsed_time(e) for e in stamps[1:]]

    def release(self, stamps):
        self.pool.extend(stamps)


def make_clock(method: str):
    if method in ("perf_counter", "blocking_host"):
        return _HostClock()
    if method in ("cuda_events", "torch_profiler"):
        import torch

        return _CudaClock(torch)
    raise ValueError(f"unknown timing method {method!r}; use one of {METHODS}")


class Recorder:
    """Collects per-(phase, op) time and calls, and per-step end-to-end time.

    ``enabled=False`` makes every call a no-op except phase timing, so the same
    code path measures plain end-to-end for overhead comparisons.
    """

    def __init__(self, method: str = "perf_counter", enabled: bool = True):
        self.method = method
        self.enabled = enabled
        self.clock = make_clock(method)
        self.op_ms = defaultdict(float)  # (phase, op) -> ms
        self.calls = defaultdict(int)  # (phase, op) -> count
        self.steps = []  # dicts: phase, step, context_len, e2e_ms, attributed_ms
        self.modeled = defaultdict(lambda: [0, 0])  # (phase, op) -> [calls, bytes]
        self._marks = None  # list of (op_name, stamp) while a phase is open
        self._phase = None

    # -- phases -----------------------------------------------------------
    @contextmanager
    def phase(self, name: str, step: int = 0, context_len: int = 0):
        if self._phase is not None:
            raise RuntimeError(f"phase {name!r} opened inside phase {self._phase!r}")
        self._phase = name
        self._marks = []
        start = self.clock.stamp()
        try:
            yield self
        finally:
            end = self.clock.stamp()
            marks, self._marks, self._phase = self._marks, None, None
            stamps = [start] + [s for _, s in marks] + [end]
            t = self.clock.resolve(stamps)
            e2e = t[-1] - t[0]
            attributed = 0.0
            for i, (op, _) in enumerate(marks):
                dt = t[i + 2] - t[i + 1]
                self.op_ms[(name, op)] += dt
                attributed += dt
            self.op_ms[(name, UNATTRIBUTED)] += e2e - attributed
            self.steps.append(
                dict(phase=name, step=step, context_len=context_len, e2e_ms=e2e, attributed_ms=attributed)
            )
            self.clock.release(stamps)

    # -- ops --------------------------------------------------------------
    @contextmanager
    def op(self, name: str):
        if not self.enabled or self._marks is None:
            yield
            return
        if name not in OPS:
            raise KeyError(f"op {name!r} is not in the operator vocabulary (opbreak.ops.OPS)")
        self._marks.append((name, self.clock.stamp()))
        self.calls[(self._phase, name)] += 1
        try:
            yield
        finally:
            self._marks.append((HOST_GAP, self.clock.stamp()))

    def record_modeled(self, op: str, nbytes: int):
        """A collective that emulated TP did not execute: its size, for theory to time."""
        if self._phase is None:
            raise RuntimeError("record_modeled outside a phase")
        entry = self.modeled[(self._phase, op)]
        entry[0] += 1
        entry[1] += int(nbytes)

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
