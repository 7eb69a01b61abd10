import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# The unit tests' small LLaMA shape (GQA 4/2 heads, 2 layers); the default study's is config/models/tiny.yaml.
MINI_MODEL = dict(
    name="m",
    hidden_size=64,
    intermediate_size=160,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    vocab_size=256,
    rms_eps=1e-5,
    rope_theta=10000.0,
)


def run_spec(**fields) -> dict:
    """A measure job's spec for a unit test: the schema's defaults (as config.resolve fills them) + fields."""
    from opbreak.config import field_defaults

    return {**field_defaults(), **fields}


WORKFLOW_PARTS = ("Snakefile", "rules", "config", "scripts", "report/templates", "opbreak", "envs", "profiles")


@pytest.fixture
def tiny_config():
    return copy.deepcopy(yaml.safe_load((ROOT / "tests/data/tiny.yaml").read_text()))


def copy_workflow(dst: Path) -> Path:
    """A runnable copy of the workflow (sources only, no results) in dst."""
    for part in WORKFLOW_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dst / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (dst / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / part)
    return dst


def snakemake(workdir, *args, timeout=600, check=True):
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    p = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-6000:]}")
    return p


@pytest.fixture
def workflow_copy(tmp_path):
    return copy_workflow(tmp_path / "wf")


def dry_run_jobs(wf, *args):
    """`snakemake -n` -> sorted 'rule[wildcards]' strings (exact job lists for rerun tests)."""
    out = snakemake(wf, "-n", *args).stdout
    found, rule = [], None
    for line in out.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            if rule:
                found.append(rule)
            rule = m.group(1)
            continue
        m = re.match(r"^\s+wildcards: (.*)$", line)
        if m and rule:
            found.append(f"{rule}[{m.group(1).replace(' ', '')}]")
            rule = None
    if rule:
        found.append(rule)
    return sorted(found)
