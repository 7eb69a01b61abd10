"""The table contract: the columns of every table a step writes and a later step (or the report) reads.

One home for each table's columns, at the bottom of the package: the producers (the measure command,
:mod:`opbreak.aggregate`, :mod:`opbreak.views`, :mod:`opbreak.skew`, :mod:`opbreak.host_views`,
:mod:`opbreak.theory_tables`, :mod:`opbreak.predict`, :mod:`opbreak.seed_check`,
:mod:`opbreak.nccl_tests`) import their column lists from here, and this module imports none of them.
``TABLES`` names each aggregate/theory table's file and the columns the report relies on; the aggregate
and theory scripts pass every table through :func:`conform` before they write it, and the report reads
through the same names (:mod:`opbreak.report.tables`). Which columns are flags or text is said here too.
"""

from __future__ import annotations

# ---- The measure step: results/measure/<config>/rep<k>/{ops,steps,collectives}.csv + provenance.json
# The spec fields copied into every ops row (and into provenance), so a row says what it measured.
CONFIG_COLUMNS = (
    "backend",
    "gpu",
    "num_gpus",
    "tp",
    "emulate_tp",
    "batch",
    "input_len",
    "output_len",
    "dtype",
    "num_layers",
    "model_layers",
)
MEASURE_OPS_COLUMNS = [
    "study",
    "config",
    "repeat",
    "rank",
    "phase",
    "op",
    "time_ms",
    "kernel_ms",
    "calls",
    "modeled",
    "modeled_bytes",
    "timing_method",
    *CONFIG_COLUMNS,
    "model",
    "gpu_ids",
]
MEASURE_STEPS_COLUMNS = ["config", "repeat", "rank", "phase", "step", "context_len", "e2e_ms", "attributed_ms", "mode"]
MEASURE_COLLECTIVES_COLUMNS = [
    "config",
    "repeat",
    "rank",
    "phase",
    "step",
    "context_len",
    "call",
    "op",
    "kernel",
    "start_us",
    "end_us",
]
MEASURE_OUTPUTS = ("ops.csv", "steps.csv", "collectives.csv")  # the measure rule's outputs, besides provenance.json
# What a measure file of any version of this tool has (older files lack the newer columns;
# opbreak.checks reads them, upgrades them, and checks these are numeric).
MEASURE_OPS_REQUIRED = ("config", "repeat", "rank", "phase", "op", "time_ms", "calls", "modeled")
MEASURE_OPS_NUMERIC = ("time_ms", "kernel_ms", "calls", "modeled_bytes")
MEASURE_STEPS_REQUIRED = ("config", "repeat", "rank", "phase", "step", "context_len", "e2e_ms")
MEASURE_STEPS_NUMERIC = ("step", "context_len", "e2e_ms", "attributed_ms")
MEASURE_COLLECTIVES_REQUIRED = ("config", "repeat", "rank", "phase", "start_us", "end_us")

# ---- nccl-tests' own table (opbreak.nccl_tests): results/sweep/<link>.nccl-tests.csv
NCCL_TESTS_COLUMNS = [
    "size_bytes",
    "count",
    "type",
    "redop",
    "root",
    "time_s",
    "algbw_GBps",
    "busbw_GBps",
    "wrong",
    "inplace_time_s",
    "inplace_algbw_GBps",
    "inplace_busbw_GBps",
    "inplace_wrong",
]

