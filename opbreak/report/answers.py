"""The answers section: the study's answers on one screen, each with its evidence.

What it holds (the template's ``answers`` key), in order:

- ``where``: per config and phase, where the time goes (the two largest rows of ``ops_summary``,
  framework time included) and the phase median;
- ``pairs``: per declared pair, one sentence: the measured end-to-end speedup per phase against the
  roofline's, and the one-line reason read from the rows (the phase split's largest part: host-bound,
  waiting for another rank, link transfer; else the bound of the pair's largest op), unstable inputs
  marked; with ``host`` notes (CPU model and load) where a reason is the host;
- ``why``: on a multi-GPU study, why TP decode is or is not faster (compute kernels, transfer, wait,
  GPU idle for the host per step; :func:`opbreak.report.decode.why_not_faster`);
- ``graph``: decode without the host (CUDA-graph replay): per probed pair, the speedup per decode step with
  and without the host (:func:`opbreak.report.host.answer_sentences`, ``results/theory/host_pairs.csv``)
  once that table exists; the template renders it only when present;
- ``not_measured``, ``predicted_only``: configs without measurements, by name.

Every number in a sentence is cited through the evidence log (so it equals the cell it cites);
nothing here is a fixed explanation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..ops import COLLECTIVE_OPS, OPS, PHASES
from .decode import HOST_BOUND, K_SPLIT, split_medians, why_not_faster
from .evidence import KEYS, EvidenceLog
from .host import answer_sentences
from .markdown import bold, f_ms, f_pct, finite, md_code, md_escape, md_table
from .methods import host_summary
from .predict import pair_sentences as predicted_pair_sentences
from .predict import predicted_configs
from .tables import NOT_OPS

MAX_PAIRS = 8  # pair sentences on the first screen; further pairs are in Comparisons
PART_REASON = {
    "host_idle": ("host-bound", "the GPU idles for the host"),
    "wait": ("waiting for another rank", "collective wait for the last rank"),
    "transfer": ("link-bound", "collective transfer"),
}


def where_table(t: dict, present) -> pd.DataFrame:
    """Per config: per phase the two largest rows (op and share) and the phase median."""
    ops, ps = t["ops_summary"], t["phase_summary"]
    rows = []
    for cfg in present:
        row = {"config": md_escape(cfg)}
        for phase in PHASES:
            d = ops[(ops["config"] == cfg) & (ops["phase"] == phase)]
            d = d[np.isfinite(d["share"].astype(float))].sort_values("share", ascending=False).head(2)
            m = ps[(ps["config"] == cfg) & (ps["phase"] == phase)]
            med = f_ms(m["median_ms"].iloc[0]) if len(m) else "–"
            top = ", ".join(f"{md_code(r['op'])} {f_pct(r['share'])}" for _, r in d.iterrows()) or "–"
            row[f"{phase}: largest shares"] = top
            row[f"{phase} median"] = med
        rows.append(row)
    return pd.DataFrame(rows)


def _unstable(t: dict, r, ratio_flag: float) -> list[tuple]:
    """Why a pair row's inputs are unstable: (table, row, column) of each CV over the threshold, or the CI."""
    why = []
    tab, key = (
        ("phase_summary", ("config", "phase")) if r["op"] == "end_to_end" else ("ops_summary", KEYS["ops_summary"])
    )
    src = t[tab]
    for side in ("a", "b"):
        q = src[(src["config"] == r[side]) & (src["phase"] == r["phase"])]
        if tab == "ops_summary":
            q = q[q["op"] == r["op"]]
        if len(q) and bool(q.iloc[0]["unstable"]):
            why.append((tab, q.iloc[0], key, "cv"))
    lo, hi = r["speedup_lo"], r["speedup_hi"]
    if finite(lo) and finite(hi) and lo > 0 and hi / lo - 1 > ratio_flag:
        why.append(("pairs", r, KEYS["pairs"], "ci"))
    return why


def pair_row_unstable(t: dict, r, ratio_flag: float) -> bool:
    """True when a pair row rests on an unstable input (CV over ``unstable_cv`` or CI wider than ``ratio_flag``)."""
    return bool(_unstable(t, r, ratio_flag))


