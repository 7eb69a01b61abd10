"""Two views of every op and a split of every phase, per rank.

- wall view (``time_ms``): stream time between CUDA-event marks, what the step waits
  for, GPU idle while the host launches included;
- GPU-busy view (``kernel_ms``): CUPTI kernel time launched inside the op's ranges;
- host-bound (``host_ms``): wall minus GPU-busy, the part of an op that is the GPU
  waiting for the host (collectives excepted: their kernels spin while waiting for a
  peer, so their GPU-busy time includes the wait; :mod:`opbreak.skew` splits it).

The phase split: wall = compute kernels + collective transfer + collective wait +
GPU idle waiting for the host, per rank. The wait comes from captured (profiled)
steps, whose host runs slower than a plain step's, so it is capped at what the wall
leaves after compute and transfer and flagged as an upper bound. Pure functions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .contract import DECODE_COLUMNS as COLUMNS
from .contract import SPLIT_PARTS
from .ops import COLLECTIVE_OPS
from .skew import phase_totals as collective_phase_totals
from .skew import split_calls
from .timing import plain_fit

# The aggregate step's decode-truth tables, one row per config, rank, phase (op for rank_ops), medians over
# repeats: the one home of their columns (the report reads them through opbreak.report.decode).


def rank_ops(ops: pd.DataFrame) -> pd.DataFrame:
    """Per config, rank, phase, op: medians over repeats of the wall and GPU-busy views, and host-bound time."""
    d = ops[~ops["modeled"].astype(bool)]
    g = d.groupby(["config", "rank", "phase", "op"], sort=False)
    out = g.agg(wall_ms=("time_ms", "median"), kernel_ms=("kernel_ms", "median"), repeats=("repeat", "nunique"))
    out = out.reset_index()
    coll = out["op"].isin(COLLECTIVE_OPS)
    out["host_ms"] = np.where(coll | out["kernel_ms"].isna(), np.nan, (out["wall_ms"] - out["kernel_ms"]).clip(lower=0))
    return out


def _compute_kernel_ms(ops: pd.DataFrame) -> pd.Series:
    """GPU-busy time of everything but the collectives (their kernels include the peer wait)."""
    d = ops[~ops["modeled"].astype(bool) & ~ops["op"].isin(COLLECTIVE_OPS)]
    return d.groupby(["config", "repeat", "rank", "phase"])["kernel_ms"].sum(min_count=1)


def phase_split(ops: pd.DataFrame, steps: pd.DataFrame, coll_totals: pd.DataFrame) -> pd.DataFrame:
    """Per config, repeat, rank, phase: wall and its split into compute, transfer, wait, host idle (ms, >= 0)."""
    g = steps.groupby(["config", "repeat", "rank", "phase"])
    out = g["e2e_ms"].sum().rename("wall_ms").to_frame().join(g["step"].count().rename("steps"))
    out = out.join(_compute_kernel_ms(ops).rename("compute_ms"))
    ct = coll_totals.set_index(["config", "repeat", "rank", "phase"])[["transfer_ms", "wait_ms"]]
    out = out.join(ct).reset_index()
    has_kernels = out["compute_ms"].notna()
    out[["transfer_ms", "wait_ms"]] = out[["transfer_ms", "wait_ms"]].where(has_kernels).fillna(0.0).where(has_kernels)
    room = (out["wall_ms"] - out["compute_ms"].fillna(0) - out["transfer_ms"].fillna(0)).clip(lower=0)
    out["wait_capped"] = out["wait_ms"] > room
    out["wait_ms"] = out["wait_ms"].clip(upper=room).where(has_kernels)
    out["host_idle_ms"] = (room - out["wait_ms"]).clip(lower=0)
    for part in ("wall_ms",) + SPLIT_PARTS:
        out[part.replace("_ms", "_per_step_ms")] = out[part] / out["steps"]
    for part in SPLIT_PARTS:
        out[part.replace("_ms", "_share")] = out[part] / out["wall_ms"]
    return out


def capture_slowdown(steps: pd.DataFrame) -> pd.DataFrame:
    """Per config, repeat, rank, phase: median per-step cost of event and kernel steps over plain ones (fraction)."""
    rows = []
    if "mode" not in steps:
        return pd.DataFrame(columns=["config", "repeat", "rank", "phase", "events_overhead", "kernels_overhead"])
    for key, g in steps.groupby(["config", "repeat", "rank", "phase"]):
        recs = g.to_dict("records")
        fit = plain_fit(recs)
        row = dict(zip(["config", "repeat", "rank", "phase"], key))
        for mode in ("events", "kernels"):
            sel = [r for r in recs if r.get("mode") == mode]
            row[f"{mode}_overhead"] = (
                float(np.median([r["e2e_ms"] / fit(r["context_len"]) - 1 for r in sel])) if fit and sel else np.nan
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _collective_scale(ops: pd.DataFrame) -> pd.Series:
    """all_reduce's layer scaling (truncated runs) per config, repeat, rank, phase: scaled / measured time."""
    ar = ops[(ops["op"] == "all_reduce") & ~ops["modeled"].astype(bool)]
    if "time_ms_measured" not in ar or ar.empty:
        return pd.Series(dtype=float)
    r = (ar["time_ms"] / ar["time_ms_measured"]).where(ar["time_ms_measured"] > 0, 1.0)
    return r.groupby([ar["config"], ar["repeat"], ar["rank"], ar["phase"]]).first()


