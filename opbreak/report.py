"""Step 4: aggregated and theory tables -> report/all.md context, figures, generated conclusions.

Pure where it can be: :func:`read_tables` is the only reader, :func:`build_context`
turns tables into a template context (no I/O), :func:`make_figures` is the only
writer of images, :func:`render` ties them together.

Traceability. Every number in a generated sentence is drawn through
:meth:`Trace.cite`, which records (table file, row key, column, raw value, format)
as an evidence row ``E<n>`` and returns the formatted text. The report prints the
evidence table; tests re-read the CSVs and check every cited cell and every number
in every sentence against it. Sentences never contain numbers typed in code.

Untrusted text. Config names, pair labels, hosts and versions come from files a
user wrote: they pass through :func:`md_escape` (tables, prose) or :func:`md_code`
(code spans) before they reach Markdown; figure file names use :func:`slug`.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .ops import FRAMEWORK_OPS, OPS, PHASES, UNATTRIBUTED
from .report_predict import PREDICT_TABLES, PREDICT_TEXT_COLS, predict_context, predict_figures, predicted_configs
from .stats import bootstrap_ci, repeats_for_ci

# ----------------------------------------------------------------------------- table contract
STATS_COLS = ["n", "median_ms", "mean_ms", "std_ms", "iqr_ms", "cv", "ci_lo_ms", "ci_hi_ms", "n_outliers",
              "unstable", "repeats_for_5pct"]
TABLES = {
    "ops_summary": ("ops_summary.csv", ["config", "phase", "op", *STATS_COLS, "calls", "modeled", "modeled_bytes",
                                        "phase_median_ms", "share", "layer_scale"]),
    "phase_summary": ("phase_summary.csv", ["config", "phase", *STATS_COLS]),
    "phase_totals": ("phase_totals.csv", ["config", "repeat", "phase", "e2e_ms", "steps", "phase_added_ms"]),
    "ops_repeats": ("ops_repeats.csv", ["config", "repeat", "rank", "phase", "op", "time_ms", "calls", "modeled"]),
    "steps": ("steps.csv", ["config", "repeat", "phase", "step", "context_len", "e2e_ms"]),
    "theory_ops": ("ops.csv", ["config", "phase", "op", "flops", "bytes", "comm_bytes", "calls_theory", "intensity",
                               "t_compute_ms", "t_memory_ms", "t_link_ms", "t_bound_ms", "bound", "measured_ms",
                               "modeled", "achieved_tflops", "achieved_GBps", "efficiency", "peak_tflops",
                               "mem_bw_GBps", "link_GBps"]),
    "pairs": ("pairs.csv", ["label", "a", "b", "phase", "op", "time_a_ms", "time_b_ms", "speedup", "speedup_lo",
                            "speedup_hi", "bound", "resource_ratio", "theory_speedup", "measured_over_theory",
                            "flagged", "modeled"]),
    "failures": ("failures.csv", ["config", "repeat", "error", "path"]),
    "vanilla": ("vanilla_vs_exact.csv", ["model", "component", "vanilla_flops", "exact_flops", "ratio"]),
    "allreduce": ("allreduce.csv", ["config", "kind", "n", "size_bytes", "measured_ms", "model_ms", "alpha_us",
                                    "bw_GBps", "source", "t_latency_ms", "t_bandwidth_ms", "phase"]),
    "decode_steps": ("decode_steps.csv", ["config", "step", "context_len", "t_bound_ms", "measured_ms"]),
    "ceilings": ("ceilings.csv", ["config", "gpu", "peak_tflops", "mem_bw_GBps", "link_GBps", "source"]),
}
TABLES.update(PREDICT_TABLES)  # predict mode: results/theory/predicted*.csv, efficiencies.csv, seed_claims.csv
# File shown in evidence rows (relative to the repository root).
TABLE_PATHS = {k: ("results/theory/" if k in ("theory_ops", "pairs", "vanilla", "allreduce", "decode_steps",
                                               "ceilings", *PREDICT_TABLES) else "results/aggregate/") + f for k, (f, _) in TABLES.items()}
BOOL_COLS = ("unstable", "modeled", "flagged")
TEXT_COLS = ("config", "phase", "op", "label", "a", "b", "bound", "model", "component", "kind", "source", "gpu",
             "error", "path") + PREDICT_TEXT_COLS
PHASE_OF = {p: i for i, p in enumerate(PHASES)}


def _default(fn, name):
    import inspect

    return inspect.signature(fn).parameters[name].default


# The statistics' own settings, so no level or target is typed into the report.
CI_PCT = f"{100 * _default(bootstrap_ci, 'level'):.0f}%"
TARGET_PCT = f"{100 * _default(repeats_for_ci, 'rel_halfwidth'):.0f}%"
NOT_OPS = set(FRAMEWORK_OPS) | {UNATTRIBUTED}


def _bool(s: pd.Series) -> pd.Series:
    if s.dtype == bool:
        return s
    return s.map(lambda v: str(v).strip().lower() in ("true", "1", "yes"))


def normalize(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Give a table its contract columns (missing ones NaN), typed booleans and text keys."""
    df = df.copy()
    if name == "vanilla" and "vanilla_flops" not in df and "seed_flops" in df:
        df = df.rename(columns={"seed_flops": "vanilla_flops"})
    for c in TABLES[name][1]:
        if c not in df:
            df[c] = np.nan
    for c in BOOL_COLS:
        if c in df:
            df[c] = _bool(df[c].fillna(False))
    for c in TEXT_COLS:
        if c in df:
            df[c] = df[c].map(lambda v: "" if pd.isna(v) else str(v)).astype(object)
    for c in TABLES[name][1]:
        if c not in TEXT_COLS and c not in BOOL_COLS:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df


