"""The whole pipeline on a tiny CPU config, and what a config change reruns.

One real run (module fixture) in a temp copy of the workflow; then dry runs
(`snakemake -n`) after each kind of change, compared as exact job lists.
"""

import shutil
import time

import pandas as pd
import pytest
import yaml

from conftest import ROOT, copy_workflow, dry_run_jobs, snakemake


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    wf = copy_workflow(tmp_path_factory.mktemp("pipeline") / "wf")
    shutil.copy(ROOT / "tests/data/tiny.yaml", wf / "config/config.yaml")
    snakemake(wf, "report/all.md", timeout=900)
    return wf


def jobs(wf, *args):
    return dry_run_jobs(wf, "report/all.md", *args)


def edit_config(wf, fn):
    path = wf / "config/config.yaml"
    old = path.read_text()
    cfg = yaml.safe_load(old)
    fn(cfg)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return lambda: path.write_text(old)


DOWNSTREAM = ["aggregate", "report", "theory"]


def test_nothing_changed_runs_nothing(ran):
    assert jobs(ran) == []


def test_changing_one_configs_batch_reruns_only_that_config(ran):
    restore = edit_config(ran, lambda c: c["configs"][0].update(batch=3))
    try:
        assert jobs(ran) == sorted(
            ["spec[config=t1]", "measure[config=t1,repeat=0]", "measure[config=t1,repeat=1]"] + DOWNSTREAM
        )
    finally:
        restore()


def test_adding_a_repeat_adds_one_job(ran):
    restore = edit_config(ran, lambda c: c["configs"][1].update(repeats=3))
    try:
        assert jobs(ran) == sorted(["measure[config=t2,repeat=2]"] + DOWNSTREAM)
    finally:
        restore()


def test_changing_the_report_template_reruns_only_the_report(ran):
    tpl = ran / "report/templates/all.md.j2"
    old = tpl.read_text()
    try:
        time.sleep(1)
        tpl.write_text(old + "\n")
        assert jobs(ran) == ["report"]
    finally:
        tpl.write_text(old)
        snakemake(ran, "--touch", "report/all.md")


def test_changing_the_hardware_catalog_reruns_theory_and_report_only(ran):
    cat = ran / "config/hardware.yaml"
    old = cat.read_text()
    try:
        time.sleep(1)
        cat.write_text(old + "\n# edited\n")
        assert jobs(ran) == ["report", "theory"]
    finally:
        cat.write_text(old)
        snakemake(ran, "--touch", "report/all.md")


def test_every_phase_is_attributed_and_repeats_kept(ran):
    reps = pd.read_csv(ran / "results/aggregate/ops_repeats.csv")
    steps = pd.read_csv(ran / "results/aggregate/steps.csv")
    assert set(reps["repeat"]) == {0, 1} and set(reps["config"]) == {"t1", "t2"}
    assert set(reps[reps["config"] == "t2"]["rank"]) == {0, 1}
    r0 = reps[(reps["rank"] == 0) & (~reps["modeled"])]
    per_phase = r0.groupby(["config", "repeat", "phase"])["time_ms"].sum()
    e2e = steps.groupby(["config", "repeat", "phase"])["e2e_ms"].sum()
    pd.testing.assert_series_equal(per_phase.sort_index(), e2e.sort_index(), check_names=False, rtol=1e-9)
    assert "unattributed" in set(reps["op"])


def test_summary_statistics_come_from_the_repeats(ran):
    reps = pd.read_csv(ran / "results/aggregate/ops_repeats.csv")
    summ = pd.read_csv(ran / "results/aggregate/ops_summary.csv")
    row = summ[(summ["config"] == "t2") & (summ["phase"] == "decode") & (summ["op"] == "all_reduce")].iloc[0]
    x = reps[
        (reps["config"] == "t2") & (reps["rank"] == 0) & (reps["phase"] == "decode") & (reps["op"] == "all_reduce")
    ]
    assert row["median_ms"] == pytest.approx(x["time_ms"].median())
    assert row["n"] == 2 and row["ci_lo_ms"] <= row["median_ms"] <= row["ci_hi_ms"]
    assert row["calls"] == 4 * (2 * 2 + 1)


def test_provenance_is_recorded(ran):
    import json

    prov = json.loads((ran / "results/measure/t2/rep0/provenance.json").read_text())
    for key in ("host", "devices", "versions", "spec", "started", "finished"):
        assert prov[key], key
    assert prov["spec"]["tp"] == 2 and prov["versions"]["torch"]


def test_snakemake_html_report_collects_the_figures(ran):
    snakemake(ran, "--report", "report.html")
    html = (ran / "report.html").read_text(errors="replace")
    assert "pie_t1.png" in html and "Operator breakdown" in html
