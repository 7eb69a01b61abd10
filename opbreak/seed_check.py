"""The seed study's published numbers against this tool's predictions and nearest measurements.

Why: the seed (../shared/seed/) is what this pipeline must reproduce, but its GPUs
(A100, A40, T4) are not at hand. config/seed_claims.yaml lists each quantitative claim
with its section and exact sentence; here each becomes one row of
results/theory/seed_claims.csv: the seed's number, the prediction for the seed's own
config (from predicted.csv), and the nearest analogue this repository measured
(a committed tables folder, or a sourced quote), each judged agreeing or not with the
study's ``ratio_flag`` tolerance. The report cites those cells; nothing is typed there.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import yaml

from .contract import CLAIM_COLUMNS
from .hardware import lookup_gpu
from .ops import HOST_OPS

SPEED_KINDS = ("speedup", "at_most", "differ_by")


def load_claims(path) -> list[dict]:
    """Claims from config/seed_claims.yaml; each needs an id, section, quote and kind."""
    doc = yaml.safe_load(Path(path).read_text()) or {}
    claims = doc.get("claims") or []
    for c in claims:
        missing = [k for k in ("id", "section", "quote", "kind", "phase") if not c.get(k)]
        if missing or c["kind"] not in SPEED_KINDS + ("dominant_op",):
            raise ValueError(f"{path}: claim {c.get('id')!r}: missing {missing} or unknown kind {c.get('kind')!r}")
    return claims


def value_of(kind, speedup) -> float:
    """The number a claim states, from a speedup (time_b / time_a)."""
    if not (speedup and math.isfinite(speedup)):
        return math.nan
    return abs(speedup - 1) if kind == "differ_by" else speedup


def agrees(kind, tool, seed, tol) -> object:
    """True/False, or None where the tool has no number."""
    if not (isinstance(tool, float) and math.isfinite(tool)):
        return None
    if kind == "at_most":  # a bound, not an estimate: no tolerance
        return bool(tool <= seed)
    return bool(abs(tool / seed - 1) <= tol)


def _sum_ms(times: pd.DataFrame, config, phase, ops, col) -> float:
    d = times[(times["config"] == config) & (times["phase"] == phase) & times["op"].isin(ops)]
    v = pd.to_numeric(d[col], errors="coerce")
    return float(v.sum()) if len(d) and v.notna().all() else math.nan


def _dominant(times: pd.DataFrame, config, phase, col):
    d = times[(times["config"] == config) & (times["phase"] == phase) & ~times["op"].isin(HOST_OPS)]
    d = d.assign(v=pd.to_numeric(d[col], errors="coerce")).dropna(subset=["v"])
    if d.empty:
        return "", math.nan
    r = d.loc[d["v"].idxmax()]
    return str(r["op"]), float(r["v"] / d["v"].sum())


def _analogue(an: dict, c: dict, root) -> tuple:
    """(value or op, source) of the nearest measured analogue; NaN where the repository has none."""
    if "a_value" in an:
        return value_of(c["kind"], float(an["b_value"]) / float(an["a_value"])), an.get("source", "")
    if "tables" not in an:
        return math.nan, ""
    path = Path(root) / an["tables"] / "ops_summary.csv"
    if not path.exists():
        return math.nan, f"{an['tables']} (absent)"
    s = pd.read_csv(path)
    s = s[s["modeled"].astype(str).str.lower() != "true"]
    src = f"{an['tables']}/ops_summary.csv"
    if c["kind"] == "dominant_op":
        return [_dominant(s, cfg, c["phase"], "median_ms")[0] for cfg in an["configs"]], src
    ta = _sum_ms(s, an["a"], c["phase"], c["ops"], "median_ms")
    tb = _sum_ms(s, an["b"], c["phase"], c["ops"], "median_ms")
    return value_of(c["kind"], tb / ta if ta > 0 else math.nan), src


def _base(c) -> dict:
    an = c.get("analogue") or {}
    return dict(
        id=c["id"],
        section=c["section"],
        quote=c["quote"],
        kind=c["kind"],
        phase=c["phase"],
        a=c.get("a", ""),
        b=c.get("b", ""),
        ops=" + ".join(c.get("ops", [])),
        seed_value=float(c.get("seed_value", math.nan)),
        seed_theory=float(c.get("seed_theory", math.nan)),
        reading=c.get("reading", ""),
        analogue_what=an.get("what", ""),
        if_differs=c.get("if_differs", ""),
        analogue_note=an.get("if_differs", ""),
    )


def _dominant_rows(c, pred, root) -> list[dict]:
    an = c.get("analogue") or {}
    seen, src = _analogue(an, c, root)
    rows = []
    for i, cfg in enumerate(c["configs"]):
        op, share = _dominant(pred, cfg, c["phase"], "predicted_ms")
        aop = seen[i] if isinstance(seen, list) and i < len(seen) else ""
        rows.append(
            dict(
                _base(c),
                config=cfg,
                predicted_op=op,
                predicted_share=share,
                predicted_agrees=(op == c["expect_op"]) if op else None,
                analogue_op=aop,
                analogue_agrees=(aop == c["expect_op"]) if aop else None,
                analogue_source=src,
                status="predicted" if op else "config not in this study",
                seed_value=math.nan,
                reading=f"expected op: {c['expect_op']}",
            )
        )
    return rows


RESOURCES = {"compute": "peak_tflops", "memory": "mem_bw_GBps"}


def analogue_theory(an: dict, catalog) -> float:
    """The analogue's own datasheet ratio (``against: {a_gpu, b_gpu, resource}``, from the study's
    hardware catalog), for an analogue on other GPUs than the seed's: a claim that a speedup follows a
    resource ratio is checked on the analogue against the analogue's ratio. NaN without ``against``."""
    ag = an.get("against")
    if not ag:
        return math.nan
    if catalog is None:
        raise ValueError(f"an analogue compares {ag['a_gpu']} with {ag['b_gpu']}: its ratio needs the hardware catalog")
    field = RESOURCES[ag["resource"]]
    return float(lookup_gpu(catalog, ag["a_gpu"])[field]) / float(lookup_gpu(catalog, ag["b_gpu"])[field])


def _speed_row(c, pred, tol, root, catalog) -> dict:
    ta = _sum_ms(pred, c["a"], c["phase"], c["ops"], "predicted_ms")
    tb = _sum_ms(pred, c["b"], c["phase"], c["ops"], "predicted_ms")
    p = value_of(c["kind"], tb / ta if ta > 0 else math.nan)
    an = c.get("analogue") or {}
    av, src = _analogue(an, c, root)
    seed = float(c["seed_value"])
    theory = analogue_theory(an, catalog)
    return dict(
        _base(c),
        config=f"{c['a']} vs {c['b']}",
        predicted_value=p,
        predicted_agrees=agrees(c["kind"], p, seed, tol),
        analogue_value=av,
        analogue_theory=theory,
        analogue_agrees=agrees(c["kind"], av, theory if math.isfinite(theory) else seed, tol),
        analogue_source=src,
        status="predicted" if math.isfinite(p) else "configs not in this study",
    )


def evaluate(claims, pred: pd.DataFrame, tol: float, root=".", catalog=None) -> pd.DataFrame:
    """One row per claim (per config for dominant-op claims): seed, prediction, analogue, agreement.
    ``catalog``: the study's hardware catalog, needed only by analogues that compare GPUs (``against``)."""
    rows = []
    for c in claims:
        if c["kind"] == "dominant_op":
            rows += _dominant_rows(c, pred, root)
        else:
            rows.append(_speed_row(c, pred, tol, root, catalog))
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)