def read_tables(paths: dict) -> dict:
    """paths: table name -> CSV path (+ 'provenance' -> JSON). Missing or empty files give empty tables."""
    out = {}
    for name, (_, cols) in TABLES.items():
        p = paths.get(name)
        df = pd.DataFrame(columns=cols)
        if p and Path(p).exists() and Path(p).stat().st_size > 0:
            try:
                df = pd.read_csv(p, keep_default_na=True, dtype={c: str for c in TEXT_COLS})
            except pd.errors.EmptyDataError:
                pass
        out[name] = normalize(name, df)
    prov = []
    p = paths.get("provenance")
    if p and Path(p).exists():
        try:
            prov = json.loads(Path(p).read_text() or "[]")
        except json.JSONDecodeError:
            prov = []
    out["provenance"] = prov if isinstance(prov, list) else [prov]
    return out


# ----------------------------------------------------------------------------- formatting and escaping
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~^$&])")


def md_escape(v) -> str:
    """Escape arbitrary text for Markdown prose and table cells (one line, no HTML, no links)."""
    s = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
    s = re.sub(r"[\r\n\t]+", " ", s)
    s = "".join(ch for ch in s if ch.isprintable())
    return _MD_SPECIAL.sub(r"\\\1", s)


def md_code(v) -> str:
    """A code span that cannot be broken out of (fence longer than any backtick run; pipes escaped)."""
    s = re.sub(r"[\r\n\t]+", " ", "" if v is None else str(v))
    s = "".join(ch for ch in s if ch.isprintable())
    run = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (run + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{fence}{pad}{s.replace('|', chr(92) + '|')}{pad}{fence}"


def slug(v, n=48) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(v)).strip("._") or "x"
    return s[:n]


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def f_num(v) -> str:
    if not _finite(v):
        return "–"
    v = float(v)
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"


def f_ms(v) -> str:
    return f"{f_num(v)} ms" if _finite(v) else "–"


def f_pct(v) -> str:
    return f"{100 * float(v):.1f}%" if _finite(v) else "–"


def f_x(v) -> str:
    return f"{float(v):.3g}×" if _finite(v) else "–"


def f_int(v) -> str:
    return f"{int(round(float(v)))}" if _finite(v) else "–"


def f_sci(v) -> str:
    if not _finite(v):
        return "–"
    v = float(v)
    return f"{v:.3e}" if v and (abs(v) >= 1e6 or abs(v) < 1e-3) else f"{v:.4g}"


FORMATS = {"num": f_num, "ms": f_ms, "pct": f_pct, "x": f_x, "int": f_int, "sci": f_sci}


def f_ci(lo, hi, unit=" ms") -> str:
    if not (_finite(lo) and _finite(hi)):
        return "–"
    return f"{f_num(lo)}–{f_num(hi)}{unit}"


# ----------------------------------------------------------------------------- evidence
@dataclass
class Evidence:
    id: str
    table: str
    key: dict
    column: str
    value: float
    fmt: str
    shown: str


@dataclass
class Sentence:
    text: str
    evidence: list = field(default_factory=list)
    topic: str = ""


class Trace:
    """Collects evidence rows; :meth:`cite` returns the formatted value and remembers its source."""

    def __init__(self):
        self.rows: list[Evidence] = []
        self._ids: dict = {}
        self.current: list[str] = []

    def cite(self, table: str, row, key_cols, column: str, fmt: str) -> str:
        key = {k: row[k] for k in key_cols}
        value = row[column]
        k = (table, tuple(key.items()), column)
        if k not in self._ids:
            eid = f"E{len(self.rows) + 1}"
            self._ids[k] = eid
            value = float(value) if not isinstance(value, str) else value
            self.rows.append(Evidence(eid, table, key, column, value, fmt, FORMATS[fmt](value)))
        eid = self._ids[k]
        if eid not in self.current:
            self.current.append(eid)
        return self.rows[int(eid[1:]) - 1].shown

    def sentence(self, text: str, topic="") -> Sentence:
        s = Sentence(text, list(self.current), topic)
        self.current = []
        return s


KEYS = {
    "ops_summary": ("config", "phase", "op"),
    "phase_summary": ("config", "phase"),
    "theory_ops": ("config", "phase", "op"),
    "pairs": ("a", "b", "phase", "op"),
    "allreduce": ("config", "kind", "phase", "n", "size_bytes"),
    "ceilings": ("config", "source"),
}


def _c(name) -> str:
    """A config or label in prose: escaped, bold."""
    return f"**{md_escape(name)}**"


def _op(op) -> str:
    return md_code(op)


def _join(items, last="and"):
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


# ----------------------------------------------------------------------------- conclusions
def dominant_ops(ops_summary: pd.DataFrame) -> pd.DataFrame:
    """Per config and phase, the measured row with the largest share (model and framework ops alike)."""
    d = ops_summary[np.isfinite(ops_summary["share"].astype(float))]
    if d.empty:
        return d
    idx = d.groupby(["config", "phase"])["share"].idxmax()
    return d.loc[idx].sort_values(["config", "phase"], key=lambda s: s.map(PHASE_OF) if s.name == "phase" else s)


def disagreements(pairs: pd.DataFrame, n=3) -> pd.DataFrame:
    d = pairs[np.isfinite(pairs["measured_over_theory"].astype(float)) & (pairs["measured_over_theory"] > 0)]
    if d.empty:
        return d
    d = d.assign(_dev=np.abs(np.log(d["measured_over_theory"].astype(float))))
    return d.sort_values("_dev", ascending=False).head(n).drop(columns="_dev")


