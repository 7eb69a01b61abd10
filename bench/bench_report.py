"""Benchmark: time to render report/all.md (figures included) at the seed study's size.

Synthesizes every table the report reads with the column contract of the aggregate
and theory steps: 7 configs (the seed's 4/8 x A100, 4/8 x A40, 4 x T4, 2 x A40 over
NVLink and over PCIe) x 2 phases x 16 ops x 5 repeats, 1024 decode steps per repeat, 4 pairs, an
all-reduce sweep per config. Then renders the report through opbreak.report.render
(the same call the Snakemake rule makes) and prints a table of stage timings.
Target: <= 30 s.

    python bench/bench_report.py [--configs 7] [--repeats 5] [--steps 1024] [--rounds 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opbreak import report as rep  # noqa: E402
from opbreak.collectives import allreduce_terms, tp_scaling_explainer  # noqa: E402
from opbreak.config import DTYPE_BYTES, resolve, with_defaults  # noqa: E402
from opbreak.hardware import link_between, load_catalog, lookup_gpu  # noqa: E402
from opbreak.ops import COLLECTIVE_OPS, LAYER_OPS, OPS, PHASES  # noqa: E402
from opbreak.stats import summarize_groups  # noqa: E402
from opbreak.theory import vanilla_gpt_flops  # noqa: E402

# The seed's configs: name, catalog GPU, TP, topology (config/hardware.yaml gives the ceilings).
SEED_CONFIGS = [
    ("4xA100", "A100-SXM4-40GB", 4, "nvlink"),
    ("8xA100", "A100-SXM4-40GB", 8, "nvlink"),
    ("4xA40", "A40", 4, "nvlink-pairs"),
    ("8xA40", "A40", 8, "pcie"),
    ("4xT4", "T4", 4, "pcie"),
    ("2xA40-pcie", "A40", 2, "pcie"),
    ("2xA40-nvlink", "A40", 2, "nvlink"),
    ("8xT4", "T4", 8, "pcie"),
]
MODEL = "llama2-70b"  # every seed config's model (config/models/)
# One seed config with the catalog's ceilings: peak TFLOP/s, memory GB/s, ring link GB/s.
Seed = namedtuple("Seed", "name gpu tp peak mem link")


def seed_table(catalog=None):
    """(name, gpu, tp, peak TFLOP/s, mem GB/s, ring link GB/s) per seed config, from the catalog."""
    catalog = catalog or load_catalog(ROOT / with_defaults({})["hardware_catalog"])
    rows = []
    for name, gpu, tp, topo in SEED_CONFIGS:
        g = lookup_gpu(catalog, gpu)
        link = link_between(catalog, gpu, topo, tp)["bw_bytes_per_s"] / 1e9
        rows.append(Seed(name, gpu, tp, g["peak_tflops"], g["mem_bw_GBps"], link))
    return rows


PAIRS = [
    ("4xA100", "4xA40", "4xA100 vs 4xA40"),
    ("8xA40", "4xA40", "8xA40 vs 4xA40"),
    ("8xA100", "4xA100", "8xA100 vs 4xA100"),
    ("2xA40-nvlink", "2xA40-pcie", "A40 NVLink vs PCIe"),
]
# Each op's time on the first config in ms, (prefill, decode): the synthetic study's shape (other configs scale it).
OP_MS = {
    "embedding": (2, 20),
    "attn_norm": (8, 150),
    "qkv_proj": (120, 1500),
    "kv_cache_write": (6, 200),
    "attention": (90, 2500),
    "o_proj": (45, 600),
    "all_reduce": (150, 4000),
    "ffn_norm": (8, 150),
    "ffn": (400, 5000),
    "final_norm": (0.5, 10),
    "lm_head": (6, 500),
    "logits_gather": (2, 100),
    "sampling": (0.5, 60),
    "infer_setup": (1, 40),
    "host_gap": (10, 3000),
    "unattributed": (3, 800),
}
BASE_MS = {phase: {op: ms[i] for op, ms in OP_MS.items()} for i, phase in enumerate(PHASES)}


def study(n_configs: int, steps: int) -> dict:
    """The synthetic study as its config file would declare it; the schema fills in every default
    (unstable_cv, ratio_flag, seed, warm-up...) and opbreak.config.resolve makes each job's spec."""
    configs = [
        dict(
            name=name,
            model=MODEL,
            backend="lightllm",
            gpu=gpu,
            num_gpus=tp,
            tp=tp,
            topology=topo,
            batch=20,
            input_len=1024,
            output_len=steps,
            dtype="float16",
            timing="cuda_events",
        )
        for name, gpu, tp, topo in SEED_CONFIGS[:n_configs]
    ]
    return with_defaults(dict(study="seed", models={MODEL: f"config/models/{MODEL}.yaml"}, configs=configs))


