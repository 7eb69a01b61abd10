"""The clocks a Recorder marks on (``method``), each resolved to milliseconds after its phase.

- ``perf_counter``: host clock; exact for synchronous (CPU) work.
- ``cuda_events`` (default on CUDA): one CUDA event per boundary, recorded on the
  current stream from a preallocated, reused pool, read after the phase
  synchronizes. A segment's time is stream time between two boundaries: the wall
  view, GPU idle while the host launches included (decode is launch-bound).
- ``blocking_host``: perf_counter under CUDA_LAUNCH_BLOCKING=1 (the seed's method).
- ``torch_profiler``: ops are timed from the profiler's kernels (:mod:`.profiler`);
  the phase's own end to end still on CUDA events (the host clock on a CPU run).
"""

from __future__ import annotations

import time

METHODS = ("perf_counter", "cuda_events", "blocking_host", "torch_profiler")


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

        if method == "torch_profiler" and not torch.cuda.is_available():
            return _HostClock()  # the profiler on a CPU run: phases on the host clock
        return _CudaClock(torch, prealloc=4096 if method == "cuda_events" else 8)
    raise ValueError(f"unknown timing method {method!r}; use one of {METHODS}")