def generate_conclusions(t: dict, configs, pairs_decl, trace: Trace) -> list[Sentence]:
    """Seed-style conclusions, each from table rows; returns sentences with their evidence ids."""
    out: list[Sentence] = []
    ops = t["ops_summary"]
    ceil = t["ceilings"]
    link_of = {}
    for r in ceil.itertuples():
        if _finite(r.link_GBps) and r.config not in link_of:
            link_of[r.config] = r._asdict()
    present = [c for c in configs if c in set(ops["config"])]

    # 1. Which op dominates each phase, grouped by op (the seed's pie-chart conclusion).
    dom = dominant_ops(ops[ops["config"].isin(present)])
    for phase in PHASES:
        d = dom[dom["phase"] == phase]
        if d.empty:
            continue
        parts = []
        for op in [o for o in OPS if o in set(d["op"])] + sorted(set(d["op"]) - set(OPS)):
            cfgs = []
            for cfg in [c for c in present if c in set(d.loc[d["op"] == op, "config"])]:
                row = d[(d["config"] == cfg) & (d["op"] == op)].iloc[0]
                share = trace.cite("ops_summary", row, KEYS["ops_summary"], "share", "pct")
                extra = ""
                if cfg in link_of:
                    lk = link_of[cfg]
                    extra = f", link {trace.cite('ceilings', lk, KEYS['ceilings'], 'link_GBps', 'num')} GB/s"
                cfgs.append(f"{_c(cfg)} ({share} of the phase{extra})")
            kind = " (framework time, not a model operator)" if op in NOT_OPS else ""
            parts.append(f"{_op(op)}{kind} on {_join(cfgs)}")
        out.append(trace.sentence(f"In **{phase}**, the largest share of time goes to " + "; ".join(parts) + ".",
                                  topic="dominant"))

    # 2. Prefill vs decode per config.
    ps = t["phase_summary"]
    for cfg in present:
        rows = {r["phase"]: r for _, r in ps[ps["config"] == cfg].iterrows()}
        if not all(p in rows for p in PHASES):
            continue
        pre = trace.cite("phase_summary", rows["prefill"], KEYS["phase_summary"], "median_ms", "ms")
        dec = trace.cite("phase_summary", rows["decode"], KEYS["phase_summary"], "median_ms", "ms")
        longer = "decode" if rows["decode"]["median_ms"] > rows["prefill"]["median_ms"] else "prefill"
        out.append(trace.sentence(f"On {_c(cfg)}, prefill takes {pre} and decode {dec} (medians over repeats): "
                                  f"**{longer}** is the longer phase.", topic="phases"))

    # 3. Pairs: end-to-end, the two ops that matter most (largest time on B), then the other flagged ops.
    pr = t["pairs"]
    for p in pairs_decl:
        a, b = p["a"], p["b"]
        d = pr[(pr["a"] == a) & (pr["b"] == b) & np.isfinite(pr["speedup"].astype(float))]
        if d.empty:
            continue
        label = p.get("label") or f"{a} vs {b}"
        for phase in PHASES:
            q = d[d["phase"] == phase]
            if q.empty:
                continue
            e2e = q[q["op"] == "end_to_end"]
            ops_q = q[q["op"].isin(OPS) & ~q["op"].isin(NOT_OPS)]
            top = ops_q.sort_values("time_b_ms", ascending=False).head(2)
            for _, r in pd.concat([e2e, top]).iterrows():
                out.append(_pair_sentence(r, label, trace, t["theory_ops"], t["allreduce"]))
            rest = ops_q[ops_q["flagged"] & ~ops_q.index.isin(top.index)]
            if len(rest):
                k = KEYS["pairs"]
                items = []
                for _, r in rest.sort_values("measured_over_theory").iterrows():
                    items.append(f"{_op(r['op'])} {trace.cite('pairs', r, k, 'measured_over_theory', 'num')}")
                out.append(trace.sentence(
                    f"{md_escape(label)}, {phase}: further ops off theory (measured/theory): " + ", ".join(items) + ".",
                    topic="pairs"))

    # 4. All-reduce: latency- or bandwidth-dominated per config and phase (the seed's puzzle).
    ar = t["allreduce"]
    arp = ar[(ar["kind"] == "phase") & np.isfinite(ar["t_latency_ms"].astype(float))
             & np.isfinite(ar["t_bandwidth_ms"].astype(float))]
    for cfg in present:
        for phase in PHASES:
            q = arp[(arp["config"] == cfg) & (arp["phase"] == phase)]
            if q.empty:
                continue
            r = q.iloc[0]
            k = KEYS["allreduce"]
            size = trace.cite("allreduce", r, k, "size_bytes", "int")
            measured = np.isfinite(float(r["measured_ms"]))
            meas = trace.cite("allreduce", r, k, "measured_ms", "ms") if measured else None
            model = trace.cite("allreduce", r, k, "model_ms", "ms")
            lat = trace.cite("allreduce", r, k, "t_latency_ms", "ms")
            bw = trace.cite("allreduce", r, k, "t_bandwidth_ms", "ms")
            if r["t_latency_ms"] > r["t_bandwidth_ms"]:
                why = ("**latency-bound**: the per-hop latency terms outweigh the bandwidth term, and they grow "
                       "with the number of ranks, so adding GPUs does not speed this all-reduce up")
            else:
                why = "**bandwidth-bound**: a faster link shortens it roughly in proportion"
            out.append(trace.sentence(
                f"On {_c(cfg)}, a {phase} `all_reduce` of {size} bytes "
                + (f"takes {meas} measured vs {model} in the ring model" if measured else
                   f"is modeled, not measured (emulated TP): {model} in the ring model")
                + f", whose latency term is {lat} and bandwidth term {bw}: it is {why}.", topic="allreduce"))
            sc = ar[(ar["config"] == cfg) & (ar["kind"] == "tp_scaling") & (ar["phase"] == phase)
                    & np.isfinite(ar["model_ms"].astype(float))].sort_values("n")
            if len(sc) >= 2:
                lo, hi = sc.iloc[0], sc.iloc[-1]
                n0, n1 = trace.cite("allreduce", lo, k, "n", "int"), trace.cite("allreduce", hi, k, "n", "int")
                t0, t1 = trace.cite("allreduce", lo, k, "model_ms", "ms"), trace.cite("allreduce", hi, k, "model_ms", "ms")
                if hi["model_ms"] > lo["model_ms"]:
                    why = ("more ranks do not shrink the message each rank sends around the ring, while the latency "
                           "term grows with every added rank")
                    trend = "grows"
                else:
                    why = "the model predicts a gain from more ranks"
                    trend = "shrinks"
                out.append(trace.sentence(
                    f"With this link and message size, the model's {phase} `all_reduce` {trend} from {t0} on {n0} "
                    f"ranks to {t1} on {n1} ranks: {why}.", topic="allreduce"))

    # 5. Theory: the dominant model op per config and phase against its roofline.
    th = t["theory_ops"]
    dom_model = dominant_ops(ops[ops["config"].isin(present) & ~ops["op"].isin(NOT_OPS)])
    for _, drow in dom_model.iterrows():
        q = th[(th["config"] == drow["config"]) & (th["phase"] == drow["phase"]) & (th["op"] == drow["op"])]
        q = q[np.isfinite(q["efficiency"].astype(float))]
        if q.empty:
            continue
        r = q.iloc[0]
        k = KEYS["theory_ops"]
        eff = trace.cite("theory_ops", r, k, "efficiency", "pct")
        tb = trace.cite("theory_ops", r, k, "t_bound_ms", "ms")
        me = trace.cite("theory_ops", r, k, "measured_ms", "ms")
        out.append(trace.sentence(
            f"On {_c(r['config'])} in {r['phase']}, the largest model op {_op(r['op'])} is **{md_escape(r['bound'])}"
            f"-bound** in theory ({tb} at the roofline) and takes {me}: {eff} of roofline efficiency.",
            topic="theory"))

    # 6. Stability: the least stable figures, and unstable phase totals.
    st = ops[np.isfinite(ops["cv"].astype(float)) & ops["unstable"] & ops["config"].isin(present)]
    for _, r in st.sort_values("cv", ascending=False).head(3).iterrows():
        k = KEYS["ops_summary"]
        cv = trace.cite("ops_summary", r, k, "cv", "pct")
        n = trace.cite("ops_summary", r, k, "n", "int")
        need = trace.cite("ops_summary", r, k, "repeats_for_5pct", "int")
        out.append(trace.sentence(
            f"{_op(r['op'])} in {r['phase']} on {_c(r['config'])} is unstable: CV {cv} over {n} repeats; "
            f"`repeats_for_5pct` is {need}.", topic="stability"))
    pst = ps[ps["unstable"] & ps["config"].isin(present)]
    for _, r in pst.iterrows():
        cv = trace.cite("phase_summary", r, KEYS["phase_summary"], "cv", "pct")
        n = trace.cite("phase_summary", r, KEYS["phase_summary"], "n", "int")
        out.append(trace.sentence(
            f"The {r['phase']} end-to-end time of {_c(r['config'])} varies by CV {cv} over {n} repeats "
            f"(flagged unstable): compare it only through its CI.", topic="stability"))

    # 7. Modeled ops (not measured).
    mod = ops[ops["modeled"] & ops["config"].isin(present)]
    for cfg in present:
        m = mod[mod["config"] == cfg]
        if len(m):
            names = _join([_op(o) for o in _order_ops(m["op"].unique())])
            verb = "is" if len(m["op"].unique()) == 1 else "are"
            out.append(trace.sentence(f"On {_c(cfg)}, {names} {verb} modeled, not measured (the time shown is the "
                                      "theory's; see Methods).", topic="modeled"))
    return out


