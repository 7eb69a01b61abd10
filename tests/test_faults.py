"""Faults end in bounded time, leave no orphans and lose nothing (CPU backend).

Real faults from outside: SIGKILL a rank, SIGSTOP a rank so its peer's
collective hangs until the process-group timeout, SIGTERM the job, and an
interrupted Snakemake run resumed with --rerun-incomplete.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pandas as pd
import psutil
import pytest
import yaml

from conftest import ROOT, copy_workflow, dry_run_jobs, snakemake
from opbreak.checks import read_measurement
from opbreak.config import ConfigError, load_model, resolve
from opbreak.config_checks import check_calibration
from opbreak.locks import host_lock

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
    assert "exited with code -9 (killed by SIGKILL)" in log and "no output written" in log, log[-2000:]
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
    # the job's failure names the rank's own reason, not only its exit code
    assert re.search(r"rank 0 exited with code 1 \(.*[Tt]imed out", log), log[-2000:]
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


def test_interrupted_pipeline_resumes_and_reruns_only_what_is_missing(run_copy):
    wf = run_copy  # t1 and t2 measured to completion already (the shared run)
    edit(wf, lambda c: c["configs"].append({"name": "slow", "tp": 1, "output_len": 3000}))
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
    readme = (ROOT / "README.md").read_text()
    assert "`python -m opbreak.unlock && snakemake --rerun-incomplete report/all.md`" in readme
    u = subprocess.run([sys.executable, "-m", "opbreak.unlock"], cwd=wf, capture_output=True, text=True, timeout=120)
    assert u.returncode == 0, u.stderr  # a hard kill leaves snakemake's lock behind
    todo = dry_run_jobs(wf, "--rerun-incomplete", "report/all.md")
    assert "measure[config=slow,repeat=0]" in todo
    assert {"aggregate", "theory", "report"} <= set(todo), todo
    assert not any(
        j.startswith("measure[config=t1,repeat=0") or j.startswith("measure[config=t2,repeat=0") for j in todo
    ), todo
    snakemake(wf, "--rerun-incomplete", TARGET, timeout=900)  # (theory and report: as any run)
    for f, mtime in done.items():
        assert os.stat(wf / f).st_mtime_ns == mtime, f"{f} was measured again"
    assert (wf / "results/measure/slow/rep0/ops.csv").exists()


def test_a_failing_config_is_retried_then_recorded_and_the_report_still_renders(run_copy):
    wf = run_copy
    doomed = {"name": "doomed", "tp": 1, "timeout_s": 1, "output_len": 100000}
    edit(wf, lambda c: (c.update(retries=1), c["configs"].append(doomed)))
    p = snakemake(wf, "report/all.md", timeout=900, check=False)
    log = p.stdout + p.stderr
    assert p.returncode == 1, log[-3000:]  # loud: a failed measurement fails the run
    tail = p.stderr.strip().splitlines()[-4:]
    assert any(ln.startswith("  FAILED doomed rep0: ") and "timed out" in ln for ln in tail), tail
    assert "Trying to restart job" in log or "attempt" in log.lower()  # retried once
    prov = json.loads((wf / "results/measure/doomed/rep0/provenance.json").read_text())
    assert prov["status"] == "failed" and "timed out" in prov["error"]
    failures = (wf / "results/aggregate/failures.csv").read_text()
    assert "doomed" in failures and "t1" not in failures
    report = (wf / "report/all.md").read_text()
    assert "doomed" in report and "measure failed (repeats 0)" in report and "timed out" in report


# ---------------------------------------------------------------------------------------------
# Issue 18: nothing measured is ever lost or silently wrong, and a failed run says so.
# One real default run (module fixture); each case works on its own copy of that folder.

TARGET = "results/aggregate/ops_summary.csv"


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    wf = copy_workflow(tmp_path_factory.mktemp("done") / "wf")
    cfg = yaml.safe_load((ROOT / "tests/data/tiny.yaml").read_text())
    cfg["repeats"] = 1  # measurements are one at a time per host: keep the shared run short
    (wf / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    snakemake(wf, TARGET, timeout=900)
    return wf


@pytest.fixture
def run_copy(done_run, tmp_path):
    dst = tmp_path / "wf"
    shutil.copytree(done_run, dst, symlinks=True)
    return dst


def run(wf, *args, env=None, timeout=600):
    e = dict(os.environ, **(env or {}))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    return subprocess.run(cmd, cwd=wf, capture_output=True, text=True, timeout=timeout, env=e)


def edit(wf, fn):
    path = wf / "config/config.yaml"
    cfg = yaml.safe_load(path.read_text())
    fn(cfg)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def stored_files(wf) -> dict:
    """{relative path: sha256} of every file in the store."""
    root = wf / "measurements"
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def tail(p, n=6) -> str:
    return "\n".join(p.stderr.strip().splitlines()[-n:])


def test_a_failed_rerun_of_a_changed_spec_loses_nothing_and_is_loud(run_copy):
    wf = run_copy
    before = stored_files(wf)
    old = (wf / "results/measure/t1/rep0/ops.csv").read_bytes()
    edit(wf, lambda c: (c.update(retries=0), c["configs"][0].update(timeout_s=1, output_len=100000)))
    p = run(wf, TARGET)
    assert p.returncode == 1, tail(p, 30)
    assert "FAILED t1 rep0: config 't1': timed out after 1 s" in tail(p, 12)
    # said before any job and again under the failure: the store holds t1 under the old spec
    hint = "the store holds 1 repeat(s) of 't1' under another spec"
    assert f"note: t1 will be measured: {hint}" in p.stderr and "output_len: stored 4, now 100000" in p.stderr
    assert f"    t1: {hint}" in tail(p, 12)
    after = stored_files(wf)
    assert all(after.get(k) == v for k, v in before.items()), "a stored measurement changed or vanished"
    # back to the old spec: the stored measurement comes back, nothing is measured
    edit(wf, lambda c: c["configs"][0].update(timeout_s=120, output_len=4))
    p = run(wf, TARGET)
    assert p.returncode == 0, tail(p, 30)
    assert (wf / "results/measure/t1/rep0/ops.csv").read_bytes() == old
    assert "restored from the store" in (wf / "logs/measure/t1/rep0.log").read_text()


def test_a_gpu_config_on_a_host_without_gpus_is_loud_unless_expected(run_copy):
    wf = run_copy
    gpu = dict(name="g1", backend="lightllm", gpu="H100-SXM", num_gpus=1, timing="cuda_events", repeats=1)
    edit(wf, lambda c: c["configs"].append(gpu))
    p = run(wf, TARGET)
    assert p.returncode == 1 and "FAILED g1 rep0: config 'g1': backend 'lightllm' on device cuda" in tail(p)
    edit(wf, lambda c: c.update(expect_missing_hardware=True))
    p = run(wf, TARGET, "-R", "aggregate")
    assert p.returncode == 0, tail(p, 30)
    assert "FAILED g1 rep0" in tail(p) and "expect_missing_hardware: true (exit status 0)" in tail(p)


def test_a_failed_forced_remeasure_keeps_the_stored_run_and_a_second_measurement_waits(run_copy, tmp_path):
    wf = run_copy
    old = (wf / "results/measure/t1/rep0/ops.csv").read_bytes()
    env = dict(OPBREAK_LOCK_DIR=str(tmp_path / "locks"), OPBREAK_LOCK_WAIT_S="1")
    os.environ["OPBREAK_LOCK_DIR"] = env["OPBREAK_LOCK_DIR"]
    try:
        with host_lock({"device": "cpu"}, 5, "the test"):  # another measurement runs on this host
            p = run(wf, TARGET, "--forcerun", "measure", "--config", "remeasure=[t1]", env=env)
    finally:
        del os.environ["OPBREAK_LOCK_DIR"]
    assert p.returncode == 1, tail(p, 30)
    assert "FAILED t1 rep0: rerun failed: another measurement held" in tail(p)
    log = (wf / "logs/measure/t1/rep0.log").read_text()
    assert "waiting for" in log and "pid" in log  # it said who holds the host
    assert (wf / "results/measure/t1/rep0/ops.csv").read_bytes() == old  # the stored run, kept
    assert "restored from the store" in (wf / "logs/measure/t2/rep0.log").read_text()


def test_a_live_measurement_blocks_the_recovery(run_copy, tmp_path):
    env = dict(os.environ, OPBREAK_LOCK_DIR=str(tmp_path / "locks"))
    os.environ["OPBREAK_LOCK_DIR"] = env["OPBREAK_LOCK_DIR"]
    try:
        with host_lock({"device": "cpu"}, 5, "t9 repeat 0"):
            u = subprocess.run(
                [sys.executable, "-m", "opbreak.unlock"], cwd=run_copy, env=env, capture_output=True, text=True
            )
    finally:
        del os.environ["OPBREAK_LOCK_DIR"]
    assert u.returncode == 2 and "refusing to unlock" in u.stderr and "t9 repeat 0" in u.stderr
    u = subprocess.run([sys.executable, "-m", "opbreak.unlock"], cwd=run_copy, env=env, capture_output=True, text=True)
    assert u.returncode == 0, u.stderr


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda t: os.urandom(3000), "not a text CSV"),
        (lambda t: "\n".join(t.splitlines()[:5]) + "\n", "4 rows: cut off?"),
        (lambda t: t.replace(t.splitlines()[3].split(",")[6], "nan", 1), "NaN"),
        (lambda t: t.replace(t.splitlines()[3].split(",")[6], "-5.0", 1), "negative"),
    ],
    ids=["random-bytes", "cut-after-4-rows", "nan", "negative"],
)
def test_a_bad_measure_file_stops_aggregate_with_one_line(done_run, tmp_path, damage, problem):
    wf = tmp_path / "wf"
    shutil.copytree(done_run, wf, symlinks=True)
    f = wf / "results/measure/t2/rep0/ops.csv"
    new = damage(f.read_text())
    f.write_bytes(new if isinstance(new, bytes) else new.encode())
    p = run(wf, TARGET)
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("opbreak aggregate: bad measurement file: results/measure/t2/rep0/ops.csv: "), last
    assert problem in last and "Traceback" not in p.stderr + p.stdout


def test_a_deleted_repeat_comes_back(run_copy):
    wf = run_copy
    stored = (wf / "results/measure/t2/rep0/ops.csv").read_bytes()
    shutil.rmtree(wf / "results/measure/t2/rep0")
    p = run(wf, TARGET)
    assert p.returncode == 0, tail(p, 30)
    assert (wf / "results/measure/t2/rep0/ops.csv").read_bytes() == stored
    assert "restored from the store" in (wf / "logs/measure/t2/rep0.log").read_text()
    assert dry_run_jobs(wf, TARGET) == []


def test_importing_rerunning_and_rerendering_never_change_an_imported_measurement(done_run, tmp_path):
    src = tmp_path / "other-host.tar.gz"
    with tarfile.open(src, "w:gz") as tf:
        tf.add(done_run / "results/measure", arcname=".")
    src_hash = hashlib.sha256(src.read_bytes()).hexdigest()
    wf = copy_workflow(tmp_path / "wf")
    cfg = yaml.safe_load((ROOT / "tests/data/tiny.yaml").read_text())
    cfg.update(repeats=1, expect_missing_hardware=True)
    cfg["import"] = [str(src)]
    (wf / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(wf, TARGET)  # import
    first = stored_files(wf)
    assert len([k for k in first if k.endswith("ops.csv")]) == 2
    for log in (wf / "logs/measure").rglob("*.log"):
        assert "restored from the store" in log.read_text()  # never measured here
    prov = json.loads((wf / "results/aggregate/provenance.json").read_text())
    assert {p["origin"] for p in prov} == {f"imported from {src}"} and all(p["host"] for p in prov)
    snakemake(wf, "--forcerun", "measure", "report/all.md")  # rerun every measure job and re-render
    assert stored_files(wf) == first
    assert hashlib.sha256(src.read_bytes()).hexdigest() == src_hash
    entries = list((wf / "measurements").glob("*/*/rep*/*"))
    assert entries and all(not os.access(e / "ops.csv", os.W_OK) or os.geteuid() == 0 for e in entries)
    assert all(oct(os.stat(e / "ops.csv").st_mode)[-3:] == "444" for e in entries)


BAD_STUDY = """\
study: tiny
repeats: 1000
seed: 1180591620717411303424
ratio_flag: .nan
models:
  micro: config/models/tiny.yaml
  lst: lst.yaml
