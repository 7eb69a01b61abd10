"""The theory step: join exact costs and rooflines with what was measured.

Pure functions from the aggregated tables, the specs and the hardware catalog
to the tables under results/theory/ (their columns: opbreak.contract). Every
theoretical number comes from opbreak.theory (costs, rooflines),
opbreak.collectives (the all-reduce model and its fit) or opbreak.hardware (the
catalog's ceilings and links); every measured one from results/aggregate and the
sweeps.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .collectives import allreduce_terms, fit_alpha_beta, fit_sweep, tp_scaling_explainer
from .config import DTYPE_BYTES
from .contract import ALLREDUCE_COLUMNS, THEORY_OPS_COLUMNS
from .hardware import catalog_link, ceilings_for
from .nccl_tests import at_sizes
from .ops import COLLECTIVE_OPS, MODEL_OPS, PHASES
from .stats import ratio_ci
from .theory import decode_step_costs, op_costs, roofline, theoretical_ratio, vanilla_gpt_flops


def theory_ops(spec, catalog, provenance, sweep, summary: pd.DataFrame):
    """Per (phase, op): costs, roofline and measured efficiency for one config."""
    ceil = ceilings_for(spec, catalog, provenance)
    # the catalog's link as well: predict mode's collective efficiencies are ratios to it
    on_catalog = catalog_link(spec, catalog, provenance)
    link = fit_sweep(sweep, spec["tp"]) or on_catalog
    hw = dict(peak_tflops=ceil["peak_tflops"], mem_bw_GBps=ceil["mem_bw_GBps"])
    parts = []
    for phase in PHASES:
        costs = op_costs(
            spec["model"],
            batch=spec["batch"],
            input_len=spec["input_len"],
            output_len=spec["output_len"],
            tp=spec["tp"],
            dtype_bytes=DTYPE_BYTES[spec["dtype"]],
            phase=phase,
        )
        roof = roofline(costs, hw, n_gpus=spec["tp"], allreduce_params=link)
        cat = roofline(costs, hw, n_gpus=spec["tp"], allreduce_params=on_catalog)
        roof["t_link_catalog_s"] = cat["t_link_s"].to_numpy()
        roof.insert(0, "phase", phase)
        parts.append(roof)
    t = pd.concat(parts, ignore_index=True).rename(columns={"calls": "calls_theory"})
    for col in ("t_compute", "t_memory", "t_link", "t_link_catalog", "t_bound"):
        t[f"{col}_ms"] = t.pop(f"{col}_s") * 1e3
    t.insert(0, "config", spec["name"])
    mine = summary[summary["config"] == spec["name"]]
    is_modeled = mine["modeled"].astype(str).str.lower() == "true"
    modeled_keys = set(zip(mine[is_modeled]["phase"], mine[is_modeled]["op"]))
    s = mine[~is_modeled].set_index(["phase", "op"])["median_ms"]
    measured, modeled = [], []
    for _, r in t.iterrows():
        key = (r["phase"], r["op"])
        if key in modeled_keys:
            measured.append(r["t_link_ms"])  # emulated TP: the collective's time is the model's
            modeled.append(True)
        else:
            measured.append(float(s.loc[key]) if key in s.index else math.nan)
            modeled.append(False)
    t["measured_ms"] = measured
    t["modeled"] = modeled
    sec = t["measured_ms"] / 1e3
    with np.errstate(divide="ignore", invalid="ignore"):
        t["achieved_tflops"] = t["flops"] / sec / 1e12
        t["achieved_GBps"] = t["bytes"] / sec / 1e9
        t["efficiency"] = t["t_bound_ms"] / t["measured_ms"]
    # a modeled time is the roofline's own: an efficiency of it would be a tautology
    t.loc[t["modeled"], ["achieved_tflops", "achieved_GBps", "efficiency"]] = math.nan
    t["peak_tflops"] = ceil["peak_tflops"]
    t["mem_bw_GBps"] = ceil["mem_bw_GBps"]
    t["link_GBps"] = link["bw_bytes_per_s"] / 1e9 if link else math.nan
    t["ceiling_source"] = ceil["source"]
    t["link_source"] = link["source"] if link else "none"
    return t[THEORY_OPS_COLUMNS], ceil, link


def op_repeat_times(ops_repeats, config, phase, op, col="time_ms"):
    r = ops_repeats[
        (ops_repeats["config"] == config)
        & (ops_repeats["rank"] == 0)
        & (ops_repeats["phase"] == phase)
        & (ops_repeats["op"] == op)
        & (~ops_repeats["modeled"])
    ]
    return r[col].to_numpy(float) if col in r else np.array([])


def pair_times(ops_repeats, a, b, phase, op):
    """Per-repeat times of an op in both configs, in the view a roofline predicts where both have it.

    GPU-busy (CUPTI ``kernel_ms``) for model ops whose kernels both configs captured: a roofline
    times kernels, not the host; else the wall view (collectives: their kernels include the peer
    wait; framework ops and configs without kernel steps).
    """
    if op in MODEL_OPS and op not in COLLECTIVE_OPS:
        ka, kb = (op_repeat_times(ops_repeats, c, phase, op, "kernel_ms") for c in (a, b))
        if len(ka) and len(kb) and np.isfinite(ka).all() and np.isfinite(kb).all() and (ka > 0).all():
            return ka, kb, "gpu-busy"
    return op_repeat_times(ops_repeats, a, phase, op), op_repeat_times(ops_repeats, b, phase, op), "wall"


def pair_table(pair, theory: pd.DataFrame, ops_repeats, phase_totals, ratio_flag):
    """Per op and phase: measured speedup of a over b with CI beside the theoretical ratio."""
    a, b = pair["a"], pair["b"]
    label = pair.get("label") or f"{a} vs {b}"
    ta = theory[theory["config"] == a].set_index(["phase", "op"])
    tb = theory[theory["config"] == b].set_index(["phase", "op"])
    rows = []
    for (phase, op), ra in ta.iterrows():
        if (phase, op) not in tb.index:
            continue
        rb = tb.loc[(phase, op)]
        modeled = bool(ra["modeled"] or rb["modeled"])
        time_a, time_b, view = ra["measured_ms"], rb["measured_ms"], "modeled"
        if modeled:
            sp, lo, hi = rb["measured_ms"] / ra["measured_ms"] if ra["measured_ms"] else math.nan, math.nan, math.nan
        else:
            xa, xb, view = pair_times(ops_repeats, a, b, phase, op)
            if len(xa) == 0 or len(xb) == 0 or np.median(xa) <= 0:
                continue
            sp, lo, hi = ratio_ci(xa, xb)
            time_a, time_b = (float(np.median(x)) for x in (xa, xb))
        ratio = theoretical_ratio(ra, rb, time_col="t_bound_ms")
        bound, resource, theo = ratio["bound"], ratio["resource_speedup"], ratio["roofline_speedup"]
        mot = sp / theo if theo and np.isfinite(theo) else math.nan
        rows.append(
            dict(
                label=label,
                a=a,
                b=b,
                phase=phase,
                op=op,
                view=view,
                time_a_ms=time_a,
                time_b_ms=time_b,
                speedup=sp,
                speedup_lo=lo,
                speedup_hi=hi,
                bound=bound,
                resource_ratio=resource,
                theory_speedup=theo,
                measured_over_theory=mot,
                flagged=bool(np.isfinite(mot) and abs(mot - 1) > ratio_flag),
                modeled=modeled,
            )
        )
    for phase in PHASES:  # end-to-end per phase
        xa = phase_totals[(phase_totals["config"] == a) & (phase_totals["phase"] == phase)]["e2e_ms"].to_numpy(float)
        xb = phase_totals[(phase_totals["config"] == b) & (phase_totals["phase"] == phase)]["e2e_ms"].to_numpy(float)
        if len(xa) and len(xb):
            sp, lo, hi = ratio_ci(xa, xb)
            theo_a = ta.loc[phase]["t_bound_ms"].sum() if phase in ta.index.get_level_values(0) else math.nan
            theo_b = tb.loc[phase]["t_bound_ms"].sum() if phase in tb.index.get_level_values(0) else math.nan
            theo = theo_b / theo_a if theo_a else math.nan
            mot = sp / theo if np.isfinite(theo) and theo else math.nan
            rows.append(
                dict(
                    label=label,
                    a=a,
                    b=b,
                    phase=phase,
                    op="end_to_end",
                    view="wall",
                    time_a_ms=float(np.median(xa)),
                    time_b_ms=float(np.median(xb)),
                    speedup=sp,
                    speedup_lo=lo,
                    speedup_hi=hi,
                    bound="mixed",
                    resource_ratio=math.nan,
                    theory_speedup=theo,
                    measured_over_theory=mot,
                    flagged=bool(np.isfinite(mot) and abs(mot - 1) > ratio_flag),
                    modeled=False,
                )
            )
    return pd.DataFrame(rows)


def sweep_at(sweep, size_bytes) -> float:
    """The sweep's back-to-back time per call (ms) at ``size_bytes``, log-log interpolated; NaN outside it."""
    if sweep is None or sweep.empty or not (sweep["size_bytes"].min() <= size_bytes <= sweep["size_bytes"].max()):
        return math.nan
    s = sweep.sort_values("size_bytes")
    return float(np.exp(np.interp(np.log(size_bytes), np.log(s["size_bytes"]), np.log(s["time_s"])))) * 1e3


