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
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opbreak import report as rep  # noqa: E402
from opbreak.hardware import link_between, load_catalog, lookup_gpu  # noqa: E402
from opbreak.ops import LAYER_OPS, OPS, PHASES  # noqa: E402
from opbreak.stats import summarize_groups  # noqa: E402

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


def seed_table(catalog=None):
    """(name, gpu, tp, peak TFLOP/s, mem GB/s, ring link GB/s) per seed config, from the catalog."""
    catalog = catalog or load_catalog(ROOT / "config/hardware.yaml")
    rows = []
    for name, gpu, tp, topo in SEED_CONFIGS:
        g = lookup_gpu(catalog, gpu)
        link = link_between(catalog, gpu, topo, tp)["bw_bytes_per_s"] / 1e9
        rows.append((name, gpu, tp, g["peak_tflops"], g["mem_bw_GBps"], link))
    return rows


PAIRS = [
    ("4xA100", "4xA40", "4xA100 vs 4xA40"),
    ("8xA40", "4xA40", "8xA40 vs 4xA40"),
    ("8xA100", "4xA100", "8xA100 vs 4xA100"),
    ("2xA40-nvlink", "2xA40-pcie", "A40 NVLink vs PCIe"),
]
BASE_MS = {
    "prefill": dict(
        embedding=2,
        attn_norm=8,
        qkv_proj=120,
        kv_cache_write=6,
        attention=90,
        o_proj=45,
        all_reduce=150,
        ffn_norm=8,
        ffn=400,
        final_norm=0.5,
        lm_head=6,
        logits_gather=2,
        sampling=0.5,
        infer_setup=1,
        host_gap=10,
        unattributed=3,
    ),
    "decode": dict(
        embedding=20,
        attn_norm=150,
        qkv_proj=1500,
        kv_cache_write=200,
        attention=2500,
        o_proj=600,
        all_reduce=4000,
        ffn_norm=150,
        ffn=5000,
        final_norm=10,
        lm_head=500,
        logits_gather=100,
        sampling=60,
        infer_setup=40,
        host_gap=3000,
        unattributed=800,
    ),
}


