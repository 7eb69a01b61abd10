# Config validation and per-config lookups shared by every step.
import os
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)

from snakemake.utils import validate

from opbreak.config import (
    merged,
    prepend_pythonpath,
    resolve,
    with_defaults,
)
from opbreak.config_checks import check
from opbreak.hardware import load_catalog
from opbreak.transport import link_key
from opbreak import store

# Jobs (shell:, script:, conda envs, SLURM) import opbreak from this checkout.
prepend_pythonpath(workflow.basedir)

# Every problem at once (schema and meaning), each naming config and field, before any job.
# The config files are re-read strictly (a key given twice is refused), as are model files.
_errors = check(
    config,
    root=".",
    catalog=load_catalog(with_defaults(config)["hardware_catalog"]),
    files=workflow.configfiles,
)


def _refuse(errors):
    """Every user error at once, one line each, no traceback; nothing runs."""
    print(
        "invalid config (nothing was run):\n  - " + "\n  - ".join(errors),
        file=sys.stderr,
    )
    sys.exit(1)


if _errors:
    _refuse(_errors)

# Defaults live in the schema only: validate() fills them, rules read config[k]; each config
# entry is completed by merged(): schema default < `defaults:` < its own fields.
validate(config, "../config/schema/config.schema.yaml")

CONFIGS = {e["name"]: merged(config, e) for e in config["configs"]}
SPECS = {name: resolve(config, name) for name in CONFIGS}
PAIRS = config["pairs"]
RETRIES = config["retries"]

# The measurement store (opbreak/store.py): good measurements kept read-only, keyed by spec hash.
# At every start (main process only): imports copied in, good results/measure outputs archived,
# so no later job (a changed spec, a forced or failed rerun) can lose them.
STORE = store.DEFAULT_ROOT
REMEASURE = set(CONFIGS) if config["remeasure"] == "all" else set(config["remeasure"])
if workflow.is_main_process:
    try:
        for _src in config["import"]:
            store.import_source(STORE, _src)
    except store.ImportError_ as e:
        _refuse([str(e)])
    store.adopt(STORE, "results/measure", set(CONFIGS))
STORED = store.stored_repeats(
    STORE, SPECS, {c: range(CONFIGS[c]["repeats"]) for c in CONFIGS}
)
# Said at the start, before any job: a config measured anew although the store holds it under
# another spec (a changed field) names that spec and the fields, so nothing measured goes unseen.
if workflow.is_main_process:
    for _c in CONFIGS:
        if _c not in REMEASURE and any(
            (_c, r) not in STORED for r in range(CONFIGS[_c]["repeats"])
        ):
            _hint = store.other_specs_hint(STORE, SPECS[_c])
            if _hint:
                print(f"note: {_c} will be measured: {_hint}", file=sys.stderr)


wildcard_constraints:
    config="[A-Za-z0-9][A-Za-z0-9._-]*",
    repeat=r"\d+",
    link=r"[A-Za-z0-9](?:(?!\.nccl-tests)[A-Za-z0-9._-])*",  # never <link>.nccl-tests: nccl-tests tables


def repeats_of(name):
    return range(CONFIGS[name]["repeats"])


# A repeat whose files were deleted is measured (or restored) again. Snakemake itself skips a
# missing intermediate file when everything downstream is up to date, so the aggregate tables
# are marked stale (mtime 0; derived files, regenerated): aggregate needs every repeat again.
# A failure record whose spec has a stored (e.g. imported) measurement is replaced by it.
_NOT_A_RUN = {
    "--dry-run",
    "--dryrun",
    "--just-print",
    "--touch",
    "-t",
    "--unlock",
    "--report",
}
_not_a_run = any(
    a in _NOT_A_RUN
    or a.startswith("--list")
    or a.startswith("--summary")
    or (a[:1] == "-" and a[1:2] != "-" and "n" in a[1:] and a[1:].isalpha())
    for a in sys.argv[1:]
)
_MEASURE_FILES = ("ops.csv", "steps.csv", "collectives.csv", "provenance.json")
if workflow.is_main_process and not _not_a_run:
    for (_c, _r), _entry in STORED.items():
        if _c not in REMEASURE and store.is_failure_record(
            f"results/measure/{_c}/rep{_r}"
        ):
            for _k in _MEASURE_FILES:
                Path(f"results/measure/{_c}/rep{_r}/{_k}").unlink(missing_ok=True)