def _cite_unstable(t, r, ratio_flag, log: EvidenceLog) -> str:
    parts = []
    for tab, row, key, col in _unstable(t, r, ratio_flag):
        if col == "ci":
            lo = log.cite("pairs", row, key, "speedup_lo", "x")
            hi = log.cite("pairs", row, key, "speedup_hi", "x")
            parts.append(f"CI {lo}–{hi}")
        else:
            parts.append(f"CV {log.cite(tab, row, key, 'cv', 'pct')} on {bold(row['config'])}")
    return " (**unstable**: " + ", ".join(parts) + ")" if parts else ""


def _reason(t: dict, r, log: EvidenceLog, notes: list) -> str:
    """The one-line reason for a pair's end-to-end row, read from A's rows (phase split, ops, theory)."""
    a, phase = r["a"], r["phase"]
    med = split_medians(t)
    sp = med[(med["config"] == a) & (med["phase"] == phase)].dropna(subset=["compute_ms"])
    if len(sp):
        s = sp.loc[sp["host_idle_share"].astype(float).fillna(-1).idxmax()]
        shares = {
            p: float(s[p + "_share"]) for p in ("compute", "transfer", "wait", "host_idle") if finite(s[p + "_share"])
        }
        if shares:
            top = max(shares, key=shares.get)
            if top in PART_REASON:
                name, what = PART_REASON[top]
                share = log.cite("phase_split", s, K_SPLIT, top + "_share", "pct")
                if top == "host_idle":
                    notes.append(host_summary(t["provenance"], [r["a"], r["b"]]))
                return f"**{name}**: {what} {share} of {bold(a)}'s {phase} (rank {int(s['rank'])})"
    ops = t["ops_summary"]
    o = ops[(ops["config"] == a) & (ops["phase"] == phase) & np.isfinite(ops["share"].astype(float))]
    fw = o[o["op"].isin(NOT_OPS)]
    if len(fw):
        f = fw.loc[fw["share"].astype(float).idxmax()]
        if f["share"] > HOST_BOUND:
            share = log.cite("ops_summary", f, KEYS["ops_summary"], "share", "pct")
            notes.append(host_summary(t["provenance"], [r["a"], r["b"]]))
            return f"**host-bound**: framework time {md_code(f['op'])} takes {share} of {bold(a)}'s {phase}"
    big = o[o["op"].isin(OPS) & ~o["op"].isin(NOT_OPS) & ~o["modeled"].astype(bool)]
    if big.empty:
        return ""
    big = big.loc[big["share"].astype(float).idxmax()]
    share = log.cite("ops_summary", big, KEYS["ops_summary"], "share", "pct")
    if big["op"] in COLLECTIVE_OPS:
        return f"**collective-bound**: {md_code(big['op'])} takes {share} of {bold(a)}'s {phase}"
    th = t["theory_ops"]
    b = th[(th["config"] == a) & (th["phase"] == phase) & (th["op"] == big["op"])]["bound"]
    kind = b.iloc[0] if len(b) and b.iloc[0] in ("compute", "memory", "link") else ""
    if not kind:
        return f"its largest op {md_code(big['op'])} takes {share} of {bold(a)}'s {phase}"
    op = md_code(big["op"])
    return f"**{kind}-bound**: its largest op {op} ({share} of {bold(a)}'s {phase}) is {kind}-bound in theory"


def pair_answers(t: dict, pairs_decl, present, ratio_flag: float, log: EvidenceLog, specs=None) -> list[dict]:
    """Per compared pair: a sentence (per phase, measured vs theoretical end-to-end speedup and the reason)
    and, where a reason is the host or the host is the device, the host's CPU model and load."""
    pr, out, notes, specs = t["pairs"], [], [], specs or {}
    for p in pairs_decl:
        if p["a"] not in present or p["b"] not in present or len(out) >= MAX_PAIRS:
            continue
        label = p.get("label") or f"{p['a']} vs {p['b']}"
        parts = []
        for phase in PHASES:
            q = pr[(pr["a"] == p["a"]) & (pr["b"] == p["b"]) & (pr["phase"] == phase) & (pr["op"] == "end_to_end")]
            q = q[np.isfinite(q["speedup"].astype(float))]
            if q.empty:
                continue
            r = q.iloc[0]
            k = KEYS["pairs"]
            text = f"{phase} {log.cite('pairs', r, k, 'speedup', 'x')}"
            if finite(r["theory_speedup"]):
                text += f" against {log.cite('pairs', r, k, 'theory_speedup', 'x')} in theory"
            text += _cite_unstable(t, r, ratio_flag, log)
            why = _reason(t, r, log, notes)
            parts.append(text + (f" — {why}" if why else ""))
        hosts = [{q.get("host") for q in t["provenance"] if q.get("config") == c} for c in (p["a"], p["b"])]
        if all(hosts) and hosts[0] != hosts[1]:  # a cross-host comparison: both hosts, first
            prov = t["provenance"]
            notes.insert(0, f"{host_summary(prov, [p['a']])} against {host_summary(prov, [p['b']])}")
        cpu = [c for c in (p["a"], p["b"]) if (specs.get(c) or {}).get("gpu") == "cpu"]
        if cpu:  # the host is the device: its CPU and load belong next to the comparison
            notes.append(host_summary(t["provenance"], [p["a"], p["b"]]))
        if parts:
            s = log.sentence(
                f"{bold(label)} (speedup of {bold(p['a'])} over {bold(p['b'])}): " + "; ".join(parts) + ".",
                topic="answers",
            )
            note = next((n for n in notes if n), "")
            out.append({"s": s, "host": md_escape(note)})
        notes = []
    return out


