"""Operator timing shared by every backend (see each module's docstring).

- :mod:`.recorder`: the Recorder (marks on one clock: host, CUDA events, or profiler
  ranges) and KernelCapture (CUPTI kernel times of chosen steps);
- :mod:`.profiler`: parsing torch.profiler traces into kernel time per op and step,
  and the collectives' kernel timestamps;
- :mod:`.sampling`: which decode steps run in which mode, integration over context
  length, instrumentation overhead and scaling to the measured phase.
"""

from .profiler import kernel_sums_from_trace, trace_base_us
from .recorder import HOST_GAP, METHODS, KernelCapture, Recorder, make_clock
from .sampling import MODES, integrate_over_context, overhead_ms, plain_fit, sample_steps, scale_to_total, step_plan

__all__ = [
    "HOST_GAP",
    "METHODS",
    "MODES",
    "KernelCapture",
    "Recorder",
    "integrate_over_context",
    "kernel_sums_from_trace",
    "make_clock",
    "overhead_ms",
    "plain_fit",
    "sample_steps",
    "scale_to_total",
    "step_plan",
    "trace_base_us",
]
