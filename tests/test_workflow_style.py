"""The workflow follows Snakemake's conventions: lint clean, snakefmt formatted."""

import subprocess
import sys

from conftest import ROOT


def test_snakemake_lint_is_clean():
    p = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0 and "Lints for" not in p.stdout + p.stderr, p.stdout + p.stderr


def test_snakefmt_formatted():
    p = subprocess.run(
        ["snakefmt", "--check", "Snakefile", "rules/"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_every_rule_has_log_and_conda():
    text = "".join(
        (ROOT / "rules" / f).read_text() for f in ("measure.smk", "aggregate.smk", "theory.smk", "report.smk")
    )
    rules = text.count("\nrule ") + text.startswith("rule ")
    assert rules >= 6
    assert text.count("    log:") == rules and text.count("    conda:") == rules


def test_ruff_lint_is_clean():
    """pycodestyle, pyflakes, import order and bugbear ([tool.ruff] in pyproject.toml)."""
    p = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr


def test_ruff_formatted():
    p = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr
