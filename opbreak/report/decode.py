"""Report sections of the decode truth: two views per op, every rank, collective wait vs transfer.

Why a module of its own: the main report shows one number per op (the wall view of
rank 0); this shows what that number is made of, per rank: GPU-busy kernel time
(CUPTI), the host-bound rest, the collectives' wait for the last rank and their
transfer, and the phase split (compute / transfer / wait / GPU idle for the host).
Every number in a sentence goes through the report's evidence log and so is a cell
of results/aggregate/{phase_split,rank_ops,collectives,capture_cost}.csv or
results/theory/allreduce.csv. The report calls :func:`decode_context` and
:func:`decode_figures`.
"""

from __future__ import annotations

import math

import pandas as pd

from ..contract import DECODE_COLUMNS as COLUMNS
from ..ops import COLLECTIVE_OPS, OPS
from .markdown import bold, f_ms, f_num, f_pct, finite, md_escape, md_table

PARTS = ("compute", "transfer", "wait", "host_idle")
PART_LABELS = {
    "compute": "GPU busy: compute kernels",
    "transfer": "collective transfer",
    "wait": "collective wait for the last rank (upper bound)",
    "host_idle": "GPU idle: waiting for the host",
}
K_SPLIT = ("config", "rank", "phase")
HOST_BOUND = 0.3  # a phase whose GPU idles for the host this share of the time is host-bound


def split_medians(t: dict) -> pd.DataFrame:
    """The phase split (already medians over repeats, per config, rank, phase)."""
    ps = t.get("phase_split")
    return ps if ps is not None else pd.DataFrame(columns=COLUMNS["phase_split"])


def _fmt(v, unit="ms"):

    return f_pct(v) if unit == "pct" else f_ms(v)


def split_table(med: pd.DataFrame, configs, phase: str) -> pd.DataFrame:
    """Per config and rank: per-step wall and its four parts, with shares (the phase split)."""

    rows = []
    for cfg in configs:
        for _, r in med[(med["config"] == cfg) & (med["phase"] == phase)].iterrows():
            if not finite(r["compute_ms"]):
                continue
            row = {"config": md_escape(cfg), "rank": int(r["rank"]), "wall / step": _fmt(r["wall_per_step_ms"])}
            for p in PARTS:
                row[PART_LABELS[p]] = f"{_fmt(r[p + '_per_step_ms'])} ({_fmt(r[p + '_share'], 'pct')})"
            row["wait capped"] = "yes" if r["wait_capped"] else "no"
            rows.append(row)
    return pd.DataFrame(rows)


def views_table(t: dict, cfg: str, phase: str, rank: int = 0) -> pd.DataFrame:
    """One config's ops in both views: wall (events), GPU-busy (CUPTI) and the host-bound rest."""
    ro = t["rank_ops"]
    d = ro[(ro["config"] == cfg) & (ro["phase"] == phase) & (ro["rank"] == rank)]
    rows = []
    for _, r in d.sort_values("op", key=lambda s: s.map(OPS.index)).iterrows():
        coll = r["op"] in COLLECTIVE_OPS
        rows.append(
            {
                "op": f"`{r['op']}`",
                "wall (events)": _fmt(r["wall_ms"]),
                "GPU-busy (CUPTI)": _fmt(r["kernel_ms"]) + (" incl. wait" if coll else ""),
                "host-bound": "see wait/transfer" if coll else _fmt(r["host_ms"]),
            }
        )
    return pd.DataFrame(rows)