def phase_ops(phase):
    """The ops a synthetic phase records, in OPS order (no `instrumentation`: nothing sampled)."""
    return [o for o in OPS if o in BASE_MS[phase]]


def op_calls(op):
    """Calls per phase the synthetic study records for an op."""
    return 160 if op in LAYER_OPS else 1


# ------------------------------------------------------------------ measure outputs (one repeat)
def measure_repeat(cfg: Seed, ref: Seed, spec: dict, r: int, rng):
    """One repeat of one config: its op rows (ops_repeats), phase totals and step rows.

    Times scale from the first config's: compute-side ops by peak, collectives by link, per-layer
    ops by the TP shard."""
    slow = ref.peak / cfg.peak
    noise = rng.lognormal(0, 0.05)
    ops, totals, step_frames = [], [], []
    for phase in PHASES:
        e2e = 0.0
        for op in phase_ops(phase):
            base = BASE_MS[phase][op] * (slow if op not in COLLECTIVE_OPS else ref.link / cfg.link)
            base /= cfg.tp / 4 if op in LAYER_OPS and op != "all_reduce" else 1
            t = base * noise * rng.lognormal(0, 0.08 if op != "host_gap" else 0.25)
            e2e += t
            ops.append(
                dict(
                    study=spec["study"],
                    config=cfg.name,
                    repeat=r,
                    rank=0,
                    phase=phase,
                    op=op,
                    time_ms=t,
                    calls=op_calls(op),
                    modeled=False,
                )
            )
        totals.append(
            dict(
                config=cfg.name,
                repeat=r,
                phase=phase,
                e2e_ms=e2e,
                steps=1 if phase == "prefill" else spec["output_len"],
                phase_added_ms=0.0,
            )
        )
        step_frames.append(step_rows(spec, r, phase, e2e, rng))
    return ops, totals, step_frames


def step_rows(spec, r, phase, e2e, rng) -> pd.DataFrame:
    """steps.csv rows of one phase: prefill is one step; decode's steps share e2e and grow with context."""
    name, steps, prompt = spec["name"], spec["output_len"], spec["input_len"]
    if phase == "decode":
        ctx = prompt + np.arange(steps) + 1
        lat = e2e / steps * (0.8 + 0.4 * (ctx - ctx[0]) / steps) * rng.lognormal(0, 0.05, steps)
        return pd.DataFrame(
            dict(
                config=name,
                repeat=r,
                phase="decode",
                step=np.arange(steps),
                context_len=ctx,
                e2e_ms=lat,
                attributed_ms=lat * 0.95,
                e2e_ms_measured=lat,
                phase_added_ms=0.0,
            )
        )
    return pd.DataFrame(
        dict(
            config=name,
            repeat=[r],
            phase="prefill",
            step=[0],
            context_len=[prompt],
            e2e_ms=[e2e],
            attributed_ms=[e2e],
            e2e_ms_measured=[e2e],
            phase_added_ms=[0.0],
        )
    )


def provenance(spec: dict, r: int) -> dict:
    """One repeat's provenance record, as a LightLLM measure job writes it (with its resolved spec)."""
    gpu, tp = spec["gpu"], spec["tp"]
    return dict(
        config=spec["name"],
        repeat=r,
        host=f"node-{gpu.lower()}",
        devices=[gpu] * tp,
        device_count=tp,
        versions=dict(python="3.11.7", torch="2.11.0", triton="3.6.0", lightllm="0.0.1", cuda="12.8"),
        spec=spec,
        started="2026-11-25T10:00:00",
        finished="2026-11-25T10:05:00",
        env={},
        topology="\tGPU0\tGPU1\nGPU0\t X \tNV12\nGPU1\tNV12\t X ",
        driver_clocks="1410 MHz",
    )


