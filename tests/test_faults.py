"""Faults end in bounded time, leave no orphans and lose nothing (CPU backend).

Real faults from outside: SIGKILL a rank, SIGSTOP a rank so its peer's
collective hangs until the process-group timeout, SIGTERM the job, and an
interrupted Snakemake run resumed with --rerun-incomplete.
"""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import yaml

from conftest import ROOT, copy_workflow, dry_run_jobs, snakemake
from opbreak.config import resolve

LONG = dict(output_len=4000, input_len=16)  # seconds of decode for the micro model


def write_spec(tmp_path, tiny_config, name="t2", **over):
    tiny_config["defaults"].update(over)
    spec = resolve(tiny_config, name, root=ROOT)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(spec))
    return path


def start_measure(spec_path, outdir):
    return subprocess.Popen(
        [sys.executable, "-m", "opbreak.measure", "--spec", str(spec_path), "--repeat", "0", "--outdir", str(outdir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def ranks_of(proc, n, timeout=60):
    """The rank processes (spawned children running python) once all n exist."""
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = [k for k in parent.children(recursive=True) if "python" in k.name().lower()]
        ranks = [k for k in kids if "spawn_main" in " ".join(k.cmdline())]
        if len(ranks) >= n:
            time.sleep(3)  # let them initialise and start the static batch
            return ranks
        time.sleep(0.1)
    raise AssertionError("ranks did not start")


def assert_no_output_and_no_orphans(outdir, ranks):
    for f in ("ops.csv", "steps.csv", "provenance.json"):
        assert not (outdir / f).exists(), f"{f} written by a failed run"
    time.sleep(0.5)
    alive = [r for r in ranks if r.is_running() and r.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"orphan ranks: {alive}"


def test_killed_rank_fails_the_job_fast(tmp_path, tiny_config):
    spec = write_spec(tmp_path, tiny_config, **LONG)
    out = tmp_path / "out"
    p = start_measure(spec, out)
    ranks = ranks_of(p, 2)
    t = time.monotonic()
    ranks[1].send_signal(signal.SIGKILL)
    log, _ = p.communicate(timeout=60)
    assert p.returncode != 0
    assert time.monotonic() - t < 30
    assert "exited with code" in log and "no output written" in log, log[-2000:]
    assert_no_output_and_no_orphans(out, ranks)


def test_hung_collective_times_out(tmp_path, tiny_config):
    spec = write_spec(tmp_path, tiny_config, collective_timeout_s=5, **LONG)
    out = tmp_path / "out"
    p = start_measure(spec, out)
    ranks = ranks_of(p, 2)
    t = time.monotonic()
    ranks[1].send_signal(signal.SIGSTOP)  # peer never answers: rank 0's all_reduce hangs
    try:
        log, _ = p.communicate(timeout=90)
    finally:
        for r in ranks:
            if r.is_running():
                r.send_signal(signal.SIGCONT)
    assert p.returncode != 0
    assert time.monotonic() - t < 60, "not bounded by collective_timeout_s"
    assert_no_output_and_no_orphans(out, ranks)


def test_job_timeout_kills_the_ranks(tmp_path, tiny_config):
    spec = write_spec(tmp_path, tiny_config, timeout_s=4, output_len=100000, input_len=16)
    out = tmp_path / "out"
    t = time.monotonic()
    p = start_measure(spec, out)
    ranks = ranks_of(p, 2, timeout=20)
    log, _ = p.communicate(timeout=60)
    assert p.returncode != 0 and "timed out after 4 s" in log, log[-2000:]
    assert time.monotonic() - t < 40
    assert_no_output_and_no_orphans(out, ranks)


def test_sigterm_of_the_job_kills_its_ranks(tmp_path, tiny_config):
    spec = write_spec(tmp_path, tiny_config, **LONG)
    out = tmp_path / "out"
    p = start_measure(spec, out)
    ranks = ranks_of(p, 2)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=30)
    assert p.returncode != 0
    assert_no_output_and_no_orphans(out, ranks)


def test_interrupted_pipeline_resumes_and_reruns_only_what_is_missing(tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    cfg = yaml.safe_load((ROOT / "tests/data/tiny.yaml").read_text())
    cfg["configs"].append({"name": "slow", "tp": 1, "output_len": 3000})
    (wf / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    # run the fast measure jobs to completion first
    snakemake(wf, "results/measure/t1/rep0/ops.csv", "results/measure/t2/rep0/ops.csv")
    done = {
        f: os.stat(wf / f).st_mtime_ns for f in ("results/measure/t1/rep0/ops.csv", "results/measure/t2/rep0/ops.csv")
    }
    # then interrupt a run while the slow config is measuring
    p = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", "report/all.md"],
        cwd=wf,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not any((wf / "logs/measure/slow").glob("*.log")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    os.killpg(p.pid, signal.SIGKILL)  # hard stop: no cleanup by snakemake
    p.wait(30)
    assert not (wf / "results/measure/slow/rep0/ops.csv").exists()
    # the README's recovery command, step by step
    assert "`snakemake --unlock && snakemake --rerun-incomplete report/all.md`" in (ROOT / "README.md").read_text()
    snakemake(wf, "--unlock")  # a hard kill leaves snakemake's lock behind
    todo = dry_run_jobs(wf, "--rerun-incomplete", "report/all.md")
    assert "measure[config=slow,repeat=0]" in todo
    assert {"aggregate", "theory", "report"} <= set(todo), todo
    assert not any(
        j.startswith("measure[config=t1,repeat=0") or j.startswith("measure[config=t2,repeat=0") for j in todo
    ), todo
    snakemake(wf, "--rerun-incomplete", "report/all.md", timeout=900)
    for f, mtime in done.items():
        assert os.stat(wf / f).st_mtime_ns == mtime, f"{f} was measured again"
    assert (wf / "report/all.md").exists()


def test_a_failing_config_is_retried_then_recorded_and_the_report_still_renders(tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    cfg = yaml.safe_load((ROOT / "tests/data/tiny.yaml").read_text())
    cfg["retries"] = 1
    cfg["configs"].append({"name": "doomed", "tp": 1, "timeout_s": 1, "output_len": 100000})
    (wf / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    p = snakemake(wf, "report/all.md", timeout=900)
    log = p.stdout + p.stderr
    assert "Trying to restart job" in log or "attempt" in log.lower()  # retried once
    prov = json.loads((wf / "results/measure/doomed/rep0/provenance.json").read_text())
    assert prov["status"] == "failed" and "timed out" in prov["error"]
    failures = (wf / "results/aggregate/failures.csv").read_text()
    assert "doomed" in failures and "t1" not in failures
    report = (wf / "report/all.md").read_text()
    assert "doomed" in report and "measure failed (repeats 0, 1)" in report and "timed out" in report