def _pair_sentence(r, label, trace: Trace, theory_ops: pd.DataFrame, allreduce: pd.DataFrame) -> Sentence:
    k = KEYS["pairs"]
    sp = trace.cite("pairs", r, k, "speedup", "x")
    ci = ""
    if _finite(r["speedup_lo"]) and _finite(r["speedup_hi"]):
        ci = (f" (CI {trace.cite('pairs', r, k, 'speedup_lo', 'x')}–"
              f"{trace.cite('pairs', r, k, 'speedup_hi', 'x')})")
    faster = "faster" if r["speedup"] >= 1 else "slower"
    what = "end-to-end" if r["op"] == "end_to_end" else _op(r["op"])
    mod = " (modeled)" if r["modeled"] else ""
    text = (f"{md_escape(label)}, {r['phase']} {what}{mod}: {_c(r['a'])} is {faster} than {_c(r['b'])}, "
            f"speedup {sp}{ci}")
    if _finite(r["theory_speedup"]):
        th = trace.cite("pairs", r, k, "theory_speedup", "x")
        bound = md_escape(r["bound"]) if r["bound"] else ""
        text += f"; the roofline predicts {th}"
        if bound and bound != "mixed":
            text += f" for this **{bound}-bound** op"
            if _finite(r["resource_ratio"]):
                text += f" ({bound} resource ratio {trace.cite('pairs', r, k, 'resource_ratio', 'x')})"
        if _finite(r["measured_over_theory"]):
            mot = trace.cite("pairs", r, k, "measured_over_theory", "num")
            if r["flagged"] and r["measured_over_theory"] < 1:
                text += f": it **falls short** of theory (measured/theory {mot})"
                text += _shortfall_reason(r, trace, theory_ops, allreduce)
            elif r["flagged"]:
                text += f": it **exceeds** theory (measured/theory {mot})"
            else:
                text += f": it agrees with theory (measured/theory {mot}, not flagged)"
    return trace.sentence(text + ".", topic="pairs")


def _shortfall_reason(r, trace: Trace, theory_ops: pd.DataFrame, allreduce: pd.DataFrame) -> str:
    """Which resource explains a shortfall: latency for collectives, else the roofline efficiency of A vs B."""
    if r["op"] in ("all_reduce",) and len(allreduce):
        q = allreduce[(allreduce["config"] == r["a"]) & (allreduce["kind"] == "phase") & (allreduce["phase"] == r["phase"])]
        q = q[np.isfinite(q["t_latency_ms"].astype(float))]
        if len(q) and q.iloc[0]["t_latency_ms"] > q.iloc[0]["t_bandwidth_ms"]:
            row = q.iloc[0]
            lat = trace.cite("allreduce", row, KEYS["allreduce"], "t_latency_ms", "ms")
            bw = trace.cite("allreduce", row, KEYS["allreduce"], "t_bandwidth_ms", "ms")
            return (f"; on {_c(r['a'])} its messages are small enough that the ring model's latency term ({lat}) "
                    f"outweighs the bandwidth term ({bw}): link latency, not bandwidth, limits it")
    if r["op"] == "end_to_end" or not len(theory_ops):
        return ""
    eff = {}
    for side in ("a", "b"):
        q = theory_ops[(theory_ops["config"] == r[side]) & (theory_ops["phase"] == r["phase"])
                       & (theory_ops["op"] == r["op"])]
        q = q[np.isfinite(q["efficiency"].astype(float))]
        if len(q):
            eff[side] = q.iloc[0]
    if len(eff) < 2:
        return ""
    ea = trace.cite("theory_ops", eff["a"], KEYS["theory_ops"], "efficiency", "pct")
    eb = trace.cite("theory_ops", eff["b"], KEYS["theory_ops"], "efficiency", "pct")
    ba, bb = md_escape(eff["a"]["bound"]), md_escape(eff["b"]["bound"])
    note = ""
    if eff["a"]["bound"] != eff["b"]["bound"]:
        note = f" (the bound changes from {bb} on {_c(r['b'])} to {ba} on {_c(r['a'])})"
    if eff["a"]["efficiency"] < eff["b"]["efficiency"]:
        verdict = f"so {_c(r['a'])} uses its {ba} resource less well than {_c(r['b'])} does"
    else:
        verdict = "so the gap is not an efficiency loss on A; the roofline's per-rank costs are the suspect"
    return f": {_c(r['a'])} reaches {ea} of its {ba} roofline against {eb} on {_c(r['b'])}{note}, {verdict}"


