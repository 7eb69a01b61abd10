"""Comparisons: each declared pair's figures, per-op table and sentences, and the rows furthest from theory."""

from __future__ import annotations

import pandas as pd

from ..stats import CI_PCT
from .answers import pair_row_unstable
from .conclusions import disagreements
from .markdown import f_ci, f_num, f_x, join_words, md_code, md_escape, md_table
from .tables import phase_sort


def pairs_context(t: dict, pairs_decl, present, figures: dict, sentences, ratio_flag: float) -> dict:
    """``pairs``: per declared pair its figures, table and sentences, or why it was not compared;
    ``disagreement_table``: the pair rows furthest from the roofline's ratio."""
    return dict(
        pairs=[_pair_entry(t, i, p, present, figures, sentences) for i, p in enumerate(pairs_decl)],
        disagreement_table=disagreement_table(t, present, ratio_flag),
    )


def _pair_entry(t: dict, i: int, p: dict, present, figures: dict, sentences) -> dict:
    """One declared pair: its label, both figures, the per-op table and the conclusions that name it."""
    a, b = p["a"], p["b"]
    label = p.get("label") or f"{a} vs {b}"
    ok = a in present and b in present
    pr = t["pairs"]
    q = pr[(pr["a"] == a) & (pr["b"] == b)]
    q = phase_sort(q) if len(q) else q
    why = ""
    if not ok:
        gone = [md_escape(c) for c in (a, b) if c not in present]
        why = "not compared: " + join_words(gone) + (" has" if len(gone) == 1 else " have") + " no data"
    return {
        "label": md_escape(label),
        "a": md_escape(a),
        "b": md_escape(b),
        "ok": ok,
        "why": why,
        "bars": figures.get(("pair_bars", i)),
        "speedup": figures.get(("pair_speedup", i)),
        "table": md_table(pd.DataFrame(_pair_rows(q))),
        "sentences": [s for s in sentences if s.topic == "pairs" and md_escape(label) in s.text],
    }


def _pair_rows(q: pd.DataFrame) -> list[dict]:
    """The per-op comparison table of one pair (pairs.csv rows, formatted)."""
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


def disagreement_table(t: dict, present, ratio_flag: float) -> str:
    """The pair rows (both configs measured) furthest from theory, stable inputs first (see
    :func:`.conclusions.disagreements`); unstable: CV over ``unstable_cv`` or a CI wider than ``ratio_flag``."""
    pr = t["pairs"]
    both = pr[pr["a"].isin(present) & pr["b"].isin(present)]
    unstable = pd.Series([pair_row_unstable(t, r, ratio_flag) for _, r in both.iterrows()], index=both.index)
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
    return md_table(dis_tbl)
