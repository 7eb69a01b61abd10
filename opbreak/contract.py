"""The table contract: every CSV the aggregate and theory steps write and the report reads.

One home for each table's file name and required columns (``TABLES``; the column lists of the
newer tables are their producers' own, imported here), which columns are flags or text. The
aggregate and theory scripts pass every table through :func:`conform` before they write it; the
report reads through the same names (:mod:`opbreak.report.tables`).
"""

from __future__ import annotations

from .aggregate import EMPTY_COLUMNS as AGGREGATE_COLUMNS
from .aggregate import STATS
from .host_views import COLUMNS as PROBE_COLUMNS
from .host_views import HOST_OP_COLUMNS
from .host_views import PAIR_COLUMNS as HOST_PAIR_COLUMNS
from .predict import PAIR_COLUMNS, PHASE_COLUMNS, PREDICTED_COLUMNS
from .seed_check import CLAIM_COLUMNS
from .theory_tables import THEORY_OPS_COLUMNS
from .views import COLUMNS as DECODE_COLUMNS

STATS_COLS = STATS  # the statistics columns of every summary (opbreak.aggregate)
TABLES = {
    "ops_summary": ("ops_summary.csv", AGGREGATE_COLUMNS["ops_summary"]),
    "phase_summary": ("phase_summary.csv", AGGREGATE_COLUMNS["phase_summary"]),
    "phase_totals": ("phase_totals.csv", AGGREGATE_COLUMNS["phase_totals"]),
    "ops_repeats": ("ops_repeats.csv", ["config", "repeat", "rank", "phase", "op", "time_ms", "calls", "modeled"]),
    "steps": ("steps.csv", ["config", "repeat", "phase", "step", "context_len", "e2e_ms"]),
    "theory_ops": ("ops.csv", THEORY_OPS_COLUMNS),
    "pairs": (
        "pairs.csv",
        [
            "label",
            "a",
            "b",
            "phase",
            "op",
            "view",
            "time_a_ms",
            "time_b_ms",
            "speedup",
            "speedup_lo",
            "speedup_hi",
            "bound",
            "resource_ratio",
            "theory_speedup",
            "measured_over_theory",
            "flagged",
            "modeled",
        ],
    ),
    "failures": ("failures.csv", ["config", "repeat", "error", "path"]),
    "vanilla": ("vanilla_vs_exact.csv", ["model", "component", "vanilla_flops", "exact_flops", "ratio"]),
    "allreduce": (
        "allreduce.csv",
        [
            "config",
            "kind",
            "n",
            "size_bytes",
            "measured_ms",
            "model_ms",
            "alpha_us",
            "bw_GBps",
            "source",
            "t_latency_ms",
            "t_bandwidth_ms",
            "phase",
        ],
    ),
    "decode_steps": ("decode_steps.csv", ["config", "step", "context_len", "t_bound_ms", "measured_ms"]),
    "ceilings": ("ceilings.csv", ["config", "gpu", "peak_tflops", "mem_bw_GBps", "link_GBps", "source"]),
}

# Predict mode (opbreak.predict, opbreak.seed_check): results/theory/
PREDICT_TABLES = {
    "predicted": ("predicted.csv", PREDICTED_COLUMNS),
    "predicted_phases": ("predicted_phases.csv", PHASE_COLUMNS),
    "predicted_pairs": ("predicted_pairs.csv", PAIR_COLUMNS),
    "efficiencies": ("efficiencies.csv", ["op_class", "phase", "efficiency", "calibration", "source"]),
    "seed_claims": ("seed_claims.csv", CLAIM_COLUMNS),
}
PREDICT_TEXT_COLS = (
    "op_class",
    "calibration",
    "status",
    "status_a",
    "status_b",
    "id",
    "section",
    "quote",
    "kind",
    "ops",
    "reading",
    "predicted_op",
    "predicted_agrees",
    "analogue_op",
    "analogue_agrees",
    "analogue_what",
    "analogue_source",
    "if_differs",
    "analogue_note",
)

# Decode truth (opbreak.views): results/aggregate/{rank_ops,collectives,phase_split,capture_cost}.csv
DECODE_TABLES = {name: (f"{name}.csv", cols) for name, cols in DECODE_COLUMNS.items()}
# The decode probe (opbreak.host_views): results/aggregate/decode_probe.csv
DECODE_TABLES["decode_probe"] = ("decode_probe.csv", PROBE_COLUMNS)
DECODE_TABLES["host_ops"] = ("host_ops.csv", HOST_OP_COLUMNS)  # opbreak.host_views.host_ops
DECODE_BOOL_COLS = ("wait_capped",)
TABLES.update(PREDICT_TABLES)
TABLES.update(DECODE_TABLES)
TABLES["host_pairs"] = ("host_pairs.csv", HOST_PAIR_COLUMNS)  # opbreak.host_views.pair_speedups
THEORY_TABLES = (
    "host_pairs",
    "theory_ops",
    "pairs",
    "vanilla",
    "allreduce",
    "decode_steps",
    "ceilings",
    *PREDICT_TABLES,
)
BOOL_COLS = ("unstable", "modeled", "flagged") + DECODE_BOOL_COLS
TEXT_COLS = (
    "config",
    "phase",
    "op",
    "view",
    "label",
    "a",
    "b",
    "bound",
    "model",
    "component",
    "kind",
    "source",
    "gpu",
    "error",
    "path",
    "graph_error",
    "closure_basis",
    "ceiling_source",
    "link_source",
    "basis",
) + PREDICT_TEXT_COLS


class ContractError(ValueError):
    """A step's output lacks columns the report relies on."""


def check(name: str, df) -> None:
    """Refuse to write table ``name`` without its required columns (a bug, caught before the report)."""
    missing = [c for c in TABLES[name][1] if c not in df.columns]
    if missing:
        raise ContractError(f"table {name!r} ({TABLES[name][0]}) lacks columns {missing} (opbreak/contract.py)")


def conform(name: str, df):
    """The table to write: an empty one gets the contract's columns (a well-formed empty table, as when
    every measure job failed); a non-empty one must already have them (:func:`check`)."""
    if df.empty:
        extra = [c for c in df.columns if c not in TABLES[name][1]]
        return df.reindex(columns=list(TABLES[name][1]) + extra)
    check(name, df)
    return df