def collectives_table(t: dict, configs) -> pd.DataFrame:
    """Per config, rank, phase: in-phase all_reduce wall per call, CUPTI transfer and wait per call, the sweep."""

    med, ar = t["collectives"], t.get("allreduce", pd.DataFrame())
    rows = []
    for cfg in configs:
        for _, r in med[med["config"] == cfg].iterrows():
            ph = ar[(ar["config"] == cfg) & (ar["kind"] == "phase") & (ar["phase"] == r["phase"])] if len(ar) else ar
            wall = ph["measured_ms"].iloc[0] * 1e3 if len(ph) else math.nan
            sweep = ph["sweep_ms"].iloc[0] * 1e3 if len(ph) and "sweep_ms" in ph else math.nan
            rows.append(
                {
                    "config": md_escape(cfg),
                    "rank": int(r["rank"]),
                    "phase": r["phase"],
                    "calls": f_num(r["calls"]),
                    "rank 0 wall / call (events)": f"{f_num(wall)} us",
                    "sweep, back to back": f"{f_num(sweep)} us",
                    "transfer / call (CUPTI)": f"{f_num(r['transfer_per_call_us'])} us",
                    "wait / call (CUPTI)": f"{f_num(r['wait_per_call_us'])} us",
                    "transfer total": _fmt(r["transfer_ms"]),
                    "wait total": _fmt(r["wait_ms"]),
                }
            )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- sentences
def slowest_rank_sentences(med: pd.DataFrame, configs, trace) -> list:
    """Per multi-rank config and phase: which rank's GPU idles longest for its host, and the spread."""

    out = []
    for cfg in configs:
        for phase in ("prefill", "decode"):
            d = med[(med["config"] == cfg) & (med["phase"] == phase)].dropna(subset=["compute_ms"])
            if len(d) < 2:
                continue
            slow, fast = d.loc[d["host_idle_ms"].idxmax()], d.loc[d["host_idle_ms"].idxmin()]

            def c(r, col, f="ms"):
                return trace.cite("phase_split", r, K_SPLIT, col, f)

            out.append(
                trace.sentence(
                    f"{bold(cfg)} {phase}: rank {int(slow['rank'])} is the slow host: its GPU idles for it "
                    f"{c(slow, 'host_idle_ms')} ({c(slow, 'host_idle_share', 'pct')} of the phase) against rank "
                    f"{int(fast['rank'])}'s {c(fast, 'host_idle_ms')}, and rank {int(fast['rank'])} waits in the "
                    f"collectives for it: {c(fast, 'wait_ms')} against {c(slow, 'wait_ms')}.",
                    topic="ranks",
                )
            )
    return out


def why_not_faster(med: pd.DataFrame, pairs_decl, specs_tp: dict, trace) -> list:
    """For each declared pair of more vs fewer ranks: the decode step of each, part by part (the answer)."""

    out = []
    for p in pairs_decl:
        a, b = p["a"], p["b"]
        if specs_tp.get(a, 0) <= specs_tp.get(b, 0):
            continue
        ra, rb = _slowest(med, a, "decode"), _slowest(med, b, "decode")
        if ra is None or rb is None:
            continue

        def c(r, col, f="ms"):
            return trace.cite("phase_split", r, K_SPLIT, col, f)

        faster = ra["wall_per_step_ms"] < rb["wall_per_step_ms"]
        out.append(
            trace.sentence(
                f"Decode per step, {bold(a)} against {bold(b)}: {c(ra, 'wall_per_step_ms')} against "
                f"{c(rb, 'wall_per_step_ms')} ({'faster' if faster else 'not faster'}). GPU compute kernels "
                f"{c(ra, 'compute_per_step_ms')} against {c(rb, 'compute_per_step_ms')}; collective transfer "
                f"{c(ra, 'transfer_per_step_ms')}; waiting for the other rank up to {c(ra, 'wait_per_step_ms')}; "
                f"GPU idle waiting for the host {c(ra, 'host_idle_per_step_ms')} against "
                f"{c(rb, 'host_idle_per_step_ms')} (rank {int(ra['rank'])}, the rank whose GPU idles most).",
                topic="why",
            )
        )
    return out


TWIN_TOLERANCE = 0.03  # a real run and its emulated twin run the same compute kernels
MODEL_TOLERANCE = 0.15  # large all_reduce messages: transfer against the alpha-beta model fitted to the sweep


