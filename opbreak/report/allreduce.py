"""All-reduce: the ring model's fit per config, in-phase calls against it, and the sweep against nccl-tests."""

from __future__ import annotations

import pandas as pd

from .markdown import f_int, f_ms, f_num, md_escape, md_table


def allreduce_context(ar: pd.DataFrame) -> dict:
    """The in-phase rows (measured vs ring model), the alpha/B fit per config and source, the sweep
    against nccl-tests."""
    ar_rows = [
        {
            "config": md_escape(r["config"]),
            "kind": md_escape(r["kind"]),
            "phase": md_escape(r["phase"]),
            "ranks": f_int(r["n"]),
            "size [B]": f_int(r["size_bytes"]),
            "measured": f_ms(r["measured_ms"]),
            "model": f_ms(r["model_ms"]),
            "latency term": f_ms(r["t_latency_ms"]),
            "bandwidth term": f_ms(r["t_bandwidth_ms"]),
            "alpha [us]": f_num(r["alpha_us"]),
            "B [GB/s]": f_num(r["bw_GBps"]),
            "source": md_escape(r["source"]),
        }
        for _, r in ar[ar["kind"] == "phase"].sort_values(["config", "kind", "phase", "n"]).iterrows()
    ]
    ar_fit = ar.drop_duplicates(["config", "source"])
    ar_fit_rows = [
        {
            "config": md_escape(r["config"]),
            "ranks": f_int(r["n"]),
            "alpha [us]": f_num(r["alpha_us"]),
            "B [GB/s]": f_num(r["bw_GBps"]),
            "source": md_escape(r["source"]),
            "fitted on": md_escape(r["fit_on"]) if "fit_on" in r and isinstance(r["fit_on"], str) else "",
            "sizes": str(
                int(
                    (
                        (ar["config"] == r["config"])
                        & (ar["kind"] == ("nccl_tests" if r["source"] == "fit to nccl-tests" else "sweep"))
                    ).sum()
                )
            ),
        }
        for _, r in ar_fit.iterrows()
    ]
    return dict(
        allreduce_table=md_table(pd.DataFrame(ar_rows)),
        allreduce_fit_table=md_table(pd.DataFrame(ar_fit_rows)),
        **sweep_vs_nccl_tests(ar),
    )


def _us(ms) -> str:
    """A time in ms shown in microseconds (the sweep's small messages take a few); "-" where not measured."""
    return f"{f_num(ms * 1e3)} us" if ms == ms else "-"


def _agreement(g: pd.DataFrame) -> str:
    """One link's sweep against nccl-tests in a sentence: small messages (<= 1 MiB) as a ratio range,
    with the CUDA graph's where measured; large ones (>= 16 MiB) as the largest relative difference."""
    g = g[g["nccl_tests_ms"].notna()]
    r = g["measured_ms"] / g["nccl_tests_ms"]
    small, large = g["size_bytes"] <= 1 << 20, g["size_bytes"] >= 16 << 20
    parts = []
    if small.any():
        lo, hi = r[small].min(), r[small].max()
        txt = f"at <= 1 MiB the sweep is {f_num(lo)}-{f_num(hi)}x nccl-tests"
        if "graph_ms" in g and g.loc[small, "graph_ms"].notna().any():
            gr = g.loc[small, "graph_ms"] / g.loc[small, "nccl_tests_ms"]
            txt += f" (its CUDA graph {f_num(gr.min())}-{f_num(gr.max())}x)"
        parts.append(txt)
    if large.any():
        parts.append(f"at >= 16 MiB within {f_num(100 * (r[large] - 1).abs().max())} %")
    if not parts:
        return ""
    t = g.iloc[0]
    return f" {md_escape(t['config'])} ({md_escape(str(t.get('transport', '')))}): " + "; ".join(parts) + "."


def sweep_vs_nccl_tests(ar: pd.DataFrame) -> dict:
    """Per link (its first config) and size: the sweep's torch.distributed times beside nccl-tests'.

    The sweep is the framework's call floor (``torch.distributed.all_reduce`` back to back, its
    lowest round, a CUDA graph of the same calls, calls synchronized one by one); nccl-tests is
    NCCL's own floor. Without nccl-tests the note says the reference is absent."""
    sw = ar[ar["kind"] == "sweep"]
    if sw.empty:
        return dict(allreduce_sweep_table="", nccl_tests_note="")
    has_ref = "nccl_tests_ms" in sw and sw["nccl_tests_ms"].notna().any()
    rows = []
    sw = sw.drop_duplicates(  # configs sharing a link share its sweep: once
        ["transport", "n", "size_bytes", "measured_ms"] if "transport" in sw else ["config", "size_bytes"]
    )
    for _, r in sw.iterrows():

        def get(c, r=r):
            v = r.get(c, float("nan"))
            return float(v) if v is not None and v == v else float("nan")

        ref = get("nccl_tests_ms")
        row = {
            "config": md_escape(r["config"]),
            "transport": md_escape(str(r.get("transport", ""))),
            "ranks": f_int(r["n"]),
            "size [B]": f_int(r["size_bytes"]),
            "sweep (median)": _us(get("measured_ms")),
            "sweep (min)": _us(get("sweep_min_ms")),
            "CUDA graph": _us(get("graph_ms")),
            "per call, synced": _us(get("percall_ms")),
        }
        if has_ref:
            row["nccl-tests"] = _us(ref)
            row["sweep / nccl-tests"] = f_num(get("measured_ms") / ref) if ref == ref and ref > 0 else "-"
        rows.append(row)
    if has_ref:
        note = (
            "nccl-tests (`all_reduce_perf`, out of place, one process driving the link's GPUs) is NCCL's floor; "
            "the sweep is `torch.distributed.all_reduce` called back to back (the framework's call floor), "
            "CUDA graph the same calls replayed without the host. Where the sweep sits well above nccl-tests "
            "and the CUDA graph does not, the difference is the host's cost per call, not the link."
        )
        note += "".join(
            _agreement(g) for _, g in sw.groupby(["config"], sort=False) if g["nccl_tests_ms"].notna().any()
        )
    else:
        note = (
            "nccl-tests reference: absent (the study sets no `nccl_tests`; README, all-reduce sweep), so the "
            "sweep's small-message times are the framework's call floor with nothing to hold them against."
        )
    return dict(allreduce_sweep_table=md_table(pd.DataFrame(rows)), nccl_tests_note=note)