def write_aggregate(agg: Path, cfgs, specs, repeats, unstable_cv, rng):
    """results/aggregate/*: every repeat of every config, and their summaries as the aggregate step makes them.

    Returns (ops_summary, phase_summary), the inputs of the theory tables."""
    rep_rows, tot_rows, step_frames, prov = [], [], [], []
    for cfg in cfgs:
        for r in range(repeats):
            ops, totals, frames = measure_repeat(cfg, cfgs[0], specs[cfg.name], r, rng)
            rep_rows += ops
            tot_rows += totals
            step_frames += frames
            prov.append(provenance(specs[cfg.name], r))
    reps = pd.DataFrame(rep_rows)
    summary = summarize_groups(reps, ["config", "phase", "op"], "time_ms", unstable_cv)
    summary["calls"] = summary["op"].map(op_calls)
    summary["modeled"] = False
    summary["modeled_bytes"] = 0
    totals = pd.DataFrame(tot_rows)
    phase_summary = summarize_groups(totals, ["config", "phase"], "e2e_ms", unstable_cv)
    summary = summary.merge(
        phase_summary[["config", "phase", "median_ms"]].rename(columns={"median_ms": "phase_median_ms"}),
        on=["config", "phase"],
    )
    summary["share"] = summary["median_ms"] / summary["phase_median_ms"]
    summary["layer_scale"] = 1.0
    summary.to_csv(agg / "ops_summary.csv", index=False)
    phase_summary.to_csv(agg / "phase_summary.csv", index=False)
    totals.to_csv(agg / "phase_totals.csv", index=False)
    reps.to_csv(agg / "ops_repeats.csv", index=False)
    pd.concat(step_frames).to_csv(agg / "steps.csv", index=False)
    (agg / "provenance.json").write_text(json.dumps(prov))
    return summary, phase_summary


# ------------------------------------------------------------------ theory outputs
def theory_row(r, cfg: Seed, rng) -> dict:
    """theory ops.csv row of one summarized op: random FLOPs and bytes under the measured time, its roofline."""
    peak, mem = cfg.peak, cfg.mem
    flops = (
        0.0
        if r.op in COLLECTIVE_OPS + ("embedding", "kv_cache_write")
        else r.median_ms * 1e-3 * peak * 1e12 * rng.uniform(0.05, 0.8)
    )
    byts = r.median_ms * 1e-3 * mem * 1e9 * rng.uniform(0.05, 0.6)
    tc, tm = flops / (peak * 1e12) * 1e3, byts / (mem * 1e9) * 1e3
    tl = r.median_ms * rng.uniform(0.2, 0.7) if r.op in COLLECTIVE_OPS else np.nan
    tb = np.nanmax([tc, tm, tl])
    bound = ["compute", "memory", "link"][int(np.nanargmax([tc, tm, -1 if np.isnan(tl) else tl]))]
    return dict(
        config=r.config,
        phase=r.phase,
        op=r.op,
        flops=flops,
        bytes=byts,
        comm_bytes=0.0,
        calls_theory=r.calls,
        intensity=flops / byts if byts else np.nan,
        t_compute_ms=tc,
        t_memory_ms=tm,
        t_link_ms=tl,
        t_bound_ms=tb,
        bound=bound,
        measured_ms=r.median_ms,
        modeled=False,
        achieved_tflops=flops / (r.median_ms * 1e-3) / 1e12,
        achieved_GBps=byts / (r.median_ms * 1e-3) / 1e9,
        efficiency=tb / r.median_ms,
        peak_tflops=peak,
        mem_bw_GBps=mem,
        link_GBps=cfg.link,
    )