defaults:
  model: micro
  batch: 4
  batch: 64
  input_len: 16
  output_len: 4
  gpu_mem_fraction: .inf
configs:
  - name: "t1\\n"
    tp: 0
  - name: big
    batch: 65536
    input_len: 100000
    output_len: 100000
    gpu_mem_fraction: 0.9
  - name: w
    weights: wdir
  - name: w2
    weights: wdir2
calibrate_from: cal
allreduce_sweep: {sizes: [1099511627776]}
"""


def test_every_user_error_at_once_no_traceback_no_job(tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    (wf / "config/config.yaml").write_text(BAD_STUDY)
    (wf / "lst.yaml").write_text("- 1\n- 2\n")
    for d, st in (("wdir", b"not safetensors"), ("wdir2", len(b"{}").to_bytes(8, "little") + b"{}")):
        (wf / d).mkdir()
        (wf / d / "config.json").write_text("{not json")
        (wf / d / "model.safetensors").write_bytes(st)
    (wf / "cal").mkdir()
    (wf / "cal/ops.csv").write_text("config,phase,op,time\na,prefill,ffn,1\n")
    p = run(wf, "report/all.md")
    err = p.stderr
    assert p.returncode == 1 and "Traceback" not in err + p.stdout
    for needle in (
        "config/config.yaml: key 'batch' given twice",
        "repeats: 1000 is greater than the maximum of 100",
        "seed: 1180591620717411303424 is greater than the maximum",
        "ratio_flag: nan is not a finite number",
        "defaults.gpu_mem_fraction: inf is not a finite number",
        "configs[0] ('t1\\n').tp: 0 is less than the minimum of 1",
        "configs[0] ('t1\\n').name: 't1\\n' is not a safe path part",
        "models.lst: file 'lst.yaml' holds a list, not a mapping",
        "configs[2] ('w').weights: 'wdir'/model.safetensors is not a safetensors file",
        "configs[3] ('w2').weights: 'wdir2'/config.json is not valid JSON",
        "calibrate_from: cal/ops.csv lacks columns",
        "allreduce_sweep.sizes[0]: 1099511627776 is greater than the maximum",
        "configs[1] ('big'): needs ~",
    ):
        assert needle in err, (needle, err[-3000:])
    assert not (wf / "results").exists() and not (wf / "logs").exists()


def test_calibrate_from_with_nan_times_is_refused(tmp_path):
    t = pd.read_csv(ROOT / "docs/examples/single-gpu/report/tables/ops.csv")
    i = t.index[(t["modeled"].astype(str) == "False") & t["measured_ms"].notna()][0]
    t.loc[i, "measured_ms"] = float("nan")
    t.to_csv(tmp_path / "ops.csv", index=False)
    (errs,) = check_calibration(str(tmp_path), root="/")
    assert "must be finite and positive" in errs and f"row {i + 2}" in errs


def test_measurements_of_earlier_versions_still_load():
    folders = sorted((ROOT / "docs/examples").glob("*/measure*/*/rep*"))
    assert len(folders) >= 10
    for d in folders:
        prov = json.loads((d / "provenance.json").read_text())
        prov_, ops, steps, _ = read_measurement(d, prov["spec"], repeat=prov["repeat"])
        assert len(ops) and "kernel_ms" in ops and "mode" in steps  # not captured then: empty


def test_duplicate_keys_are_refused_in_model_files(tmp_path):
    (tmp_path / "m.yaml").write_text("hidden_size: 64\nhidden_size: 128\n")
    with pytest.raises(ConfigError, match="key 'hidden_size' given twice"):
        load_model("m.yaml", "m", root=tmp_path)
