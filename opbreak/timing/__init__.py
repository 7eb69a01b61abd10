"""Operator timing shared by every backend (see each module's docstring).

- :mod:`.recorder`: the Recorder (per-op marks on one clock, or profiler ranges);
- :mod:`.clocks`: the clocks it marks on (host, CUDA events);
- :mod:`.kernel_capture`: KernelCapture (CUPTI kernel times of chosen steps);
- :mod:`.profiler`: parsing torch.profiler traces into kernel time per op and step,
  and the collectives' kernel timestamps;
- :mod:`.sampling`: which decode steps run in which mode, integration over context
  length, instrumentation overhead and scaling to the measured phase.
"""

from .clocks import METHODS, make_clock
from .kernel_capture import KernelCapture
from .profiler import kernel_sums_from_trace, trace_base_us
from .recorder import HOST_GAP, Recorder
from .sampling import integrate_over_context, overhead_ms, plain_fit, sample_steps, scale_to_total, step_plan

__all__ = [
    "HOST_GAP",
    "METHODS",
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
