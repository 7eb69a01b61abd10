"""The hardware catalog (config/hardware.yaml): load, validate, look up; a config's ceilings and link.

Why: every theoretical number in the report is a ratio of datasheet ceilings, so
each ceiling lives in one sourced file and a typo there must fail loudly, naming the
entry and the field. The CPU's ceilings are measured, never typed, so the CPU
backend's roofline compares against what this machine actually does.

Link convention: the catalog stores datasheet BIDIRECTIONAL totals (``nvlink_GBps``,
``pcie.GBps``); :func:`link_between` hands the ring model the per-direction bandwidth
(half of it). Ratios of either are the same (600/112.5 = 5.33, 112.5/64 = 1.76).

A config's ceilings (:func:`ceilings_for`) and catalog link (:func:`catalog_link`) are read
here, where the catalog is; the link fitted to a measured sweep instead is
:func:`opbreak.collectives.fit_sweep` (this module imports no model: it is the bottom floor).
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import yaml

LINK_KINDS = ("nvlink", "pcie", "nvlink-pairs")
TOPOLOGIES = LINK_KINDS + ("auto", "none")


class CatalogError(ValueError):
    """A hardware catalog entry is missing a field or holds an invalid value."""


def _fail(path, entry, field, why):
    raise CatalogError(f"hardware catalog {path}: entry {entry!r}: field {field!r}: {why}")


def _positive(path, entry, d, field, required=True, prefix=""):
    if field not in d:
        if required:
            _fail(path, entry, prefix + field, "missing")
        return
    v = d[field]
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
        _fail(path, entry, prefix + field, f"must be a positive number, got {v!r}")


def validate_catalog(cat: Mapping, path="<dict>") -> dict:
    """Check every entry; raise :class:`CatalogError` naming entry and field."""
    if not isinstance(cat, Mapping):
        raise CatalogError(f"hardware catalog {path}: top level must be a mapping")
    gpus = cat.get("gpus")
    if not isinstance(gpus, Mapping) or not gpus:
        _fail(path, "<top>", "gpus", "missing or empty mapping")
    for key, e in gpus.items():
        if not isinstance(e, Mapping):
            _fail(path, key, "<entry>", "must be a mapping")
        names = e.get("names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
            _fail(path, key, "names", "must be a non-empty list of strings")
        for f in ("peak_tflops", "mem_bw_GBps", "mem_GB"):
            _positive(path, key, e, f)
        for f in ("peak_tflops_fp32", "nvlink_GBps"):
            _positive(path, key, e, f, required=False)
        if "nvlink_GBps" in e and e.get("nvlink_topology") not in ("all", "pairs"):
            _fail(path, key, "nvlink_topology", "must be 'all' or 'pairs' where nvlink_GBps is given")
        pcie = e.get("pcie")
        if not isinstance(pcie, Mapping):
            _fail(path, key, "pcie", "missing mapping {gen, lanes, GBps}")
        for f in ("gen", "lanes", "GBps"):
            _positive(path, key, pcie, f, prefix="pcie.")
        src = e.get("sources")
        if not isinstance(src, Mapping):
            _fail(path, key, "sources", "missing mapping")
        for f in ("datasheet", "url"):
            if not isinstance(src.get(f), str) or not src[f].strip():
                _fail(path, key, f"sources.{f}", "missing")
        for f in ("peak_tflops", "mem_bw_GBps", "nvlink_GBps", "pcie"):
            if f in e and f not in src:
                _fail(path, key, f"sources.{f}", f"no source given for {f}")
    links = cat.get("links")
    if not isinstance(links, Mapping):
        _fail(path, "links", "<entry>", "missing mapping {nvlink: {alpha_us}, pcie: {alpha_us}}")
    for kind in ("nvlink", "pcie"):  # the kinds link_between resolves every topology to
        if not isinstance(links.get(kind), Mapping):
            _fail(path, "links", kind, "missing mapping {alpha_us}")
        _positive(path, "links", links[kind], "alpha_us", prefix=f"{kind}.")
    cpu = cat.get("cpu")
    if cpu is not None:
        if not isinstance(cpu, Mapping) or cpu.get("measured") is not True:
            _fail(path, "cpu", "measured", "the cpu entry must say measured: true")
        for f in ("peak_tflops", "mem_bw_GBps"):
            if f in cpu:
                _fail(path, "cpu", f, "CPU ceilings are measured, not typed")
    return dict(cat)


def load_catalog(path: str | Path) -> dict:
    """Read and validate the hardware catalog YAML."""
    path = Path(path)
    with open(path) as f:
        cat = yaml.safe_load(f)
    return validate_catalog(cat, path)


def lookup_gpu(catalog: Mapping, key: str) -> dict:
    """One GPU entry (a copy, with ``key`` added); KeyError lists the known keys."""
    gpus = catalog["gpus"]
    if key not in gpus:
        raise KeyError(f"GPU {key!r} not in hardware catalog; known: {sorted(gpus)}")
    e = copy.deepcopy(dict(gpus[key]))
    e["key"] = key
    return e


def _norm_name(s: str) -> str:
    s = " ".join(str(s).strip().lower().split())
    return s[len("nvidia ") :] if s.startswith("nvidia ") else s


def match_device_name(catalog: Mapping, torch_name: str) -> str | None:
    """Catalog key whose ``names`` contain the reported device name, else None.

    Case, repeated spaces and a leading "NVIDIA " are ignored, so old drivers'
    "A100-SXM4-40GB" and new ones' "NVIDIA A100-SXM4-40GB" both match.
    """
    want = _norm_name(torch_name)
    for key, e in catalog["gpus"].items():
        if any(_norm_name(n) == want for n in e["names"]):
            return key
    return None


def link_between(catalog: Mapping, gpu_key: str, topology: Mapping | str, ranks: int | Sequence) -> dict:
    """The link a ring all-reduce over ``ranks`` GPUs runs at: the slowest on the ring.

    topology: nvlink|pcie|nvlink-pairs|auto|none (or ``{link: ...}``). nvlink-pairs (A40
    bridges, PCIe A100/H100 bridges): NVLink only when the ring is one bridged pair (n == 2);
    for n > 2 the ring crosses PCIe. auto: from the catalog's ``nvlink_topology`` (all ->
    nvlink, pairs -> nvlink-pairs, no NVLink -> pcie); none (no peer link): PCIe through the
    host. The latency is the catalog's ``links.<kind>.alpha_us``. Returns kind, bidir_GBps,
    bw_bytes_per_s (per direction = bidir/2, the ring model's B), alpha_s, n.
    """
    n = ranks if isinstance(ranks, int) else len(ranks)
    gpu = lookup_gpu(catalog, gpu_key)
    kind = topology if isinstance(topology, str) else topology["link"]
    if kind not in TOPOLOGIES:
        raise ValueError(f"topology link must be one of {TOPOLOGIES}, got {kind!r}")
    if kind == "auto":  # .get: a GPU without NVLink has no nvlink_topology
        kind = {"all": "nvlink", "pairs": "nvlink-pairs"}.get(gpu.get("nvlink_topology"), "pcie")
    elif kind == "none":
        kind = "pcie"
    if n <= 1:
        return {"kind": "none", "bidir_GBps": float("inf"), "bw_bytes_per_s": float("inf"), "alpha_s": 0.0, "n": n}
    if kind == "nvlink-pairs":
        kind = "nvlink" if n == 2 else "pcie"
    if kind == "nvlink":
        if "nvlink_GBps" not in gpu:
            raise ValueError(f"GPU {gpu_key!r} has no NVLink in the catalog")
        bidir = float(gpu["nvlink_GBps"])
    else:
        bidir = float(gpu["pcie"]["GBps"])
    alpha_us = float(catalog["links"][kind]["alpha_us"])
    return {
        "kind": kind,
        "bidir_GBps": bidir,
        "bw_bytes_per_s": bidir / 2 * 1e9,
        "alpha_s": alpha_us * 1e-6,
        "n": n,
    }


def topology_from_nvidia_smi(text: str, gpu_ids: Sequence[int]) -> str | None:
    """'nvlink' if every hop of the ring over ``gpu_ids`` is NV# in ``nvidia-smi topo -m``, 'pcie' if
    any hop is PIX/PXB/PHB/NODE/SYS, None if the matrix does not cover those GPUs (then the catalog decides)."""
    if not text or len(gpu_ids) < 2:
        return None
    rows = {}
    header = None
    for line in text.splitlines():
        cells = line.split()
        if not cells:
            continue
        if header is None and cells[0].startswith("GPU"):
            header = [c for c in cells if c.startswith("GPU")]
            continue
        if header and cells[0].startswith("GPU") and len(cells) > len(header):
            rows[cells[0]] = dict(zip(header, cells[1 : len(header) + 1]))
    hops = [(gpu_ids[i], gpu_ids[(i + 1) % len(gpu_ids)]) for i in range(len(gpu_ids))]
    kinds = []
    for a, b in hops:
        cell = rows.get(f"GPU{a}", {}).get(f"GPU{b}")
        if cell is None:
            return None
        kinds.append("nvlink" if cell.startswith("NV") else "pcie")
    return "pcie" if "pcie" in kinds else "nvlink"


# --------------------------------------------------------------------------- a config's ceilings and link
def ceilings_for(spec, catalog, provenance) -> dict:
    """Peak compute and memory bandwidth of a config: datasheet for GPUs, measured for the CPU."""
    if spec["gpu"] == "cpu":
        # One host, one set of ceilings: the median over every CPU run on the hosts this
        # config ran on, so configs of one machine share them (a pair's ratio is then 1).
        hosts = {p["host"] for p in provenance if p["config"] == spec["name"]}
        rows = [  # .get: runs of earlier versions recorded no ceilings
            p["ceilings"] for p in provenance if p["host"] in hosts and p.get("ceilings") and p["spec"]["gpu"] == "cpu"
        ]
        if not rows:
            return dict(peak_tflops=math.nan, mem_bw_GBps=math.nan, source="missing")
        return dict(
            peak_tflops=float(np.median([r["peak_tflops"] for r in rows])),
            mem_bw_GBps=float(np.median([r["mem_bw_GBps"] for r in rows])),
            source="measured",
        )
    hw = catalog["gpus"][spec["gpu"]]
    peak = hw["peak_tflops"]
    if spec["dtype"] == "float32" and hw.get("peak_tflops_fp32"):  # optional: not every datasheet gives it
        peak = hw["peak_tflops_fp32"]
    return dict(peak_tflops=float(peak), mem_bw_GBps=float(hw["mem_bw_GBps"]), source="datasheet")


def _physical_ids(prov, spec):
    """GPU ids as nvidia-smi numbers them: the job's CUDA_VISIBLE_DEVICES (set by preflight).
    Runs of earlier versions recorded no ``env``: then the config's own ``gpu_ids``."""
    cvd = ((prov.get("env") or {}).get("CUDA_VISIBLE_DEVICES") or "").split(",")
    return [int(x) for x in cvd] if cvd and all(x.strip().isdigit() for x in cvd) else spec["gpu_ids"]


def catalog_link(spec, catalog, provenance=()) -> dict | None:
    """A config's all-reduce (alpha, B) from the catalog, or None where the catalog has no number
    for it: one rank, the CPU, or a transport other than ``auto`` (the host-memory path: only a
    measured sweep models it; the fit to one is :func:`opbreak.collectives.fit_sweep`).

    Topology as the config states it; ``auto`` reads the ``nvidia-smi topo -m`` its runs recorded
    (the catalog's ``nvlink_topology`` decides where they recorded none or disagree)."""
    n = spec["tp"]
    if n < 2 or spec["gpu"] == "cpu" or spec["transport"] != "auto":
        return None
    topology = spec["topology"]
    if topology == "auto" and not spec["emulate_tp"]:
        seen = {  # .get: only CUDA runs record a topology, and nvidia-smi may have failed
            topology_from_nvidia_smi(p.get("topology") or "", _physical_ids(p, spec))
            for p in provenance
            if p["config"] == spec["name"]
        } - {None}
        if len(seen) == 1:
            topology = seen.pop()
    link = link_between(catalog, spec["gpu"], topology, n)
    return dict(alpha_s=link["alpha_s"], bw_bytes_per_s=link["bw_bytes_per_s"], source="catalog")


def measure_cpu_ceilings(dtype=None, *, matmul_n: int = 1024, copy_mib: int = 64, runs: int = 5) -> dict:
    """Measured CPU ceilings: {peak_tflops, mem_bw_GBps} (medians of ``runs``).

    Compute: an n x n x n matmul (2 n^3 FLOPs). Memory: a copy of ``copy_mib`` MiB
    into a preallocated tensor, counting read + write bytes. Sized to stay well
    under ~3 s on 2 cores.
    """
    import statistics

    import torch

    dtype = torch.float32 if dtype is None else dtype
    a = torch.randn(matmul_n, matmul_n, dtype=dtype)
    b = torch.randn(matmul_n, matmul_n, dtype=dtype)
    c = torch.empty(matmul_n, matmul_n, dtype=dtype)
    torch.mm(a, b, out=c)  # warm-up
    mm_t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        mm_t.append(time.perf_counter() - t0)
    elems = copy_mib * 2**20 // torch.tensor([], dtype=dtype).element_size()
    src = torch.ones(elems, dtype=dtype)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up, faults the pages in
    cp_t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        dst.copy_(src)
        cp_t.append(time.perf_counter() - t0)
    nbytes = 2 * src.numel() * src.element_size()
    return {
        "peak_tflops": 2 * matmul_n**3 / statistics.median(mm_t) / 1e12,
        "mem_bw_GBps": nbytes / statistics.median(cp_t) / 1e9,
    }
