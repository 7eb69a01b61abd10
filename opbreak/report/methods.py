"""The Methods section: per config, how it was measured, from provenance records and the aggregated tables."""

from __future__ import annotations

import json

import pandas as pd

from ..ops import order_ops
from .markdown import f_num, fence, md_code, md_escape, md_table


def methods(t: dict, configs) -> list[dict]:
    """Per config: how it was measured, all from provenance records and the aggregated tables."""
    prov = t["provenance"]
    out = []
    for cfg in configs:
        recs = [p for p in prov if p.get("config") == cfg]
        if not recs:
            out.append({"config": md_escape(cfg), "present": False, "items": [], "topology": ""})
            continue
        clocks = _uniq(recs, lambda r: r.get("driver_clocks"))
        topo = _uniq(recs, lambda r: r.get("topology"))
        out.append(
            {
                "config": md_escape(cfg),
                "present": True,
                "items": _items(t, cfg, recs),
                "topology": fence(topo) if topo and topo != "None" else "",
                "clocks": fence(clocks) if clocks and clocks != "None" else "",
            }
        )
    return out


def _items(t: dict, cfg, recs) -> list[tuple]:
    """(label, text) pairs of one config's Methods list, in the order the report shows them."""
    spec = recs[0].get("spec", {})
    o = t["ops_summary"][t["ops_summary"]["config"] == cfg]
    modeled = order_ops(o.loc[o["modeled"], "op"].unique())
    env = {k: v for r in recs for k, v in (r.get("env") or {}).items() if v is not None}
    started = sorted(str(r.get("started", "")) for r in recs)
    finished = sorted(str(r.get("finished", "")) for r in recs)
    return [
        ("timing method", md_escape(_uniq(recs, lambda r: r.get("spec", {}).get("timing")))),
        (
            "repeats",
            f"{len(recs)} (repeat ids {md_escape(', '.join(str(r.get('repeat')) for r in recs))}); "
            f"warm-up passes {md_escape(spec.get('warmup', '–'))}",
        ),
        ("host", md_escape(_uniq(recs, lambda r: r.get("host")))),
        ("host CPU", md_escape(_uniq(recs, host_cpu))),
        ("host load", md_escape(_uniq(recs, host_load))),
        (
            "devices",
            md_escape(_uniq(recs, lambda r: _devices(r.get("devices"))))
            + f" (device count {md_escape(_uniq(recs, lambda r: r.get('device_count')))})",
        ),
        (
            "versions",
            md_escape(_uniq(recs, lambda r: ", ".join(f"{k} {v}" for k, v in (r.get("versions") or {}).items() if v))),
        ),
        (
            "environment",
            md_escape(", ".join(f"{k}={v}" for k, v in sorted(env.items())))
            if env
            else "none of the recorded variables set",
        ),
        (
            "measured vs modeled",
            ("modeled (not measured): " + ", ".join(md_code(m) for m in modeled)) if modeled else "all ops measured",
        ),
        ("truncated-layer scaling", _scaling(o, spec)),
        ("emulated TP", md_escape(spec.get("emulate_tp", False))),
        ("run window", md_escape(f"{started[0]} .. {finished[-1]}")),
    ]


def _scaling(o, spec) -> str:
    """How a truncated-depth run was scaled to the model's full depth (aggregate's layer_scale)."""
    scale = o["layer_scale"].dropna()
    if len(scale) and float(scale.iloc[0]) != 1:
        return (
            f"{md_escape(spec.get('num_layers'))} of {md_escape(spec.get('model_layers'))} layers measured; "
            f"per-layer ops scaled by layer_scale = {f_num(scale.iloc[0])} in aggregate"
        )
    return "none (full depth measured)"


def _uniq(recs, get) -> str:
    """The distinct values of one field over a config's repeats, joined: repeats that agree print once."""
    vals = []
    for r in recs:
        v = get(r)
        v = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)
        if v not in vals:
            vals.append(v)
    return "; ".join(vals)


def _devices(devs) -> str:
    """'8 × H100' rather than eight equal names."""
    if not isinstance(devs, list):
        return str(devs)
    out = []
    for d in dict.fromkeys(devs):
        out.append(f"{devs.count(d)} × {d}")
    return ", ".join(out)


def host_cpu(r) -> str:
    """'Intel Xeon ... (32 cores)' from a provenance record (the CPU model and its core count)."""
    h = r.get("host_after") or r.get("host_before") or {}
    model = h.get("cpu_model") or r.get("platform") or "unknown CPU"
    n = h.get("cpus_usable") or h.get("cpu_count") or r.get("cpu_count")
    return f"{model} ({n} cores)" if n else str(model)


def host_load(r) -> str:
    """1-minute load average before and after the run, as recorded ('1.2 -> 1.7')."""
    la = [(r.get(k) or {}).get("loadavg") for k in ("host_before", "host_after")]
    vals = [f"{float(x[0]):.1f}" if isinstance(x, list) and x else "–" for x in la]
    return " -> ".join(vals)


def host_summary(prov, cfgs) -> str:
    """Host CPU model and load of the runs of ``cfgs`` (next to a host-bound or cross-host comparison)."""
    recs = [p for p in prov if p.get("config") in set(cfgs)]
    if not recs:
        return ""
    loads = [
        float(la[0])
        for r in recs
        for k in ("host_before", "host_after")
        if isinstance(la := (r.get(k) or {}).get("loadavg"), list) and la
    ]
    load = f"{min(loads):.1f}–{max(loads):.1f}" if loads else "not recorded"
    host = _uniq(recs, lambda r: r.get("host"))
    return f"{host}, {_uniq(recs, host_cpu)}, 1-min load {load} over the repeats"


def methods_context(t: dict, configs) -> dict:
    """``methods``: per config its Methods list; ``methods_compact``: the same as one table and shared blocks."""
    full = methods(t, configs)
    m = methods_compact(full)
    return dict(methods=full, methods_compact=dict(table=md_table(pd.DataFrame(m["rows"])), blocks=m["blocks"]))


def methods_compact(full: list[dict]) -> dict:
    """Methods (:func:`methods`) in one table (one row per config) plus the blocks configs share, printed once each."""
    cols = (
        "timing method",
        "repeats",
        "host",
        "host CPU",
        "host load",
        "devices",
        "measured vs modeled",
        "truncated-layer scaling",
        "emulated TP",
        "run window",
    )
    rows, shared = [], {}
    for m in full:
        if not m["present"]:
            rows.append(
                {"config": m["config"], **{c: "no provenance records" if c == "timing method" else "" for c in cols}}
            )
            continue
        items = dict(m["items"])
        rows.append({"config": m["config"], **{c: items.get(c, "") for c in cols}})
        for label, text in (("versions", items.get("versions", "")), ("environment", items.get("environment", ""))):
            shared.setdefault((label, text), []).append(m["config"])
        for label, text in (
            ("Topology (`nvidia-smi topo -m`)", m.get("topology")),
            ("Driver and clocks", m.get("clocks")),
        ):
            if text:
                shared.setdefault((label, text), []).append(m["config"])
    blocks = [{"label": k[0], "text": k[1], "configs": ", ".join(v)} for k, v in shared.items()]
    return {"rows": rows, "blocks": blocks}