# ---- The aggregate step: results/aggregate/
STATS = [  # the statistics columns of every summary over repeats (opbreak.stats.summarize)
    "n",
    "median_ms",
    "mean_ms",
    "std_ms",
    "iqr_ms",
    "cv",
    "ci_lo_ms",
    "ci_hi_ms",
    "n_outliers",
    "unstable",
    "repeats_for_5pct",
]
AGGREGATE_COLUMNS = {  # every column opbreak.aggregate writes (an all-failed study gets these headers)
    "ops_repeats": [
        "study",
        "config",
        "repeat",
        "rank",
        "phase",
        "op",
        "time_ms",
        "calls",
        "modeled",
        "modeled_bytes",
        "timing_method",
        "layer_scale",
        "time_ms_measured",
    ],
    "ops_summary": [
        "config",
        "phase",
        "op",
        *STATS,
        "calls",
        "modeled",
        "modeled_bytes",
        "phase_median_ms",
        "share",
        "layer_scale",
    ],
    "phase_totals": ["config", "repeat", "phase", "e2e_ms", "steps", "phase_added_ms"],
    "phase_summary": ["config", "phase", *STATS],
    "steps": [
        "config",
        "repeat",
        "phase",
        "step",
        "context_len",
        "e2e_ms",
        "attributed_ms",
        "e2e_ms_measured",
        "phase_added_ms",
    ],
}
# Per collective call and rank (opbreak.skew.split_calls, in memory): its kernel, wait and transfer time.
COLLECTIVE_SPLIT_COLUMNS = [c for c in MEASURE_COLLECTIVES_COLUMNS if c not in ("kernel", "start_us", "end_us")] + [
    "kernel_ms",
    "wait_ms",
    "transfer_ms",
]
# Collective calls per config, repeat, rank, phase (opbreak.skew.phase_totals; the decode truth's
# ``collectives`` table is their median over repeats).
COLLECTIVE_TOTALS_COLUMNS = [
    "config",
    "repeat",
    "rank",
    "phase",
    "captured_steps",
    "steps",
    "calls",
    "wait_ms",
    "transfer_ms",
    "wait_per_call_us",
    "transfer_per_call_us",
]
# Decode truth (opbreak.views), one row per config, rank, phase (op for rank_ops), medians over repeats:
# results/aggregate/{rank_ops,collectives,phase_split,capture_cost}.csv
SPLIT_PARTS = ("compute_ms", "transfer_ms", "wait_ms", "host_idle_ms")
_DECODE_KEY = ["config", "rank", "phase"]
DECODE_COLUMNS = {
    "rank_ops": _DECODE_KEY + ["op", "wall_ms", "kernel_ms", "repeats", "host_ms"],
    "collectives": _DECODE_KEY
    + [c for c in COLLECTIVE_TOTALS_COLUMNS if c not in _DECODE_KEY + ["repeat"]]
    + ["repeats"],
    "phase_split": _DECODE_KEY
    + ["wall_ms", "steps", "compute_ms", "transfer_ms", "wait_ms", "host_idle_ms", "wait_capped", "repeats"]
    + [p.replace("_ms", "_per_step_ms") for p in ("wall_ms",) + SPLIT_PARTS]
    + [p.replace("_ms", "_share") for p in SPLIT_PARTS],
    "capture_cost": _DECODE_KEY + ["events_overhead", "kernels_overhead", "repeats"],
}
# The decode probe (opbreak.host_views.decode_probe): results/aggregate/decode_probe.csv
PROBE_KEY = ["config", "rank", "context_len"]
PROBE_MEASURED = [  # as the probe records them per step
    "setup_ms",
    "issue_ms",
    "collective_call_ms",
    "collective_calls",
    "drain_ms",
    "sampling_ms",
    "step_ms",
    "replay_ms",
    "replay_host_ms",
    "replay_max_abs_diff",
    "near_plain_ms",
]
PROBE_DERIVED = ["launch_ms", "collective_call_us", "stack_ms", "host_over_replay_ms", "plain_ms", "closure"]
PROBE_COLUMNS = PROBE_KEY + PROBE_MEASURED + PROBE_DERIVED + ["closure_basis", "graph_error", "repeats"]
# The host side of each op (opbreak.host_views.host_ops): results/aggregate/host_ops.csv
HOST_OP_KEY = ["config", "rank", "phase", "op"]
HOST_OP_COLUMNS = HOST_OP_KEY + ["cpu_ms", "launches", "launch_ms", "syncs", "sync_ms", "repeats"]

