# Config validation and per-config lookups shared by every step.
import os
import sys

sys.path.insert(0, workflow.basedir)

from snakemake.utils import validate

from opbreak.config import (
    ConfigError,
    check,
    merged,
    prepend_pythonpath,
    resolve,
    with_defaults,
)
from opbreak.hardware import load_catalog
from opbreak.transport import link_key

# Jobs (shell:, script:, conda envs, SLURM) import opbreak from this checkout.
prepend_pythonpath(workflow.basedir)

# Every problem at once (schema and meaning), each naming config and field, before any job.
_errors = check(
    config, root=".", catalog=load_catalog(with_defaults(config)["hardware_catalog"])
)
if _errors:
    raise ConfigError(
        "invalid config (nothing was run):\n  - " + "\n  - ".join(_errors)
    )

# Defaults live in the schema only: validate() fills them, rules read config[k]; each config
# entry is completed by merged(): schema default < `defaults:` < its own fields.
validate(config, "../config/schema/config.schema.yaml")

CONFIGS = {e["name"]: merged(config, e) for e in config["configs"]}
SPECS = {name: resolve(config, name) for name in CONFIGS}
PAIRS = config["pairs"]
RETRIES = config["retries"]


wildcard_constraints:
    config="[A-Za-z0-9][A-Za-z0-9._-]*",
    repeat=r"\d+",
    link="[A-Za-z0-9][A-Za-z0-9._-]*",


def repeats_of(name):
    return range(CONFIGS[name]["repeats"])


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
NCCL_TESTS_CSVS = (
    expand("results/sweep/{link}.nccl-tests.csv", link=LINKS) if NCCL_TESTS else []
)


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
        return CONFIGS[name]["slurm"].get(field)

    return get


def calibration_input(wildcards):
    """The measured theory table `calibrate_from` names (a folder holding ops.csv, or the file)."""
    c = config.get("calibrate_from")
    if not c:
        return []
    path = c if isinstance(c, str) else c["tables"]
    return [path if path.endswith(".csv") else f"{path}/ops.csv"]
