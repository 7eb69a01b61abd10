"""The host's side of decode, per rank: the decode probe (one step split on the host clock, its layer
stack replayed from a CUDA graph; pair speedups with and without the host) and the host side of each op
in the CUPTI-captured steps (:func:`host_ops`).

The decode probe: one decode step per rank split on the host clock, and its layer stack
replayed from a CUDA graph (``decode_graph: true``; measured by
:mod:`opbreak.backends.lightllm_backend.probe`, recorded in provenance ``backend_extra[rank]``).

Per config, rank and probed context length, medians over repeats:

- ``step_ms`` = ``setup_ms + issue_ms + drain_ms + sampling_ms`` (all measured on the host clock);
  ``issue_ms`` holds ``collective_call_ms`` (host time inside torch.distributed calls;
  ``collective_call_us`` per call) and the rest of the stack's launch work (``launch_ms`` = issue -
  collective calls);
- ``near_plain_ms``: the plain steps timed just before the probed one (same host, same moment), and
  ``closure`` = ``step_ms / near_plain_ms``: how well the probed, split step stands for the plain
  step it explains (probes recorded before ``near_plain_ms`` existed: over ``plain_ms``, said in
  ``closure_basis``); ``plain_ms``: the timed run's plain steps at that context (a line fitted over
  context length, :func:`opbreak.timing.plain_fit`), for comparison (the host's speed drifts within a
  run, so the two can differ);
- ``replay_ms``: the layer stack replayed from a CUDA graph (no host), ``stack_ms`` = issue + drain
  (the same stack run eagerly), ``host_over_replay_ms`` = ``stack_ms - replay_ms``.

Pure functions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .contract import (
    HOST_OP_COLUMNS,
    HOST_OP_KEY,
    HOST_PAIR_COLUMNS,
    PROBE_COLUMNS,
    PROBE_DERIVED,
    PROBE_KEY,
    PROBE_MEASURED,
)
from .timing import plain_fit


def probe_rows(provs: list[dict]) -> pd.DataFrame:
    """Every probed step of every repeat and rank, as recorded."""
    rows = []
    for prov in provs:
        for rank, extra in (prov.get("backend_extra") or {}).items():
            for r in (extra or {}).get("decode_probe") or []:
                rows.append(dict(r, config=prov["config"], repeat=prov["repeat"], rank=int(rank)))
    df = pd.DataFrame(rows)
    for c in PROBE_MEASURED + ["graph_error", "step"]:  # older probes lack near_plain_ms
        if c not in df:
            df[c] = np.nan if c != "graph_error" else ""
    return df


def _plain_at(steps: pd.DataFrame, config, repeat, rank, ctx) -> float:
    """The plain decode steps' time at context ``ctx`` (linear fit over context), NaN without plain steps."""
    g = steps[
        (steps["config"] == config)
        & (steps["repeat"] == repeat)
        & (steps["rank"] == rank)
        & (steps["phase"] == "decode")
    ]
    fit = plain_fit(g.to_dict("records")) if len(g) else None
    return float(fit(ctx)) if fit else np.nan


def decode_probe(provs: list[dict], steps: pd.DataFrame) -> pd.DataFrame:
    """The ``decode_probe`` table (module docstring); empty with its columns when nothing was probed."""
    df = probe_rows(provs)
    if df.empty:
        return pd.DataFrame(columns=PROBE_COLUMNS)
    df["launch_ms"] = (df["issue_ms"] - df["collective_call_ms"]).clip(lower=0)
    df["collective_call_us"] = (df["collective_call_ms"] * 1e3 / df["collective_calls"]).where(
        df["collective_calls"] > 0
    )
    df["stack_ms"] = df["issue_ms"] + df["drain_ms"]
    df["host_over_replay_ms"] = (df["stack_ms"] - df["replay_ms"]).clip(lower=0)
    df["plain_ms"] = [
        _plain_at(steps, c, rep, rk, ctx)
        for c, rep, rk, ctx in zip(df["config"], df["repeat"], df["rank"], df["context_len"])
    ]
    near = df["near_plain_ms"].notna()
    df["closure"] = (df["step_ms"] / df["near_plain_ms"]).where(near, df["step_ms"] / df["plain_ms"])
    df["closure_basis"] = np.where(near, "plain steps just before", "timed run's plain steps")
    df["graph_error"] = df["graph_error"].fillna("").astype(str)
    g = df.groupby(PROBE_KEY, sort=True)
    out = g[PROBE_MEASURED + PROBE_DERIVED].median()
    out["graph_error"] = g["graph_error"].agg(lambda s: "; ".join(sorted({x for x in s if x})))
    out["closure_basis"] = g["closure_basis"].agg(lambda s: " / ".join(sorted(set(s))))
    out["repeats"] = g["repeat"].nunique()
    return out.reset_index()[PROBE_COLUMNS]