FIT_ON = {
    "fit": "sweep time_p10_s (torch.distributed calls back to back: the framework's call floor)",
    "catalog": "datasheet link (no sweep)",
    "fit to nccl-tests": "nccl-tests out-of-place time (NCCL's floor, no framework call)",
}


def _col_ms(r, col):
    v = r.get(col, math.nan)
    return float(v) * 1e3 if v is not None and not pd.isna(v) else math.nan


def _size_row(base: dict, kind: str, r, n, bw, alpha, **extra) -> dict:
    """One measured size (a sweep's or nccl-tests' row ``r``, ``time_s``) next to the alpha-beta model."""
    terms = allreduce_terms(r["size_bytes"], n, bw, alpha).iloc[0]
    return dict(
        base,
        kind=kind,
        phase="",
        size_bytes=r["size_bytes"],
        measured_ms=r["time_s"] * 1e3,
        model_ms=terms["total_s"] * 1e3,
        t_latency_ms=terms["latency_s"] * 1e3,
        t_bandwidth_ms=terms["bandwidth_s"] * 1e3,
        **extra,
    )


def _sweep_rows(base, sweep, nccl, n, bw, alpha) -> list[dict]:
    """The sweep's sizes against the model, with nccl-tests at the same sizes where it ran."""
    ref = at_sizes(nccl, sweep["size_bytes"]) * 1e3
    return [
        _size_row(
            base,
            "sweep",
            r,
            n,
            bw,
            alpha,
            sweep_min_ms=_col_ms(r, "time_min_s"),
            graph_ms=_col_ms(r, "graph_time_s"),
            percall_ms=_col_ms(r, "percall_median_s"),
            nccl_tests_ms=ref_ms,
        )
        for (_, r), ref_ms in zip(sweep.iterrows(), ref)
    ]