def twin_sentences(t: dict, pairs_decl, emulated: set, log) -> list:
    """Real TP vs its emulated twin: prefill compute ops that differ by more than 3 %, cited, or that none does."""
    out = []
    pairs = t["pairs"]
    for p in pairs_decl:
        if p["b"] not in emulated or p["a"] in emulated:
            continue
        d = pairs[
            (pairs["a"] == p["a"])
            & (pairs["b"] == p["b"])
            & (pairs["phase"] == "prefill")
            & ~pairs["modeled"]
            & ~pairs["op"].isin(COLLECTIVE_OPS)
            & pairs["op"].isin(OPS)
        ]
        off = d[(d["speedup"] - 1).abs() > TWIN_TOLERANCE]
        cite = [
            f"`{r['op']}` {log.cite('pairs', r, ('a', 'b', 'phase', 'op'), 'speedup', 'x')} "
            f"({log.cite('pairs', r, ('a', 'b', 'phase', 'op'), 'time_b_ms', 'ms')} in the twin)"
            for _, r in off.iterrows()
        ]
        if d.empty:
            continue
        worst = d.loc[(d["speedup"] - 1).abs().idxmax()]
        worst_txt = (
            f"`{worst['op']}` {log.cite('pairs', worst, ('a', 'b', 'phase', 'op'), 'speedup', 'x')}, "
            f"{worst['view']} view"
        )
        verdict = (
            f"every prefill compute op agrees within {_pct(TWIN_TOLERANCE)} (furthest: {worst_txt})"
            if not cite
            else f"prefill compute ops outside {_pct(TWIN_TOLERANCE)} of the twin: " + ", ".join(cite)
        )
        out.append(log.sentence(f"{bold(p['a'])} against its emulated twin {bold(p['b'])}: {verdict}.", topic="twin"))
    return out


def model_sentences(t: dict, configs, log) -> list:
    """Prefill all_reduce per call: the fitted model, the wall per call and the CUPTI transfer per call."""
    ar, co = t.get("allreduce"), t.get("collectives")
    out = []
    if ar is None or co is None or ar.empty or co.empty:
        return out
    for cfg in configs:
        ph = ar[(ar["config"] == cfg) & (ar["kind"] == "phase") & (ar["phase"] == "prefill")]
        c0 = co[(co["config"] == cfg) & (co["phase"] == "prefill") & (co["rank"] == 0)]
        if ph.empty or c0.empty or not finite(ph["measured_ms"].iloc[0]):
            continue
        r, c = ph.iloc[0], c0.iloc[0]
        transfer_ms = c["transfer_per_call_us"] / 1e3
        within = abs(transfer_ms / r["model_ms"] - 1) <= MODEL_TOLERANCE
        wall_within = abs(r["measured_ms"] / r["model_ms"] - 1) <= MODEL_TOLERANCE
        key = ("config", "kind", "phase", "n", "size_bytes")
        size, model, wall = (
            log.cite("allreduce", r, key, col, f)
            for col, f in (("size_bytes", "int"), ("model_ms", "ms"), ("measured_ms", "ms"))
        )
        transfer = log.cite("collectives", c, K_SPLIT, "transfer_per_call_us", "num")
        text = (
            f"{bold(cfg)} prefill all_reduce of {size} B per call: model {model}, wall per call {wall} "
            f"({_within(wall_within)} {_pct(MODEL_TOLERANCE)}), CUPTI transfer per call {transfer} us "
            f"({_within(within)} {_pct(MODEL_TOLERANCE)})"
        )
        if not wall_within:
            wait = log.cite("collectives", c, K_SPLIT, "wait_per_call_us", "num")
            text += f"; the wall adds the wait for the last rank ({wait} us per call on rank 0) and the launch"
        out.append(log.sentence(text + ".", topic="model"))
    return out


def _pct(v) -> str:
    return f"{100 * v:.0f} %"


def _within(ok: bool) -> str:
    return "within" if ok else "**not within**"


def _slowest(med, cfg, phase):
    d = med[(med["config"] == cfg) & (med["phase"] == phase)].dropna(subset=["compute_ms"])
    return None if d.empty else d.loc[d["host_idle_ms"].idxmax()]


