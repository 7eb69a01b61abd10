"""Aggregate the repeats of every config into the tables the theory and report read.

Every repeat is kept (``ops_repeats.csv``); summaries are over repeats of rank 0
(ranks of a TP group are synchronised by their collectives). Truncated-layer
runs are scaled here, once: layer ops x model_layers / num_layers, and the phase
end-to-end grows by the same added layer time; the ``layer_scale`` column says so.
"""

from __future__ import annotations

import pandas as pd

from .checks import MeasureFileError, read_json, read_measurement
from .contract import AGGREGATE_COLUMNS
from .ops import LAYER_OPS, OPS
from .stats import summarize_groups


def scale_layers(ops: pd.DataFrame, steps: pd.DataFrame, spec: dict):
    """Scale truncated-layer runs to the model's real depth (stated in layer_scale)."""
    scale = spec["model_layers"] / spec["num_layers"]
    ops = ops.copy()
    ops["layer_scale"] = scale
    ops["time_ms_measured"] = ops["time_ms"]
    if scale == 1:
        return ops, steps.assign(e2e_ms_measured=steps["e2e_ms"])
    is_layer = ops["op"].isin(LAYER_OPS)
    # embedding all_reduce is one call per forward: scale only the per-layer share of all_reduce
    frac = pd.Series(1.0, index=ops.index)
    ar = ops["op"] == "all_reduce"
    per_fwd = 2 * spec["num_layers"]
    frac[ar] = per_fwd / (per_fwd + 1) if spec["tp"] > 1 else 1.0
    added = ops["time_ms"] * frac * (scale - 1) * is_layer
    ops["time_ms"] = ops["time_ms"] + added
    if "kernel_ms" in ops:  # the GPU-busy view scales like the wall view
        ops["kernel_ms"] = ops["kernel_ms"] * (1 + frac * (scale - 1) * is_layer)
    ops.loc[is_layer, "calls"] = (ops.loc[is_layer, "calls"] * (1 + frac[is_layer] * (scale - 1))).round().astype(int)
    ops.loc[is_layer & ops["modeled"], "modeled_bytes"] = (
        ops.loc[is_layer & ops["modeled"], "modeled_bytes"] * (1 + frac * (scale - 1))
    ).round()
    steps = steps.assign(e2e_ms_measured=steps["e2e_ms"])
    return ops, steps


def empty_tables(failures: pd.DataFrame) -> dict:
    """The aggregate tables of a study whose every measure job failed: headers only, failures listed.

    Why: a study on GPUs this host lacks still has predictions to show; a traceback here
    would stop the theory and report steps that make them.
    """
    out = {k: pd.DataFrame(columns=cols) for k, cols in AGGREGATE_COLUMNS.items()}
    out["ops_repeats"]["modeled"] = out["ops_repeats"]["modeled"].astype(bool)
    out["steps_all"] = pd.DataFrame(columns=["rank", *AGGREGATE_COLUMNS["steps"]])
    return dict(out, provenance=[], failures=failures)


def aggregate(inputs, specs: dict, unstable_cv: float):
    """inputs: list of (ops_csv, steps_csv, provenance_json[, collectives_csv]) paths; specs: name -> spec.

    Every file is checked first (opbreak.checks): a bad one raises MeasureFileError naming it.
    """

    all_ops, all_steps, all_coll, provs, failures = [], [], [], [], []
    for paths in inputs:
        ops_p, steps_p, prov_p = paths[:3]
        prov = read_json(prov_p)
        spec = specs[prov["config"]] if prov.get("config") in specs else None
        if spec is None:
            raise MeasureFileError(f"{prov_p}: config {prov.get('config')!r} is not in the current config file")
        names = dict(ops=ops_p, steps=steps_p, prov=prov_p, collectives=paths[3] if len(paths) > 3 else None)
        prov, ops, steps, coll = read_measurement(None, spec, names=names)
        if prov.get("status") == "failed":  # the measure job's last attempt failed: reported, not measured
            # the error, and where the store holds this config under another spec (measure._failed)
            error = "; ".join(x for x in (prov.get("error", ""), prov.get("other_specs", "")) if x)
            failures.append(dict(config=prov["config"], repeat=prov["repeat"], error=error, path=str(prov_p)))
            continue
        ops, steps = scale_layers(ops, steps, spec)
        steps["phase_added_ms"] = _phase_added_ms(ops, steps, spec)
        all_ops.append(ops)
        all_steps.append(steps)
        if coll is not None and len(coll):
            all_coll.append(coll)
        provs.append(prov)
    failures = pd.DataFrame(failures, columns=["config", "repeat", "error", "path"])
    collectives = pd.concat(all_coll, ignore_index=True) if all_coll else None
    if not all_ops:  # every job failed: well-formed empty tables, so theory (predictions) and report still run
        return dict(empty_tables(failures), collectives_all=None)
    ops = pd.concat(all_ops, ignore_index=True)
    steps = pd.concat(all_steps, ignore_index=True)
    s0 = steps[steps["rank"] == 0]
    summary = _op_stats(ops[ops["rank"] == 0], unstable_cv)
    phase_tot, phase_summary = _phase_totals(s0, unstable_cv)
    summary = _with_shares(summary, phase_summary, specs)
    return dict(
        ops_repeats=ops,
        ops_summary=summary,
        phase_totals=phase_tot,
        phase_summary=phase_summary,
        steps=s0.drop(columns=["rank"]),
        steps_all=steps,
        provenance=provs,
        failures=failures,
        collectives_all=collectives,
    )


