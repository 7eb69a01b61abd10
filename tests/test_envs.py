"""envs/*.yaml list the same packages (and floors) as pyproject.toml."""

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names of PyPI packages
CONDA_NAME = {
    "torch": "pytorch",
    "snakemake": "snakemake-minimal",
    "matplotlib": "matplotlib-base",
    "seaborn": "seaborn-base",
}


def parse(req):
    m = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", req.strip())
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_envs_match_pyproject():
    deps = dict(parse(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    conda = {}
    for env in sorted((ROOT / "envs").glob("*.yaml")):
        for d in yaml.safe_load(env.read_text())["dependencies"]:
            if isinstance(d, str):
                name, spec = parse(d)
                if name in ("python", "pip"):
                    continue
                assert conda.setdefault(name, spec) == spec, f"{env.name}: {name}{spec} differs from another env"
    want = {CONDA_NAME.get(k, k): v for k, v in deps.items()}
    assert set(conda) == set(want), (
        f"only in envs: {set(conda) - set(want)}; only in pyproject: {set(want) - set(conda)}"
    )
    for name, spec in want.items():
        assert conda[name] == spec, f"{name}: envs say {conda[name]!r}, pyproject says {spec!r}"
