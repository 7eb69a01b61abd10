"""Generated conclusions: one function per topic, each drawing its numbers through the evidence log.

Every topic function has the signature ``(t, present, pairs_decl, log) -> list[Sentence]``;
:data:`TOPICS` lists them in report order, and :func:`generate_conclusions` calls them in
that order (evidence ids are numbered in citation order, so the order is part of the output).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..ops import OPS, PHASE_OF, PHASES, order_ops
from .evidence import KEYS, EvidenceLog, Sentence
from .markdown import bold, finite, join_words, md_escape, op_code
from .tables import NOT_OPS


def dominant_ops(ops_summary: pd.DataFrame) -> pd.DataFrame:
    """Per config and phase, the measured row with the largest share (model and framework ops alike)."""
    d = ops_summary[np.isfinite(ops_summary["share"].astype(float))]
    if d.empty:
        return d
    idx = d.groupby(["config", "phase"])["share"].idxmax()
    return d.loc[idx].sort_values(["config", "phase"], key=lambda s: s.map(PHASE_OF) if s.name == "phase" else s)


def disagreements(pairs: pd.DataFrame, n=3, unstable=None) -> pd.DataFrame:
    """The n pair rows furthest from theory (largest |log(measured/theory)|), either direction.

    Like with like: a row where either side is modeled (emulated TP's collectives) compares a
    measurement with the model itself and is no disagreement, so it is left out. Rows whose inputs
    are unstable (``unstable``: a boolean per row) rank after every stable row; the result's
    ``unstable`` column marks them.
    """
    d = pairs[
        np.isfinite(pairs["measured_over_theory"].astype(float))
        & (pairs["measured_over_theory"] > 0)
        & ~pairs["modeled"].astype(bool)
    ]
    if d.empty:
        return d.assign(unstable=pd.Series(dtype=bool))
    flag = unstable.reindex(d.index).fillna(False).astype(bool) if unstable is not None else False
    d = d.assign(_dev=np.abs(np.log(d["measured_over_theory"].astype(float))), unstable=flag)
    d = d.sort_values(["unstable", "_dev"], ascending=[True, False], kind="stable")
    return d.head(n).drop(columns="_dev")


# ----------------------------------------------------------------------------- 1. dominant op per phase
def dominant_sentences(t, present, pairs_decl, log: EvidenceLog) -> list[Sentence]:
    """Which op dominates each phase, grouped by op (the seed's pie-chart conclusion)."""
    ops = t["ops_summary"]
    link_of = _links(t["ceilings"])
    dom = dominant_ops(ops[ops["config"].isin(present)])
    out = []
    for phase in PHASES:
        d = dom[dom["phase"] == phase]
        if d.empty:
            continue
        parts = [_dominant_part(d, op, present, link_of, log) for op in order_ops(d["op"])]
        out.append(
            log.sentence(
                f"In **{phase}**, the largest share of time goes to " + "; ".join(parts) + ".", topic="dominant"
            )
        )
    return out


def _links(ceil: pd.DataFrame) -> dict:
    """Per config, its first ceilings row with a link bandwidth (quoted next to a dominant collective)."""
    link_of = {}
    for r in ceil.itertuples():
        if finite(r.link_GBps) and r.config not in link_of:
            link_of[r.config] = r._asdict()
    return link_of


def _dominant_part(d, op, present, link_of, log: EvidenceLog) -> str:
    """'`op` on cfg (share of the phase, link ...), ...' for the configs this op dominates."""
    cfgs = []
    for cfg in [c for c in present if c in set(d.loc[d["op"] == op, "config"])]:
        row = d[(d["config"] == cfg) & (d["op"] == op)].iloc[0]
        share = log.cite("ops_summary", row, KEYS["ops_summary"], "share", "pct")
        extra = ""
        if cfg in link_of:
            lk = link_of[cfg]
            extra = f", link {log.cite('ceilings', lk, KEYS['ceilings'], 'link_GBps', 'num')} GB/s"
        cfgs.append(f"{bold(cfg)} ({share} of the phase{extra})")
    kind = " (framework time, not a model operator)" if op in NOT_OPS else ""
    return f"{op_code(op)}{kind} on {join_words(cfgs)}"


# ----------------------------------------------------------------------------- 2. prefill vs decode
def phase_sentences(t, present, pairs_decl, log: EvidenceLog) -> list[Sentence]:
    """Prefill vs decode per config: which phase is longer."""
    ps = t["phase_summary"]
    out = []
    for cfg in present:
        rows = {r["phase"]: r for _, r in ps[ps["config"] == cfg].iterrows()}
        if not all(p in rows for p in PHASES):
            continue
        pre = log.cite("phase_summary", rows["prefill"], KEYS["phase_summary"], "median_ms", "ms")
        dec = log.cite("phase_summary", rows["decode"], KEYS["phase_summary"], "median_ms", "ms")
        longer = "decode" if rows["decode"]["median_ms"] > rows["prefill"]["median_ms"] else "prefill"
        out.append(
            log.sentence(
                f"On {bold(cfg)}, prefill takes {pre} and decode {dec} (medians over repeats): "
                f"**{longer}** is the longer phase.",
                topic="phases",
            )
        )
    return out


# ----------------------------------------------------------------------------- 3. pairs
def pair_sentences(t, present, pairs_decl, log: EvidenceLog) -> list[Sentence]:
    """Pairs: end-to-end, the op that matters most (largest time on B), then the other flagged ops."""
    pr = t["pairs"]
    out = []
    for p in pairs_decl:
        a, b = p["a"], p["b"]
        d = pr[(pr["a"] == a) & (pr["b"] == b) & np.isfinite(pr["speedup"].astype(float))]
        if d.empty:
            continue
        label = p.get("label") or f"{a} vs {b}"
        for phase in PHASES:
            q = d[d["phase"] == phase]
            if not q.empty:
                out += _pair_phase_sentences(q, label, phase, t, log)
    return out


def _pair_phase_sentences(q, label, phase, t, log: EvidenceLog) -> list[Sentence]:
    """One pair, one phase: end-to-end and the top op each get a sentence; other flagged ops share one."""
    out = []
    e2e = q[q["op"] == "end_to_end"]
    # like with like: a modeled row (emulated TP's collectives) is the model against a measurement
    ops_q = q[q["op"].isin(OPS) & ~q["op"].isin(NOT_OPS) & ~q["modeled"].astype(bool)]
    top = ops_q.sort_values("time_b_ms", ascending=False).head(1)
    for _, r in pd.concat([e2e, top]).iterrows():
        out.append(_pair_sentence(r, label, log, t["theory_ops"], t["allreduce"]))
    rest = ops_q[ops_q["flagged"] & ~ops_q.index.isin(top.index)]
    if len(rest):
        k = KEYS["pairs"]
        items = []
        for _, r in rest.sort_values("measured_over_theory").iterrows():
            items.append(f"{op_code(r['op'])} {log.cite('pairs', r, k, 'measured_over_theory', 'num')}")
        out.append(
            log.sentence(
                f"{md_escape(label)}, {phase}: further ops off theory (measured/theory): " + ", ".join(items) + ".",
                topic="pairs",
            )
        )
    return out


def _pair_sentence(r, label, log: EvidenceLog, theory_ops: pd.DataFrame, allreduce: pd.DataFrame) -> Sentence:
    """A pair row: speedup (with CI), then what the roofline predicts and whether the measurement agrees."""
    k = KEYS["pairs"]
    sp = log.cite("pairs", r, k, "speedup", "x")
    ci = ""
    if finite(r["speedup_lo"]) and finite(r["speedup_hi"]):
        ci = f" (CI {log.cite('pairs', r, k, 'speedup_lo', 'x')}–{log.cite('pairs', r, k, 'speedup_hi', 'x')})"
    faster = "faster" if r["speedup"] >= 1 else "slower"
    what = "end-to-end" if r["op"] == "end_to_end" else op_code(r["op"])
    mod = " (modeled)" if r["modeled"] else (" (GPU-busy)" if r.get("view") == "gpu-busy" else "")
    text = (
        f"{md_escape(label)}, {r['phase']} {what}{mod}: {bold(r['a'])} is {faster} than {bold(r['b'])}, "
        f"speedup {sp}{ci}"
    )
    if finite(r["theory_speedup"]):
        text += _pair_theory(r, log, theory_ops, allreduce)
    return log.sentence(text + ".", topic="pairs")


def _pair_theory(r, log: EvidenceLog, theory_ops, allreduce) -> str:
    """The roofline's speedup for a pair row, and whether the measurement falls short of, exceeds or agrees with it."""
    k = KEYS["pairs"]
    th = log.cite("pairs", r, k, "theory_speedup", "x")
    bound = md_escape(r["bound"]) if r["bound"] else ""
    text = f"; the roofline predicts {th}"
    if bound and bound != "mixed":
        text += f" for this **{bound}-bound** op"
        if finite(r["resource_ratio"]):
            text += f" ({bound} resource ratio {log.cite('pairs', r, k, 'resource_ratio', 'x')})"
    if finite(r["measured_over_theory"]):
        mot = log.cite("pairs", r, k, "measured_over_theory", "num")
        if r["flagged"] and r["measured_over_theory"] < 1:
            text += f": it **falls short** of theory (measured/theory {mot})"
            text += _shortfall_reason(r, log, theory_ops, allreduce)
        elif r["flagged"]:
            text += f": it **exceeds** theory (measured/theory {mot})"
        else:
            text += f": it agrees with theory (measured/theory {mot}, not flagged)"
    return text


def _shortfall_reason(r, log: EvidenceLog, theory_ops: pd.DataFrame, allreduce: pd.DataFrame) -> str:
    """Which resource explains a shortfall: latency for collectives, else the roofline efficiency of A vs B."""
    if r["op"] in ("all_reduce",) and len(allreduce):
        why = _latency_shortfall(r, log, allreduce)
        if why:
            return why
    if r["op"] == "end_to_end" or not len(theory_ops):
        return ""
    return _efficiency_shortfall(r, log, theory_ops)


def _latency_shortfall(r, log: EvidenceLog, allreduce: pd.DataFrame) -> str:
    """A latency-bound all-reduce on A explains the shortfall; '' when it is not latency-bound."""
    q = allreduce[(allreduce["config"] == r["a"]) & (allreduce["kind"] == "phase") & (allreduce["phase"] == r["phase"])]
    q = q[np.isfinite(q["t_latency_ms"].astype(float))]
    if not (len(q) and q.iloc[0]["t_latency_ms"] > q.iloc[0]["t_bandwidth_ms"]):
        return ""
    row = q.iloc[0]
    lat = log.cite("allreduce", row, KEYS["allreduce"], "t_latency_ms", "ms")
    bw = log.cite("allreduce", row, KEYS["allreduce"], "t_bandwidth_ms", "ms")
    return (
        f"; on {bold(r['a'])} its messages are small enough that the ring model's latency term ({lat}) "
        f"outweighs the bandwidth term ({bw}): link latency, not bandwidth, limits it"
    )


def _efficiency_shortfall(r, log: EvidenceLog, theory_ops: pd.DataFrame) -> str:
    """Compare A's and B's roofline efficiency for the op; '' unless both sides have one."""
    eff = {}
    for side in ("a", "b"):
        q = theory_ops[
            (theory_ops["config"] == r[side]) & (theory_ops["phase"] == r["phase"]) & (theory_ops["op"] == r["op"])
        ]
        q = q[np.isfinite(q["efficiency"].astype(float))]
        if len(q):
            eff[side] = q.iloc[0]
    if len(eff) < 2:
        return ""
    ea = log.cite("theory_ops", eff["a"], KEYS["theory_ops"], "efficiency", "pct")
    eb = log.cite("theory_ops", eff["b"], KEYS["theory_ops"], "efficiency", "pct")
    ba, bb = md_escape(eff["a"]["bound"]), md_escape(eff["b"]["bound"])
    note = ""
    if eff["a"]["bound"] != eff["b"]["bound"]:
        note = f" (the bound changes from {bb} on {bold(r['b'])} to {ba} on {bold(r['a'])})"
    if eff["a"]["efficiency"] < eff["b"]["efficiency"]:
        verdict = f"so {bold(r['a'])} uses its {ba} resource less well than {bold(r['b'])} does"
    else:
        verdict = f"so {bold(r['a'])}'s efficiency is not lower than {bold(r['b'])}'s"
    return f": {bold(r['a'])} reaches {ea} of its {ba} roofline against {eb} on {bold(r['b'])}{note}, {verdict}"


# ----------------------------------------------------------------------------- 4. all-reduce
def allreduce_sentences(t, present, pairs_decl, log: EvidenceLog) -> list[Sentence]:
    """All-reduce: latency- or bandwidth-dominated per config and phase (the seed's puzzle), and its TP scaling."""
    ar = t["allreduce"]
    arp = ar[
        (ar["kind"] == "phase")
        & np.isfinite(ar["t_latency_ms"].astype(float))
        & np.isfinite(ar["t_bandwidth_ms"].astype(float))
    ]
    out = []
    for cfg in present:
        for phase in PHASES:
            q = arp[(arp["config"] == cfg) & (arp["phase"] == phase)]
            if q.empty:
                continue
            out.append(_allreduce_bound_sentence(q.iloc[0], cfg, phase, log))
            sc = ar[
                (ar["config"] == cfg)
                & (ar["kind"] == "tp_scaling")
                & (ar["phase"] == phase)
                & np.isfinite(ar["model_ms"].astype(float))
            ].sort_values("n")
            if len(sc) >= 2:
                out.append(_allreduce_scaling_sentence(sc.iloc[0], sc.iloc[-1], phase, log))
    return out


def _allreduce_bound_sentence(r, cfg, phase, log: EvidenceLog) -> Sentence:
    """One phase's all-reduce: measured (or modeled) time against the ring model's latency and bandwidth terms."""
    k = KEYS["allreduce"]
    size = log.cite("allreduce", r, k, "size_bytes", "int")
    measured = np.isfinite(float(r["measured_ms"]))
    meas = log.cite("allreduce", r, k, "measured_ms", "ms") if measured else None
    model = log.cite("allreduce", r, k, "model_ms", "ms")
    lat = log.cite("allreduce", r, k, "t_latency_ms", "ms")
    bw = log.cite("allreduce", r, k, "t_bandwidth_ms", "ms")
    if r["t_latency_ms"] > r["t_bandwidth_ms"]:
        why = (
            "**latency-bound**: the per-hop latency terms outweigh the bandwidth term, and they grow "
            "with the number of ranks, so adding GPUs does not speed this all-reduce up"
        )
    else:
        why = "**bandwidth-bound**: a faster link shortens it roughly in proportion"
    return log.sentence(
        f"On {bold(cfg)}, a {phase} `all_reduce` of {size} bytes "
        + (
            f"takes {meas} measured vs {model} in the ring model"
            if measured
            else f"is modeled, not measured (emulated TP): {model} in the ring model"
        )
        + f", whose latency term is {lat} and bandwidth term {bw}: it is {why}.",
        topic="allreduce",
    )


def _allreduce_scaling_sentence(lo, hi, phase, log: EvidenceLog) -> Sentence:
    """The model's all-reduce time from the fewest to the most ranks: does adding ranks help?"""
    k = KEYS["allreduce"]
    n0, n1 = log.cite("allreduce", lo, k, "n", "int"), log.cite("allreduce", hi, k, "n", "int")
    t0, t1 = log.cite("allreduce", lo, k, "model_ms", "ms"), log.cite("allreduce", hi, k, "model_ms", "ms")
    if hi["model_ms"] > lo["model_ms"]:
        why = (
            "more ranks do not shrink the message each rank sends around the ring, while the latency "
            "term grows with every added rank"
        )
        trend = "grows"
    else:
        why = "the model predicts a gain from more ranks"
        trend = "shrinks"
    return log.sentence(
        f"With this link and message size, the model's {phase} `all_reduce` {trend} from {t0} on {n0} "
        f"ranks to {t1} on {n1} ranks: {why}.",
        topic="allreduce",
    )


# ----------------------------------------------------------------------------- 5. theory
def theory_sentences(t, present, pairs_decl, log: EvidenceLog) -> list[Sentence]:
    """Theory: the dominant model op per config and phase against its roofline."""
    ops, th = t["ops_summary"], t["theory_ops"]
    dom_model = dominant_ops(ops[ops["config"].isin(present) & ~ops["op"].isin(NOT_OPS)])
    out = []
    for _, drow in dom_model.iterrows():
        q = th[(th["config"] == drow["config"]) & (th["phase"] == drow["phase"]) & (th["op"] == drow["op"])]
        q = q[np.isfinite(q["efficiency"].astype(float))]
        if q.empty:
            continue
        r = q.iloc[0]
        k = KEYS["theory_ops"]
        eff = log.cite("theory_ops", r, k, "efficiency", "pct")
        tb = log.cite("theory_ops", r, k, "t_bound_ms", "ms")
        me = log.cite("theory_ops", r, k, "measured_ms", "ms")
        out.append(
            log.sentence(
                f"On {bold(r['config'])} in {r['phase']}, the largest model op {op_code(r['op'])} is "
                f"**{md_escape(r['bound'])}-bound** in theory ({tb} at the roofline) and takes {me}: {eff} of roofline "
                "efficiency.",
                topic="theory",
            )
        )
    return out


def over_roofline_sentences(t, present, pairs_decl, log: EvidenceLog) -> list[Sentence]:
    """Measured ops faster than their roofline (efficiency over 100 %), each explained from its own cells:
    the work the theory counts, over the measured time, exceeds the ceiling, so the op does less of
    that work at this size than counted."""
    th = t["theory_ops"]
    d = th[th["config"].isin(present) & ~th["modeled"].astype(bool)]
    d = d[np.isfinite(d["efficiency"].astype(float)) & (d["efficiency"].astype(float) > 1)]
    out = []
    k = KEYS["theory_ops"]
    what = {
        "memory": ("bytes", "achieved_GBps", "mem_bw_GBps", "GB/s", "moves fewer bytes through device memory"),
        "compute": ("flops", "achieved_tflops", "peak_tflops", "TFLOP/s", "does fewer FLOPs"),
    }
    for _, r in d.iterrows():
        if r["bound"] not in what:
            continue
        cnt, ach, ceil, unit, verb = what[r["bound"]]
        if not (finite(r[ach]) and finite(r[ceil])):
            continue
        eff = log.cite("theory_ops", r, k, "efficiency", "pct")
        n = log.cite("theory_ops", r, k, cnt, "sci")
        me = log.cite("theory_ops", r, k, "measured_ms", "ms")
        a = log.cite("theory_ops", r, k, ach, "num")
        c = log.cite("theory_ops", r, k, ceil, "num")
        src = md_escape(r["ceiling_source"]) or "catalog"
        if r["ceiling_source"] == "datasheet":  # a datasheet peak cannot be exceeded: the count is too high
            why = f"so at this size the op {verb} than the theory counts"
        else:  # a measured ceiling can sit below what the hardware reaches
            why = f"so at this size either the op {verb} than the theory counts or the {src} ceiling is too low"
        out.append(
            log.sentence(
                f"On {bold(r['config'])} in {r['phase']}, {op_code(r['op'])} reaches {eff} of its {r['bound']} "
                f"roofline: the {cnt} the theory counts ({n}) in its measured {me} would need {a} {unit}, above the "
                f"{src} ceiling's {c} {unit}, {why}.",
                topic="theory",
            )
        )
    return out


# ----------------------------------------------------------------------------- 6. stability
def stability_sentences(t, present, pairs_decl, log: EvidenceLog) -> list[Sentence]:
    """Stability: the least stable figures, and unstable phase totals."""
    ops, ps = t["ops_summary"], t["phase_summary"]
    out = []
    st = ops[np.isfinite(ops["cv"].astype(float)) & ops["unstable"] & ops["config"].isin(present)]
    for _, r in st.sort_values("cv", ascending=False).head(3).iterrows():
        k = KEYS["ops_summary"]
        cv = log.cite("ops_summary", r, k, "cv", "pct")
        n = log.cite("ops_summary", r, k, "n", "int")
        need = log.cite("ops_summary", r, k, "repeats_for_5pct", "int")
        out.append(
            log.sentence(
                f"{op_code(r['op'])} in {r['phase']} on {bold(r['config'])} is unstable: CV {cv} over {n} repeats; "
                f"`repeats_for_5pct` is {need}.",
                topic="stability",
            )
        )
    pst = ps[ps["unstable"] & ps["config"].isin(present)]
    for _, r in pst.iterrows():
        cv = log.cite("phase_summary", r, KEYS["phase_summary"], "cv", "pct")
        n = log.cite("phase_summary", r, KEYS["phase_summary"], "n", "int")
        out.append(
            log.sentence(
                f"The {r['phase']} end-to-end time of {bold(r['config'])} varies by CV {cv} over {n} repeats "
                f"(flagged unstable): compare it only through its CI.",
                topic="stability",
            )
        )
    return out


# ----------------------------------------------------------------------------- 7. modeled ops
def modeled_sentences(t, present, pairs_decl, log: EvidenceLog) -> list[Sentence]:
    """Modeled ops (not measured), so no reader takes a theory time for a measurement."""
    ops = t["ops_summary"]
    mod = ops[ops["modeled"] & ops["config"].isin(present)]
    out = []
    for cfg in present:
        m = mod[mod["config"] == cfg]
        if len(m):
            names = join_words([op_code(o) for o in order_ops(m["op"].unique())])
            verb = "is" if len(m["op"].unique()) == 1 else "are"
            out.append(
                log.sentence(
                    f"On {bold(cfg)}, {names} {verb} modeled, not measured (the time shown is the "
                    "theory's; see Methods).",
                    topic="modeled",
                )
            )
    return out


# Report order; a new topic is one function above and one entry here.
TOPICS = (
    dominant_sentences,
    phase_sentences,
    pair_sentences,
    allreduce_sentences,
    theory_sentences,
    over_roofline_sentences,
    stability_sentences,
    modeled_sentences,
)


def generate_conclusions(t: dict, configs, pairs_decl, log: EvidenceLog) -> list[Sentence]:
    """Seed-style conclusions, each from table rows; returns sentences with their evidence ids."""
    present = [c for c in configs if c in set(t["ops_summary"]["config"])]
    out: list[Sentence] = []
    for topic in TOPICS:
        out += topic(t, present, pairs_decl, log)
    return out