def _at_middle(probe: pd.DataFrame, cfg: str) -> pd.Series | None:
    """Rank 0's probe row at the config's middle probed context (None if the config was not probed)."""
    d = probe[(probe["config"] == cfg) & (probe["rank"] == 0)].sort_values("context_len")
    return None if d.empty else d.iloc[len(d) // 2]


def pair_speedups(probe: pd.DataFrame, pairs: list[dict]) -> pd.DataFrame:
    """Per declared pair with both configs probed: b over a per decode step with the host (plain steps)
    and without it (the layer stack replayed from a CUDA graph), at a's middle probed context, and
    each side's host share of the step (plain step - replay), and the probed steps part by part
    (``<part>_a``, ``<part>_b`` in ms: e.g. real TP2 against its one-process twin, ``launch_a`` against
    ``launch_b`` is launching the same kernels with two rank processes on the host and with one). The
    theory step writes it
    (``results/theory/host_pairs.csv``); the report cites it."""
    rows = []
    for p in pairs:
        ra, rb = _at_middle(probe, p["a"]), _at_middle(probe, p["b"])
        if ra is None or rb is None:
            continue
        row = dict(label=p.get("label") or f"{p['a']} vs {p['b']}", a=p["a"], b=p["b"], context_len=ra["context_len"])
        row.update(plain_a_ms=ra["plain_ms"], plain_b_ms=rb["plain_ms"], replay_a_ms=ra["replay_ms"])
        row.update(replay_b_ms=rb["replay_ms"])  # plain_ms: the timed run's own plain steps
        row["speedup_with_host"] = rb["plain_ms"] / ra["plain_ms"]
        row["speedup_without_host"] = rb["replay_ms"] / ra["replay_ms"]
        row["host_a_ms"] = max(ra["plain_ms"] - ra["replay_ms"], 0.0)
        row["host_b_ms"] = max(rb["plain_ms"] - rb["replay_ms"], 0.0)
        row["step_a_ms"], row["step_b_ms"] = ra["step_ms"], rb["step_ms"]
        for part in ("setup", "launch", "collective_call", "drain", "sampling"):
            row[f"{part}_a"], row[f"{part}_b"] = ra[f"{part}_ms"], rb[f"{part}_ms"]
        rows.append(row)
    return pd.DataFrame(rows, columns=HOST_PAIR_COLUMNS)


def host_ops(provs: list[dict]) -> pd.DataFrame:
    """The host side of each op per CUPTI-captured step (``kernel_steps``; ``backend_extra[rank].host_ops``,
    :meth:`opbreak.timing.KernelCapture.host_view`): its own CPU time, kernel launches and host syncs,
    medians over repeats. Captured steps run slower than plain ones (the profiler's cost), so these are
    the host's work per op as the profiler sees it, not a plain step's timings."""
    rows = [
        dict(v, config=p["config"], repeat=p["repeat"], rank=int(rank), phase=phase, op=op)
        for p in provs
        for rank, extra in (p.get("backend_extra") or {}).items()
        for phase, ops in ((extra or {}).get("host_ops") or {}).items()
        for op, v in ops.items()
    ]
    if not rows:
        return pd.DataFrame(columns=HOST_OP_COLUMNS)
    df = pd.DataFrame(rows)
    g = df.groupby(HOST_OP_KEY, sort=True)
    out = g[HOST_OP_COLUMNS[4:-1]].median()
    out["repeats"] = g["repeat"].nunique()
    return out.reset_index()[HOST_OP_COLUMNS]
