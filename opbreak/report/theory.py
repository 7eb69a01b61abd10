"""Theory: per config the roofline table, the ceilings it used, and vanilla-GPT against exact FLOPs."""

from __future__ import annotations

import pandas as pd

from .markdown import f_int, f_ms, f_num, f_pct, f_sci, md_code, md_escape, md_table
from .tables import phase_sort


def theory_context(t: dict, present) -> dict:
    """``theory_tables`` (one per measured config), ``vanilla_table`` and ``ceilings_table``."""
    return dict(
        theory_tables=_roofline_tables(t["theory_ops"], present),
        vanilla_table=_vanilla_table(t["vanilla"]),
        ceilings_table=_ceilings_table(t["ceilings"]),
    )


def _roofline_tables(th: pd.DataFrame, present) -> list[dict]:
    """Per measured config: every op's FLOPs, bytes, intensity, bound, roofline and measured time, efficiency."""
    th_tables = []
    for cfg in present:
        q = th[th["config"] == cfg]
        if q.empty:
            continue
        rows = [
            {
                "phase": r["phase"],
                "op": md_code(r["op"]) + (" (modeled)" if r["modeled"] else ""),
                "FLOPs": f_sci(r["flops"]),
                "bytes": f_sci(r["bytes"]),
                "comm bytes": f_sci(r["comm_bytes"]),
                "intensity": f_num(r["intensity"]),
                "bound": md_escape(r["bound"]),
                "roofline": f_ms(r["t_bound_ms"]),
                "measured": f_ms(r["measured_ms"]),
                "efficiency": f_pct(r["efficiency"]),
                "TFLOP/s": f_num(r["achieved_tflops"]),
                "GB/s": f_num(r["achieved_GBps"]),
            }
            for _, r in phase_sort(q).iterrows()
        ]
        th_tables.append({"config": md_escape(cfg), "table": md_table(pd.DataFrame(rows))})
    return th_tables


def _vanilla_table(van: pd.DataFrame) -> str:
    """The seed's vanilla-GPT FLOPs against the exact counts, per model and component."""
    van_tbl = pd.DataFrame(
        [
            {
                "model": md_escape(r["model"]),
                **({"tokens": f_int(r["tokens"])} if "tokens" in van else {}),
                "component": md_escape(r["component"]),
                "vanilla GPT FLOPs": f_sci(r["vanilla_flops"]),
                "exact FLOPs": f_sci(r["exact_flops"]),
                "exact / vanilla": f_num(r["ratio"]),
            }
            for _, r in van.iterrows()
        ]
    )
    return md_table(van_tbl)


def _ceilings_table(ceilings: pd.DataFrame) -> str:
    """The hardware ceilings the roofline used, with their source."""
    rows = [
        {
            "config": md_escape(r["config"]),
            "gpu": md_escape(r["gpu"]),
            "peak TFLOP/s": f_num(r["peak_tflops"]),
            "memory GB/s": f_num(r["mem_bw_GBps"]),
            "link GB/s": f_num(r["link_GBps"]),
            "source": md_escape(r["source"]),
        }
        for _, r in ceilings.iterrows()
    ]
    return md_table(pd.DataFrame(rows))
