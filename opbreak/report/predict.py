"""Report sections of predict mode: predictions per config and "the seed, reproduced".

Why a module of its own: the other sections render what was measured; this renders what was
predicted, in separate tables, columns, figures (hatched) and sentences, so a reader
can never take one for the other. Every number in a sentence goes through the report's
:class:`~opbreak.report.evidence.EvidenceLog` and so is a cell of results/theory/predicted*.csv or
seed_claims.csv. The report calls :func:`predict_context` and :func:`predict_figures`.
"""

from __future__ import annotations

import pandas as pd

from ..ops import PHASES
from .evidence import Sentence
from .markdown import bold, f_ms, f_num, f_pct, f_x, finite, md_code, md_escape, md_table

K_PHASE = ("config", "phase")
K_PAIR = ("a", "b", "phase", "op")
K_CLAIM = ("id", "config")


def _verdict(v) -> str:
    return {"True": "agrees", "False": "**differs**"}.get(str(v), "–")


def predicted_configs(t: dict) -> set:
    return set(t["predicted_phases"]["config"]) if "predicted_phases" in t else set()


def drawable_configs(t: dict, configs) -> list:
    """Configs with at least one finite predicted time (a config not predicted draws no figure)."""
    pr = t.get("predicted")
    if pr is None or pr.empty:
        return []
    ok = set(pr.loc[pr["predicted_ms"].map(finite) & (pr["predicted_ms"].astype(float) > 0), "config"])
    return [c for c in configs if c in ok]


