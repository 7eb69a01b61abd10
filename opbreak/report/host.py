"""Report section "Decode down to the host, and without it": the decode probe (``decode_graph``).

Why its own module: the decode-truth section (:mod:`.decode`) splits a step from the GPU's side
(compute, transfer, wait, GPU idle for the host); this one splits it from the host's side (setup
with its host syncs, launching the layer stack, collective calls, drain, sampling) and shows the
stack replayed from a CUDA graph, i.e. decode with the host out of the way. Every number in a
sentence is a cell of ``results/aggregate/decode_probe.csv`` or ``results/theory/host_pairs.csv``
cited through the evidence log. The report calls :func:`host_context` and :func:`host_figures`.
"""

from __future__ import annotations

import pandas as pd

from ..contract import HOST_OP_KEY, PROBE_KEY
from ..contract import PROBE_COLUMNS as COLUMNS
from ..ops import OPS
from .markdown import bold, f_ms, f_num, finite, join_words, md_escape, md_table, op_code

PAIR_KEY = ("a", "b")
PARTS = {
    "setup_ms": "setup (inputs, KV alloc, host syncs)",
    "launch_ms": "launching the layer stack",
    "collective_call_ms": "collective calls",
    "drain_ms": "drain (GPU backlog, wait for the other rank)",
    "sampling_ms": "sampling and .cpu()",
}


def probe_rows(t: dict, configs) -> pd.DataFrame:
    """The probe table, configs in study order; empty when nothing was probed."""
    pr = t.get("decode_probe")
    if pr is None or pr.empty:
        return pd.DataFrame(columns=COLUMNS)
    pr = pr[pr["config"].isin(configs)].copy()
    pr["_o"] = pr["config"].map(list(configs).index)
    return pr.sort_values(["_o", "rank", "context_len"]).drop(columns="_o")


