"""Predict mode: a time per op, phase and config from the roofline, measured or not.

Why: most users do not own every GPU they want to compare. The theory step already
has exact FLOPs, bytes and collective sizes per op and a roofline time for each
(``t_bound_ms`` of results/theory/ops.csv). No kernel runs at its roofline, so a
prediction divides the roofline time by an *efficiency per op class* (large GEMM,
attention in prefill / decode, norms and elementwise, embedding / lm_head,
collectives), per phase. Efficiencies come from evidence: a sourced file
(config/efficiencies.yaml, computed from committed measurements) or, per op class,
from a measured study's tables (:func:`calibrate`, the config key ``calibrate_from``).

Predicted numbers live in their own tables and columns (``predicted_ms``), never in
a ``measured_ms`` column, so the report cannot mistake one for the other.

Pure functions of DataFrames, except the two loaders at the bottom.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .contract import PREDICTED_COLUMNS, PREDICTED_PAIR_COLUMNS, PREDICTED_PHASE_COLUMNS
from .ops import HOST_OPS, OP_CLASSES, PHASES, op_class
from .seed_check import evaluate, load_claims

NO_CALIBRATION = "not predicted: no calibration for this hardware"
NO_LINK = "not predicted: no link model for this transport"
SWEEP_BASIS = "the study's own all-reduce sweep (alpha-beta fit, back to back)"
CATALOG_BASIS = "catalog link (config/hardware.yaml)"


class EfficiencyError(ValueError):
    """An efficiency file or calibration source is missing a value or its source."""


def classes_of(phase: str) -> list[str]:
    """The classes that occur in a phase (attention has one class per phase)."""
    return [c for c in OP_CLASSES if not c.startswith("attention_") or c == f"attention_{phase}"]


# ----------------------------------------------------------------------------- efficiencies
def efficiency_table(doc: dict, where="efficiencies") -> pd.DataFrame:
    """Validate a parsed efficiencies document: every class and phase has a value in (0, 1] and a source."""
    eff = (doc or {}).get("efficiencies")
    if not isinstance(eff, dict):
        raise EfficiencyError(f"{where}: top-level 'efficiencies' mapping missing")
    rows = []
    for phase in PHASES:
        for cls in classes_of(phase):
            e = (eff.get(cls) or {}).get(phase)
            if not isinstance(e, dict):
                raise EfficiencyError(f"{where}: efficiencies.{cls}.{phase} missing")
            v, src = e.get("value"), e.get("source")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise EfficiencyError(f"{where}: efficiencies.{cls}.{phase}.value must be in (0, 1], got {v!r}")
            if not isinstance(src, str) or not src.strip():
                raise EfficiencyError(f"{where}: efficiencies.{cls}.{phase}.source missing (every value needs one)")
            rows.append(dict(op_class=cls, phase=phase, efficiency=float(v), calibration="default", source=src.strip()))
    return pd.DataFrame(rows)


def host_bound_threshold(doc: dict, where="efficiencies") -> float:
    """Efficiency under which an op's time is host/launch time, not its bytes or FLOPs (sourced in the file)."""
    h = (doc or {}).get("host_bound_below") or {}
    v = h.get("value")
    if not isinstance(v, (int, float)) or not 0 < v < 1 or not str(h.get("source") or "").strip():
        raise EfficiencyError(f"{where}: host_bound_below needs a value in (0, 1) and a source")
    return float(v)


def basis_ms(t: pd.DataFrame) -> pd.Series:
    """The roofline time an efficiency is a ratio to: ``t_bound_ms``, except collectives, whose basis is
    the catalog's link model (``t_link_catalog_ms``) even where theory fitted the link to a sweep, so
    that one efficiency serves configs with and without a measured sweep."""
    tb = pd.to_numeric(t["t_bound_ms"], errors="coerce")
    if "t_link_catalog_ms" not in t:
        return tb
    cat = pd.to_numeric(t["t_link_catalog_ms"], errors="coerce")
    is_coll = t["op"].map(lambda o: op_class(o, "prefill") == "collective").astype(bool)
    return tb.where(~is_coll | cat.isna(), cat)