def _order_ops(ops):
    return [o for o in OPS if o in set(ops)] + sorted(set(ops) - set(OPS))


# ----------------------------------------------------------------------------- tables for the template
def md_table(df: pd.DataFrame, align=None) -> str:
    """DataFrame of display strings -> GitHub Markdown table (cells must already be escaped)."""
    if df is None or df.empty:
        return "_(no rows)_"
    cols = list(df.columns)
    align = align or ["---:" if df[c].map(lambda v: bool(re.match(r"^[-–0-9.,%×e+ ms]+$", str(v)))).all()
                      else ":---" for c in cols]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join(align) + " |"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def _phase_sort(df):
    return df.assign(_p=df["phase"].map(PHASE_OF)).sort_values(["_p"]).drop(columns="_p")


def op_table(ops: pd.DataFrame, theory: pd.DataFrame, cfg, phase) -> pd.DataFrame:
    d = ops[(ops["config"] == cfg) & (ops["phase"] == phase)]
    th = theory[(theory["config"] == cfg) & (theory["phase"] == phase)].set_index("op") if len(theory) else None
    rows = []
    for _, r in d.iterrows():
        flags = []
        if r["unstable"]:
            flags.append("unstable")
        if _finite(r["n_outliers"]) and r["n_outliers"] > 0:
            flags.append(f"{f_int(r['n_outliers'])} outlier(s)")
        if r["modeled"]:
            flags.append("modeled")
        if r["op"] in NOT_OPS:
            flags.append("framework")
        med = r["median_ms"]
        if r["modeled"] and th is not None and r["op"] in th.index:
            med = th.loc[r["op"], "measured_ms"]
            if isinstance(med, pd.Series):
                med = med.iloc[0]
        rows.append({"op": md_code(r["op"]), "median": f_ms(med), CI_PCT + " CI": f_ci(r["ci_lo_ms"], r["ci_hi_ms"]),
                     "CV": f_pct(r["cv"]), "share": f_pct(r["share"]), "calls": f_int(r["calls"]),
                     "n": f_int(r["n"]), "flags": ", ".join(flags)})
    return pd.DataFrame(rows)