def middle_rows(pr: pd.DataFrame) -> pd.DataFrame:
    """Per config and rank, the row at the middle probed context (the one sentences cite)."""
    out = [g.iloc[len(g) // 2] for _, g in pr.groupby(["config", "rank"], sort=False)]
    return pd.DataFrame(out, columns=pr.columns)


def probe_table(pr: pd.DataFrame) -> pd.DataFrame:
    """Every probed step: the host split, the plain step it stands for, and the graph replay."""
    rows = []
    for _, r in pr.iterrows():
        row = {"config": md_escape(r["config"]), "rank": int(r["rank"]), "context": int(r["context_len"])}
        row["plain step (timed run)"] = f_ms(r["plain_ms"])
        row["plain step (just before)"] = f_ms(r["near_plain_ms"])
        row["probed step"] = f_ms(r["step_ms"])
        row["closure"] = f_num(r["closure"]) + ("" if finite(r["near_plain_ms"]) else " (vs timed run)")
        for col, label in PARTS.items():
            row[label] = f_ms(r[col])
        row["stack eager"] = f_ms(r["stack_ms"])
        row["stack graph replay"] = f_ms(r["replay_ms"]) if finite(r["replay_ms"]) else r["graph_error"] or "-"
        row["replay = eager logits"] = f_num(r["replay_max_abs_diff"])
        rows.append(row)
    return pd.DataFrame(rows)


def config_sentences(mid: pd.DataFrame, log) -> list:
    """Per config and rank: the probed step split on the host clock, against its plain step and its replay."""
    out = []
    for _, r in mid.iterrows():
        if not finite(r["step_ms"]):
            continue

        def c(col, fmt="ms", r=r):
            return log.cite("decode_probe", r, PROBE_KEY, col, fmt)

        if finite(r["near_plain_ms"]):
            plain = (
                f"a plain decode step takes {c('plain_ms')} in the timed run and {c('near_plain_ms')} right before "
                f"the probed step, which takes {c('step_ms')} (closure {c('closure', 'num')})"
            )
        else:  # a probe recorded before the plain steps next to it were timed
            plain = (
                f"a plain decode step takes {c('plain_ms')} in the timed run, the probed step {c('step_ms')} "
                f"(closure {c('closure', 'num')} against the timed run)"
            )
        text = (
            f"{bold(r['config'])} rank {c('rank', 'int')} at context {c('context_len', 'int')}: {plain} = "
            f"setup {c('setup_ms')} + launching the stack {c('launch_ms')} "
            f"+ collective calls {c('collective_call_ms')} ({c('collective_calls', 'int')} calls) "
            f"+ drain {c('drain_ms')} + sampling {c('sampling_ms')}"
        )
        if finite(r["replay_ms"]):
            text += f"; the layer stack takes {c('stack_ms')} eager and {c('replay_ms')} replayed from a CUDA graph"
        out.append(log.sentence(text + ".", topic="host"))
    return out


def pair_sentences(hp: pd.DataFrame, log, parts: bool = True) -> list:
    """Per pair: the speedup per decode step with the host and without it (graph replay); with ``parts``,
    the two probed steps part by part."""
    out = []
    for _, r in hp.iterrows():
        if not (finite(r["speedup_with_host"]) and finite(r["speedup_without_host"])):
            continue

        def c(col, fmt="ms", r=r):
            return log.cite("host_pairs", r, PAIR_KEY, col, fmt)

        out.append(
            log.sentence(
                f"{md_escape(r['label'])}: per decode step {c('speedup_with_host', 'x')} with the host "
                f"({c('plain_a_ms')} against {c('plain_b_ms')}), {c('speedup_without_host', 'x')} without it "
                f"(graph replay {c('replay_a_ms')} against {c('replay_b_ms')}); the host holds "
                f"{c('host_a_ms')} of {bold(r['a'])}'s step and {c('host_b_ms')} of {bold(r['b'])}'s."
                + (f" Probed steps {c('step_a_ms')} against {c('step_b_ms')}: {_diffs(r, c)}." if parts else ""),
                topic="host",
            )
        )
    return out


def call_sentences(mid: pd.DataFrame, ar: pd.DataFrame, log) -> list:
    """Per real-TP config (rank 0): host time of one collective call inside the model against the same
    size back to back in the all-reduce sweep (results/theory/allreduce.csv, decode row)."""
    out = []
    if ar is None or ar.empty:
        return out
    for _, r in mid[(mid["rank"] == 0) & (mid["collective_calls"] > 0)].iterrows():
        a = ar[(ar["config"] == r["config"]) & (ar["kind"] == "phase") & (ar["phase"] == "decode")]
        if a.empty or not finite(a["sweep_ms"].iloc[0]) or not finite(r["collective_call_us"]):
            continue
        key = ("config", "kind", "phase", "n", "size_bytes")
        inside = log.cite("decode_probe", r, PROBE_KEY, "collective_call_us", "num")
        size = log.cite("allreduce", a.iloc[0], key, "size_bytes", "int")
        sweep = log.cite("allreduce", a.iloc[0], key, "sweep_ms", "ms")
        out.append(
            log.sentence(
                f"{bold(r['config'])}: inside the model one decode collective call holds the host {inside} us; "
                f"an all_reduce of the decode size ({size} B) takes {sweep} per call back to back in the sweep.",
                topic="host",
            )
        )
    return out


def host_ops_table(t: dict, configs, phase="decode") -> pd.DataFrame:
    """Rank 0's host side of each op per CUPTI-captured step: own CPU time, launches, syncs."""
    ho = t.get("host_ops")
    if ho is None or ho.empty:
        return pd.DataFrame()
    d = ho[(ho["phase"] == phase) & (ho["rank"] == 0) & ho["config"].isin(configs)]
    order = {op: i for i, op in enumerate(OPS)}
    d = d.assign(_c=d["config"].map(list(configs).index), _o=d["op"].map(lambda o: order.get(o, -1)))
    rows = [
        {
            "config": md_escape(r["config"]),
            "op": f"`{r['op']}`",
            "own CPU time": f_ms(r["cpu_ms"]),
            "kernel launches": f_num(r["launches"]),
            "launch calls": f_ms(r["launch_ms"]),
            "host syncs": f_num(r["syncs"]),
            "blocked in syncs": f_ms(r["sync_ms"]),
        }
        for _, r in d.sort_values(["_c", "_o"]).iterrows()
    ]
    return pd.DataFrame(rows)


def sync_sentences(t: dict, configs, log) -> list:
    """Per config (rank 0, decode): where the host blocks on the GPU in a captured step, op by op."""
    ho = t.get("host_ops")
    out = []
    if ho is None or ho.empty:
        return out
    for cfg in configs:
        d = ho[(ho["config"] == cfg) & (ho["phase"] == "decode") & (ho["rank"] == 0) & (ho["syncs"] > 0)]
        if d.empty:
            continue
        parts = [
            f"{op_code(r['op'])} {log.cite('host_ops', r, HOST_OP_KEY, 'syncs', 'num')} "
            f"({log.cite('host_ops', r, HOST_OP_KEY, 'sync_ms', 'ms')})"
            for _, r in d.sort_values("sync_ms", ascending=False).iterrows()
        ]
        out.append(
            log.sentence(
                f"{bold(cfg)}: in a CUPTI-captured decode step (rank 0) the host blocks on the GPU in "
                f"{join_words(parts)}; no other op range synchronizes.",
                topic="host",
            )
        )
    return out


def _diffs(r, c) -> str:
    """The parts of two probed steps side by side (a against b), largest difference first."""
    names = [p[: -len("_ms")] for p in PARTS]
    ok = [n for n in names if finite(r[f"{n}_a"]) and finite(r[f"{n}_b"])]
    ok.sort(key=lambda n: -abs(r[f"{n}_a"] - r[f"{n}_b"]))
    shown = [f"{PARTS[n + '_ms']} {c(n + '_a')} against {c(n + '_b')}" for n in ok]
    return "part by part, " + join_words(shown) if shown else "no parts recorded"


def host_setup_rows(t: dict, configs) -> pd.DataFrame:
    """Per config and rank: the host setup recorded in provenance (threads, pinning, CPUs)."""
    rows = []
    for p in t.get("provenance") or []:
        if p.get("config") not in configs or p.get("repeat") not in (0, "0"):
            continue
        for rank, extra in sorted((p.get("backend_extra") or {}).items()):
            hs = (extra or {}).get("host_setup")
            if not hs:
                continue
            rows.append(
                {
                    "config": md_escape(p["config"]),
                    "rank": rank,
                    "pinning": hs.get("cpu_affinity"),
                    "CPUs": hs.get("cpus"),
                    "torch threads": hs.get("torch_threads"),
                    "OMP_NUM_THREADS": hs.get("omp_num_threads"),
                    "OS threads (start / end)": f"{hs.get('os_threads')} / {hs.get('os_threads_at_end')}",
                }
            )
    return pd.DataFrame(rows)


def host_context(t: dict, configs, trace, figures: dict) -> dict:
    """Everything the host section of the template needs; pure."""
    pr = probe_rows(t, configs)
    hp = t.get("host_pairs")
    hp = hp if hp is not None else pd.DataFrame()
    setup = host_setup_rows(t, configs)
    ops = host_ops_table(t, configs)
    mid = middle_rows(pr)
    probe = (
        config_sentences(mid, trace) + call_sentences(mid, t.get("allreduce"), trace) + pair_sentences(hp, trace)
        if not pr.empty
        else []
    )
    return dict(
        any=not (pr.empty and ops.empty),
        sentences=probe + sync_sentences(t, configs, trace),
        table=md_table(probe_table(pr)) if not pr.empty else "",
        setup=md_table(setup) if not setup.empty else "",
        ops=md_table(ops) if not ops.empty else "",
        fig=figures.get(("host_split",)),
    )


ANSWER_PAIRS = 2


def answer_sentences(t: dict, trace) -> list:
    """The answers section's lines: the first pairs whose sides were both probed, with and without the host."""
    hp = t.get("host_pairs")
    return pair_sentences(hp.head(ANSWER_PAIRS), trace, parts=False) if hp is not None and not hp.empty else []


def host_figures(t: dict, configs, draw) -> None:
    """One stacked bar per probed config and rank: the host split, with the plain step and the replay marked."""
    pr = probe_rows(t, configs)
    if pr.empty:
        return
    from .plots.host import host_split

    draw(("host_split",), host_split, middle_rows(pr), list(PARTS.items()), name="host_split")