def calibrate(theory_ops: pd.DataFrame, configs=None, label="calibrated") -> pd.DataFrame:
    """Efficiency per (op class, phase) = sum of roofline times / sum of measured times.

    Time-weighted (a ratio of sums), so the ops that cost most set the class's value.
    Only measured rows count: modeled collectives (emulated TP) have no measured time.
    """
    t = theory_ops.copy()
    if configs:
        t = t[t["config"].isin(list(configs))]
    modeled = t["modeled"].astype(str).str.lower() == "true"
    meas = pd.to_numeric(t["measured_ms"], errors="coerce")
    bound = basis_ms(t)
    t = t.assign(measured=meas, tb=bound)[(~modeled) & (meas > 0) & (bound > 0)]
    t = t.assign(op_class=[op_class(o, p) for o, p in zip(t["op"], t["phase"])]).dropna(subset=["op_class"])
    rows = []
    for (cls, phase), g in t.groupby(["op_class", "phase"]):
        cfgs = ", ".join(sorted(set(g["config"])))
        rows.append(
            dict(
                op_class=cls,
                phase=phase,
                efficiency=float(g["tb"].sum() / g["measured"].sum()),
                calibration=label,
                source=f"{label}: {len(g)} measured op rows of {cfgs}",
            )
        )
    return pd.DataFrame(rows, columns=["op_class", "phase", "efficiency", "calibration", "source"])


def merge_efficiencies(defaults: pd.DataFrame, calibrated: pd.DataFrame | None) -> pd.DataFrame:
    """Calibrated values replace defaults per (class, phase); classes without evidence keep the default."""
    if calibrated is None or calibrated.empty:
        return defaults.reset_index(drop=True)
    key = ["op_class", "phase"]
    keep = defaults.merge(calibrated[key], on=key, how="left", indicator=True)
    keep = keep[keep["_merge"] == "left_only"].drop(columns="_merge")
    return pd.concat([calibrated, keep], ignore_index=True)[defaults.columns]


# ----------------------------------------------------------------------------- predictions
def measured_configs(phase_summary: pd.DataFrame) -> set:
    """Configs with a measured phase total: their status is 'measured', all others 'predicted'."""
    med = pd.to_numeric(phase_summary.get("median_ms", pd.Series(dtype=float)), errors="coerce")
    return set(phase_summary.loc[med.notna(), "config"]) if len(phase_summary) else set()


def predict_ops(theory_ops: pd.DataFrame, eff: pd.DataFrame, measured: set) -> pd.DataFrame:
    """predicted_ms = t_bound_ms / efficiency of the op's class and phase, per model op.

    Honest about what the efficiencies were calibrated on (GPUs, NVLink):

    - a config whose ceilings are not a GPU datasheet's (the CPU backend: ``ceiling_source``
      ``measured``) is not predicted (:data:`NO_CALIBRATION`), never with a GPU's efficiencies;
    - a collective is predicted on the config's own link: where the study swept that link
      (``link_source`` ``fit``) the sweep's alpha-beta time is the prediction (efficiency 1, basis
      :data:`SWEEP_BASIS`); else the catalog link with the collective class's efficiency; a
      transport the catalog has no number for (the host-memory path) without a sweep is not
      predicted (:data:`NO_LINK`). The ``basis`` column says which.
    """
    if theory_ops.empty:
        return pd.DataFrame(columns=PREDICTED_COLUMNS)
    e = eff.set_index(["op_class", "phase"])
    t = theory_ops.copy()
    t["op_class"] = [op_class(o, p) for o, p in zip(t["op"], t["phase"])]
    t = t.dropna(subset=["op_class"])
    t["efficiency"] = [e.loc[(c, p), "efficiency"] for c, p in zip(t["op_class"], t["phase"])]
    t["calibration"] = [e.loc[(c, p), "calibration"] for c, p in zip(t["op_class"], t["phase"])]
    tb = basis_ms(t).clip(lower=0)
    is_coll = (t["op_class"] == "collective").to_numpy()
    src = t["link_source"].astype(str) if "link_source" in t else pd.Series("", index=t.index)
    sweep = is_coll & (src == "fit").to_numpy()
    t_link = pd.to_numeric(t.get("t_link_ms", pd.Series(np.nan, index=t.index)), errors="coerce")
    tb = tb.where(~sweep, t_link.clip(lower=0))
    t.loc[sweep, "efficiency"] = 1.0
    t.loc[sweep, "calibration"] = "study sweep"
    t["basis"] = np.where(sweep, SWEEP_BASIS, np.where(is_coll, CATALOG_BASIS, "roofline (t_bound_ms)"))
    cat = pd.to_numeric(t["t_link_catalog_ms"], errors="coerce") if "t_link_catalog_ms" in t else tb
    no_link = is_coll & ~sweep & cat.isna().to_numpy()
    cpu = (t["ceiling_source"].astype(str) == "measured").to_numpy() if "ceiling_source" in t else is_coll & False
    tb = tb.where(~(no_link | cpu))
    t.loc[no_link, "calibration"] = NO_LINK
    t.loc[cpu, "calibration"] = NO_CALIBRATION
    t.loc[no_link | cpu, "efficiency"] = np.nan
    t.loc[no_link | cpu, "basis"] = "none"
    t["predicted_ms"] = tb / t["efficiency"]
    tot = t.groupby(["config", "phase"])["predicted_ms"].transform("sum")
    t["predicted_share"] = np.where(tot > 0, t["predicted_ms"] / tot, np.nan)
    t["status"] = np.where(t["config"].isin(measured), "measured", "predicted")
    modeled = t["modeled"].astype(str).str.lower() == "true"
    t["modeled"] = modeled
    meas = pd.to_numeric(t["measured_ms"], errors="coerce").where(~modeled)  # a modeled time is no measurement
    t["measured_ms"] = meas
    with np.errstate(divide="ignore", invalid="ignore"):
        t["predicted_over_measured"] = np.where(meas > 0, t["predicted_ms"] / meas, np.nan)
    return t[PREDICTED_COLUMNS].reset_index(drop=True)


