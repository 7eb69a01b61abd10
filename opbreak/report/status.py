"""The Summary's config tables: every declared config's status and spec, and why any is missing.

A config is "missing" when its measure job failed (aggregate's failures.csv), produced no
rows, or only some of the tables the report needs; a config in the tables that the study
does not declare is listed too (and ignored elsewhere).
"""

from __future__ import annotations

import pandas as pd

from .markdown import f_ms, md_code, md_escape, md_table
from .predict import predicted_configs


def status_context(t: dict, configs, present, declared: dict | None) -> dict:
    """``status_table``, and the ``missing`` rows with their ``missing_table``."""
    missing = _missing_rows(t, configs)
    return dict(
        status_table=md_table(pd.DataFrame(_status_rows(t, configs, present, declared))),
        missing=missing,
        missing_table=md_table(pd.DataFrame(missing)) if missing else "",
    )


def _nprov(t: dict, cfg) -> int:
    """Provenance records of a config: one per repeat that ran."""
    return sum(1 for p in t["provenance"] if p.get("config") == cfg)


def _missing_rows(t: dict, configs) -> list[dict]:
    """One row per config that is missing or partial, and per config in the tables but not declared."""
    missing = []
    for cfg in configs:
        have = {name: cfg in set(t[name]["config"]) for name in ("ops_summary", "phase_summary", "steps", "theory_ops")}
        nprov = _nprov(t, cfg)
        failed = t["failures"][t["failures"]["config"] == cfg]
        if len(failed):  # the measure job's last attempt recorded its error (aggregate's failures.csv)
            reps = ", ".join(str(int(float(r))) for r in failed["repeat"])
            what = "failed" if not have["ops_summary"] else "partly failed"
            missing.append(
                {
                    "config": md_escape(cfg),
                    "why": f"measure {what} (repeats {reps}): {md_escape(str(failed['error'].iloc[0]))}",
                    "provenance records": str(nprov),
                }
            )
        elif not have["ops_summary"]:
            missing.append(
                {
                    "config": md_escape(cfg),
                    "why": "no rows in `ops_summary.csv` (measure failed or not run)",
                    "provenance records": str(nprov),
                }
            )
        elif not all(have.values()):
            lacking = ", ".join(md_code(k) for k, v in have.items() if not v)
            missing.append(
                {"config": md_escape(cfg), "why": f"partial: no rows in {lacking}", "provenance records": str(nprov)}
            )
    for cfg in sorted(set(t["ops_summary"]["config"]) - set(configs)):
        missing.append(
            {
                "config": md_escape(cfg),
                "why": "in the tables but not in the config (ignored)",
                "provenance records": str(_nprov(t, cfg)),
            }
        )
    return missing


def _status_rows(t: dict, configs, present, declared: dict | None) -> list[dict]:
    """One row per declared config: its spec (first provenance record) and phase medians.

    The spec is the recorded one where the config ran, else its declared entry (a predict-only
    config has no provenance); ``.get`` because a spec recorded by an older version may lack a
    field, shown as an empty cell."""
    ps, spec_of, rows = t["phase_summary"], {}, []
    for p in t["provenance"]:
        spec_of.setdefault(p.get("config"), p.get("spec", {}))
    for cfg in configs:
        s = spec_of.get(cfg) or (declared or {}).get(cfg) or {}
        pre = ps[(ps["config"] == cfg) & (ps["phase"] == "prefill")]
        dec = ps[(ps["config"] == cfg) & (ps["phase"] == "decode")]
        model = s.get("model", {})
        rows.append(
            {
                "config": md_escape(cfg),
                "status": "ok"
                if cfg in present
                else ("predicted only" if cfg in predicted_configs(t) else "**missing**"),
                "backend": md_escape(s.get("backend", "")),
                "gpu": md_escape(s.get("gpu", "")),
                "tp": md_escape(s.get("tp", "")),
                "GPUs": md_escape(s.get("num_gpus", "")),
                "model": md_escape(model.get("name", "") if isinstance(model, dict) else model),
                "batch": md_escape(s.get("batch", "")),
                "in/out": md_escape(f"{s.get('input_len', '')}/{s.get('output_len', '')}") if s else "",
                "dtype": md_escape(s.get("dtype", "")),
                "repeats": str(_nprov(t, cfg)),
                "prefill median": f_ms(pre["median_ms"].iloc[0]) if len(pre) else "–",
                "decode median": f_ms(dec["median_ms"].iloc[0]) if len(dec) else "–",
            }
        )
    return rows