def pair_row(a, b, label, phase, op, theory, phase_summary, hw, ratio_flag, rng) -> dict:
    """pairs.csv row: b's time over a's for one op (or the phase's end to end) against the resource ratio."""
    if op == "end_to_end":
        ta = phase_summary.query("config == @a and phase == @phase")["median_ms"].iloc[0]
        tb_ = phase_summary.query("config == @b and phase == @phase")["median_ms"].iloc[0]
        bound, rr = "mixed", np.nan
    else:
        ra = theory.query("config == @a and phase == @phase and op == @op").iloc[0]
        ta = ra["measured_ms"]
        tb_ = theory.query("config == @b and phase == @phase and op == @op")["measured_ms"].iloc[0]
        bound = ra["bound"]
        rr = {"compute": hw[a].peak / hw[b].peak, "memory": hw[a].mem / hw[b].mem, "link": hw[a].link / hw[b].link}[
            bound
        ]
    sp = tb_ / ta
    ths = (rr if np.isfinite(rr) else sp) * rng.uniform(0.7, 1.4)
    return dict(
        label=label,
        a=a,
        b=b,
        phase=phase,
        op=op,
        time_a_ms=ta,
        time_b_ms=tb_,
        speedup=sp,
        speedup_lo=sp * 0.93,
        speedup_hi=sp * 1.06,
        bound=bound,
        resource_ratio=rr,
        theory_speedup=ths,
        measured_over_theory=sp / ths,
        flagged=abs(sp / ths - 1) > ratio_flag,
        modeled=False,
    )


def pairs_table(theory, phase_summary, hw, ratio_flag, rng) -> pd.DataFrame:
    """pairs.csv: every declared pair whose configs are in the study, per phase, per op and end to end."""
    rows = []
    for a, b, label in PAIRS:
        if a not in hw or b not in hw:
            continue
        for phase in PHASES:
            for op in phase_ops(phase) + ["end_to_end"]:
                rows.append(pair_row(a, b, label, phase, op, theory, phase_summary, hw, ratio_flag, rng))
    return pd.DataFrame(rows)


def vanilla_vs_exact(spec: dict) -> pd.DataFrame:
    """vanilla_vs_exact.csv: the seed model's FLOPs at the prompt's tokens, vanilla-GPT formula vs exact."""
    tokens = spec["batch"] * spec["input_len"]
    v = vanilla_gpt_flops(spec["model"], tokens=tokens).rename(columns={"seed_flops": "vanilla_flops"})
    v.insert(0, "model", spec["model"]["name"])
    v.insert(1, "tokens", tokens)
    return v


def allreduce_row(name, kind, n, size, alpha, bw, terms, measured_ms, phase) -> dict:
    """allreduce.csv row: the ring model's terms (opbreak.collectives, in s) at (n, size); alpha in us, bw in GB/s."""
    return dict(
        config=name,
        kind=kind,
        n=n,
        size_bytes=size,
        measured_ms=measured_ms,
        model_ms=terms["total_s"] * 1e3,
        alpha_us=alpha,
        bw_GBps=bw,
        source="fit",
        t_latency_ms=terms["latency_s"] * 1e3,
        t_bandwidth_ms=terms["bandwidth_s"] * 1e3,
        phase=phase,
    )


def allreduce_table(cfgs, specs, rng) -> pd.DataFrame:
    """allreduce.csv: per config a measured sweep, each phase's all-reduce and its TP-scaling model."""
    rows = []
    for cfg in cfgs:
        spec, alpha, bw = specs[cfg.name], 10.0, cfg.link * 0.8
        sweep = allreduce_terms(2.0 ** np.arange(12, 29, 2), cfg.tp, bw * 1e9, alpha * 1e-6)
        for _, t in sweep.iterrows():
            measured = t["total_s"] * 1e3 * rng.uniform(0.9, 1.3)
            rows.append(allreduce_row(cfg.name, "sweep", cfg.tp, t["msg_bytes"], alpha, bw, t, measured, ""))
        per_phase = tp_scaling_explainer(
            hidden_size=spec["model"]["hidden_size"],
            batch=spec["batch"],
            input_len=spec["input_len"],
            dtype_bytes=DTYPE_BYTES[spec["dtype"]],
            alpha_s=alpha * 1e-6,
            bw_bytes_per_s=bw * 1e9,
            ns=(cfg.tp, 2, 4, 8),  # the config's own TP (its phase's measured call), then the TP scaling
        )
        own = per_phase.groupby("phase", sort=False).cumcount() == 0
        for (_, t), is_own in zip(per_phase.iterrows(), own):
            kind, measured = ("phase", t["total_s"] * 1e3 * 1.3) if is_own else ("tp_scaling", np.nan)
            rows.append(allreduce_row(cfg.name, kind, int(t["n"]), t["msg_bytes"], alpha, bw, t, measured, t["phase"]))
    return pd.DataFrame(rows)