def host_bound_share(theory_ops, ops_summary, phase_median, config, phase, threshold) -> float:
    """Share of a measured phase spent in framework ops plus ops under ``threshold`` of their roofline.

    Why: LightLLM 0.0.1's decode is host-bound (README: the GPU is busy a small part of a
    step); such time follows the host, not FLOPs or bytes, so a roofline prediction
    cannot reach it. Naming the share says how much of a miss is that.
    """
    if not (phase_median and phase_median > 0):
        return math.nan
    o = ops_summary[(ops_summary["config"] == config) & (ops_summary["phase"] == phase)]
    host = pd.to_numeric(o.loc[o["op"].isin(HOST_OPS), "median_ms"], errors="coerce").sum()
    t = theory_ops[(theory_ops["config"] == config) & (theory_ops["phase"] == phase)]
    eff = pd.to_numeric(t["efficiency"], errors="coerce")
    slow = pd.to_numeric(t.loc[eff < threshold, "measured_ms"], errors="coerce").sum()
    return float(min(1.0, (host + slow) / phase_median))


def predict_phases(pred, theory_ops, ops_summary, phase_summary, threshold) -> pd.DataFrame:
    """Predicted phase totals (sum of predicted model ops) next to the measured phase median."""
    rows = []
    for (cfg, phase), g in pred.groupby(["config", "phase"], sort=False):
        m = phase_summary[(phase_summary["config"] == cfg) & (phase_summary["phase"] == phase)]
        med = float(pd.to_numeric(m["median_ms"], errors="coerce").iloc[0]) if len(m) else math.nan
        # an op not predicted leaves the phase total unknown, never a partial sum
        p = float(g["predicted_ms"].sum(min_count=len(g)))
        # emulated TP: the measured phase ran no collectives, so compare only what ran
        ran = g.loc[~g["modeled"].astype(bool), "predicted_ms"]
        p_ran = float(ran.sum(min_count=len(ran)))
        rows.append(
            dict(
                config=cfg,
                phase=phase,
                status=g["status"].iloc[0] if math.isfinite(p) else "not predicted",
                predicted_ms=p,
                predicted_ran_ms=p_ran,
                measured_ms=med,
                predicted_over_measured=p_ran / med if med > 0 and p_ran > 0 else math.nan,
                host_bound_share=host_bound_share(theory_ops, ops_summary, med, cfg, phase, threshold),
                calibration=", ".join(sorted(set(g["calibration"]))),
            )
        )
    return pd.DataFrame(rows, columns=PREDICTED_PHASE_COLUMNS)