def build_context(t: dict, configs, pairs_decl, study, figures: dict, params: dict | None = None) -> dict:
    """Everything the template needs; pure (no I/O)."""
    params = params or {}
    ops, ps, th, pr = t["ops_summary"], t["phase_summary"], t["theory_ops"], t["pairs"]
    prov = t["provenance"]
    trace = Trace()
    present = [c for c in configs if c in set(ops["config"])]
    sentences = generate_conclusions(t, configs, pairs_decl, trace)
    predict = predict_context(t, configs, pairs_decl, trace, figures)

    # --- status of every declared config
    status_rows, missing = [], []
    for cfg in configs:
        have = {name: cfg in set(t[name]["config"]) for name in ("ops_summary", "phase_summary", "steps",
                                                                   "theory_ops")}
        nprov = sum(1 for p in prov if p.get("config") == cfg)
        failed = t["failures"][t["failures"]["config"] == cfg]
        if len(failed):  # the measure job's last attempt recorded its error (aggregate's failures.csv)
            reps = ", ".join(str(int(float(r))) for r in failed["repeat"])
            what = "failed" if not have["ops_summary"] else "partly failed"
            missing.append({"config": md_escape(cfg),
                            "why": f"measure {what} (repeats {reps}): {md_escape(str(failed['error'].iloc[0]))}",
                            "provenance records": str(nprov)})
        elif not have["ops_summary"]:
            missing.append({"config": md_escape(cfg), "why": "no rows in `ops_summary.csv` (measure failed or not run)",
                            "provenance records": str(nprov)})
        elif not all(have.values()):
            lacking = ", ".join(md_code(k) for k, v in have.items() if not v)
            missing.append({"config": md_escape(cfg), "why": f"partial: no rows in {lacking}",
                            "provenance records": str(nprov)})
    extra = sorted(set(ops["config"]) - set(configs))
    for cfg in extra:
        missing.append({"config": md_escape(cfg), "why": "in the tables but not in the config (ignored)",
                        "provenance records": str(sum(1 for p in prov if p.get("config") == cfg))})

    spec_of = {}
    for p in prov:
        spec_of.setdefault(p.get("config"), p.get("spec", {}))
    for cfg in configs:
        s = spec_of.get(cfg, {})
        pre = ps[(ps["config"] == cfg) & (ps["phase"] == "prefill")]
        dec = ps[(ps["config"] == cfg) & (ps["phase"] == "decode")]
        model = s.get("model", {})
        status_rows.append({
            "config": md_escape(cfg),
            "status": "ok" if cfg in present else ("predicted only" if cfg in predicted_configs(t) else "**missing**"),
            "backend": md_escape(s.get("backend", "")), "gpu": md_escape(s.get("gpu", "")),
            "tp": md_escape(s.get("tp", "")), "GPUs": md_escape(s.get("num_gpus", "")),
            "model": md_escape(model.get("name", "") if isinstance(model, dict) else model),
            "batch": md_escape(s.get("batch", "")),
            "in/out": md_escape(f"{s.get('input_len', '')}/{s.get('output_len', '')}") if s else "",
            "dtype": md_escape(s.get("dtype", "")),
            "repeats": str(sum(1 for p in prov if p.get("config") == cfg)),
            "prefill median": f_ms(pre["median_ms"].iloc[0]) if len(pre) else "–",
            "decode median": f_ms(dec["median_ms"].iloc[0]) if len(dec) else "–",
        })

    dom = dominant_ops(ops[ops["config"].isin(present)])
    dom_tbl = pd.DataFrame([{"config": md_escape(r["config"]), "phase": r["phase"], "dominant op": md_code(r["op"]),
                             "share": f_pct(r["share"]), "median": f_ms(r["median_ms"]),
                             "phase median": f_ms(r["phase_median_ms"])} for _, r in dom.iterrows()])
    dis = disagreements(pr[pr["a"].isin(present) & pr["b"].isin(present)])
    dis_tbl = pd.DataFrame([{"pair": md_escape(r["label"]), "phase": r["phase"], "op": md_code(r["op"]),
                             "speedup": f_x(r["speedup"]), CI_PCT + " CI": f_ci(r["speedup_lo"], r["speedup_hi"], "×"),
                             "theory": f_x(r["theory_speedup"]), "measured/theory": f_num(r["measured_over_theory"]),
                             "bound": md_escape(r["bound"]), "flagged": "yes" if r["flagged"] else "no"}
                            for _, r in dis.iterrows()])

    # --- per config
    per_config = []
    for cfg in configs:
        entry = {"name": cfg, "name_md": md_escape(cfg), "present": cfg in present, "pie": figures.get(("pie", cfg)),
                 "anchor": "cfg-" + slug(cfg).lower(), "phases": []}
        for phase in PHASES:
            tbl = op_table(ops, th, cfg, phase)
            row = ps[(ps["config"] == cfg) & (ps["phase"] == phase)]
            total = ""
            if len(row):
                r = row.iloc[0]
                total = (f"phase end-to-end median {f_ms(r['median_ms'])} ({CI_PCT} CI {f_ci(r['ci_lo_ms'], r['ci_hi_ms'])}, "
                         f"CV {f_pct(r['cv'])}, n = {f_int(r['n'])})")
            entry["phases"].append({"phase": phase, "table": md_table(tbl), "total": total})
        per_config.append(entry)

    # --- pairs
    pair_entries = []
    for i, p in enumerate(pairs_decl):
        a, b = p["a"], p["b"]
        label = p.get("label") or f"{a} vs {b}"
        ok = a in present and b in present
        d = pr[(pr["a"] == a) & (pr["b"] == b)]
        d = _phase_sort(d) if len(d) else d
        rows = [{"phase": r["phase"], "op": md_code(r["op"]) + (" (modeled)" if r["modeled"] else ""),
                 "A ms": f_num(r["time_a_ms"]), "B ms": f_num(r["time_b_ms"]), "speedup": f_x(r["speedup"]),
                 CI_PCT + " CI": f_ci(r["speedup_lo"], r["speedup_hi"], "×"), "bound": md_escape(r["bound"]),
                 "resource ratio": f_x(r["resource_ratio"]), "theory": f_x(r["theory_speedup"]),
                 "measured/theory": f_num(r["measured_over_theory"]), "flagged": "**yes**" if r["flagged"] else ""}
                for _, r in d.iterrows()]
        why = ""
        if not ok:
            why = "not compared: " + _join([md_escape(c) for c in (a, b) if c not in present]) + " has no data"
        pair_entries.append({"label": md_escape(label), "a": md_escape(a), "b": md_escape(b), "ok": ok, "why": why,
                             "bars": figures.get(("pair_bars", i)), "speedup": figures.get(("pair_speedup", i)),
                             "table": md_table(pd.DataFrame(rows)),
                             "sentences": [s for s in sentences if s.topic == "pairs" and md_escape(label) in s.text]})

    # --- stability
    unst = ops[ops["unstable"] & ops["config"].isin(present)].sort_values("cv", ascending=False)
    stab_rows = [{"config": md_escape(r["config"]), "phase": r["phase"], "op": md_code(r["op"]), "CV": f_pct(r["cv"]),
                  "median": f_ms(r["median_ms"]), "IQR": f_ms(r["iqr_ms"]), "outliers": f_int(r["n_outliers"]),
                  "n": f_int(r["n"]), "repeats for CI < " + TARGET_PCT: f_int(r["repeats_for_5pct"])}
                 for _, r in unst.iterrows()]
    out_rows = ops[(ops["n_outliers"].fillna(0) > 0) & ops["config"].isin(present)]
    outl = [{"config": md_escape(r["config"]), "phase": r["phase"], "op": md_code(r["op"]),
             "outliers": f_int(r["n_outliers"]), "n": f_int(r["n"]), "median": f_ms(r["median_ms"]),
             "mean": f_ms(r["mean_ms"])} for _, r in out_rows.iterrows()]
    ps_rows = [{"config": md_escape(r["config"]), "phase": r["phase"], "median": f_ms(r["median_ms"]),
                CI_PCT + " CI": f_ci(r["ci_lo_ms"], r["ci_hi_ms"]), "CV": f_pct(r["cv"]), "IQR": f_ms(r["iqr_ms"]),
                "outliers": f_int(r["n_outliers"]), "unstable": "**yes**" if r["unstable"] else "no",
                "repeats for CI < " + TARGET_PCT: f_int(r["repeats_for_5pct"]), "n": f_int(r["n"])}
               for _, r in ps[ps["config"].isin(present)].iterrows()]

    # --- theory
    th_tables = []
    for cfg in present:
        d = th[th["config"] == cfg]
        if d.empty:
            continue
        d = _phase_sort(d)
        rows = [{"phase": r["phase"], "op": md_code(r["op"]) + (" (modeled)" if r["modeled"] else ""),
                 "FLOPs": f_sci(r["flops"]), "bytes": f_sci(r["bytes"]), "comm bytes": f_sci(r["comm_bytes"]),
                 "intensity": f_num(r["intensity"]), "bound": md_escape(r["bound"]), "roofline": f_ms(r["t_bound_ms"]),
                 "measured": f_ms(r["measured_ms"]), "efficiency": f_pct(r["efficiency"]),
                 "TFLOP/s": f_num(r["achieved_tflops"]), "GB/s": f_num(r["achieved_GBps"])}
                for _, r in d.iterrows()]
        th_tables.append({"config": md_escape(cfg), "table": md_table(pd.DataFrame(rows))})
    van = t["vanilla"]
    van_tbl = pd.DataFrame([{"model": md_escape(r["model"]),
                             **({"tokens": f_int(r["tokens"])} if "tokens" in van else {}),
                             "component": md_escape(r["component"]),
                             "vanilla GPT FLOPs": f_sci(r["vanilla_flops"]), "exact FLOPs": f_sci(r["exact_flops"]),
                             "exact / vanilla": f_num(r["ratio"])} for _, r in van.iterrows()])
    ar = t["allreduce"]
    ar_rows = [{"config": md_escape(r["config"]), "kind": md_escape(r["kind"]), "phase": md_escape(r["phase"]),
                "ranks": f_int(r["n"]), "size [B]": f_int(r["size_bytes"]), "measured": f_ms(r["measured_ms"]),
                "model": f_ms(r["model_ms"]), "latency term": f_ms(r["t_latency_ms"]),
                "bandwidth term": f_ms(r["t_bandwidth_ms"]), "alpha [us]": f_num(r["alpha_us"]),
                "B [GB/s]": f_num(r["bw_GBps"]), "source": md_escape(r["source"])}
               for _, r in ar[ar["kind"] != "sweep"].sort_values(["config", "kind", "phase", "n"]).iterrows()]
    ar_fit = ar.drop_duplicates(["config", "source"])
    ar_fit_rows = [{"config": md_escape(r["config"]), "ranks": f_int(r["n"]), "alpha [us]": f_num(r["alpha_us"]),
                    "B [GB/s]": f_num(r["bw_GBps"]), "source": md_escape(r["source"]),
                    "sweep sizes": str(int(((ar["config"] == r["config"]) & (ar["kind"] == "sweep")).sum()))}
                   for _, r in ar_fit.iterrows()]
    ceil_rows = [{"config": md_escape(r["config"]), "gpu": md_escape(r["gpu"]), "peak TFLOP/s": f_num(r["peak_tflops"]),
                  "memory GB/s": f_num(r["mem_bw_GBps"]), "link GB/s": f_num(r["link_GBps"]),
                  "source": md_escape(r["source"])} for _, r in t["ceilings"].iterrows()]

    evidence_rows = [{"id": f'<a id="{e.id.lower()}"></a>{e.id}', "table": md_code(TABLE_PATHS[e.table]),
                      "row": md_escape(", ".join(f"{k}={v}" for k, v in e.key.items())), "column": md_code(e.column),
                      "value": md_code(repr(e.value)), "shown": md_escape(e.shown)} for e in trace.rows]

    return dict(
        study=md_escape(study),
        ci_pct=CI_PCT, target_pct=TARGET_PCT,
        params={k: md_escape(v) for k, v in params.items()},
        configs=[md_escape(c) for c in configs],
        n_configs=len(configs), n_present=len(present), n_pairs=len(pairs_decl),
        status_table=md_table(pd.DataFrame(status_rows)),
        missing=missing, missing_table=md_table(pd.DataFrame(missing)) if missing else "",
        dominant_table=md_table(dom_tbl),
        disagreement_table=md_table(dis_tbl),
        sentences=sentences,
        per_config=per_config,
        pairs=pair_entries,
        fig=figures,
        stability_table=md_table(pd.DataFrame(stab_rows)),
        outlier_table=md_table(pd.DataFrame(outl)),
        phase_table=md_table(pd.DataFrame(ps_rows)),
        theory_tables=th_tables,
        vanilla_table=md_table(van_tbl),
        allreduce_table=md_table(pd.DataFrame(ar_rows)),
        allreduce_fit_table=md_table(pd.DataFrame(ar_fit_rows)),
        ceilings_table=md_table(pd.DataFrame(ceil_rows)),
        methods=methods(t, configs),
        predict=predict,
        evidence=trace.rows,
        evidence_table=md_table(pd.DataFrame(evidence_rows), align=[":---"] * 6),
    )


