"""The timed run of LightLLM's static batch (:mod:`.batch`): warm-up, decode steps in their modes,
the decode probe after it, and ``run_rank``, the measure step's contract."""

from __future__ import annotations

import tempfile
import time

import torch

from ..common import RankResult, drive_decode, finish_result, kernel_steps_for
from ..common import input_tokens as common_input_tokens
from .batch import StaticBatch
from .instrument import Instrumentation, patch_collectives_for_emulation
from .model import build_model
from .probe import probe_decode


def run_static(model, spec, rec, tokens, inst, *, output_len=None, decode_sample=0, kcap=None, kinst=None):
    """Prefill then output_len decode steps in the modes of :func:`opbreak.timing.step_plan`;
    with a KernelCapture, one more prefill under the profiler (the GPU-busy view of prefill)."""
    from ...timing import Recorder, step_plan

    O = spec["output_len"] if output_len is None else output_len
    sb = StaticBatch(model, spec, tokens)
    sb.reset()
    out = []

    def step(r, i, instrumented):
        (kinst if r is kcap else inst).use(instrumented)
        sb.decode(r, i)
        out.append(torch.from_numpy(sb.ids.reshape(-1).copy()))

    with torch.inference_mode():
        inst.use(rec.enabled)
        logits = sb.prefill(rec)
        first_logits = logits.float().cpu()
        out.append(torch.from_numpy(sb.ids.reshape(-1).copy()))
        plan = step_plan(O, decode_sample, kernel_steps_for(spec, rec) if kcap else 0) if rec.enabled else ["plain"] * O
        drive_decode(plan, step, rec, Recorder(rec.method, enabled=False) if rec.enabled else rec, kcap)
        if kcap is not None and rec.enabled:
            sb.reset()
            kinst.use(True)
            with kcap.session():
                sb.prefill(kcap)
        inst.use(False)
    sb.reset()
    return RankResult(tokens=torch.stack(out, 1).long(), first_logits=first_logits)


def input_tokens(spec):
    return common_input_tokens(spec, "cpu")


def _oom_message(spec, e):
    from ...memory import memory_estimate_gib

    try:
        need, parts = memory_estimate_gib(spec["model"], spec)
        est = f"~{need:.1f} GiB per GPU ({parts})"
    except Exception:
        est = "unknown"
    free, total = torch.cuda.mem_get_info()
    return (
        f"config {spec['name']!r}: CUDA out of memory on {torch.cuda.get_device_name()} "
        f"({total / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free now); estimate {est}; "
        f"batch {spec['batch']}, input_len {spec['input_len']}, output_len {spec['output_len']}, tp {spec['tp']}, "
        f"num_layers {spec['num_layers']}. Lower batch/lengths, raise tp or truncate num_layers. "
        f"({str(e).splitlines()[0]})"
    )


def run_rank(spec, rank, world, rec) -> RankResult:
    """The measure step's contract (:class:`opbreak.backends.common.RankResult`)."""
    from ...timing import KernelCapture, Recorder

    if spec["device"] != "cuda" or not torch.cuda.is_available():
        raise SystemExit(
            f"config {spec['name']!r}: the lightllm backend needs CUDA (this process sees none); "
            "use backend: torch on gpu: cpu, or run on a GPU host"
        )
    emulate = bool(spec["emulate_tp"]) and spec["tp"] > 1
    if emulate:
        patch_collectives_for_emulation()
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="opbreak-lightllm-") as work:
            model = build_model(spec, rank, world, work)
            build_s = getattr(model, "opbreak_build_s", float("nan"))
            init_s = model.opbreak_total_init_s
            inst = Instrumentation(model, rec, world, emulate)
            kcap = KernelCapture() if kernel_steps_for(spec, rec) else None
            kinst = Instrumentation(model, kcap, world, emulate) if kcap is not None else None
            tokens = input_tokens(spec)
            warm_steps = 0
            if spec["warmup"]:
                # unrecorded pass: Triton compiles and autotunes (decode kernels specialise on
                # integer divisibility by 16, so cover 17+ context lengths), allocator warms

                warm_steps = min(spec["output_len"], 20)
                warm = Recorder(rec.method, enabled=False)
                run_static(model, spec, warm, tokens, inst, output_len=warm_steps)
                if rec.enabled:  # and the instrumented paths once (the profiler's first session is slow)
                    wrec = Recorder("cuda_events" if rec.method == "torch_profiler" else rec.method)
                    wk = KernelCapture() if kcap is not None else None
                    run_static(
                        model,
                        spec,
                        wrec,
                        tokens,
                        Instrumentation(model, wrec, world, emulate),
                        output_len=min(spec["output_len"], 4),
                        decode_sample=2 if wk else 0,
                        kcap=wk,
                        kinst=Instrumentation(model, wk, world, emulate) if wk else None,
                    )
            torch.cuda.synchronize()
            t_run = time.perf_counter()
            with rec.session():
                res = run_static(
                    model, spec, rec, tokens, inst, decode_sample=spec["decode_sample"], kcap=kcap, kinst=kinst
                )
            torch.cuda.synchronize()
            run_s = time.perf_counter() - t_run
            probe = probe_decode(model, spec, tokens, inst, graph=True) if spec["decode_graph"] else []
    except torch.cuda.OutOfMemoryError as e:
        raise SystemExit(_oom_message(spec, e)) from None
    extra = dict(
        backend="lightllm",
        lightllm_version=lightllm_version(),
        weights="hf:" + str(spec["weights"]) if spec["weights"] else "random-gpu",
        build_s=build_s,
        build_s_per_layer=build_s / spec["num_layers"],
        init_s=init_s,
        warmup_decode_steps=warm_steps,
        run_s=run_s,
        total_s=time.perf_counter() - t0,
        emulated_tp=emulate,
        tp_rank=0 if emulate else rank,
        max_memory_allocated_GiB=torch.cuda.max_memory_allocated() / 2**30,
        closure=rec.phase_closure(),
        decode_probe=probe,
        op_mapping="o_proj and ffn include their residual add; "
        "sampling = softmax+argmax+.cpu() as LightLLM's static test",
        **rec.meta,
    )
    res.extra = extra
    return finish_result(res, rec, kcap, spec)


def lightllm_version():
    try:
        from importlib.metadata import version

        return version("lightllm")
    except Exception:
        return None