def predicted_where_table(t: dict, configs) -> pd.DataFrame:
    """Configs with predictions only: per phase the two largest predicted shares and the predicted total."""
    pr, ph = t.get("predicted"), t.get("predicted_phases")
    rows = []
    if pr is None or ph is None or pr.empty:
        return pd.DataFrame()
    for cfg in configs:
        row = {"config (PREDICTED, not measured)": md_escape(cfg)}
        for phase in PHASES:
            d = pr[(pr["config"] == cfg) & (pr["phase"] == phase)]
            d = d[d["predicted_share"].map(finite)].sort_values("predicted_share", ascending=False).head(2)
            m = ph[(ph["config"] == cfg) & (ph["phase"] == phase)]
            total = m["predicted_ms"].iloc[0] if len(m) else float("nan")
            row[f"{phase}: largest predicted shares"] = (
                ", ".join(f"{md_code(r['op'])} {f_pct(r['predicted_share'])}" for _, r in d.iterrows()) or "–"
            )
            row[f"{phase} predicted"] = f_ms(total) if finite(total) and total > 0 else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def depth_note(specs: dict, present) -> str:
    """Which measured configs ran fewer layers than their model has, and what that means for the numbers
    on the first screen: the aggregate step scales per-layer ops to the model's depth, the decode probe
    (host split, graph replay) is the stack as run. Empty when every config ran its whole model."""
    groups = {}
    for c in present:
        s = specs.get(c) or {}
        ran, depth = s.get("num_layers"), s.get("model_layers")  # recorded specs; older records may lack them
        if ran and depth and ran < depth:
            groups.setdefault((ran, depth), []).append(md_escape(c))
    return " ".join(
        f"{', '.join(cs)} ran {ran} of {depth} layers: shares, speedups and per-step times are scaled to "
        f"{depth} layers (per-layer ops × {depth / ran:g}, aggregate step); decode without the host is the "
        f"{ran}-layer stack as run."
        for (ran, depth), cs in sorted(groups.items())
    )


def answers_context(t: dict, configs, present, pairs_decl, specs: dict, ratio_flag: float, log: EvidenceLog) -> dict:
    """The answers section's context (see the module docstring); pure (no I/O). ``ratio_flag``: the study's."""
    pairs = pair_answers(t, pairs_decl, present, ratio_flag, log, specs)
    specs_tp = {c: s.get("tp", 0) for c, s in specs.items()}  # recorded specs; an older record may lack tp
    why = why_not_faster(
        split_medians(t), [p for p in pairs_decl if p["a"] in present and p["b"] in present], specs_tp, log
    )
    pred = predicted_configs(t)
    paper = [c for c in configs if c not in present and c in pred]
    paper_pairs = [p for p in pairs_decl if p["a"] in paper or p["b"] in paper][:MAX_PAIRS]
    return dict(
        predicted_where=md_table(predicted_where_table(t, paper)) if paper else "",
        predicted_pairs=predicted_pair_sentences(t, paper_pairs, log) if paper_pairs else [],
        any=bool(present),
        depth=depth_note(specs, present),
        where=md_table(where_table(t, present)) if present else "",
        pairs=pairs,
        more_pairs=sum(1 for p in pairs_decl if p["a"] in present and p["b"] in present) > len(pairs),
        why=why[:2],
        graph=answer_sentences(t, log),
        not_measured=[md_escape(c) for c in configs if c not in present],
        predicted_only=[md_escape(c) for c in configs if c not in present and c in pred],
    )
