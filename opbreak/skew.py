"""Collectives: how much of an all_reduce is waiting for the last rank, how much is the transfer.

An NCCL kernel starts on each rank when that rank's stream reaches it and cannot
finish before every rank has arrived. With the ranks' kernel start/end times on one
host clock (CUPTI, :mod:`opbreak.timing.profiler`), per call::

    last arrival  = max over ranks of start
    wait  (rank r) = last arrival - start_r     (the kernel spins for the peer)
    transfer (r)   = end_r - last arrival       (moving and reducing the data)

Only captured (profiled) steps have these timestamps; totals over a phase are
fitted over context length and summed over every step of the phase, like every
sampled quantity (:func:`opbreak.timing.integrate_over_context`). Pure functions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .contract import COLLECTIVE_SPLIT_COLUMNS as SPLIT_COLUMNS
from .contract import COLLECTIVE_TOTALS_COLUMNS
from .timing import integrate_over_context

CALL_KEY = ["config", "repeat", "phase", "step", "call"]


def split_calls(coll: pd.DataFrame) -> pd.DataFrame:
    """Per collective call and rank: kernel, wait and transfer time (ms); calls not seen on every rank dropped.

    A transfer can only come out negative through clock disagreement between processes;
    it is clipped to 0 and the count kept in ``attrs['clipped']``.
    """
    if coll.empty:
        out = pd.DataFrame(columns=SPLIT_COLUMNS)
        out.attrs["clipped"] = 0
        return out
    world = coll.groupby(["config", "repeat"])["rank"].transform("nunique")
    seen = coll.groupby(CALL_KEY)["rank"].transform("nunique")
    d = coll[seen == world].copy()
    last = d.groupby(CALL_KEY)["start_us"].transform("max")
    d["kernel_ms"] = (d["end_us"] - d["start_us"]) / 1e3
    d["wait_ms"] = (last - d["start_us"]) / 1e3
    transfer = (d["end_us"] - last) / 1e3
    d["transfer_ms"] = transfer.clip(lower=0.0)
    out = d[SPLIT_COLUMNS].reset_index(drop=True)
    out.attrs["clipped"] = int((transfer < 0).sum())
    return out


def phase_totals(calls: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """Per config, repeat, rank, phase: calls, wait and transfer over every step of the phase.

    ``steps``: the measure steps of every rank (context lengths of all steps, captured or not).
    """
    rows = []
    for (cfg, rep, rank, phase), g in calls.groupby(["config", "repeat", "rank", "phase"]):
        per_step = g.groupby(["step", "context_len"])[["wait_ms", "transfer_ms"]].sum().reset_index()
        per_step["calls"] = g.groupby("step").size().values
        s = steps[
            (steps["config"] == cfg) & (steps["repeat"] == rep) & (steps["rank"] == rank) & (steps["phase"] == phase)
        ]
        ctx_all = s["context_len"].to_numpy() if len(s) else per_step["context_len"].to_numpy()
        est = integrate_over_context(
            per_step["context_len"], {c: per_step[c] for c in ("wait_ms", "transfer_ms", "calls")}, ctx_all
        )
        rows.append(
            dict(
                config=cfg,
                repeat=rep,
                rank=rank,
                phase=phase,
                captured_steps=len(per_step),
                steps=len(ctx_all),
                calls=est["calls"],
                wait_ms=max(est["wait_ms"], 0.0),
                transfer_ms=max(est["transfer_ms"], 0.0),
                wait_per_call_us=float(np.median(g["wait_ms"])) * 1e3,
                transfer_per_call_us=float(np.median(g["transfer_ms"])) * 1e3,
            )
        )
    return pd.DataFrame(
        rows,
        columns=COLLECTIVE_TOTALS_COLUMNS,
    )