# ----------------------------------------------------------------------------- tables
def totals_table(t: dict, configs) -> pd.DataFrame:
    """Per config: measured and predicted phase totals in separate columns."""

    ph = t["predicted_phases"]
    rows = []
    for cfg in configs:
        d = ph[ph["config"] == cfg].set_index("phase")
        if d.empty:
            continue
        row = {"config": md_escape(cfg), "status": md_escape(d["status"].iloc[0])}
        for p in PHASES:
            r = d.loc[p] if p in d.index else None
            row[f"{p} measured"] = f_ms(r["measured_ms"]) if r is not None else "–"
            row[f"{p} predicted"] = f_ms(r["predicted_ms"]) if r is not None else "–"
            row[f"{p} predicted/measured"] = f_num(r["predicted_over_measured"]) if r is not None else "–"
        dec = d.loc["decode"] if "decode" in d.index else None
        row["decode host-bound share"] = f_pct(dec["host_bound_share"]) if dec is not None else "–"
        row["calibration"] = md_escape(d["calibration"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def efficiency_table(t: dict) -> pd.DataFrame:

    return pd.DataFrame(
        [
            {
                "op class": md_code(r["op_class"]),
                "phase": r["phase"],
                "efficiency": f_pct(r["efficiency"]),
                "calibration": md_escape(r["calibration"]),
                "source": md_escape(r["source"]),
            }
            for _, r in t["efficiencies"].iterrows()
        ]
    )


def pair_table(t: dict, a, b) -> pd.DataFrame:
    """Predicted speedups of a pair; the measured speedup (pairs.csv) in its own column where both ran."""

    pp = t["predicted_pairs"]
    d = pp[(pp["a"] == a) & (pp["b"] == b)]
    meas = t["pairs"][(t["pairs"]["a"] == a) & (t["pairs"]["b"] == b)].set_index(["phase", "op"])
    rows = []
    for _, r in d.iterrows():
        m = meas.loc[(r["phase"], r["op"])] if (r["phase"], r["op"]) in meas.index else None
        if isinstance(m, pd.DataFrame):
            m = m.iloc[0]
        rows.append(
            {
                "phase": r["phase"],
                "op": md_code(r["op"]),
                "A predicted": f_ms(r["predicted_a_ms"]),
                "B predicted": f_ms(r["predicted_b_ms"]),
                "predicted speedup": f_x(r["predicted_speedup"]),
                "measured speedup": f_x(m["speedup"]) if m is not None and not m["modeled"] else "–",
            }
        )
    return pd.DataFrame(rows)


def claims_table(t: dict) -> pd.DataFrame:
    """The seed's claims: its number, the prediction, the nearest measured analogue, agreement, why not."""

    rows = []
    for _, r in t["seed_claims"].iterrows():
        dom = r["kind"] == "dominant_op"
        src = f" ({md_escape(r['analogue_source'])})" if r["analogue_source"] else ""
        where = md_escape(r["analogue_what"]) + src
        rows.append(
            {
                "claim": md_code(r["id"]),
                "config(s)": md_escape(r["config"]),
                "phase": r["phase"],
                "ops": md_code(r["ops"]) if r["ops"] else "",
                "seed": md_escape(r["reading"]) if dom else f_num(r["seed_value"]),
                "seed's theory": f_num(r["seed_theory"]),
                "predicted": (md_code(r["predicted_op"]) + f" ({f_pct(r['predicted_share'])})")
                if dom and r["predicted_op"]
                else f_num(r["predicted_value"]),
                "prediction": _verdict(r["predicted_agrees"]),
                "nearest measured analogue": where,
                "analogue value": md_code(r["analogue_op"]) if dom and r["analogue_op"] else f_num(r["analogue_value"]),
                "analogue's own ratio": f_num(r["analogue_theory"]),
                "analogue": _verdict(r["analogue_agrees"]),
                "why it may differ": " ".join(
                    md_escape(why)
                    for ok, why in (
                        (r["predicted_agrees"], r["if_differs"]),
                        (r["analogue_agrees"], r["analogue_note"]),
                    )
                    if ok == "False" and why
                ),
            }
        )
    return pd.DataFrame(rows)


def quotes_table(t: dict) -> pd.DataFrame:
    """Each claim's section heading and sentence of the seed, as quoted in config/seed_claims.yaml."""

    d = t["seed_claims"].drop_duplicates("id")
    return pd.DataFrame(
        [
            {
                "claim": md_code(r["id"]),
                "seed section": md_escape(r["section"]),
                "seed sentence (quoted)": md_escape(r["quote"]),
                "how it is read": md_escape(r["reading"]),
            }
            for _, r in d.iterrows()
        ]
    )


# ----------------------------------------------------------------------------- sentences


def phase_sentences(t: dict, configs, trace, measured_only_in_table=True) -> list:
    """Per config and phase: the prediction of a config not measured (a measured config's prediction and
    measurement stand side by side in the totals table), or why a config is not predicted."""

    out = []
    ph = t["predicted_phases"]
    for cfg in configs:
        d = ph[ph["config"] == cfg]
        if not (d["predicted_ms"].map(finite) & (d["predicted_ms"].astype(float) > 0)).any():
            why = "; ".join(sorted({md_escape(c) for c in d["calibration"] if c.startswith("not predicted")}))
            out.append(Sentence(f"{bold(cfg)}: {why or 'not predicted'}.", [], "predicted"))
            continue
        d = d[d["predicted_ms"].map(finite) & (d["predicted_ms"].astype(float) > 0)]
        if not d["measured_ms"].map(finite).any():  # prediction only: one short sentence
            parts = [
                f"{r['phase']} {trace.cite('predicted_phases', r, K_PHASE, 'predicted_ms', 'ms')}"
                for _, r in d.iterrows()
            ]
            out.append(
                trace.sentence(f"{bold(cfg)} (not measured): predicted " + ", ".join(parts) + ".", topic="predicted")
            )
            continue
        if measured_only_in_table:  # measured configs: the totals table holds both columns
            continue
        for _, r in d.iterrows():
            pred = trace.cite("predicted_phases", r, K_PHASE, "predicted_ms", "ms")
            text = f"{bold(cfg)} {r['phase']}: predicted {pred}"
            if finite(r["measured_ms"]):
                meas = trace.cite("predicted_phases", r, K_PHASE, "measured_ms", "ms")
                ratio = trace.cite("predicted_phases", r, K_PHASE, "predicted_over_measured", "num")
                text += f" against {meas} measured (predicted/measured {ratio})"
                if r["phase"] == "decode" and finite(r["host_bound_share"]):
                    hb = trace.cite("predicted_phases", r, K_PHASE, "host_bound_share", "pct")
                    text += (
                        f"; {hb} of the measured decode is host-bound (framework time and ops far under "
                        "their roofline), which no roofline predicts"
                    )
            else:
                text += " (not measured: prediction only)"
            out.append(trace.sentence(text + ".", topic="predicted"))
    return out


def pair_sentences(t: dict, pairs_decl, trace) -> list:
    """Per declared pair and phase: the predicted end-to-end speedup."""

    out = []
    pp = t["predicted_pairs"]
    for p in pairs_decl:
        label = p.get("label") or f"{p['a']} vs {p['b']}"
        d = pp[(pp["a"] == p["a"]) & (pp["b"] == p["b"]) & (pp["op"] == "end_to_end")]
        parts = [
            f"{r['phase']} {trace.cite('predicted_pairs', r, K_PAIR, 'predicted_speedup', 'x')}"
            for _, r in d.iterrows()
            if finite(r["predicted_speedup"])
        ]
        if parts:
            out.append(
                trace.sentence(
                    f"{bold(label)}: predicted speedup of A over B " + ", ".join(parts) + ".", topic="predicted_pairs"
                )
            )
    return out


def claim_sentences(t: dict, trace) -> list:
    """One sentence per speed claim of the seed: its number, the prediction, the analogue."""

    out = []
    for _, r in t["seed_claims"].iterrows():
        if r["kind"] == "dominant_op" or not finite(r["seed_value"]):
            continue
        seed = trace.cite("seed_claims", r, K_CLAIM, "seed_value", "num")
        text = f"{md_code(r['id'])}: the seed reports {seed}"
        if finite(r["predicted_value"]):
            pred = trace.cite("seed_claims", r, K_CLAIM, "predicted_value", "num")
            text += f"; predicted for the seed's configs {pred} ({_verdict(r['predicted_agrees'])})"
        if finite(r["analogue_value"]):
            an = trace.cite("seed_claims", r, K_CLAIM, "analogue_value", "num")
            if finite(r["analogue_theory"]):  # other GPUs than the seed's: judged against their own ratio
                own = trace.cite("seed_claims", r, K_CLAIM, "analogue_theory", "num")
                text += (
                    f"; the nearest measured analogue gives {an} against its own datasheet ratio {own} "
                    f"({_verdict(r['analogue_agrees'])})"
                )
            else:
                text += f"; the nearest measured analogue gives {an} ({_verdict(r['analogue_agrees'])})"
        out.append(trace.sentence(text + ".", topic="seed"))
    return out


# ----------------------------------------------------------------------------- context and figures
def predict_context(t: dict, configs, pairs_decl, trace, figures: dict) -> dict:
    """Everything the predict blocks of the template need; pure (no I/O)."""

    have = [c for c in configs if c in predicted_configs(t)]
    pairs = [
        {
            "label": md_escape(p.get("label") or f"{p['a']} vs {p['b']}"),
            "a": md_escape(p["a"]),
            "b": md_escape(p["b"]),
            "table": md_table(pair_table(t, p["a"], p["b"])),
        }
        for p in pairs_decl
        if p["a"] in have and p["b"] in have
    ]
    sentences = phase_sentences(t, have, trace) + pair_sentences(t, pairs_decl, trace)
    claims = t["seed_claims"]
    return dict(
        any=bool(have),
        totals_table=md_table(totals_table(t, have)),
        efficiency_table=md_table(efficiency_table(t)),
        calibrations=sorted(set(t["efficiencies"]["calibration"])),
        pairs=pairs,
        sentences=sentences,
        pies=[
            {"config": md_escape(c), "fig": figures.get(("predicted_pie", c))}
            for c in have
            if figures.get(("predicted_pie", c))
        ],
        totals_fig=figures.get("predicted_totals"),
        seed_table=md_table(claims_table(t)),
        quotes_table=md_table(quotes_table(t)),
        seed_sentences=claim_sentences(t, trace),
        seed_n=len(claims),
        seed_in_study=int((claims["status"] == "predicted").sum()) if len(claims) else 0,
    )


def predict_figures(t: dict, configs, draw, slug) -> None:
    """Predicted pies per config and the measured-vs-predicted totals; ``draw(key, fn, *args, name=)`` saves."""
    from .plots.predict import predicted_pie, predicted_totals

    have = drawable_configs(t, configs)
    for c in have:
        draw(("predicted_pie", c), predicted_pie, t["predicted"], c, name=f"predicted_pie_{slug(c)}")
    if have:
        draw("predicted_totals", predicted_totals, t["predicted_phases"], have, name="predicted_totals")
