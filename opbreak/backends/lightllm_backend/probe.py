"""Decode explained to the host: one decode step split on the host clock, and its layer stack
replayed from a CUDA graph (``decode_graph: true``).

Why a separate probe and not the timed steps: the split needs a synchronize before and after the
layer stack and the graph needs a capture and many replays; both would change the steps they
measure. The probe runs after the timed run, on the same model, batch and KV cache, at a few
context lengths, and its steps are never counted in the phase timings. Each probed step is
LightLLM's own decode step (``model.forward``), with ``_token_forward`` (the embedding, the
layer stack and the lm_head; LightLLM 0.0.1's ``basemodel.py``) wrapped:

- ``setup_ms``: host, from the step's start to the layer stack's call: the step's own inputs,
  ``mem_manager.alloc_contiguous`` (``torch.nonzero`` + ``.item()``) and
  ``init_some_extra_state`` (``.item()``): the host syncs outside the stack;
- ``issue_ms``: host time to launch the whole stack (Python, kernel launches, collective calls),
  of which ``collective_call_ms`` inside ``torch.distributed`` calls (``collective_calls``);
- ``drain_ms``: after the last launch, until the GPU finished the stack (the GPU's backlog, and
  waiting for the other rank's collectives);
- ``sampling_ms``: softmax, argmax and the ``.cpu()`` copy that ends the step;
- ``step_ms``: the four together, the probed step end to end (without the replays below);
- ``replay_ms``: the same stack (same inputs, NCCL included) replayed from a CUDA graph, per
  replay (CUDA events over ``replays`` back-to-back replays): the stack without its host;
- ``replay_max_abs_diff``: the replay's logits against the eager stack's on the same inputs;
- ``near_plain_ms``: the median of the ``NEAR`` plain steps just before, timed on the host clock in
  the same way: the plain step the split stands for, at the same moment of the host.

Replaying a step is idempotent: it writes the same key/value rows to the same cache slots.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .batch import StaticBatch

PROBE_POINTS = 3  # context lengths probed per run, evenly over the decode
REPLAYS = 20  # back-to-back graph replays timed per context length
NEAR = 3  # plain steps timed on the host clock right before each probed step: its same-moment reference


def probe_steps(output_len: int, points: int = PROBE_POINTS) -> list[int]:
    """Decode step indices to probe: evenly spaced over the decode, leaving room for the plain
    steps timed before each (``NEAR``) and excluding the last step."""
    if output_len < 3:
        return [output_len - 1] if output_len else []
    first = min(NEAR, output_len - 2)
    return sorted({int(round(x)) for x in np.linspace(first, output_len - 2, points)})


class _CollectiveClock:
    """Host time spent inside torch.distributed collective calls while installed."""

    NAMES = ("all_reduce", "all_gather")

    def __init__(self):
        self.ms, self.calls, self._saved = 0.0, 0, {}

    def _wrap(self, fn):
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.ms += (time.perf_counter() - t) * 1e3
                self.calls += 1

        return timed

    def __enter__(self):
        import torch.distributed as dist

        for n in self.NAMES:
            self._saved[n] = getattr(dist, n)
            setattr(dist, n, self._wrap(self._saved[n]))
        return self

    def __exit__(self, *exc):
        import torch.distributed as dist

        for n, fn in self._saved.items():
            setattr(dist, n, fn)


def _replay(stack, input_ids, state, reference, replays: int) -> dict:
    """Capture ``stack(input_ids, state)`` into a CUDA graph, check it against ``reference``,
    and time ``replays`` back-to-back replays with CUDA events (and the host's launch time)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture stream, as torch's graph docs ask
        stack(input_ids, state)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    # thread_local: NCCL's watchdog thread may query events while this thread captures
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        out = stack(input_ids, state)
    graph.replay()
    torch.cuda.synchronize()
    diff = float((out.float() - reference.float()).abs().max().item())
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    t = time.perf_counter()
    for _ in range(replays):
        graph.replay()
    host_ms = (time.perf_counter() - t) * 1e3
    end.record()
    torch.cuda.synchronize()
    row = dict(
        replay_ms=start.elapsed_time(end) / replays,
        replay_host_ms=host_ms / replays,
        replay_max_abs_diff=diff,
        replays=replays,
    )
    del graph, out
    return row


def _probe_step(model, sb, plain, i: int, graph: bool, replays: int) -> dict:
    """Run decode step ``i`` through LightLLM with its layer stack wrapped (module docstring);
    ``plain`` is a disabled Recorder made beforehand (making one allocates CUDA events)."""
    stack = model._token_forward  # the bound method LightLLM's _decode calls
    row: dict = {"step": i, "context_len": sb.I + i + 1}
    clock = {}

    def wrapped(input_ids, state):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        row["setup_ms"] = (t0 - clock["start"]) * 1e3
        with _CollectiveClock() as cc:
            out = stack(input_ids, state)
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        row.update(
            issue_ms=(t1 - t0) * 1e3,
            drain_ms=(t2 - t1) * 1e3,
            collective_call_ms=cc.ms,
            collective_calls=cc.calls,
        )
        if graph:
            try:
                row.update(_replay(stack, input_ids, state, out, replays))
            except Exception as e:  # a failed capture is reported, never fatal to the measurement
                row["graph_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                torch.cuda.synchronize()
        clock["after_stack"] = time.perf_counter()
        return out

    model._token_forward = wrapped
    try:
        clock["start"] = time.perf_counter()
        sb.decode(plain, i)
        t_end = time.perf_counter()
    finally:
        del model._token_forward  # the instance attribute; LightLLM's method shows again
    row["sampling_ms"] = (t_end - clock["after_stack"]) * 1e3
    row["step_ms"] = row["setup_ms"] + row["issue_ms"] + row["drain_ms"] + row["sampling_ms"]
    return row


def probe_decode(model, spec, tokens, inst, graph: bool, replays: int = REPLAYS) -> list[dict]:
    """Prefill, then decode up to the last probed step with LightLLM's own code; probe the chosen steps."""
    from ...timing import Recorder

    steps = probe_steps(spec["output_len"])
    if not steps:
        return []
    sb = StaticBatch(model, spec, tokens)
    sb.reset()
    plain = Recorder("cuda_events", enabled=False)
    rows = []
    near: list[float] = []
    with torch.inference_mode():
        inst.use(False)
        sb.prefill(plain)
        for i in range(steps[-1] + 1):
            if i in steps:
                row = _probe_step(model, sb, plain, i, graph, replays)
                row["near_plain_ms"] = float(np.median(near)) if near else float("nan")
                rows.append(row)
                near = []
            else:
                t = time.perf_counter()
                sb.decode(plain, i)  # ends in LightLLM's .cpu() of the sampled ids: the GPU is done
                near = (near + [(time.perf_counter() - t) * 1e3])[-NEAR:]
    sb.reset()
    torch.cuda.synchronize()
    return rows