_GONE = [
    (c, r)
    for c in CONFIGS
    for r in repeats_of(c)
    if not all(Path(f"results/measure/{c}/rep{r}/{k}").exists() for k in _MEASURE_FILES)
]
if _GONE and workflow.is_main_process and Path("results/aggregate").is_dir():
    if _not_a_run:
        print(
            f"opbreak: repeats without their files: {_GONE}; a run measures (or restores) them",
            file=sys.stderr,
        )
    else:
        for _f in Path("results/aggregate").glob("*"):
            os.utime(_f, (0, 0))


def stored(wc):
    """This repeat's spec has a stored good measurement: the job restores it, measures nothing."""
    return (wc.config, int(wc.repeat)) in STORED and wc.config not in REMEASURE


def measure_outputs(kind):
    return [
        f"results/measure/{c}/rep{r}/{kind}" for c in CONFIGS for r in repeats_of(c)
    ]


# One all-reduce sweep per link (GPU, rank count, transport) that a real-TP config runs on;
# the value is the config whose GPUs and resources the sweep borrows.
LINKS = {}
for _name, _spec in SPECS.items():
    if (
        config["allreduce_sweep"]["sizes"]
        and _spec["tp"] > 1
        and not _spec["emulate_tp"]
    ):
        LINKS.setdefault(link_key(_spec), _name)


# nccl-tests, the sweep's reference (study field `nccl_tests`): {} when absent, and nothing asks for it.
NCCL_TESTS = config.get("nccl_tests") or {}
NCCL_TESTS_BINARY = (
    "results/sweep/nccl-tests.build.json"
    if NCCL_TESTS.get("src")
    else os.path.abspath(NCCL_TESTS.get("binary") or "all_reduce_perf")
)
# Without the field, nccl-tests tables already in results/sweep/ (run on the GPU host, copied with its
# sweeps to render elsewhere) are still read, never produced.
NCCL_TESTS_OF = {
    link: f"results/sweep/{link}.nccl-tests.csv"
    for link in LINKS
    if NCCL_TESTS or os.path.exists(f"results/sweep/{link}.nccl-tests.csv")
}
# Each real-TP config's link (its sweep and nccl-tests files): the theory step is told, not left to guess.
LINK_OF = {
    name: link_key(spec)
    for name, spec in SPECS.items()
    if link_key(spec) in LINKS and not spec["emulate_tp"]
}


def link_spec(field):
    return lambda wc: SPECS[LINKS[wc.link]][field]


def slurm_field(field):
    """A config's SLURM setting: its own slurm block, else the study's, else the schema's default
    (a sweep takes its link's config)."""

    def get(wildcards):
        name = (
            wildcards.config if "config" in wildcards.keys() else LINKS[wildcards.link]
        )
        if field == "gpu_model" and not CONFIGS[name]["num_gpus"]:
            return None  # never ask for --gpus=<model>:0
        if field == "gpu_model" and "repeat" in wildcards.keys() and stored(wildcards):
            return None  # a restore from the store needs no GPU
        return CONFIGS[name]["slurm"].get(field)

    return get


def calibration_input(wildcards):
    """The measured theory table `calibrate_from` names (a folder holding ops.csv, or the file)."""
    c = config.get("calibrate_from")
    if not c:
        return []
    path = c if isinstance(c, str) else c["tables"]
    return [path if path.endswith(".csv") else f"{path}/ops.csv"]


_RUN = {}


def run_started():
    """onstart: hold this folder's run lock (python -m opbreak.unlock checks it); note the start."""
    import time

    from opbreak.locks import take_run_lock

    _RUN["t0"] = time.time()
    take_run_lock(".")


def run_summary(ok):
    """onsuccess/onerror: every failed measurement of this study, last in the terminal."""
    from opbreak.runsummary import summarize

    code = summarize(
        {c: list(repeats_of(c)) for c in CONFIGS},
        expect_missing_hardware=config["expect_missing_hardware"],
        since=_RUN.get("t0"),
    )
    if code or not ok:
        # onsuccess's return value is ignored by snakemake 9, a SystemExit is not (the exit
        # status); on error it keeps these lines last (no WorkflowError line after them).
        sys.exit(1)
