# Config validation and per-config lookups shared by every step.
import sys

sys.path.insert(0, workflow.basedir)

from snakemake.utils import validate

from opbreak.config import ConfigError, check, merged, prepend_pythonpath, resolve
from opbreak.hardware import load_catalog

# Jobs (shell:, script:, conda envs, SLURM) import opbreak from this checkout.
prepend_pythonpath(workflow.basedir)

validate(config, "../config/schema/config.schema.yaml")

_catalog_path = config.get("hardware_catalog", "config/hardware.yaml")
_errors = check(config, root=".", catalog=load_catalog(_catalog_path))
if _errors:
    raise ConfigError(
        "invalid config (nothing was run):\n  - " + "\n  - ".join(_errors)
    )

CONFIGS = {e["name"]: merged(config, e) for e in config["configs"]}
SPECS = {name: resolve(config, name) for name in CONFIGS}
PAIRS = config.get("pairs", [])
SLURM = config.get("slurm") or {}
RETRIES = config.get("retries", 1)


wildcard_constraints:
    config="[A-Za-z0-9][A-Za-z0-9._-]*",
    repeat=r"\d+",


def repeats_of(name):
    return range(CONFIGS[name]["repeats"])


def measure_outputs(kind):
    return [
        f"results/measure/{c}/rep{r}/{kind}" for c in CONFIGS for r in repeats_of(c)
    ]


def sweep_configs():
    """Configs that run real collectives get an all-reduce size sweep."""
    if "allreduce_sweep" not in config:
        return []
    return [c for c, s in SPECS.items() if s["tp"] > 1 and not s["emulate_tp"]]


def slurm_field(field, default):
    """Per-config SLURM setting, else the study's, else a default."""

    def get(wildcards):
        own = CONFIGS[wildcards.config].get("slurm") or {}
        value = own.get(field, SLURM.get(field, default))
        if field == "gpu_model" and not CONFIGS[wildcards.config]["num_gpus"]:
            return None  # never ask for --gpus=<model>:0
        return value

    return get


def calibration_input(wildcards):
    """The measured theory table `calibrate_from` names (a folder holding ops.csv, or the file)."""
    c = config.get("calibrate_from")
    if not c:
        return []
    path = c if isinstance(c, str) else c["tables"]
    return [path if path.endswith(".csv") else f"{path}/ops.csv"]