def methods(t: dict, configs) -> list[dict]:
    """Per config: how it was measured, all from provenance records and the aggregated tables."""
    prov = t["provenance"]
    ops = t["ops_summary"]
    out = []
    for cfg in configs:
        recs = [p for p in prov if p.get("config") == cfg]
        if not recs:
            out.append({"config": md_escape(cfg), "present": False, "items": [], "topology": ""})
            continue
        spec = recs[0].get("spec", {})

        def uniq(get):
            vals = []
            for r in recs:
                v = get(r)
                v = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)
                if v not in vals:
                    vals.append(v)
            return "; ".join(vals)

        o = ops[ops["config"] == cfg]
        scale = o["layer_scale"].dropna()
        scale_txt = "none (full depth measured)"
        if len(scale) and float(scale.iloc[0]) != 1:
            scale_txt = (f"{md_escape(spec.get('num_layers'))} of {md_escape(spec.get('model_layers'))} layers measured; "
                         f"per-layer ops scaled by layer_scale = {f_num(scale.iloc[0])} in aggregate")
        modeled = _order_ops(o.loc[o["modeled"], "op"].unique())
        env = {k: v for r in recs for k, v in (r.get("env") or {}).items() if v is not None}
        started = sorted(str(r.get("started", "")) for r in recs)
        finished = sorted(str(r.get("finished", "")) for r in recs)
        items = [
            ("timing method", md_escape(uniq(lambda r: r.get("spec", {}).get("timing")))),
            ("repeats", f"{len(recs)} (repeat ids {md_escape(', '.join(str(r.get('repeat')) for r in recs))}); "
                        f"warm-up passes {md_escape(spec.get('warmup', '–'))}"),
            ("host", md_escape(uniq(lambda r: r.get("host")))),
            ("devices", md_escape(uniq(lambda r: _devices(r.get("devices"))))
             + f" (device count {md_escape(uniq(lambda r: r.get('device_count')))})"),
            ("versions", md_escape(uniq(lambda r: ", ".join(f"{k} {v}" for k, v in (r.get("versions") or {}).items()
                                                            if v)))),
            ("environment", md_escape(", ".join(f"{k}={v}" for k, v in sorted(env.items())))
             if env else "none of the recorded variables set"),
            ("measured vs modeled", ("modeled (not measured): " + ", ".join(md_code(m) for m in modeled)) if modeled
             else "all ops measured"),
            ("truncated-layer scaling", scale_txt),
            ("emulated TP", md_escape(spec.get("emulate_tp", False))),
            ("run window", md_escape(f"{started[0]} .. {finished[-1]}")),
        ]
        clocks = uniq(lambda r: r.get("driver_clocks"))
        topo = uniq(lambda r: r.get("topology"))
        out.append({"config": md_escape(cfg), "present": True, "items": items,
                    "topology": _fence(topo) if topo and topo != "None" else "",
                    "clocks": _fence(clocks) if clocks and clocks != "None" else ""})
    return out