def overhead_sentences(t: dict, configs, trace) -> list:
    """What instrumenting a decode step costs, measured against plain steps of the same run."""

    cc = t.get("capture_cost")
    out = []
    if cc is None or cc.empty:
        return out
    for cfg in configs:
        d = cc[(cc["config"] == cfg) & (cc["phase"] == "decode") & (cc["rank"] == 0)]
        if d.empty or not finite(d["events_overhead"].iloc[0]):
            continue
        r = d.iloc[0]
        ev, kern = (
            trace.cite("capture_cost", r, K_SPLIT, col, "pct") for col in ("events_overhead", "kernels_overhead")
        )
        out.append(
            trace.sentence(
                f"{bold(cfg)}: an event-instrumented decode step costs {ev} more than a plain step "
                f"of the same context, a CUPTI-captured one {kern} (median over steps, rank 0).",
                topic="overhead",
            )
        )
    return out


def host_flags(t: dict, pairs_decl) -> list[str]:
    """Pairs compared across different host CPUs where decode is host-bound (the comparison mixes hosts)."""
    hosts = {}
    for p in t.get("provenance") or []:
        h = (p.get("host_after") or {}).get("cpu_model") or p.get("host")
        hosts.setdefault(p.get("config"), set()).add(f"{p.get('host')} ({h})")
    med = split_medians(t)
    flags = []
    for p in pairs_decl:
        ha, hb = hosts.get(p["a"], set()), hosts.get(p["b"], set())
        bound = med[(med["config"].isin([p["a"], p["b"]])) & (med["phase"] == "decode")]
        if ha and hb and ha != hb and (bound["host_idle_share"] > HOST_BOUND).any():
            from .methods import host_summary

            prov = t.get("provenance") or []
            flags.append(
                f"{p['a']} vs {p['b']}: measured on {host_summary(prov, [p['a']])} vs {host_summary(prov, [p['b']])}; "
                "decode is host-bound, so this pair compares host CPUs as much as GPUs"
            )
    return flags


# ----------------------------------------------------------------------------- context and figures
def decode_context(t: dict, configs, pairs_decl, specs: dict, trace, figures: dict) -> dict:
    """Everything the decode-truth blocks of the template need; pure (no I/O)."""

    med = split_medians(t)
    have = [c for c in configs if c in set(med.dropna(subset=["compute_ms"])["config"])]
    multi = [c for c in have if med[med["config"] == c]["rank"].nunique() > 1]
    # recorded specs (provenance): a record of an older version may lack a field; tp 0 = never "more ranks"
    emulated = {c for c, s in specs.items() if s.get("emulate_tp")}
    specs_tp = {c: s.get("tp", 0) for c, s in specs.items()}
    sentences = (
        why_not_faster(med, pairs_decl, specs_tp, trace)
        + slowest_rank_sentences(med, multi, trace)
        + model_sentences(t, multi, trace)
        + twin_sentences(t, pairs_decl, emulated & set(have), trace)
        + overhead_sentences(t, have, trace)
    )
    views = [
        {"config": md_escape(c), "phase": ph, "table": md_table(views_table(t, c, ph))}
        for c in have
        for ph in ("decode", "prefill")
    ]
    return dict(
        any=bool(have),
        sentences=sentences,
        views=views,
        split_decode=md_table(split_table(med, have, "decode")),
        split_prefill=md_table(split_table(med, have, "prefill")),
        collectives=md_table(collectives_table(t, multi)) if multi else "",
        host_flags=[md_escape(f) for f in host_flags(t, pairs_decl)],
        figs=[figures[k] for k in [("phase_split", "decode"), ("phase_split", "prefill")] if figures.get(k)],
        rank_figs=[
            {"config": md_escape(c), "fig": figures.get(("rank_ops", c))} for c in multi if figures.get(("rank_ops", c))
        ],
    )


def decode_figures(t: dict, configs, draw, slug) -> None:
    """Phase split per rank (decode, prefill) and per-rank op time of multi-rank configs."""
    from .plots.decode import phase_split, rank_ops

    med = split_medians(t)
    if med.dropna(subset=["compute_ms"]).empty:
        return
    for phase in ("decode", "prefill"):
        draw(("phase_split", phase), phase_split, med, list(configs), phase, name=f"phase_split_{phase}")
    for c in configs:
        if t["rank_ops"][t["rank_ops"]["config"] == c]["rank"].nunique() > 1:
            draw(("rank_ops", c), rank_ops, t["rank_ops"], c, "decode", name=f"rank_ops_{slug(c)}")
