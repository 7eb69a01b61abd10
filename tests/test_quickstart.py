"""What the README tells a new user to run works after the README's own install command.

A fresh virtual environment (no test extras: CI's own environment hides gaps, e.g. pygments
arriving through pytest), a copy of the checkout, the Quick start's install-and-run line
verbatim, then `snakemake --report report.html`, which the README suggests next.
"""

import os
import re
import shutil
import subprocess
import sys
import time
import venv

import pytest

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def quick_start_run_line():
    """The Quick start's first command line: `pip install -e ".[cpu]" && snakemake ... report/all.md`."""
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", README, re.S).group(1)
    line = next(ln for ln in block.splitlines() if "snakemake" in ln)
    return line.split("#")[0].strip()


def checkout_copy(dst):
    """The files a fresh clone would have (tracked plus untracked, not ignored): no results, no egg-info."""
    p = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    for rel in filter(None, p.stdout.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    return dst


@pytest.mark.fresh_venv
def test_readme_quick_start_and_html_report_work_in_a_fresh_venv(tmp_path):
    run_line = quick_start_run_line()
    assert run_line.startswith('pip install -e ".[cpu]" && snakemake'), run_line
    assert "`snakemake --report report.html`" in README
    src = checkout_copy(tmp_path / "src")
    venv.create(tmp_path / "venv", with_pip=True)  # python -m venv: nothing of this environment's packages
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{tmp_path / 'venv' / 'bin'}{os.pathsep}{env['PATH']}"
    env["MPLBACKEND"] = "Agg"
    times = {}
    for name, cmd in [("install+run", run_line), ("report", "snakemake --report report.html")]:
        t = time.monotonic()
        p = subprocess.run(["bash", "-c", cmd], cwd=src, env=env, capture_output=True, text=True, timeout=900)
        times[name] = time.monotonic() - t
        assert p.returncode == 0, f"{cmd!r} failed in a fresh venv:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    assert (src / "report/all.md").is_file()
    html = (src / "report.html").read_text(errors="replace")
    assert "Operator breakdown" in html
    has_pytest = subprocess.run(
        [
            str(tmp_path / "venv/bin/python"),
            "-c",
            "import importlib.util as u; print(u.find_spec('pytest') is not None)",
        ],
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()
    assert has_pytest == "False", "the fresh venv got the test extras: they would hide gaps again"
    print(f"fresh venv: {', '.join(f'{k} {v:.0f} s' for k, v in times.items())} ({sys.version.split()[0]})")