def _devices(devs) -> str:
    if not isinstance(devs, list):
        return str(devs)
    out = []
    for d in dict.fromkeys(devs):
        out.append(f"{devs.count(d)} × {d}")
    return ", ".join(out)


def _fence(text: str) -> str:
    text = str(text).replace("\r", "")
    run = max((len(m) for m in re.findall(r"`+", text)), default=0)
    f = "`" * max(3, run + 1)
    return f"{f}text\n{text.rstrip()}\n{f}"


# ----------------------------------------------------------------------------- figures and rendering
def figure_plan(configs, pairs_decl) -> dict:
    """key -> file name, unique and safe whatever the config names are."""
    plan, used = {}, set()

    def add(key, stem):
        name, i = stem, 2
        while name in used:
            name, i = f"{stem}-{i}", i + 1
        used.add(name)
        plan[key] = f"{name}.png"

    for i, c in enumerate(configs):
        add(("pie", c), f"pie_{slug(c)}")
    for i, p in enumerate(pairs_decl):
        add(("pair_bars", i), f"pair{i + 1}_bars_{slug(p['a'], 24)}_vs_{slug(p['b'], 24)}")
        add(("pair_speedup", i), f"pair{i + 1}_speedup_{slug(p['a'], 24)}_vs_{slug(p['b'], 24)}")
    for k in ("decode_steps", "phase_totals", "stability_cv", "repeat_spread", "roofline", "efficiency", "allreduce"):
        add(k, k)
    return plan


def make_figures(t: dict, configs, pairs_decl, fig_dir, unstable_cv=0.1, rel_dir="figures") -> dict:
    """Draw every figure; returns key -> relative path for the template (only figures that were drawn)."""
    from . import plots

    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    plan = figure_plan(configs, pairs_decl)
    ops = t["ops_summary"]
    present = [c for c in configs if c in set(ops["config"])]
    modeled = t["theory_ops"][t["theory_ops"]["modeled"]] if len(t["theory_ops"]) else t["theory_ops"]
    done = {}

    def draw(key, fn, *args):
        path = fig_dir / plan[key]
        fn(*args, path)
        done[key] = f"{rel_dir}/{plan[key]}"

    for c in present:
        draw(("pie", c), plots.pie_config, ops, modeled, c)
    for i, p in enumerate(pairs_decl):
        if p["a"] in present and p["b"] in present:
            label = p.get("label") or f"{p['a']} vs {p['b']}"
            draw(("pair_bars", i), plots.pair_bars, ops, p["a"], p["b"], label)
            draw(("pair_speedup", i), plots.pair_speedup, t["pairs"], label, p["a"], p["b"])
    draw("decode_steps", plots.decode_steps, t["steps"], t["decode_steps"], present)
    draw("phase_totals", plots.phase_totals, t["phase_summary"], t["phase_totals"], present)
    draw("stability_cv", lambda o, u, path: plots.stability_cv(o, u, path, present), ops[ops["config"].isin(present)],
         unstable_cv)
    draw("repeat_spread", plots.repeat_spread, t["phase_totals"], t["phase_summary"], present)
    draw("roofline", plots.roofline, t["theory_ops"], t["ceilings"], present)
    draw("efficiency", plots.efficiency, t["theory_ops"][t["theory_ops"]["config"].isin(present)], present)
    draw("allreduce", plots.allreduce, t["allreduce"], present)

    def draw_named(key, fn, *args, name):
        plan[key] = f"{name}.png"
        draw(key, fn, *args)

    predict_figures(t, configs, draw_named, slug)
    return done


def environment(template_dir):
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir)), autoescape=False,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters["md"] = md_escape
    env.filters["code"] = md_code
    for name, f in FORMATS.items():
        env.filters[name] = f
    return env


def render(paths: dict, out_md, fig_dir, configs, pairs_decl, study, template, params=None) -> dict:
    """Read tables, draw figures, render the template to ``out_md``; returns stage timings (s)."""
    from .io import atomic_write_text

    params = params or {}
    timings = {}
    t0 = time.perf_counter()
    t = read_tables(paths)
    timings["read"] = time.perf_counter() - t0
    out_md, fig_dir = Path(out_md), Path(fig_dir)
    rel = Path(_relpath(fig_dir, out_md.parent)).as_posix()
    t1 = time.perf_counter()
    figs = make_figures(t, configs, pairs_decl, fig_dir, float(params.get("unstable_cv", 0.1)), rel)
    timings["figures"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    ctx = build_context(t, configs, pairs_decl, study, figs, params)
    template = Path(template)
    text = environment(template.parent).get_template(template.name).render(**ctx)
    text = re.sub(r"\n{3,}", "\n\n", text)
    atomic_write_text(out_md, text)
    timings["context+template"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0
    timings["n_figures"] = len(figs)
    return timings


def _relpath(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target.resolve(), start.resolve())
