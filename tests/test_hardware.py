"""Hardware catalog: the seed's ratios, validation errors, name matching, links, CPU ceilings."""

import copy
import math

import pytest
import yaml

from conftest import ROOT
from opbreak.hardware import (
    CatalogError,
    link_between,
    load_catalog,
    lookup_gpu,
    match_device_name,
    measure_cpu_ceilings,
    validate_catalog,
)
from opbreak.theory import resource_ratio


@pytest.fixture(scope="module")
def cat():
    return load_catalog(ROOT / "config/hardware.yaml")


def test_seed_ratios(cat):
    a100, a40 = lookup_gpu(cat, "A100-SXM4-40GB"), lookup_gpu(cat, "A40")
    assert round(resource_ratio(a100["peak_tflops"], a40["peak_tflops"]), 2) == 2.08
    nv_a100 = link_between(cat, "A100-SXM4-40GB", {"link": "nvlink"}, 4)
    nv_a40 = link_between(cat, "A40", {"link": "nvlink-pairs"}, [0, 1])
    pcie_a40 = link_between(cat, "A40", {"link": "pcie"}, [0, 3])
    assert round(resource_ratio(nv_a100["bw_bytes_per_s"], nv_a40["bw_bytes_per_s"]), 2) == 5.33
    assert round(resource_ratio(nv_a40["bw_bytes_per_s"], pcie_a40["bw_bytes_per_s"]), 2) == 1.76
    # per-direction convention: half the datasheet's bidirectional totals
    assert nv_a100["bw_bytes_per_s"] == 300e9 and pcie_a40["bw_bytes_per_s"] == 32e9


def test_datasheet_numbers(cat):
    g = cat["gpus"]
    assert (g["A100-SXM4-40GB"]["mem_bw_GBps"], g["A100-SXM4-80GB"]["mem_bw_GBps"]) == (1555, 2039)
    assert (g["A40"]["peak_tflops"], g["A40"]["mem_bw_GBps"], g["A40"]["nvlink_GBps"]) == (149.7, 696, 112.5)
    assert (g["H100-SXM"]["peak_tflops"], g["H200"]["mem_bw_GBps"], g["H200"]["mem_GB"]) == (989, 4800, 141)
    assert "nvlink_GBps" not in g["L40S"] and "nvlink_GBps" not in g["T4"]
    for key, e in g.items():
        assert e["sources"]["url"].startswith("https://"), key


def test_nvlink_pairs_ring_crosses_pcie(cat):
    assert link_between(cat, "A40", "nvlink-pairs", 2)["kind"] == "nvlink"
    four = link_between(cat, "A40", "nvlink-pairs", 4)
    assert four["kind"] == "pcie" and four["bidir_GBps"] == 64
    assert link_between(cat, "A40", "nvlink-pairs", 1)["alpha_s"] == 0
    with pytest.raises(ValueError, match="T4"):
        link_between(cat, "T4", "nvlink", 2)
    with pytest.raises(ValueError, match="topology"):
        link_between(cat, "T4", "infiniband", 2)


@pytest.mark.parametrize(
    "gpu,n,kind,bidir",
    [
        ("A100-SXM4-40GB", 8, "nvlink", 600),
        ("H200", 4, "nvlink", 900),
        ("A40", 2, "nvlink", 112.5),
        ("A40", 8, "pcie", 64),
        ("T4", 4, "pcie", 32),
        ("L40S", 2, "pcie", 64),
    ],
)
def test_auto_topology(cat, gpu, n, kind, bidir):
    link = link_between(cat, gpu, "auto", n)
    assert (link["kind"], link["bidir_GBps"]) == (kind, bidir)
    assert link_between(cat, gpu, "none", n)["kind"] == "pcie"


def test_match_device_name(cat):
    assert match_device_name(cat, "NVIDIA A100-SXM4-40GB") == "A100-SXM4-40GB"
    assert match_device_name(cat, "A100-SXM4-40GB") == "A100-SXM4-40GB"
    assert match_device_name(cat, "NVIDIA H100 80GB HBM3") == "H100-SXM"
    assert match_device_name(cat, "NVIDIA H200") == "H200"
    assert match_device_name(cat, "Tesla T4") == "T4"
    assert match_device_name(cat, "NVIDIA GeForce RTX 4090") is None


def _raw():
    with open("config/hardware.yaml") as f:
        return yaml.safe_load(f)


@pytest.mark.parametrize(
    "entry,field,mutate",
    [
        ("A40", "peak_tflops", lambda e: e.pop("peak_tflops")),
        ("T4", "mem_bw_GBps", lambda e: e.__setitem__("mem_bw_GBps", -1)),
        ("H200", "names", lambda e: e.__setitem__("names", [])),
        ("L40S", "pcie.GBps", lambda e: e["pcie"].pop("GBps")),
        ("A40", "nvlink_topology", lambda e: e.pop("nvlink_topology")),
        ("A100-SXM4-40GB", "sources.url", lambda e: e.__setitem__("sources", {"datasheet": "x"})),
    ],
)
def test_validation_names_entry_and_field(entry, field, mutate):
    raw = copy.deepcopy(_raw())
    mutate(raw["gpus"][entry])
    with pytest.raises(CatalogError) as ei:
        validate_catalog(raw, "hw.yaml")
    msg = str(ei.value)
    assert repr(entry) in msg and field in msg, msg


def test_cpu_ceilings_must_not_be_typed(tmp_path):
    raw = _raw()
    raw["cpu"]["peak_tflops"] = 1.0
    p = tmp_path / "hw.yaml"
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(CatalogError, match="'cpu'.*peak_tflops"):
        load_catalog(p)


def test_measure_cpu_ceilings():
    c = measure_cpu_ceilings()
    assert 1e-3 < c["peak_tflops"] < 100 and 0.5 < c["mem_bw_GBps"] < 5000
    assert math.isfinite(c["mem_bw_GBps"]) and math.isfinite(c["peak_tflops"])


TOPO_A40 = """\tGPU0\tGPU1\tGPU2\tGPU3\tCPU Affinity\tNUMA Affinity
GPU0\t X \tNV4\tPXB\tSYS\t0-31\t0
GPU1\tNV4\t X \tSYS\tPXB\t0-31\t0
GPU2\tPXB\tSYS\t X \tNV4\t32-63\t1
GPU3\tSYS\tPXB\tNV4\t X \t32-63\t1
"""


def test_topology_read_from_nvidia_smi_topo():
    from opbreak.hardware import topology_from_nvidia_smi

    assert topology_from_nvidia_smi(TOPO_A40, [0, 1]) == "nvlink"  # the bridged pair
    assert topology_from_nvidia_smi(TOPO_A40, [0, 2]) == "pcie"
    assert topology_from_nvidia_smi(TOPO_A40, [0, 1, 2, 3]) == "pcie"  # the ring crosses PCIe
    assert topology_from_nvidia_smi(TOPO_A40, [0, 5]) is None  # not in the matrix: catalog decides
    assert topology_from_nvidia_smi("", [0, 1]) is None