def decode_steps_table(specs) -> pd.DataFrame:
    """decode_steps.csv: each config's bound per decode step (no measured column)."""
    frames = []
    for spec in specs.values():
        ctx = spec["input_len"] + np.arange(spec["output_len"]) + 1
        frames.append(
            pd.DataFrame(
                dict(
                    config=spec["name"],
                    step=np.arange(spec["output_len"]),
                    context_len=ctx,
                    t_bound_ms=0.3 * (1 + ctx / 4096),
                    measured_ms=np.nan,
                )
            )
        )
    return pd.concat(frames)


def ceilings_table(cfgs) -> pd.DataFrame:
    """ceilings.csv: the catalog's ceilings per config."""
    return pd.DataFrame(
        [
            dict(config=c.name, gpu=c.gpu, peak_tflops=c.peak, mem_bw_GBps=c.mem, link_GBps=c.link, source="datasheet")
            for c in cfgs
        ]
    )


def synthesize(out: Path, config: dict, repeats=5):
    """Write the synthetic study's results/ (aggregate and theory tables); returns its config names and pairs."""
    rng = np.random.default_rng(config["seed"])
    agg, th = out / "results/aggregate", out / "results/theory"
    agg.mkdir(parents=True, exist_ok=True)
    th.mkdir(parents=True, exist_ok=True)
    declared = [c["name"] for c in config["configs"]]
    cfgs = [c for c in seed_table() if c.name in declared]
    hw = {c.name: c for c in cfgs}
    specs = {c.name: resolve(config, c.name, str(ROOT)) for c in cfgs}
    summary, phase_summary = write_aggregate(agg, cfgs, specs, repeats, config["unstable_cv"], rng)
    theory = pd.DataFrame([theory_row(r, hw[r.config], rng) for r in summary.itertuples()])
    theory.to_csv(th / "ops.csv", index=False)
    pairs_table(theory, phase_summary, hw, config["ratio_flag"], rng).to_csv(th / "pairs.csv", index=False)
    vanilla_vs_exact(specs[cfgs[0].name]).to_csv(th / "vanilla_vs_exact.csv", index=False)
    allreduce_table(cfgs, specs, rng).to_csv(th / "allreduce.csv", index=False)
    decode_steps_table(specs).to_csv(th / "decode_steps.csv", index=False)
    ceilings_table(cfgs).to_csv(th / "ceilings.csv", index=False)
    return [c.name for c in cfgs], [dict(a=a, b=b, label=l) for a, b, l in PAIRS if a in hw and b in hw]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--keep", help="write the synthetic study and its report here (else a temp dir)")
    args = ap.parse_args(argv)
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_report_"))
    config = study(args.configs, args.steps)
    t0 = time.perf_counter()
    names, pairs = synthesize(tmp, config, args.repeats)
    synth_s = time.perf_counter() - t0
    paths = {k: str(tmp / p) for k, p in rep.TABLE_PATHS.items()}
    paths["provenance"] = str(tmp / "results/aggregate/provenance.json")
    rows = []
    for i in range(args.rounds):
        t = rep.render(
            paths,
            tmp / "report/all.md",
            tmp / "report/figures",
            names,
            pairs,
            "seed-size",
            ROOT / "report/templates/all.md.j2",
            {"unstable_cv": config["unstable_cv"], "ratio_flag": config["ratio_flag"]},
        )
        rows.append(dict(round=i + 1, **{k: (int(v) if k == "n_figures" else round(v, 2)) for k, v in t.items()}))
    df = pd.DataFrame(rows)
    n_steps = len(pd.read_csv(paths["steps"]))
    print(
        f"synthetic study: {len(names)} configs x 2 phases x {len(OPS)} ops x {args.repeats} repeats, "
        f"{args.steps} decode steps ({n_steps} step rows), {len(pairs)} pairs; synthesized in {synth_s:.1f} s"
    )
    print(df.to_string(index=False))
    worst = df["total"].max()
    print(
        f"render time: max {worst:.2f} s over {args.rounds} rounds (target <= 30 s): {'OK' if worst <= 30 else 'OVER'}"
    )
    print(f"report: {tmp / 'report/all.md'} ({(tmp / 'report/all.md').stat().st_size / 1024:.0f} KiB)")
    return 0 if worst <= 30 else 1


if __name__ == "__main__":
    sys.exit(main())