def synthesize(out: Path, n_configs=7, repeats=5, steps=1024, seed=0):
    rng = np.random.default_rng(seed)
    agg, th = out / "results/aggregate", out / "results/theory"
    agg.mkdir(parents=True, exist_ok=True)
    th.mkdir(parents=True, exist_ok=True)
    cfgs = seed_table()[:n_configs]
    ref_peak, ref_link = cfgs[0][3], cfgs[0][5]  # timings are scaled from the first config's
    names = [c[0] for c in cfgs]
    rep_rows, tot_rows, step_rows, prov = [], [], [], []
    for name, gpu, tp, peak, _mem, link in cfgs:
        slow = ref_peak / peak
        for r in range(repeats):
            noise = rng.lognormal(0, 0.05)
            for phase in PHASES:
                e2e = 0.0
                for op in [o for o in OPS if o in BASE_MS[phase]]:  # no `instrumentation`: nothing sampled
                    base = BASE_MS[phase][op] * (slow if op not in ("all_reduce", "logits_gather") else ref_link / link)
                    base /= tp / 4 if op in LAYER_OPS and op != "all_reduce" else 1
                    t = base * noise * rng.lognormal(0, 0.08 if op != "host_gap" else 0.25)
                    e2e += t
                    rep_rows.append(
                        dict(
                            study="seed",
                            config=name,
                            repeat=r,
                            rank=0,
                            phase=phase,
                            op=op,
                            time_ms=t,
                            calls=160 if op in LAYER_OPS else 1,
                            modeled=False,
                        )
                    )
                tot_rows.append(
                    dict(
                        config=name,
                        repeat=r,
                        phase=phase,
                        e2e_ms=e2e,
                        steps=1 if phase == "prefill" else steps,
                        phase_added_ms=0.0,
                    )
                )
                if phase == "decode":
                    ctx = 1024 + np.arange(steps) + 1
                    lat = e2e / steps * (0.8 + 0.4 * (ctx - ctx[0]) / steps) * rng.lognormal(0, 0.05, steps)
                    step_rows.append(
                        pd.DataFrame(
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
                    )
                else:
                    step_rows.append(
                        pd.DataFrame(
                            dict(
                                config=name,
                                repeat=[r],
                                phase="prefill",
                                step=[0],
                                context_len=[1024],
                                e2e_ms=[e2e],
                                attributed_ms=[e2e],
                                e2e_ms_measured=[e2e],
                                phase_added_ms=[0.0],
                            )
                        )
                    )
            prov.append(
                dict(
                    config=name,
                    repeat=r,
                    host=f"node-{gpu.lower()}",
                    devices=[gpu] * tp,
                    device_count=tp,
                    versions=dict(python="3.11.7", torch="2.11.0", triton="3.6.0", lightllm="0.0.1", cuda="12.8"),
                    spec=dict(
                        name=name,
                        backend="lightllm",
                        gpu=gpu,
                        tp=tp,
                        num_gpus=tp,
                        batch=20,
                        input_len=1024,
                        output_len=steps,
                        dtype="float16",
                        timing="cuda_events",
                        num_layers=80,
                        model_layers=80,
                        model=dict(name="llama2-70b"),
                        warmup=1,
                        emulate_tp=False,
                    ),
                    started="2026-11-25T10:00:00",
                    finished="2026-11-25T10:05:00",
                    env={},
                    topology="\tGPU0\tGPU1\nGPU0\t X \tNV12\nGPU1\tNV12\t X ",
                    driver_clocks="1410 MHz",
                )
            )
    reps = pd.DataFrame(rep_rows)
    summary = summarize_groups(reps, ["config", "phase", "op"], "time_ms", 0.1)
    summary["calls"] = summary["op"].map(lambda o: 160 if o in LAYER_OPS else 1)
    summary["modeled"] = False
    summary["modeled_bytes"] = 0
    totals = pd.DataFrame(tot_rows)
    phase_summary = summarize_groups(totals, ["config", "phase"], "e2e_ms", 0.1)
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
    pd.concat(step_rows).to_csv(agg / "steps.csv", index=False)
    (agg / "provenance.json").write_text(json.dumps(prov))

    hw = {c[0]: c for c in cfgs}
    rows = []
    for r in summary.itertuples():
        _, gpu, tp, peak, mem, link = hw[r.config]
        flops = (
            0.0
            if r.op in ("all_reduce", "logits_gather", "embedding", "kv_cache_write")
            else r.median_ms * 1e-3 * peak * 1e12 * rng.uniform(0.05, 0.8)
        )
        byts = r.median_ms * 1e-3 * mem * 1e9 * rng.uniform(0.05, 0.6)
        tc, tm = flops / (peak * 1e12) * 1e3, byts / (mem * 1e9) * 1e3
        tl = r.median_ms * rng.uniform(0.2, 0.7) if r.op in ("all_reduce", "logits_gather") else np.nan
        tb = np.nanmax([tc, tm, tl])
        bound = ["compute", "memory", "link"][int(np.nanargmax([tc, tm, -1 if np.isnan(tl) else tl]))]
        rows.append(
            dict(
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
                link_GBps=link,
            )
        )
    theory = pd.DataFrame(rows)
    theory.to_csv(th / "ops.csv", index=False)
    prs = []
    for a, b, label in PAIRS:
        if a not in hw or b not in hw:
            continue
        for phase in PHASES:
            for op in [o for o in OPS if o in BASE_MS[phase]] + ["end_to_end"]:
                if op == "end_to_end":
                    ta = phase_summary.query("config == @a and phase == @phase")["median_ms"].iloc[0]
                    tb_ = phase_summary.query("config == @b and phase == @phase")["median_ms"].iloc[0]
                    bound, rr = "mixed", np.nan
                else:
                    ra = theory.query("config == @a and phase == @phase and op == @op").iloc[0]
                    ta = ra["measured_ms"]
                    tb_ = theory.query("config == @b and phase == @phase and op == @op")["measured_ms"].iloc[0]
                    bound = ra["bound"]
                    rr = {"compute": hw[a][3] / hw[b][3], "memory": hw[a][4] / hw[b][4], "link": hw[a][5] / hw[b][5]}[
                        bound
                    ]
                sp = tb_ / ta
                ths = (rr if np.isfinite(rr) else sp) * rng.uniform(0.7, 1.4)
                prs.append(
                    dict(
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
                        flagged=abs(sp / ths - 1) > 0.25,
                        modeled=False,
                    )
                )
    pd.DataFrame(prs).to_csv(th / "pairs.csv", index=False)
    pd.DataFrame(
        dict(
            model="llama2-70b",
            tokens=20480,
            component=["attn_proj_per_layer", "mlp_per_layer", "layer_total", "model_total"],
            vanilla_flops=[8.6e12, 1.7e13, 2.6e13, 2.1e15],
            exact_flops=[5.4e12, 3.2e13, 3.7e13, 3.0e15],
            ratio=[0.625, 1.88, 1.42, 1.42],
        )
    ).to_csv(th / "vanilla_vs_exact.csv", index=False)
    ar, ds, ce = [], [], []
    for name, gpu, tp, peak, _mem, link in cfgs:
        alpha, bw = 10.0, link * 0.8
        for size in 2.0 ** np.arange(12, 29, 2):
            lat = 2 * (tp - 1) * alpha * 1e-3
            bwt = 2 * (tp - 1) / tp * size / (bw * 1e9) * 1e3
            ar.append(
                dict(
                    config=name,
                    kind="sweep",
                    n=tp,
                    size_bytes=size,
                    measured_ms=(lat + bwt) * rng.uniform(0.9, 1.3),
                    model_ms=lat + bwt,
                    alpha_us=alpha,
                    bw_GBps=bw,
                    source="fit",
                    t_latency_ms=lat,
                    t_bandwidth_ms=bwt,
                    phase="",
                )
            )
        for phase, size in (("prefill", 20 * 1024 * 8192 * 2), ("decode", 20 * 8192 * 2)):
            for kind, n in [("phase", tp)] + [("tp_scaling", k) for k in (2, 4, 8)]:
                lat = 2 * (n - 1) * alpha * 1e-3
                bwt = 2 * (n - 1) / n * size / (bw * 1e9) * 1e3
                ar.append(
                    dict(
                        config=name,
                        kind=kind,
                        n=n,
                        size_bytes=size,
                        measured_ms=(lat + bwt) * 1.3 if kind == "phase" else np.nan,
                        model_ms=lat + bwt,
                        alpha_us=alpha,
                        bw_GBps=bw,
                        source="fit",
                        t_latency_ms=lat,
                        t_bandwidth_ms=bwt,
                        phase=phase,
                    )
                )
        ctx = 1024 + np.arange(steps) + 1
        ds.append(
            pd.DataFrame(
                dict(
                    config=name,
                    step=np.arange(steps),
                    context_len=ctx,
                    t_bound_ms=0.3 * (1 + ctx / 4096),
                    measured_ms=np.nan,
                )
            )
        )
        ce.append(dict(config=name, gpu=gpu, peak_tflops=peak, mem_bw_GBps=mem, link_GBps=link, source="datasheet"))
    ar = pd.DataFrame(ar).drop_duplicates(["config", "kind", "phase", "n", "size_bytes"])
    ar.to_csv(th / "allreduce.csv", index=False)
    pd.concat(ds).to_csv(th / "decode_steps.csv", index=False)
    pd.DataFrame(ce).to_csv(th / "ceilings.csv", index=False)
    return names, [dict(a=a, b=b, label=l) for a, b, l in PAIRS if a in hw and b in hw]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--keep", help="write the synthetic study and its report here (else a temp dir)")
    args = ap.parse_args(argv)
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_report_"))
    t0 = time.perf_counter()
    names, pairs = synthesize(tmp, args.configs, args.repeats, args.steps)
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
            {"unstable_cv": 0.1, "ratio_flag": 0.25},
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
