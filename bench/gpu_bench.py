"""GPU benches of the LightLLM backend (issue 3, "must show"); one GPU, one process.

  python bench/gpu_bench.py --out DIR [--quick]

Shape: LLaMA2-70B at emulated TP4 (rank 0's shapes), batch 20, 1024 tokens in,
fp16, truncated to --layers layers. Measures, each printed and saved as JSON:

- build:     random-weight build time per layer (full 70B-shape layer drawn on the GPU)
- overhead:  instrumented vs plain end to end in the same process, alternating
             (plain = LightLLM's own infer objects, timed by two CUDA events per phase)
- closure:   share of each phase's end to end attributed to named ops
- static:    agreement with LightLLM's static-test timing (synchronize + wall clock)
- sampled:   decode_sample=k estimate vs the fully instrumented decode
- profiler:  torch_profiler method on a short run (closure, op sums vs cuda_events)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics as st
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from opbreak.backends import lightllm_backend as lb  # noqa: E402
from opbreak.config import resolve  # noqa: E402
from opbreak.io import free_port  # noqa: E402
from opbreak.ops import PHASES, UNATTRIBUTED  # noqa: E402
from opbreak.timing import Recorder, integrate_over_context, sample_steps  # noqa: E402
from opbreak.transport import SAFETY_ENV  # noqa: E402


def init():
    port = free_port()
    os.environ.setdefault("_NCCL_PORT_", str(port))
    for k, v in SAFETY_ENV.items():  # NVLink multicast off, as in every measure job
        os.environ.setdefault(k, v)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)


def make_spec(layers, batch, inp, out, tp=4, model="llama2-70b"):
    """The measure job's spec for one emulated-TP config, resolved as the pipeline resolves it
    (schema defaults, model file), so the bench times what a study would run."""
    study = dict(
        study="bench",
        models={model: f"config/models/{model}.yaml"},
        configs=[
            dict(
                name=f"bench-{model}-etp{tp}",
                model=model,
                backend="lightllm",
                gpu="H100-SXM",  # not checked here: this bench is not a measure job
                num_gpus=1,
                tp=tp,
                emulate_tp=tp > 1,
                gpu_ids=[0],
                dtype="float16",
                timing="cuda_events",
                batch=batch,
                input_len=inp,
                output_len=out,
                num_layers=layers,
                timeout_s=900,
                collective_timeout_s=60,
            )
        ],
    )
    return resolve(study, study["configs"][0]["name"], str(ROOT))


def phase_sums(rec):
    out = {}
    for s in rec.steps:
        out[s["phase"]] = out.get(s["phase"], 0.0) + s["e2e_ms"]
    return out


def op_table(rec, phase):
    return {op: v for (p, op), v in rec.op_ms.items() if p == phase}


def static_test_timing(model, spec, tokens, O):
    """LightLLM's test/model/model_infer.py timing: synchronize + time.time around prefill and each step."""
    sb = lb.StaticBatch(model, spec, tokens)
    sb.reset()
    null = Recorder("perf_counter", enabled=False)
    with torch.inference_mode():
        torch.cuda.synchronize()
        t0 = time.time()
        sb.prefill(null)
        torch.cuda.synchronize()
        pre = (time.time() - t0) * 1e3
        dec = 0.0
        for i in range(O):
            torch.cuda.synchronize()
            t = time.time()
            sb.decode(null, i)
            torch.cuda.synchronize()
            dec += (time.time() - t) * 1e3
    sb.reset()
    return dict(prefill=pre, decode=dec)


