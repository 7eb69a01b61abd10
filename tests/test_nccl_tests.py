"""nccl-tests as the sweep's reference: its output parsed, its command, the config field, the report rows."""

import copy
import math
import os

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from opbreak import nccl_tests
from opbreak.config_checks import check
from opbreak.contract import NCCL_TESTS_COLUMNS
from opbreak.theory_tables import allreduce_rows

# Real captures: all_reduce_perf -b 4K -e 1G -f 4 -g 2 -n 20 -w 5 -d half on 2 x H200 (NV18), 2026-11-30,
# nccl-tests 2.19.6 built on the GPU host with its nvcc and the NCCL torch ships (2.28.9).
FIXTURE = ROOT / "tests/data/nccl_tests_2.19.6_all_reduce_h200x2_nvlink.txt"
FIXTURE_NOP2P = ROOT / "tests/data/nccl_tests_2.19.6_all_reduce_h200x2_nop2p.txt"
CATALOG = {"gpus": {}}


def test_parse_fixture_every_size_both_placements():
    df, meta = nccl_tests.parse(FIXTURE.read_text())
    assert list(df.columns) == NCCL_TESTS_COLUMNS
    assert df["size_bytes"].tolist() == [4096 * 4**i for i in range(10)]
    assert (df["count"] == df["size_bytes"] // 2).all() and set(df["type"]) == {"half"}
    assert set(df["redop"]) == {"sum"} and set(df["root"]) == {-1}
    assert df["time_s"].iloc[0] == pytest.approx(11.97e-6)
    assert df.set_index("size_bytes").loc[268435456, "busbw_GBps"] == pytest.approx(301.28)
    assert df["inplace_time_s"].iloc[-1] == pytest.approx(3264.19e-6)
    # nccl-tests' own formula: algbw = bytes / time (GB/s); busbw = algbw * 2(n-1)/n = algbw for 2 GPUs
    np.testing.assert_allclose(df["algbw_GBps"], df["size_bytes"] / df["time_s"] / 1e9, rtol=2e-3, atol=5e-3)
    assert (df["wrong"] == 0).all() and (df["inplace_wrong"] == 0).all()
    assert meta == dict(
        per_iteration=False, version="2.19.6", n_threads=1, n_gpus=2, warmup=5, iters=20, avg_busbw_GBps=133.238
    )


def test_parse_the_host_memory_path_capture():
    df, meta = nccl_tests.parse(FIXTURE_NOP2P.read_text())
    assert df["size_bytes"].tolist() == [4096 * 4**i for i in range(9)] and meta["n_gpus"] == 2
    assert df.set_index("size_bytes").loc[268435456, "busbw_GBps"] == pytest.approx(28.96)
    assert (df["wrong"] == 0).all()


def test_parse_skips_logs_reads_na_and_per_iteration_columns():
    text = (
        "# nccl-tests version 2.19.6 nccl-headers=22703 nccl-library=22703\n"
        "host:1:1 [0] NCCL INFO NCCL version 2.27.3+cuda12.9\n"
        "# %10s  %12s  %8s  %6s  %6s  time  algbw  busbw  #wrong  i_min  i_max  i_p99  i_cv%%\n"
        % ("size", "", "", "", "")
        + "        4096          1024     float     sum      -1    21.50    0.19    0.19    N/A    20.1    30.2"
        "    29.9    4.10    21.00    0.20    0.20    N/A    20.0    25.0    24.9    3.00\n"
        "        8192          2048     float     sum      -1  1.2e+04\n"  # cut short: not a result
    )
    df, meta = nccl_tests.parse(text)
    assert meta["per_iteration"] and len(df) == 1
    assert df["time_s"].iloc[0] == pytest.approx(21.5e-6) and df["inplace_time_s"].iloc[0] == pytest.approx(21e-6)
    assert math.isnan(df["wrong"].iloc[0])


def test_parse_refuses_output_without_a_table():
    with pytest.raises(nccl_tests.NcclTestsError, match="no nccl-tests result table"):
        nccl_tests.parse("Test CUDA failure common.cu:1304 'no CUDA-capable device is detected'\n")


def test_command_line_follows_the_sweep_sizes():
    geo = [4096 * 4**i for i in range(5)]
    assert nccl_tests.run_args("/x/all_reduce_perf", geo, 2) == [
        "/x/all_reduce_perf",
        *("-b", "4096", "-e", "1048576", "-f", "4"),
        *("-g", "2", "-n", "20", "-w", "5", "-d", "half"),
    ]
    assert nccl_tests.size_args([4096, 65536, 1048576, 3000000])[-1] == "2"  # not geometric: factor 2


def test_build_command_links_torch_nccl_outside_the_repo(tmp_path):
    cmd = nccl_tests.build_command("/src/nccl-tests", tmp_path / "b", "/site/nvidia/nccl", cuda_home="/usr/local/cuda")
    assert f"ln -sf /site/nvidia/nccl/lib/libnccl.so.2 {tmp_path}/b/nccl/lib/libnccl.so" in cmd
    assert f"make -C /src/nccl-tests/src MPI=0 BUILDDIR={tmp_path}/b NCCL_HOME={tmp_path}/b/nccl" in cmd
    assert "CUDA_HOME=/usr/local/cuda" in cmd
    assert nccl_tests.default_build_dir("/work/x/.gpu/nccl-tests").startswith(os.path.expanduser("~/.cache/opbreak/"))


def test_at_sizes_exact_interpolated_and_outside():
    ref = pd.DataFrame({"size_bytes": [4096, 16384], "time_s": [20e-6, 40e-6]})
    got = nccl_tests.at_sizes(ref, [4096, 8192, 16384, 65536])
    assert got[0] == pytest.approx(20e-6) and got[2] == pytest.approx(40e-6)
    assert got[1] == pytest.approx(np.sqrt(20e-6 * 40e-6)) and math.isnan(got[3])
    assert math.isnan(nccl_tests.at_sizes(None, [4096])[0])


@pytest.mark.parametrize(
    "field, fragment",
    [
        (
            {"binary": "/nonexistent/all_reduce_perf"},
            "nccl_tests.binary: '/nonexistent/all_reduce_perf' is not an exec",
        ),
        ({"src": "/nonexistent/nccl-tests"}, "nccl_tests.src: '/nonexistent/nccl-tests' is not a nccl-tests source"),
        ({}, "nccl_tests: set exactly one of 'binary'"),
        ({"binary": "/bin/true", "src": "/tmp"}, "nccl_tests: set exactly one of 'binary'"),
    ],
)
def test_config_names_the_field_and_the_fix(tiny_config, field, fragment):
    cfg = copy.deepcopy(tiny_config)
    cfg["allreduce_sweep"] = {"sizes": [4096, 65536]}
    cfg["nccl_tests"] = field
    errs = check(cfg, catalog=CATALOG)
    assert len(errs) == 1 and fragment in errs[0], errs


def test_config_accepts_a_source_folder_and_wants_the_sweep(tiny_config, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src/all_reduce.cu").write_text("")
    cfg = copy.deepcopy(tiny_config)
    cfg["allreduce_sweep"] = {"sizes": [4096, 65536]}
    cfg["nccl_tests"] = {"src": str(tmp_path)}
    assert check(cfg, catalog=CATALOG) == []
    cfg["allreduce_sweep"] = {"sizes": []}
    assert "set allreduce_sweep.sizes too" in check(cfg, catalog=CATALOG)[0]


def test_allreduce_rows_put_nccl_tests_beside_the_sweep_and_fit_both():
    ref, _ = nccl_tests.parse(FIXTURE.read_text())
    sizes = [4096, 262144, 16777216, 268435456]
    sweep = pd.DataFrame(
        {
            "size_bytes": sizes,
            "time_s": [24e-6, 30e-6, 80e-6, 890e-6],
            "time_min_s": [22e-6, 28e-6, 78e-6, 885e-6],
            "percall_median_s": [45e-6, 50e-6, 100e-6, 920e-6],
            "graph_time_s": [19e-6, 27e-6, 77e-6, 884e-6],
        }
    )
    spec = dict(name="h200-tp2", tp=2, transport="auto", model=None)
    link = dict(alpha_s=5e-6, bw_bytes_per_s=300e9, source="fit")
    theory = pd.DataFrame(columns=["config", "op"])
    spec["model"] = dict(hidden_size=4096)
    spec.update(batch=1, input_len=8, dtype="float16")
    rows = pd.DataFrame(allreduce_rows(spec, link, sweep, theory, ref))
    sw = rows[rows["kind"] == "sweep"].set_index("size_bytes")
    assert sw.loc[4096, "nccl_tests_ms"] == pytest.approx(11.97e-3)
    assert sw.loc[268435456, "nccl_tests_ms"] == pytest.approx(890.98e-3)
    assert sw.loc[4096, "graph_ms"] == pytest.approx(19e-3) and sw.loc[4096, "percall_ms"] == pytest.approx(45e-3)
    assert sw["fit_on"].iloc[0].startswith("sweep time_p10_s")
    nt = rows[rows["kind"] == "nccl_tests"]
    assert len(nt) == 10 and set(nt["source"]) == {"fit to nccl-tests"}
    assert nt["fit_on"].iloc[0].startswith("nccl-tests")
    assert 200 < nt["bw_GBps"].iloc[0] < 400  # NVLink-class bandwidth fitted from nccl-tests' points
    # without a reference: the same sweep rows, the nccl-tests column empty
    rows0 = pd.DataFrame(allreduce_rows(spec, link, sweep, theory))
    assert rows0[rows0["kind"] == "sweep"]["nccl_tests_ms"].isna().all() and "nccl_tests" not in set(rows0["kind"])


def _study(wf, nccl_tests_field):
    import yaml

    cfg = yaml.safe_load((wf / "config/config.yaml").read_text())
    if nccl_tests_field is not None:
        cfg["nccl_tests"] = nccl_tests_field
    (wf / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def test_workflow_runs_nccl_tests_per_link_only_when_set(workflow_copy, tmp_path):
    from conftest import dry_run_jobs, snakemake

    wf = workflow_copy
    assert not [j for j in dry_run_jobs(wf, "report/all.md") if j.startswith("nccl_tests")]
    fake = tmp_path / "all_reduce_perf"
    fake.write_text(f"#!/bin/sh\ncat {FIXTURE}\n")
    fake.chmod(0o755)
    _study(wf, {"binary": str(fake)})
    jobs = dry_run_jobs(wf, "report/all.md")
    assert "nccl_tests[link=cpu-tp2-auto]" in jobs and "nccl_tests_build" not in jobs
    src = tmp_path / "nccl-tests"
    (src / "src").mkdir(parents=True)
    (src / "src/all_reduce.cu").write_text("")
    _study(wf, {"src": str(src)})
    jobs = dry_run_jobs(wf, "report/all.md")
    assert "nccl_tests_build" in jobs and "nccl_tests[link=cpu-tp2-auto]" in jobs
    _study(wf, {"src": str(tmp_path / "missing")})
    p = snakemake(wf, "-n", "report/all.md", check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "invalid config (nothing was run)" in out
    assert f"nccl_tests.src: '{tmp_path / 'missing'}' is not a nccl-tests source folder" in out


def test_the_build_rule_passes_a_gencode_that_starts_with_a_dash():
    """2 x H200, 2026-11-30: `--gencode '-gencode=...'` was read as an option and the build failed."""
    import re
    import shlex

    shell = (ROOT / "rules/measure.smk").read_text().split("rule nccl_tests_build:")[1].split("rule ")[0]
    line = "".join(re.findall(r'"([^"]*)"', shell.split("shell:")[1]))
    line = line.format(
        params=type("P", (), dict(src="/s", build_dir="", gencode="-gencode=arch=compute_90,code=sm_90")),
        output="o.json",
        log="l",
    )
    argv = shlex.split(line.split(">")[0])[3:]  # after python -m opbreak.nccl_tests
    args = nccl_tests.cli().parse_args(argv)
    assert args.cmd == "build" and args.gencode == "-gencode=arch=compute_90,code=sm_90" and args.src == "/s"
