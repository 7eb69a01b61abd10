"""The host setup of a rank process: torch threads and CPU pinning, applied and recorded.

Why it is a config field: LightLLM 0.0.1's decode is host-bound, so the threads each rank may use
and the cores it runs on change the time per decode step (up to 1.5x on 2 x H200, issue 20).
The reference is ``torchrun``'s convention: with more than one process per node it sets
``OMP_NUM_THREADS=1`` unless the user set it, and pins nothing. Here:

- ``threads_per_rank``: torch intra-op threads (null = the allowed CPUs over the ranks);
- ``cpu_affinity``: ``none`` (the OS schedules), ``disjoint`` (rank r gets the r-th of ``world``
  equal slices of the allowed CPUs), ``numa`` (the CPUs of the NUMA node its GPU hangs off,
  sliced between the ranks on that node; ``disjoint`` where the node is unknown).

What was applied is recorded per rank in provenance (``backend_extra[rank].host_setup``).
"""

from __future__ import annotations

import os
from pathlib import Path


def parse_cpulist(text: str) -> list[int]:
    """``0-3,8,10-11`` -> [0, 1, 2, 3, 8, 10, 11] (the kernel's cpulist format)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def slice_for(cpus: list[int], index: int, parts: int) -> list[int]:
    """The ``index``-th of ``parts`` contiguous, near-equal slices of ``cpus`` (never empty)."""
    cpus = sorted(cpus)
    n = len(cpus)
    lo, hi = index * n // parts, (index + 1) * n // parts
    return cpus[lo:hi] or cpus[index % n : index % n + 1]


def gpu_numa_cpus(device_index: int) -> list[int] | None:
    """CPUs of the NUMA node of CUDA device ``device_index`` (sysfs), or None if unknown."""
    try:
        import torch

        p = torch.cuda.get_device_properties(device_index)
        bus = f"{p.pci_domain_id:04x}:{p.pci_bus_id:02x}:{p.pci_device_id:02x}.0"
        node = int(Path(f"/sys/bus/pci/devices/{bus}/numa_node").read_text())
        if node < 0:
            return None
        return parse_cpulist(Path(f"/sys/devices/system/node/node{node}/cpulist").read_text())
    except Exception:
        return None


def choose_cpus(affinity: str, rank: int, world: int, allowed: list[int], numa: list[int] | None) -> list[int] | None:
    """The CPUs a rank is pinned to, or None for no pinning. Pure: tested without a GPU."""
    if affinity == "none":
        return None
    if affinity == "numa" and numa:
        local = sorted(set(numa) & set(allowed)) or sorted(numa)
        return slice_for(local, rank, world) if world > 1 else local
    return slice_for(allowed, rank, world)


def apply(spec: dict, rank: int, world: int, cuda: bool) -> dict:
    """Pin this process and set its torch threads as the spec says; return what was applied."""
    import torch

    allowed = sorted(os.sched_getaffinity(0))
    numa = gpu_numa_cpus(torch.cuda.current_device()) if cuda and spec["cpu_affinity"] == "numa" else None
    cpus = choose_cpus(spec["cpu_affinity"], rank, world, allowed, numa)
    if cpus:
        os.sched_setaffinity(0, cpus)
    threads = spec["threads_per_rank"] or max(1, len(cpus or allowed) // (1 if cpus else world))
    torch.set_num_threads(threads)
    return dict(
        cpu_affinity=spec["cpu_affinity"],
        numa_cpus_found=numa is not None,
        allowed_cpus=len(allowed),
        **record(),
    )


def record() -> dict:
    """This process's host setup as it is now: threads and the CPUs it may run on."""
    import torch

    cpus = sorted(os.sched_getaffinity(0))
    try:
        status = Path("/proc/self/status").read_text()
        os_threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
    except Exception:
        os_threads = None
    return dict(
        torch_threads=torch.get_num_threads(),
        torch_interop_threads=torch.get_num_interop_threads(),
        omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
        cpus=compress(cpus),
        n_cpus=len(cpus),
        os_threads=os_threads,
    )


def compress(cpus: list[int]) -> str:
    """[0, 1, 2, 3, 8] -> '0-3,8' (the inverse of :func:`parse_cpulist`)."""
    out, start, prev = [], None, None
    for c in sorted(cpus):
        if start is None:
            start = prev = c
        elif c == prev + 1:
            prev = c
        else:
            out.append(f"{start}-{prev}" if prev != start else str(start))
            start = prev = c
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else str(start))
    return ",".join(out)
