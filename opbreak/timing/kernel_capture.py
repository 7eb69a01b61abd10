"""KernelCapture: the GPU-busy view of chosen steps, one torch.profiler session per step (CUPTI).

Next to the wall view of the event steps (:mod:`.recorder`, :mod:`.sampling`): its steps
are real steps of the run, their kernel time per op fitted over context length like the
event steps' wall time; the host side (CPU time, launches, syncs) and the collectives'
kernel timestamps of those steps are kept too.
"""

from __future__ import annotations

import numpy as np

from ..ops import OPS, UNATTRIBUTED
from .profiler import HOST_FIELDS, host_sums_from_trace
from .recorder import Recorder
from .sampling import integrate_over_context


class KernelCapture(Recorder):
    """GPU-busy view: op ranges under a torch.profiler session per captured step (CUPTI).

    Its steps are real steps of the run (mode ``kernels``); their kernel times per op,
    per step, and the NCCL kernels' start/end on the host clock are kept in
    ``captured`` instead of being folded into ``op_ms``.
    """

    mode = "kernels"

    def __init__(self):
        super().__init__("torch_profiler")
        self.captured = []  # dicts: phase, step, context_len, e2e_ms, kernel_ms, ops {op: ms}, collectives, host
        self._host = {}

    def _parse_host(self, trace):
        self._host = host_sums_from_trace(trace)

    def _parse_profile(self, phase_kernel, op_kernel, collectives):
        for idx, phase in self._prof_phases.items():
            row = self.steps[idx]
            ops = dict(op_kernel.get(idx, {}))
            kern = phase_kernel.get(idx, 0.0)
            ops[UNATTRIBUTED] = max(kern - sum(ops.values()), 0.0)
            self.captured.append(
                dict(
                    phase=phase,
                    step=row["step"],
                    context_len=row["context_len"],
                    e2e_ms=row["e2e_ms"],
                    kernel_ms=kern,
                    ops=ops,
                    collectives=collectives.get(idx, []),
                    host=self._host.get(idx, {}),
                )
            )

    def kernel_view(self, phase: str, ctx_all) -> dict:
        """(phase, op) -> GPU-busy ms over the steps at ``ctx_all``, fitted over context length."""
        rows = [c for c in self.captured if c["phase"] == phase]
        if not rows:
            return {}
        ops = sorted({op for c in rows for op in c["ops"]}, key=OPS.index)
        series = {op: [c["ops"].get(op, 0.0) for c in rows] for op in ops}
        est = integrate_over_context([c["context_len"] for c in rows], series, ctx_all)
        return {(phase, op): max(v, 0.0) for op, v in est.items()}

    def host_view(self) -> dict:
        """Per phase and op: the host side (CPU time, launches, syncs) per captured step, medians over steps."""
        out = {}
        for phase in sorted({c["phase"] for c in self.captured}):
            rows = [c["host"] for c in self.captured if c["phase"] == phase]
            ops = sorted({op for r in rows for op in r})
            out[phase] = {
                op: {f: float(np.median([r.get(op, {}).get(f, 0.0) for r in rows])) for f in HOST_FIELDS} for op in ops
            }
        return out

    def collective_rows(self):
        """One row per captured collective kernel: phase, step, context_len, call, op, kernel, start/end us."""
        return [
            dict(phase=c["phase"], step=c["step"], context_len=c["context_len"], call=j, **k)
            for c in self.captured
            for j, k in enumerate(c["collectives"])
        ]