def decode_tables(ops: pd.DataFrame, steps: pd.DataFrame, coll: pd.DataFrame) -> dict:
    """The aggregate step's per-rank tables: rank_ops, collectives (wait/transfer), phase_split, capture_cost.

    ``ops``/``steps``: every rank, layer-scaled (``phase_added_ms`` on steps); ``coll``: the measure
    jobs' collective kernel rows.
    """
    if ops.empty or steps.empty:  # every measure job failed: well-formed empty tables
        return {k: pd.DataFrame(columns=c) for k, c in COLUMNS.items()} | dict(clipped_transfers=0)
    calls = split_calls(coll)
    totals = collective_phase_totals(calls, steps)
    scale = _collective_scale(ops)
    if len(totals) and len(scale):
        k = totals.set_index(["config", "repeat", "rank", "phase"]).index.map(lambda i: scale.get(i, 1.0))
        totals[["calls", "wait_ms", "transfer_ms"]] = totals[["calls", "wait_ms", "transfer_ms"]].mul(
            np.asarray(k, float), axis=0
        )
    wall_steps = steps.assign(
        e2e_ms=steps["e2e_ms"]
        + steps.get("phase_added_ms", 0.0)
        / steps.groupby(["config", "repeat", "rank", "phase"])["step"].transform("count")
    )
    return dict(
        rank_ops=rank_ops(ops),
        collectives=over_repeats(totals),
        phase_split=over_repeats(phase_split(ops, wall_steps, totals)),
        capture_cost=over_repeats(capture_slowdown(steps)),
        clipped_transfers=calls.attrs.get("clipped", 0),
    )


def over_repeats(df: pd.DataFrame) -> pd.DataFrame:
    """Median over repeats per config, rank, phase (flags: any repeat); ``repeats`` counts them."""
    key = ["config", "rank", "phase"]
    if df.empty:
        return df.drop(columns="repeat", errors="ignore").assign(repeats=pd.Series(dtype=int))
    flags = [c for c in df.columns if df[c].dtype == bool]
    num = [c for c in df.columns if c not in key + flags + ["repeat"]]
    g = df.groupby(key, sort=False)
    out = g[num].median()
    for c in flags:
        out[c] = g[c].any()
    out["repeats"] = g["repeat"].nunique()
    return out.reset_index()
