"""How the ranks of one host talk: the config's ``transport`` as NCCL environment, and what NCCL chose.

``auto`` leaves NCCL's choice (on GPUs joined by NVLink: peer-to-peer over NVLink).
``no-p2p`` sets ``NCCL_P2P_DISABLE=1``: NCCL then stages every transfer through
shared host memory (its SHM transport), so the same two GPUs talk over PCIe and
the CPU's memory. That is a host-memory path, not PCIe peer-to-peer, and the report
says so. What NCCL actually used is read back from its own INFO log
(``Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM``) and kept in provenance.
"""

from __future__ import annotations

import glob
import os
import re

TRANSPORTS = {
    "auto": dict(env={}, label="NCCL's choice (NVLink peer-to-peer where the GPUs have it)"),
    "no-p2p": dict(
        env={"NCCL_P2P_DISABLE": "1"},
        label="host-memory path (NCCL_P2P_DISABLE=1: NCCL's shared-memory transport through the CPU)",
    ),
}
# NVLink multicast (NVLS) can take a shared host's GPUs down: off in every job we start.
SAFETY_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
# On a collective timeout (collective_timeout_s), torch's NCCL watchdog aborts the rank at once instead of
# first waiting 60 s for a debug dump nobody reads: on 2 x H200 a stopped peer ended the job 91 s after it
# stopped, 30 s of them the timeout. Set only where the user has not set them (to get the dump, set them).
FAIL_FAST_ENV = {"TORCH_NCCL_DUMP_ON_TIMEOUT": "0", "TORCH_NCCL_WAIT_TIMEOUT_DUMP_MILSEC": "0"}
_VIA = re.compile(r"Channel \d+(?:/\d+)? ?: \d+\[[^\]]*\] -> \d+\[[^\]]*\] via (\S+)")


def label(transport: str) -> str:
    return TRANSPORTS[transport]["label"]


def apply(transport: str, log_dir: str | None = None) -> dict:
    """Set the transport's NCCL variables (and NCCL's INFO log into ``log_dir``) in this process.

    Call before NCCL initialises; children inherit it. Returns what was set."""
    env = dict(SAFETY_ENV)
    env.update(TRANSPORTS[transport]["env"])
    if log_dir:
        env.update(NCCL_DEBUG="INFO", NCCL_DEBUG_SUBSYS="INIT", NCCL_DEBUG_FILE=os.path.join(log_dir, "nccl.%h.%p.log"))
    for k, v in env.items():
        os.environ[k] = v
    for k, v in FAIL_FAST_ENV.items():
        env[k] = os.environ.setdefault(k, v)
    return {k: v for k, v in env.items() if k != "NCCL_DEBUG_FILE"}


def used(log_dir: str) -> list[str]:
    """The transports NCCL's channels went over, read from its INFO logs (e.g. ``P2P/CUMEM``, ``SHM/direct/direct``)."""
    seen = set()
    for path in glob.glob(os.path.join(log_dir, "nccl.*.log")):
        with open(path, errors="replace") as f:
            seen.update(m.group(1) for m in _VIA.finditer(f.read()))
    return sorted(seen)


def link_key(spec: dict) -> str:
    """One all-reduce sweep serves every real-TP config on the same GPUs, rank count and transport."""
    return f"{spec['gpu']}-tp{spec['tp']}-{spec.get('transport', 'auto')}"