def _nccl_tests_rows(base, nccl, n) -> list[dict]:
    """nccl-tests' own sizes against a model fitted to them (NCCL's floor, no framework call)."""
    na, nb = fit_alpha_beta(nccl["size_bytes"], nccl["time_s"], n)
    nbase = dict(base, alpha_us=na * 1e6, bw_GBps=nb / 1e9, source="fit to nccl-tests")
    nbase["fit_on"] = FIT_ON["fit to nccl-tests"]
    return [_size_row(nbase, "nccl_tests", r, n, nb, na, nccl_tests_ms=r["time_s"] * 1e3) for _, r in nccl.iterrows()]


def _phase_rows(base, spec, theory, sweep, n, bw, alpha) -> list[dict]:
    """Per phase, the config's own all_reduce message: measured per call against the model and the sweep."""
    rows = []
    for _, r in theory[(theory["config"] == spec["name"]) & (theory["op"] == "all_reduce")].iterrows():
        calls = r["calls_theory"]
        if not calls:
            continue
        msg = r["comm_bytes"] / calls
        terms = allreduce_terms(msg, n, bw, alpha).iloc[0]
        measured = math.nan if r["modeled"] else r["measured_ms"] / calls  # emulated TP: nothing was measured
        rows.append(
            dict(
                base,
                kind="phase",
                phase=r["phase"],
                size_bytes=msg,
                measured_ms=measured,
                model_ms=terms["total_s"] * 1e3,
                t_latency_ms=terms["latency_s"] * 1e3,
                t_bandwidth_ms=terms["bandwidth_s"] * 1e3,
                sweep_ms=sweep_at(sweep, msg),
            )
        )
    return rows


def _tp_scaling_rows(base, spec, n, bw, alpha) -> list[dict]:
    """The 4-vs-8 explainer on this link: the config's messages at n, 4 and 8 ranks."""
    m = spec["model"]
    ex = tp_scaling_explainer(
        hidden_size=m["hidden_size"],
        batch=spec["batch"],
        input_len=spec["input_len"],
        dtype_bytes=DTYPE_BYTES[spec["dtype"]],
        alpha_s=alpha,
        bw_bytes_per_s=bw,
        ns=sorted({n, 4, 8}),
    )
    return [
        dict(
            base,
            kind="tp_scaling",
            phase=r["phase"],
            n=int(r["n"]),
            size_bytes=r["msg_bytes"],
            measured_ms=math.nan,
            model_ms=r["total_s"] * 1e3,
            t_latency_ms=r["latency_s"] * 1e3,
            t_bandwidth_ms=r["bandwidth_s"] * 1e3,
        )
        for _, r in ex.iterrows()
    ]