# ---- The theory step: results/theory/
THEORY_OPS_COLUMNS = [  # theory ops.csv, in this order; the last three for theoretical_ratio
    "config",
    "phase",
    "op",
    "flops",
    "bytes",
    "comm_bytes",
    "calls_theory",
    "intensity",
    "t_compute_ms",
    "t_memory_ms",
    "t_link_ms",
    "t_bound_ms",
    "bound",
    "measured_ms",
    "modeled",
    "achieved_tflops",
    "achieved_GBps",
    "efficiency",
    "peak_tflops",
    "mem_bw_GBps",
    "link_GBps",
    "ceiling_source",
    "link_source",
    "t_link_catalog_ms",
    "peak_flops_per_s",
    "mem_bw_bytes_per_s",
    "link_bw_bytes_per_s",
]
ALLREDUCE_COLUMNS = [  # opbreak.theory_tables.allreduce_rows, in this order
    "config",
    "kind",
    "phase",
    "n",
    "size_bytes",
    "measured_ms",
    "sweep_ms",
    "model_ms",
    "alpha_us",
    "bw_GBps",
    "source",
    "t_latency_ms",
    "t_bandwidth_ms",
    "fit_on",
    "transport",
    "sweep_min_ms",
    "graph_ms",
    "percall_ms",
    "nccl_tests_ms",
]
# Per declared pair, the decode step with and without the host (opbreak.host_views.pair_speedups)
HOST_PAIR_COLUMNS = [
    "label",
    "a",
    "b",
    "context_len",
    "plain_a_ms",
    "plain_b_ms",
    "speedup_with_host",
    "replay_a_ms",
    "replay_b_ms",
    "speedup_without_host",
    "host_a_ms",
    "host_b_ms",
    "step_a_ms",
    "step_b_ms",
] + [f"{part}_{side}" for part in ("setup", "launch", "collective_call", "drain", "sampling") for side in "ab"]
# Predict mode (opbreak.predict, opbreak.seed_check)
PREDICTED_COLUMNS = [
    "config",
    "phase",
    "op",
    "op_class",
    "bound",
    "t_bound_ms",
    "efficiency",
    "predicted_ms",
    "predicted_share",
    "calibration",
    "status",
    "measured_ms",
    "predicted_over_measured",
    "modeled",
    "basis",
]
PREDICTED_PHASE_COLUMNS = [
    "config",
    "phase",
    "status",
    "predicted_ms",
    "predicted_ran_ms",
    "measured_ms",
    "predicted_over_measured",
    "host_bound_share",
    "calibration",
]
PREDICTED_PAIR_COLUMNS = [
    "label",
    "a",
    "b",
    "phase",
    "op",
    "predicted_a_ms",
    "predicted_b_ms",
    "predicted_speedup",
    "status_a",
    "status_b",
]
CLAIM_COLUMNS = [
    "id",
    "config",
    "section",
    "quote",
    "kind",
    "phase",
    "a",
    "b",
    "ops",
    "seed_value",
    "seed_theory",
    "reading",
    "predicted_value",
    "predicted_op",
    "predicted_share",
    "predicted_agrees",
    "analogue_value",
    "analogue_theory",
    "analogue_op",
    "analogue_agrees",
    "analogue_what",
    "analogue_source",
    "status",
    "if_differs",
    "analogue_note",
]

# ---- Every aggregate and theory table: its file and the columns the report relies on
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
    "allreduce": ("allreduce.csv", ALLREDUCE_COLUMNS),
    "decode_steps": ("decode_steps.csv", ["config", "step", "context_len", "t_bound_ms", "measured_ms"]),
    "ceilings": ("ceilings.csv", ["config", "gpu", "peak_tflops", "mem_bw_GBps", "link_GBps", "source"]),
}

# Predict mode (opbreak.predict, opbreak.seed_check): results/theory/
PREDICT_TABLES = {
    "predicted": ("predicted.csv", PREDICTED_COLUMNS),
    "predicted_phases": ("predicted_phases.csv", PREDICTED_PHASE_COLUMNS),
    "predicted_pairs": ("predicted_pairs.csv", PREDICTED_PAIR_COLUMNS),
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

DECODE_TABLES = {name: (f"{name}.csv", cols) for name, cols in DECODE_COLUMNS.items()}
DECODE_TABLES["decode_probe"] = ("decode_probe.csv", PROBE_COLUMNS)
DECODE_TABLES["host_ops"] = ("host_ops.csv", HOST_OP_COLUMNS)
DECODE_BOOL_COLS = ("wait_capped",)
TABLES.update(PREDICT_TABLES)
TABLES.update(DECODE_TABLES)
TABLES["host_pairs"] = ("host_pairs.csv", HOST_PAIR_COLUMNS)
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
    "fit_on",
    "transport",
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