def predict_pairs(pred: pd.DataFrame, phases: pd.DataFrame, pairs_decl) -> pd.DataFrame:
    """Predicted speedup of A over B (time_B / time_A) per op and for the phase total (op 'end_to_end')."""
    rows = []
    for p in pairs_decl:
        a, b = p["a"], p["b"]
        label = p.get("label") or f"{a} vs {b}"
        pa = pred[pred["config"] == a].set_index(["phase", "op"])
        pb = pred[pred["config"] == b].set_index(["phase", "op"])
        ha = phases[phases["config"] == a].set_index("phase")
        hb = phases[phases["config"] == b].set_index("phase")
        items = [(k, pa.loc[k, "predicted_ms"], pb.loc[k, "predicted_ms"]) for k in pa.index if k in pb.index]
        items += [
            ((ph, "end_to_end"), ha.loc[ph, "predicted_ms"], hb.loc[ph, "predicted_ms"])
            for ph in PHASES
            if ph in ha.index and ph in hb.index
        ]
        sa = pa["status"].iloc[0] if len(pa) else ""
        sb = pb["status"].iloc[0] if len(pb) else ""
        for (phase, op), ta, tb in items:
            sp = float(tb) / float(ta) if ta and float(ta) > 0 and float(tb) > 0 else math.nan
            rows.append(
                dict(
                    label=label,
                    a=a,
                    b=b,
                    phase=phase,
                    op=op,
                    predicted_a_ms=float(ta),
                    predicted_b_ms=float(tb),
                    predicted_speedup=sp,
                    status_a=sa,
                    status_b=sb,
                )
            )
    return pd.DataFrame(rows, columns=PREDICTED_PAIR_COLUMNS)


# ----------------------------------------------------------------------------- loaders
def load_efficiencies(path) -> tuple[pd.DataFrame, float]:
    """Read and validate config/efficiencies.yaml: (table, host-bound threshold)."""
    doc = yaml.safe_load(Path(path).read_text())
    return efficiency_table(doc, str(path)), host_bound_threshold(doc, str(path))


def calibration_from(spec, root=".") -> pd.DataFrame | None:
    """``calibrate_from``: a folder holding a measured study's theory ``ops.csv`` (and optionally configs).

    Accepts a path string or {tables: path, configs: [names], label: text}.
    """
    if not spec:
        return None
    if isinstance(spec, str):
        spec = {"tables": spec}
    path = Path(root) / spec["tables"]
    ops = path / "ops.csv" if path.is_dir() else path
    if not ops.exists():
        raise EfficiencyError(f"calibrate_from: {ops} not found (a measured study's results/theory/ops.csv)")
    label = spec.get("label") or f"calibrated from {spec['tables']}"
    cal = calibrate(pd.read_csv(ops), spec.get("configs"), label)
    if cal.empty:
        which = spec.get("configs") or "any config"
        raise EfficiencyError(f"calibrate_from: {ops} has no measured op rows for {which}")
    return cal


def build_predictions(
    theory,
    ops_summary,
    phase_summary,
    pairs_decl,
    efficiencies,
    calibrate_spec,
    claims_path,
    tol,
    catalog,
    root=".",
) -> dict:
    """Every predict-mode table of the theory step (written by scripts/theory.py), from the study's
    resolved config: ``calibrate_spec`` its ``calibrate_from`` (None: the sourced defaults alone),
    ``claims_path`` its ``seed_claims``, ``tol`` its ``ratio_flag``, ``catalog`` its hardware catalog."""

    defaults, threshold = load_efficiencies(efficiencies)
    eff = merge_efficiencies(defaults, calibration_from(calibrate_spec, root))
    pred = predict_ops(theory, eff, measured_configs(phase_summary))
    phases = predict_phases(pred, theory, ops_summary, phase_summary, threshold)
    claims = evaluate(load_claims(claims_path), pred, tol, root, catalog) if claims_path else None
    return dict(
        predicted=pred,
        predicted_phases=phases,
        predicted_pairs=predict_pairs(pred, phases, pairs_decl),
        efficiencies=eff,
        seed_claims=claims,
    )