def allreduce_rows(spec, link, sweep, theory: pd.DataFrame, nccl: pd.DataFrame | None = None):
    """allreduce.csv's rows of one config, by ``kind``: sweep points vs the fitted model, nccl-tests'
    own points vs a model fitted to them, per-phase collectives vs the model, the 4-vs-8 explainer.
    ``nccl``: None where the config's link ran no nccl-tests."""
    if link is None:
        return []
    n, alpha, bw = spec["tp"], link["alpha_s"], link["bw_bytes_per_s"]
    base = dict(
        config=spec["name"],
        n=n,
        alpha_us=alpha * 1e6,
        bw_GBps=bw / 1e9,
        source=link["source"],
        fit_on=FIT_ON[link["source"]],
        transport=spec["transport"],
    )
    rows = _sweep_rows(base, sweep, nccl, n, bw, alpha) if sweep is not None else []
    if nccl is not None and len(nccl) >= 2 and n >= 2:
        rows += _nccl_tests_rows(base, nccl, n)
    rows += _phase_rows(base, spec, theory, sweep, n, bw, alpha)
    return rows + _tp_scaling_rows(base, spec, n, bw, alpha)


def decode_step_rows(spec, ceil, steps: pd.DataFrame, stride=1, link=None):
    """Roofline time per decode step against the measured step latency (median over repeats).

    Both at the depth that ran (``num_layers``): step latencies of truncated runs are not
    scaled (only per-op totals are), so the bound is computed for the truncated model too.
    The bound includes the step's collectives wherever they ran (real TP: on ``link``, the
    same alpha-beta model as ops.csv); an emulated-TP step runs none, so its bound has none.
    """
    n_coll = 1 if spec["emulate_tp"] else spec["tp"]
    s = steps[(steps["config"] == spec["name"]) & (steps["phase"] == "decode")]
    med = s.groupby("step")["e2e_ms"].median()
    hw = dict(peak_tflops=ceil["peak_tflops"], mem_bw_GBps=ceil["mem_bw_GBps"])
    rows = []
    for step in range(0, spec["output_len"], stride):
        c = decode_step_costs(
            dict(spec["model"], num_layers=spec["num_layers"]),
            batch=spec["batch"],
            input_len=spec["input_len"],
            step=step,
            tp=spec["tp"],
            dtype_bytes=DTYPE_BYTES[spec["dtype"]],
        )
        roof = roofline(c, hw, n_gpus=n_coll, allreduce_params=link)
        measured = med.get(step, math.nan)
        rows.append(
            dict(
                config=spec["name"],
                step=step,
                context_len=spec["input_len"] + step + 1,
                t_bound_ms=float(roof["t_bound_s"].sum() * 1e3),
                measured_ms=float(measured),
                num_layers=spec["num_layers"],
                model_layers=spec["model_layers"],
            )
        )
    return rows


def build(
    specs, summary, ops_repeats, phase_totals, steps, provenance, catalog, sweeps, pairs, ratio_flag, nccl_refs=None
):
    """All theory tables as DataFrames (written by scripts/theory.py). ``nccl_refs``: config -> the
    parsed nccl-tests table of its link (:mod:`opbreak.nccl_tests`), where the study ran it."""
    nccl_refs = nccl_refs or {}
    th, ar, ds, ce = [], [], [], []
    for name, spec in specs.items():
        t, ceil, link = theory_ops(spec, catalog, provenance, sweeps.get(name), summary)
        th.append(t)
        ar += allreduce_rows(spec, link, sweeps.get(name), t, nccl_refs.get(name))
        stride = max(1, spec["output_len"] // 256)
        ds += decode_step_rows(spec, ceil, steps, stride, link)
        ce.append(
            dict(
                config=name,
                gpu=spec["gpu"],
                peak_tflops=ceil["peak_tflops"],
                mem_bw_GBps=ceil["mem_bw_GBps"],
                link_GBps=link["bw_bytes_per_s"] / 1e9 if link else math.nan,
                alpha_us=link["alpha_s"] * 1e6 if link else math.nan,
                source=ceil["source"],
                link_source=link["source"] if link else "none",
            )
        )
    theory = pd.concat(th, ignore_index=True)
    pair_df = pd.concat(
        [pair_table(p, theory, ops_repeats, phase_totals, ratio_flag) for p in pairs] or [pd.DataFrame()],
        ignore_index=True,
    )
    seen, van = set(), []
    for spec in specs.values():
        m = spec["model"]
        key = (m["name"], spec["batch"] * spec["input_len"])
        if key in seen:
            continue
        seen.add(key)
        v = vanilla_gpt_flops(m, tokens=spec["batch"] * spec["input_len"])
        v.insert(0, "model", m["name"])
        v.insert(1, "tokens", key[1])
        van.append(v.rename(columns={"seed_flops": "vanilla_flops"}))
    return dict(
        ops=theory,
        pairs=pair_df,
        vanilla=pd.concat(van, ignore_index=True),
        allreduce=pd.DataFrame(ar, columns=ALLREDUCE_COLUMNS),
        decode_steps=pd.DataFrame(ds),
        ceilings=pd.DataFrame(ce),
    )