def _phase_added_ms(ops, steps, spec):
    """Per step row: the layer time the scaling added to its phase (its repeat and rank); 0 untruncated."""
    if spec["model_layers"] == spec["num_layers"]:
        return 0.0
    # phase e2e grows by the layer time the scaling added, per repeat and rank
    added = (ops["time_ms"] - ops["time_ms_measured"]).groupby([ops["rank"], ops["phase"]]).sum()
    return [added.get((r, p), 0.0) for r, p in zip(steps["rank"], steps["phase"])]


def _op_stats(r0: pd.DataFrame, unstable_cv: float) -> pd.DataFrame:
    """Per (config, phase, op) of rank 0: statistics over repeats of measured ops, median calls,
    and the modeled collectives (emulated TP) as rows of calls and bytes only."""
    measured = r0[~r0["modeled"]]
    summary = summarize_groups(measured, ["config", "phase", "op"], "time_ms", unstable_cv)
    calls = measured.groupby(["config", "phase", "op"])["calls"].median().rename("calls")
    summary = summary.merge(calls.reset_index(), on=["config", "phase", "op"], how="left")
    summary["modeled"] = False
    summary["modeled_bytes"] = 0
    mod = (
        r0[r0["modeled"]]
        .groupby(["config", "phase", "op"])
        .agg(calls=("calls", "median"), modeled_bytes=("modeled_bytes", "median"))
        .reset_index()
    )
    if len(mod):
        mod["modeled"] = True
        summary = pd.concat([summary, mod], ignore_index=True)
    return summary


def _phase_totals(s0: pd.DataFrame, unstable_cv: float):
    """Per (config, repeat, phase) of rank 0: end to end summed over steps, plus the layer time
    the scaling added; and its statistics over repeats."""
    phase_tot = (
        s0.groupby(["config", "repeat", "phase"]).agg(e2e_ms=("e2e_ms", "sum"), steps=("step", "count")).reset_index()
    )
    added = s0.groupby(["config", "repeat", "phase"])["phase_added_ms"].first().reset_index()
    phase_tot = phase_tot.merge(added, on=["config", "repeat", "phase"])
    phase_tot["e2e_ms"] += phase_tot["phase_added_ms"]
    return phase_tot, summarize_groups(phase_tot, ["config", "phase"], "e2e_ms", unstable_cv)


def _with_shares(summary: pd.DataFrame, phase_summary: pd.DataFrame, specs: dict) -> pd.DataFrame:
    """Each op's share of its phase's median, the layer scale, rows in op order."""
    summary = summary.merge(
        phase_summary[["config", "phase", "median_ms"]].rename(columns={"median_ms": "phase_median_ms"}),
        on=["config", "phase"],
        how="left",
    )
    summary["share"] = summary["median_ms"] / summary["phase_median_ms"]
    summary["layer_scale"] = summary["config"].map(lambda c: specs[c]["model_layers"] / specs[c]["num_layers"])
    summary["op_order"] = summary["op"].map(OPS.index)
    return summary.sort_values(["config", "phase", "op_order"]).drop(columns="op_order").reset_index(drop=True)