def parse_args(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--decode-steps", type=int, default=128)
    ap.add_argument("--sample-steps", type=int, default=1024)
    return ap.parse_args(argv)


def environment() -> dict:
    """The device and versions the numbers were taken with."""
    res = dict(
        device=torch.cuda.get_device_name(0),
        torch=torch.__version__,
        date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        lightllm=lb.lightllm_version(),
    )
    try:
        import triton

        res["triton"] = triton.__version__
    except Exception:
        pass
    return res


class Bench:
    """The model under test (random weights, built once) with its spec and prompt; every stage runs it."""

    def __init__(self, spec):
        self.spec = spec
        self.tokens = lb.input_tokens(spec)
        self.model = lb.build_model(spec, 0, 1, "/tmp/opbreak-bench")

    def run(self, instrumented, out_len, decode_sample=0, method="cuda_events", exit_marks=False):
        """One static-batch run; returns its recorder and wall time (s)."""
        rec = Recorder(method, enabled=instrumented)
        inst = lb.Instrumentation(self.model, rec, 1, True, exit_marks=exit_marks)
        t = time.perf_counter()
        with rec.session():
            lb.run_static(
                self.model, self.spec, rec, self.tokens, inst, output_len=out_len, decode_sample=decode_sample
            )
        torch.cuda.synchronize()
        return rec, time.perf_counter() - t

    def warm(self):
        """Warm both paths (compile/autotune over 17+ context lengths)."""
        self.run(False, 20)
        self.run(True, 4)
        self.run(True, 4, exit_marks=True)


def bench_build(b: Bench, layers) -> dict:
    """Random-weight build time, per layer."""
    m = b.model
    return dict(
        layers=layers,
        build_s=m.opbreak_build_s,
        build_s_per_layer=m.opbreak_build_s / layers,
        init_s=m.opbreak_total_init_s,
    )


def bench_overhead(b: Bench, O, layers, pairs):
    """Overhead, alternating runs in rotating order: plain, enter marks, enter+exit marks.

    Returns (overhead, closure): phase sums and overhead per mode; closure and op table per instrumented mode."""
    modes = [("plain", False, False), ("enter", True, False), ("enter_exit", True, True)]
    ov = {f"{ph}_{m[0]}": [] for ph in PHASES for m in modes}
    closures = {m[0]: [] for m in modes[1:]}
    last = {}
    for k in range(pairs):
        for j in range(3):
            tag, instrumented, em = modes[(j + k) % 3]
            rec, _ = b.run(instrumented, O, exit_marks=em)
            s_ = phase_sums(rec)
            ov[f"prefill_{tag}"].append(s_["prefill"])
            ov[f"decode_{tag}"].append(s_["decode"])
            if instrumented:
                closures[tag].append(rec.phase_closure())
                last[tag] = rec
    med = {k_: st.median(v) for k_, v in ov.items()}
    overhead = dict(raw=ov, median=med, decode_steps=O, layers=layers)
    for tag in ("enter", "enter_exit"):
        for ph in PHASES:
            overhead[f"{ph}_overhead_{tag}"] = med[f"{ph}_{tag}"] / med[f"{ph}_plain"] - 1
    closure = {
        tag: dict(
            min_prefill=min(c["prefill"]["closure"] for c in cl),
            min_decode=min(c["decode"]["closure"] for c in cl),
            runs=cl,
            prefill_ops=op_table(last[tag], "prefill"),
            decode_ops=op_table(last[tag], "decode"),
        )
        for tag, cl in closures.items()
    }
    print("overhead", {k_: round(v, 4) for k_, v in overhead.items() if "overhead" in k_}, med, flush=True)
    print("closure", {t: (c["min_prefill"], c["min_decode"]) for t, c in closure.items()}, flush=True)
    print(
        "ops enter",
        {ph: {o: round(v, 3) for o, v in closure["enter"][f"{ph}_ops"].items()} for ph in PHASES},
        flush=True,
    )
    return overhead, closure


def bench_alternating(b: Bench, AO) -> dict:
    """Overhead, alternating per decode step inside one run (cancels drift between runs)."""
    alt = {}
    for tag, em in (("enter", False), ("enter_exit", True)):
        rec = Recorder("cuda_events")
        inst = lb.Instrumentation(b.model, rec, 1, True, exit_marks=em)
        lb.run_static(b.model, b.spec, rec, b.tokens, inst, output_len=AO, decode_sample=AO // 2)
        si = [s_["e2e_ms"] for s_ in rec.steps if s_["phase"] == "decode" and s_["mode"] == "events"]
        sp = [s_["e2e_ms"] for s_ in rec.steps if s_["phase"] == "decode" and s_["mode"] == "plain"]
        alt[tag] = dict(
            steps=AO,
            median_inst_ms=st.median(si),
            median_plain_ms=st.median(sp),
            mean_inst_ms=st.mean(si),
            mean_plain_ms=st.mean(sp),
            overhead_median=st.median(si) / st.median(sp) - 1,
            overhead_mean=st.mean(si) / st.mean(sp) - 1,
        )
    print("overhead per-step alternating", alt, flush=True)
    return alt


def bench_static(b: Bench, O, n) -> dict:
    """Agreement with LightLLM's static-test timing: instrumented and plain runs against it, per phase."""
    stt = [static_test_timing(b.model, b.spec, b.tokens, O) for _ in range(n)]
    ours = [phase_sums(b.run(True, O)[0]) for _ in range(n)]
    plain = [phase_sums(b.run(False, O)[0]) for _ in range(n)]
    agg = {}
    for ph in PHASES:
        a = st.median(x[ph] for x in stt)
        b_ = st.median(x[ph] for x in ours)
        c = st.median(x[ph] for x in plain)
        agg[ph] = dict(
            static_test_ms=a,
            instrumented_events_ms=b_,
            plain_events_ms=c,
            instrumented_vs_static=b_ / a - 1,
            plain_vs_static=c / a - 1,
        )
    print("static", agg, flush=True)
    return agg


def bench_sampled(b: Bench, SO) -> dict:
    """decode_sample=k's estimate against the fully instrumented decode, and the integration error alone."""
    k = max(2, SO // 16)
    full, t_full = b.run(True, SO)
    samp, t_samp = b.run(True, SO, decode_sample=k)
    fo, so = op_table(full, "decode"), op_table(samp, "decode")
    tot_f = sum(v for op, v in fo.items())
    tot_s = sum(v for op, v in so.items())
    named_f = sum(v for op, v in fo.items() if op != UNATTRIBUTED)
    named_s = sum(v for op, v in so.items() if op != UNATTRIBUTED)
    per_op = {
        op: dict(
            full=fo.get(op, 0.0), sampled=so.get(op, 0.0), rel=(so.get(op, 0.0) / fo[op] - 1) if fo.get(op) else None
        )
        for op in sorted(set(fo) | set(so))
    }
    big = [op for op in per_op if op != UNATTRIBUTED and fo.get(op, 0) > 0.02 * tot_f]
    res = dict(
        steps=SO,
        sampled=k,
        fraction_instrumented=k / SO,
        full_e2e_ms=tot_f,
        sampled_e2e_ms=tot_s,
        named_full_ms=named_f,
        named_sampled_ms=named_s,
        named_rel=named_s / named_f - 1,
        max_rel_big_ops=max(abs(per_op[o]["rel"]) for o in big),
        per_op=per_op,
        wall_full_s=t_full,
        wall_sampled_s=t_samp,
    )
    res.update(same_run_integration(full, k, tot_f))
    print("sampled", {k_: v for k_, v in res.items() if k_ != "per_op"}, flush=True)
    return res


def same_run_integration(full, k, tot_f) -> dict:
    """Integration error alone: k of the fully instrumented run's own decode steps, integrated by each method."""
    dsteps = [(s_, o_) for s_, o_ in zip(full.steps, full.step_ops) if s_["phase"] == "decode"]
    pick = sample_steps(len(dsteps), k)
    ops_all = sorted({op for _, o_ in dsteps for op in o_})
    exact = {op: sum(o_.get(op, 0.0) for _, o_ in dsteps) for op in ops_all}
    out = {}
    for meth in ("linear_fit", "piecewise", "robust"):
        est = integrate_over_context(
            [dsteps[i][0]["context_len"] for i in pick],
            {op: [dsteps[i][1].get(op, 0.0) for i in pick] for op in ops_all},
            [s_["context_len"] for s_, _ in dsteps],
            method=meth,
        )
        out[f"same_run_{meth}"] = dict(
            named_rel=sum(est.values()) / sum(exact.values()) - 1,
            per_op_rel={op: est[op] / exact[op] - 1 for op in ops_all if exact[op] > 0},
            max_rel_big_ops=max(abs(est[op] / exact[op] - 1) for op in ops_all if exact[op] > 0.02 * tot_f),
        )
    return out


def bench_profiler(b: Bench, steps, out: Path) -> dict:
    """The torch_profiler method on a short run: closure, op sums next to cuda_events'; its trace in out."""
    try:
        prof, _ = b.run(True, steps, method="torch_profiler")
        ev, _ = b.run(True, steps)
        pe = {ph: op_table(prof, ph) for ph in PHASES}
        ee = {ph: op_table(ev, ph) for ph in PHASES}
        res = dict(closure=prof.phase_closure(), ops=pe, events_ops=ee, meta=prof.meta)
        tp = prof.export_trace(out / "trace_profiler.json.gz")
        res["trace_bytes"] = os.path.getsize(tp) if tp else None
        print("profiler closure", prof.phase_closure(), flush=True)
        for ph in PHASES:
            print(
                " ", ph, {op: (round(pe[ph].get(op, 0), 3), round(ee[ph].get(op, 0), 3)) for op in ee[ph]}, flush=True
            )
        return res
    except Exception as e:  # report, do not lose the other numbers
        print("profiler failed:", repr(e), flush=True)
        return dict(error=repr(e))


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    init()
    lb.patch_collectives_for_emulation()
    res = environment()
    quick = args.quick
    layers = 2 if quick else args.layers
    O = 16 if quick else args.decode_steps
    SO = 32 if quick else args.sample_steps
    b = Bench(make_spec(layers, 20, 1024, max(O, SO)))
    res["build"] = bench_build(b, layers)
    print("build", res["build"], flush=True)
    b.warm()
    res["overhead"], res["closure"] = bench_overhead(b, O, layers, 2 if quick else args.pairs)
    res["overhead"]["decode_alternating_steps"] = bench_alternating(b, 32 if quick else 512)
    res["static_test_agreement"] = bench_static(b, O, 2 if quick else 3)
    res["sampled_decode"] = bench_sampled(b, SO)
    res["torch_profiler"] = bench_profiler(b, 4 if quick else 8, out)
    (out / "bench.json").write_text(json.dumps(res, indent=1, default=str))
    print("done", flush=True)


if __name__ == "__main__":
    main()
