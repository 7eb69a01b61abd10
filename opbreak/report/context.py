"""The template context, built section by section; pure (no I/O).

Each section builder takes the :class:`ReportData` and returns the context keys its
part of the template reads. :data:`SECTIONS` lists them in report order and
:func:`build_context` merges their results; a new report section is one builder
function here and one entry in :data:`SECTIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..ops import PHASES
from ..stats import CI_PCT
from .answers import answers_context, pair_row_unstable
from .conclusions import disagreements, dominant_ops, generate_conclusions
from .decode import decode_context
from .evidence import EvidenceLog
from .host import host_context
from .markdown import (
    f_ci,
    f_int,
    f_ms,
    f_num,
    f_pct,
    f_sci,
    f_x,
    finite,
    join_words,
    md_code,
    md_escape,
    md_table,
    slug,
)
from .methods import methods, methods_compact
from .predict import predict_context, predicted_configs
from .tables import NOT_OPS, TABLE_PATHS, TARGET_PCT, phase_sort


@dataclass
class ReportData:
    """What every section reads: the tables, the declared study, and the conclusions already drawn."""

    t: dict
    configs: list
    present: list
    pairs_decl: list
    study: str
    figures: dict
    params: dict
    log: EvidenceLog
    sentences: list
    declared: dict | None = None  # config name -> its declared entry (a predict-only config has no provenance)


# ----------------------------------------------------------------------------- header and status
def section_header(d: ReportData) -> dict:
    """Title block: study, statistics settings, what was declared and what has data."""
    return dict(
        study=md_escape(d.study),
        ci_pct=CI_PCT,
        target_pct=TARGET_PCT,
        params={k: md_escape(v) for k, v in d.params.items()},
        configs=[md_escape(c) for c in d.configs],
        n_configs=len(d.configs),
        n_present=len(d.present),
        n_pairs=len(d.pairs_decl),
        fig=d.figures,
        tab={k: f"tables/{TABLE_PATHS[k].rsplit('/', 1)[-1]}" for k in TABLE_PATHS},
    )


def section_status(d: ReportData) -> dict:
    """Status of every declared config, and why any is missing (failed, not run, partial, undeclared)."""
    missing = _missing_rows(d)
    return dict(
        status_table=md_table(pd.DataFrame(_status_rows(d))),
        missing=missing,
        missing_table=md_table(pd.DataFrame(missing)) if missing else "",
    )


def _nprov(d: ReportData, cfg) -> int:
    return sum(1 for p in d.t["provenance"] if p.get("config") == cfg)


def _missing_rows(d: ReportData) -> list[dict]:
    """One row per config that is missing or partial, and per config in the tables but not declared."""
    t, missing = d.t, []
    for cfg in d.configs:
        have = {name: cfg in set(t[name]["config"]) for name in ("ops_summary", "phase_summary", "steps", "theory_ops")}
        nprov = _nprov(d, cfg)
        failed = t["failures"][t["failures"]["config"] == cfg]
        if len(failed):  # the measure job's last attempt recorded its error (aggregate's failures.csv)
            reps = ", ".join(str(int(float(r))) for r in failed["repeat"])
            what = "failed" if not have["ops_summary"] else "partly failed"
            missing.append(
                {
                    "config": md_escape(cfg),
                    "why": f"measure {what} (repeats {reps}): {md_escape(str(failed['error'].iloc[0]))}",
                    "provenance records": str(nprov),
                }
            )
        elif not have["ops_summary"]:
            missing.append(
                {
                    "config": md_escape(cfg),
                    "why": "no rows in `ops_summary.csv` (measure failed or not run)",
                    "provenance records": str(nprov),
                }
            )
        elif not all(have.values()):
            lacking = ", ".join(md_code(k) for k, v in have.items() if not v)
            missing.append(
                {"config": md_escape(cfg), "why": f"partial: no rows in {lacking}", "provenance records": str(nprov)}
            )
    for cfg in sorted(set(t["ops_summary"]["config"]) - set(d.configs)):
        missing.append(
            {
                "config": md_escape(cfg),
                "why": "in the tables but not in the config (ignored)",
                "provenance records": str(_nprov(d, cfg)),
            }
        )
    return missing


def _status_rows(d: ReportData) -> list[dict]:
    """One row per declared config: its spec (first provenance record) and phase medians."""
    ps, spec_of, rows = d.t["phase_summary"], {}, []
    for p in d.t["provenance"]:
        spec_of.setdefault(p.get("config"), p.get("spec", {}))
    for cfg in d.configs:
        s = spec_of.get(cfg) or (d.declared or {}).get(cfg) or {}
        pre = ps[(ps["config"] == cfg) & (ps["phase"] == "prefill")]
        dec = ps[(ps["config"] == cfg) & (ps["phase"] == "decode")]
        model = s.get("model", {})
        rows.append(
            {
                "config": md_escape(cfg),
                "status": "ok"
                if cfg in d.present
                else ("predicted only" if cfg in predicted_configs(d.t) else "**missing**"),
                "backend": md_escape(s.get("backend", "")),
                "gpu": md_escape(s.get("gpu", "")),
                "tp": md_escape(s.get("tp", "")),
                "GPUs": md_escape(s.get("num_gpus", "")),
                "model": md_escape(model.get("name", "") if isinstance(model, dict) else model),
                "batch": md_escape(s.get("batch", "")),
                "in/out": md_escape(f"{s.get('input_len', '')}/{s.get('output_len', '')}") if s else "",
                "dtype": md_escape(s.get("dtype", "")),
                "repeats": str(_nprov(d, cfg)),
                "prefill median": f_ms(pre["median_ms"].iloc[0]) if len(pre) else "–",
                "decode median": f_ms(dec["median_ms"].iloc[0]) if len(dec) else "–",
            }
        )
    return rows


# ----------------------------------------------------------------------------- summary and conclusions
def section_summary(d: ReportData) -> dict:
    """Dominant op per config and phase, and the pair rows furthest from theory."""
    ops, pr = d.t["ops_summary"], d.t["pairs"]
    dom = dominant_ops(ops[ops["config"].isin(d.present)])
    dom_tbl = pd.DataFrame(
        [
            {
                "config": md_escape(r["config"]),
                "phase": r["phase"],
                "dominant op": md_code(r["op"]),
                "share": f_pct(r["share"]),
                "median": f_ms(r["median_ms"]),
                "phase median": f_ms(r["phase_median_ms"]),
            }
            for _, r in dom.iterrows()
        ]
    )
    both = pr[pr["a"].isin(d.present) & pr["b"].isin(d.present)]
    ratio_flag = float(d.params.get("ratio_flag", 0.25))
    unstable = pd.Series([pair_row_unstable(d.t, r, ratio_flag) for _, r in both.iterrows()], index=both.index)
    dis = disagreements(both, unstable=unstable)
    dis_tbl = pd.DataFrame(
        [
            {
                "pair": md_escape(r["label"]),
                "phase": r["phase"],
                "op": md_code(r["op"]),
                "speedup": f_x(r["speedup"]),
                CI_PCT + " CI": f_ci(r["speedup_lo"], r["speedup_hi"], "×"),
                "theory": f_x(r["theory_speedup"]),
                "measured/theory": f_num(r["measured_over_theory"]),
                "bound": md_escape(r["bound"]),
                "flagged": "yes" if r["flagged"] else "no",
                "inputs": "**unstable**" if r["unstable"] else "stable",
            }
            for _, r in dis.iterrows()
        ]
    )
    return dict(dominant_table=md_table(dom_tbl), disagreement_table=md_table(dis_tbl))


def section_conclusions(d: ReportData) -> dict:
    """The generated sentences (drawn before any section, so evidence ids follow the conclusions' order)."""
    return dict(sentences=d.sentences)


# ----------------------------------------------------------------------------- per config
def op_table(ops: pd.DataFrame, theory: pd.DataFrame, cfg, phase) -> pd.DataFrame:
    """One config and phase: every op's median, CI, CV, share and flags (modeled ops show the theory's time)."""
    d = ops[(ops["config"] == cfg) & (ops["phase"] == phase)]
    th = theory[(theory["config"] == cfg) & (theory["phase"] == phase)].set_index("op") if len(theory) else None
    rows = []
    for _, r in d.iterrows():
        med = r["median_ms"]
        if r["modeled"] and th is not None and r["op"] in th.index:
            med = th.loc[r["op"], "measured_ms"]
            if isinstance(med, pd.Series):
                med = med.iloc[0]
        rows.append(
            {
                "op": md_code(r["op"]),
                "median": f_ms(med),
                CI_PCT + " CI": f_ci(r["ci_lo_ms"], r["ci_hi_ms"]),
                "CV": f_pct(r["cv"]),
                "share": f_pct(r["share"]),
                "calls": f_int(r["calls"]),
                "n": f_int(r["n"]),
                "flags": ", ".join(_op_flags(r)),
            }
        )
    return pd.DataFrame(rows)


def _op_flags(r) -> list[str]:
    """Why a reader should be careful with an op row: unstable, outliers, modeled, framework time."""
    flags = []
    if r["unstable"]:
        flags.append("unstable")
    if finite(r["n_outliers"]) and r["n_outliers"] > 0:
        flags.append(f"{f_int(r['n_outliers'])} outlier(s)")
    if r["modeled"]:
        flags.append("modeled")
    if r["op"] in NOT_OPS:
        flags.append("framework")
    return flags


def section_per_config(d: ReportData) -> dict:
    """Per declared config: its pie, and per phase the op table and the phase's end-to-end median."""
    ops, ps, th = d.t["ops_summary"], d.t["phase_summary"], d.t["theory_ops"]
    per_config = []
    for cfg in d.configs:
        entry = {
            "name": cfg,
            "name_md": md_escape(cfg),
            "present": cfg in d.present,
            "pie": d.figures.get(("pie", cfg)),
            "anchor": "cfg-" + slug(cfg).lower(),
            "phases": [],
        }
        for phase in PHASES:
            tbl = op_table(ops, th, cfg, phase)
            row = ps[(ps["config"] == cfg) & (ps["phase"] == phase)]
            total = ""
            if len(row):
                r = row.iloc[0]
                total = (
                    f"phase end-to-end median {f_ms(r['median_ms'])} ({CI_PCT} CI "
                    f"{f_ci(r['ci_lo_ms'], r['ci_hi_ms'])}, CV {f_pct(r['cv'])}, n = {f_int(r['n'])})"
                )
            entry["phases"].append({"phase": phase, "table": md_table(tbl), "total": total})
        per_config.append(entry)
    return dict(per_config=per_config)


# ----------------------------------------------------------------------------- pairs
def section_pairs(d: ReportData) -> dict:
    """Per declared pair: figures, the per-op comparison table, its sentences, or why it was not compared."""
    pr, entries = d.t["pairs"], []
    for i, p in enumerate(d.pairs_decl):
        a, b = p["a"], p["b"]
        label = p.get("label") or f"{a} vs {b}"
        ok = a in d.present and b in d.present
        q = pr[(pr["a"] == a) & (pr["b"] == b)]
        q = phase_sort(q) if len(q) else q
        why = ""
        if not ok:
            gone = [md_escape(c) for c in (a, b) if c not in d.present]
            why = "not compared: " + join_words(gone) + (" has" if len(gone) == 1 else " have") + " no data"
        entries.append(
            {
                "label": md_escape(label),
                "a": md_escape(a),
                "b": md_escape(b),
                "ok": ok,
                "why": why,
                "bars": d.figures.get(("pair_bars", i)),
                "speedup": d.figures.get(("pair_speedup", i)),
                "table": md_table(pd.DataFrame(_pair_rows(q))),
                "sentences": [s for s in d.sentences if s.topic == "pairs" and md_escape(label) in s.text],
            }
        )
    return dict(pairs=entries)


def _pair_rows(q: pd.DataFrame) -> list[dict]:
    return [
        {
            "phase": r["phase"],
            "op": md_code(r["op"]) + (" (modeled)" if r["modeled"] else ""),
            "view": md_escape(r.get("view", "wall")),
            "A ms": f_num(r["time_a_ms"]),
            "B ms": f_num(r["time_b_ms"]),
            "speedup": f_x(r["speedup"]),
            CI_PCT + " CI": f_ci(r["speedup_lo"], r["speedup_hi"], "×"),
            "bound": md_escape(r["bound"]),
            "resource ratio": f_x(r["resource_ratio"]),
            "theory": f_x(r["theory_speedup"]),
            "measured/theory": f_num(r["measured_over_theory"]),
            "flagged": "**yes**" if r["flagged"] else "",
        }
        for _, r in q.iterrows()
    ]


# ----------------------------------------------------------------------------- stability
STABILITY_ROWS = 10  # least stable figures shown; every row is in tables/ops_summary.csv (column unstable)


def section_stability(d: ReportData) -> dict:
    """Unstable ops (by CV), ops with outliers, and every phase total with its CI."""
    ops, ps = d.t["ops_summary"], d.t["phase_summary"]
    unst = ops[ops["unstable"] & ops["config"].isin(d.present)].sort_values("cv", ascending=False)
    stab_rows = [
        {
            "config": md_escape(r["config"]),
            "phase": r["phase"],
            "op": md_code(r["op"]),
            "CV": f_pct(r["cv"]),
            "median": f_ms(r["median_ms"]),
            "IQR": f_ms(r["iqr_ms"]),
            "outliers": f_int(r["n_outliers"]),
            "n": f_int(r["n"]),
            "repeats for CI < " + TARGET_PCT: f_int(r["repeats_for_5pct"]),
        }
        for _, r in unst.head(STABILITY_ROWS).iterrows()
    ]
    out_rows = ops[(ops["n_outliers"].fillna(0) > 0) & ops["config"].isin(d.present)]
    outl = [
        {
            "config": md_escape(r["config"]),
            "phase": r["phase"],
            "op": md_code(r["op"]),
            "outliers": f_int(r["n_outliers"]),
            "n": f_int(r["n"]),
            "median": f_ms(r["median_ms"]),
            "mean": f_ms(r["mean_ms"]),
        }
        for _, r in out_rows.iterrows()
    ]
    ps_rows = [
        {
            "config": md_escape(r["config"]),
            "phase": r["phase"],
            "median": f_ms(r["median_ms"]),
            CI_PCT + " CI": f_ci(r["ci_lo_ms"], r["ci_hi_ms"]),
            "CV": f_pct(r["cv"]),
            "IQR": f_ms(r["iqr_ms"]),
            "outliers": f_int(r["n_outliers"]),
            "unstable": "**yes**" if r["unstable"] else "no",
            "repeats for CI < " + TARGET_PCT: f_int(r["repeats_for_5pct"]),
            "n": f_int(r["n"]),
        }
        for _, r in ps[ps["config"].isin(d.present)].iterrows()
    ]
    return dict(
        stability_table=md_table(pd.DataFrame(stab_rows)),
        stability_more=len(unst) > STABILITY_ROWS,
        outlier_table=md_table(pd.DataFrame(outl)),
        phase_table=md_table(pd.DataFrame(ps_rows)),
    )


# ----------------------------------------------------------------------------- theory, all-reduce, ceilings
def section_theory(d: ReportData) -> dict:
    """Per config the roofline table (FLOPs, bytes, bound, efficiency), and vanilla vs exact FLOPs."""
    th, th_tables = d.t["theory_ops"], []
    for cfg in d.present:
        q = th[th["config"] == cfg]
        if q.empty:
            continue
        rows = [
            {
                "phase": r["phase"],
                "op": md_code(r["op"]) + (" (modeled)" if r["modeled"] else ""),
                "FLOPs": f_sci(r["flops"]),
                "bytes": f_sci(r["bytes"]),
                "comm bytes": f_sci(r["comm_bytes"]),
                "intensity": f_num(r["intensity"]),
                "bound": md_escape(r["bound"]),
                "roofline": f_ms(r["t_bound_ms"]),
                "measured": f_ms(r["measured_ms"]),
                "efficiency": f_pct(r["efficiency"]),
                "TFLOP/s": f_num(r["achieved_tflops"]),
                "GB/s": f_num(r["achieved_GBps"]),
            }
            for _, r in phase_sort(q).iterrows()
        ]
        th_tables.append({"config": md_escape(cfg), "table": md_table(pd.DataFrame(rows))})
    van = d.t["vanilla"]
    van_tbl = pd.DataFrame(
        [
            {
                "model": md_escape(r["model"]),
                **({"tokens": f_int(r["tokens"])} if "tokens" in van else {}),
                "component": md_escape(r["component"]),
                "vanilla GPT FLOPs": f_sci(r["vanilla_flops"]),
                "exact FLOPs": f_sci(r["exact_flops"]),
                "exact / vanilla": f_num(r["ratio"]),
            }
            for _, r in van.iterrows()
        ]
    )
    return dict(theory_tables=th_tables, vanilla_table=md_table(van_tbl))


def section_allreduce(d: ReportData) -> dict:
    """All-reduce rows (phase and TP scaling, measured vs ring model) and the alpha/B fit per config."""
    ar = d.t["allreduce"]
    ar_rows = [
        {
            "config": md_escape(r["config"]),
            "kind": md_escape(r["kind"]),
            "phase": md_escape(r["phase"]),
            "ranks": f_int(r["n"]),
            "size [B]": f_int(r["size_bytes"]),
            "measured": f_ms(r["measured_ms"]),
            "model": f_ms(r["model_ms"]),
            "latency term": f_ms(r["t_latency_ms"]),
            "bandwidth term": f_ms(r["t_bandwidth_ms"]),
            "alpha [us]": f_num(r["alpha_us"]),
            "B [GB/s]": f_num(r["bw_GBps"]),
            "source": md_escape(r["source"]),
        }
        for _, r in ar[ar["kind"] == "phase"].sort_values(["config", "kind", "phase", "n"]).iterrows()
    ]
    ar_fit = ar.drop_duplicates(["config", "source"])
    ar_fit_rows = [
        {
            "config": md_escape(r["config"]),
            "ranks": f_int(r["n"]),
            "alpha [us]": f_num(r["alpha_us"]),
            "B [GB/s]": f_num(r["bw_GBps"]),
            "source": md_escape(r["source"]),
            "fitted on": md_escape(r["fit_on"]) if "fit_on" in r and isinstance(r["fit_on"], str) else "",
            "sizes": str(
                int(
                    (
                        (ar["config"] == r["config"])
                        & (ar["kind"] == ("nccl_tests" if r["source"] == "fit to nccl-tests" else "sweep"))
                    ).sum()
                )
            ),
        }
        for _, r in ar_fit.iterrows()
    ]
    return dict(
        allreduce_table=md_table(pd.DataFrame(ar_rows)),
        allreduce_fit_table=md_table(pd.DataFrame(ar_fit_rows)),
        **sweep_vs_nccl_tests(ar),
    )


def _us(ms) -> str:
    return f"{f_num(ms * 1e3)} us" if ms == ms else "-"


def _agreement(g: pd.DataFrame) -> str:
    """One link's sweep against nccl-tests in a sentence: small messages (<= 1 MiB) as a ratio range,
    with the CUDA graph's where measured; large ones (>= 16 MiB) as the largest relative difference."""
    g = g[g["nccl_tests_ms"].notna()]
    r = g["measured_ms"] / g["nccl_tests_ms"]
    small, large = g["size_bytes"] <= 1 << 20, g["size_bytes"] >= 16 << 20
    parts = []
    if small.any():
        lo, hi = r[small].min(), r[small].max()
        txt = f"at <= 1 MiB the sweep is {f_num(lo)}-{f_num(hi)}x nccl-tests"
        if "graph_ms" in g and g.loc[small, "graph_ms"].notna().any():
            gr = g.loc[small, "graph_ms"] / g.loc[small, "nccl_tests_ms"]
            txt += f" (its CUDA graph {f_num(gr.min())}-{f_num(gr.max())}x)"
        parts.append(txt)
    if large.any():
        parts.append(f"at >= 16 MiB within {f_num(100 * (r[large] - 1).abs().max())} %")
    if not parts:
        return ""
    t = g.iloc[0]
    return f" {md_escape(t['config'])} ({md_escape(str(t.get('transport', '')))}): " + "; ".join(parts) + "."


def sweep_vs_nccl_tests(ar: pd.DataFrame) -> dict:
    """Per link (its first config) and size: the sweep's torch.distributed times beside nccl-tests'.

    The sweep is the framework's call floor (``torch.distributed.all_reduce`` back to back, its
    lowest round, a CUDA graph of the same calls, calls synchronized one by one); nccl-tests is
    NCCL's own floor. Without nccl-tests the note says the reference is absent."""
    sw = ar[ar["kind"] == "sweep"]
    if sw.empty:
        return dict(allreduce_sweep_table="", nccl_tests_note="")
    has_ref = "nccl_tests_ms" in sw and sw["nccl_tests_ms"].notna().any()
    rows = []
    sw = sw.drop_duplicates(  # configs sharing a link share its sweep: once
        ["transport", "n", "size_bytes", "measured_ms"] if "transport" in sw else ["config", "size_bytes"]
    )
    for _, r in sw.iterrows():

        def get(c, r=r):
            v = r.get(c, float("nan"))
            return float(v) if v is not None and v == v else float("nan")

        ref = get("nccl_tests_ms")
        row = {
            "config": md_escape(r["config"]),
            "transport": md_escape(str(r.get("transport", ""))),
            "ranks": f_int(r["n"]),
            "size [B]": f_int(r["size_bytes"]),
            "sweep (median)": _us(get("measured_ms")),
            "sweep (min)": _us(get("sweep_min_ms")),
            "CUDA graph": _us(get("graph_ms")),
            "per call, synced": _us(get("percall_ms")),
        }
        if has_ref:
            row["nccl-tests"] = _us(ref)
            row["sweep / nccl-tests"] = f_num(get("measured_ms") / ref) if ref == ref and ref > 0 else "-"
        rows.append(row)
    if has_ref:
        note = (
            "nccl-tests (`all_reduce_perf`, out of place, one process driving the link's GPUs) is NCCL's floor; "
            "the sweep is `torch.distributed.all_reduce` called back to back (the framework's call floor), "
            "CUDA graph the same calls replayed without the host. Where the sweep sits well above nccl-tests "
            "and the CUDA graph does not, the difference is the host's cost per call, not the link."
        )
        note += "".join(
            _agreement(g) for _, g in sw.groupby(["config"], sort=False) if g["nccl_tests_ms"].notna().any()
        )
    else:
        note = (
            "nccl-tests reference: absent (the study sets no `nccl_tests`; README, all-reduce sweep), so the "
            "sweep's small-message times are the framework's call floor with nothing to hold them against."
        )
    return dict(allreduce_sweep_table=md_table(pd.DataFrame(rows)), nccl_tests_note=note)


def section_ceilings(d: ReportData) -> dict:
    """The hardware ceilings the roofline used, with their source."""
    rows = [
        {
            "config": md_escape(r["config"]),
            "gpu": md_escape(r["gpu"]),
            "peak TFLOP/s": f_num(r["peak_tflops"]),
            "memory GB/s": f_num(r["mem_bw_GBps"]),
            "link GB/s": f_num(r["link_GBps"]),
            "source": md_escape(r["source"]),
        }
        for _, r in d.t["ceilings"].iterrows()
    ]
    return dict(ceilings_table=md_table(pd.DataFrame(rows)))


# ----------------------------------------------------------------------------- methods and evidence
def section_methods(d: ReportData) -> dict:
    """How each config was measured (see :mod:`.methods`)."""
    return dict(methods=methods(d.t, d.configs), methods_compact=_methods_compact(d))


def _methods_compact(d: ReportData) -> dict:
    m = methods_compact(d.t, d.configs)
    return dict(table=md_table(pd.DataFrame(m["rows"])), blocks=m["blocks"])


def section_answers(d: ReportData) -> dict:
    """The answers on one screen (see :mod:`.answers`); drawn first, so its evidence ids come first."""
    specs = {p.get("config"): p.get("spec") or {} for p in d.t["provenance"]}
    return dict(answers=answers_context(d.t, d.configs, d.present, d.pairs_decl, specs, d.params, d.log))


def section_evidence(d: ReportData) -> dict:
    """Every cited cell: table file, row key, column, raw value and the text shown."""
    rows = [
        {
            "id": f'<a id="{e.id.lower()}"></a>{e.id}',
            "table": md_code(TABLE_PATHS[e.table]),
            "row": md_escape(", ".join(f"{k}={v}" for k, v in e.key.items())),
            "column": md_code(e.column),
            "value": md_code(repr(e.value)),
            "shown": md_escape(e.shown),
        }
        for e in d.log.rows
    ]
    return dict(evidence=d.log.rows, evidence_table=md_table(pd.DataFrame(rows), align=[":---"] * 6))


def section_decode(d: ReportData) -> dict:
    """Decode truth: both views per op, every rank, collective wait vs transfer (see :mod:`.decode`)."""
    specs = {p.get("config"): p.get("spec") or {} for p in d.t["provenance"]}
    return dict(decode=decode_context(d.t, d.configs, d.pairs_decl, specs, d.log, d.figures))


def section_host(d: ReportData) -> dict:
    """Decode down to the host and without it: the decode probe (see :mod:`.host`)."""
    return dict(host=host_context(d.t, d.configs, d.log, d.figures))


def section_predict(d: ReportData) -> dict:
    """Predicted times for every config, measured or not, and the seed's claims (see :mod:`.predict`)."""
    return dict(predict=predict_context(d.t, d.configs, d.pairs_decl, d.log, d.figures))


# Report order; a new section is one builder above and one entry here. Evidence comes last: it lists
# what every section before it cited.
SECTIONS = (
    section_header,
    section_status,
    section_summary,
    section_conclusions,
    section_per_config,
    section_decode,
    section_host,
    section_pairs,
    section_stability,
    section_theory,
    section_allreduce,
    section_ceilings,
    section_predict,
    section_methods,
    section_evidence,
)


def build_context(
    t: dict, configs, pairs_decl, study, figures: dict, params: dict | None = None, declared: dict | None = None
) -> dict:
    """Everything the template needs; pure (no I/O). ``declared``: config name -> its config entry."""
    log = EvidenceLog()
    present = [c for c in configs if c in set(t["ops_summary"]["config"])]
    data = ReportData(t, configs, present, pairs_decl, study, figures, params or {}, log, [], declared)
    ctx = section_answers(data)
    data.sentences = generate_conclusions(t, configs, pairs_decl, log)
    for section in SECTIONS:
        ctx.update(section(data))
    return ctx
