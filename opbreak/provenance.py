"""Where a measurement came from, and the guards that stop a mislabelled one.

``preflight`` runs before any rank starts: no CUDA on a GPU config, or GPUs that
are not the ones the config declares, fail at once with the fix in the message.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path

from .hardware import load_catalog, match_device_name

ENV_KEYS = (
    "CUDA_VISIBLE_DEVICES",
    "CUDA_LAUNCH_BLOCKING",
    "NCCL_NVLS_ENABLE",
    "NCCL_P2P_DISABLE",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST",
    "NVSHMEM_DISABLE_NVLS",
    "SLURM_JOB_ID",
)


def _versions():
    import torch

    v = dict(python=platform.python_version(), torch=torch.__version__)
    for mod in ("triton", "lightllm", "numpy"):
        try:
            from importlib.metadata import version

            v[mod] = version(mod)
        except Exception:
            v[mod] = None
    v["cuda"] = getattr(torch.version, "cuda", None)
    return v


def _nvidia_smi(*args):
    if not shutil.which("nvidia-smi"):
        return None
    try:
        return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=30).stdout
    except Exception as e:  # provenance must not kill a measurement
        return f"nvidia-smi failed: {e}"


def visible_devices(spec):
    """Device names the job would use, in rank order."""
    if spec["device"] == "cpu":
        return [platform.processor() or platform.machine()] * max(1, spec["tp"] if not spec["emulate_tp"] else 1)
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


class NoGPUHost(SystemExit):
    """This host has no NVIDIA driver at all: a retry on the same host cannot succeed."""


class HardwareMismatch(SystemExit):
    """This host lacks the config's GPUs (none usable, too few, another model): a missing-hardware failure."""


def _nvidia_driver_present() -> bool:
    """Cheap check before importing torch (seconds on a loaded host): the driver's device nodes."""
    return any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia/version"))


def _no_cuda(spec, why):
    return (
        f"config {spec['name']!r}: backend {spec['backend']!r} on device cuda, but this host has no CUDA "
        f"({why}). Run it on a GPU host, or set backend: torch and gpu: cpu."
    )


def preflight(spec):
    """Guards that must pass before any rank starts (GPU issue: guards)."""
    if spec["device"] == "cuda" and not _nvidia_driver_present():
        raise NoGPUHost(_no_cuda(spec, "no NVIDIA driver: no /dev/nvidiactl, /dev/nvidia0 or /proc/driver/nvidia"))
    if spec["device"] == "cuda":
        ids = spec["gpu_ids"]
        if "CUDA_VISIBLE_DEVICES" in os.environ and os.environ.get("OPBREAK_GPU_IDS_ARE_PHYSICAL") != "1":
            # e.g. SLURM already chose the GPUs: gpu_ids index into what it gave us.
            given = os.environ["CUDA_VISIBLE_DEVICES"].split(",")
            if len(given) < len(ids):
                raise SystemExit(
                    f"config {spec['name']!r}: needs {len(ids)} GPUs but "
                    f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}; "
                    "ask the scheduler for num_gpus GPUs"
                )
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(given[i] for i in range(len(ids)))
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, ids))
        import torch

        if not torch.cuda.is_available():
            raise HardwareMismatch(_no_cuda(spec, "torch.cuda.is_available() is False"))
        names = visible_devices(spec)
        if len(names) < len(ids):
            raise HardwareMismatch(
                f"config {spec['name']!r}: declares {len(ids)} GPUs (gpu_ids {ids}) but {len(names)} are visible"
            )
        catalog = load_catalog(spec["hardware_catalog"])
        for i, n in enumerate(names[: len(ids)]):
            key = match_device_name(catalog, n)
            if key != spec["gpu"]:
                raise HardwareMismatch(
                    f"config {spec['name']!r}: declares gpu {spec['gpu']!r} but GPU {i} is {n!r} "
                    f"(catalog match: {key!r}); fix the config's gpu field or run it on the declared hardware"
                )
        return dict(devices=names[: len(ids)], host=host_identity())
    return dict(devices=visible_devices(spec), host=host_identity())


def host_identity() -> dict:
    """CPU model, cores and load: a host-bound decode step is only comparable on the same kind of host."""
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    return dict(
        cpu_model=model or platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        cpus_usable=affinity,
        loadavg=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    )


def collect(spec, repeat, started, pre):
    """The provenance record stored beside every measurement."""
    import torch

    prov = dict(
        config=spec["name"],
        repeat=repeat,
        host=socket.gethostname(),
        platform=platform.platform(),
        cpu_count=os.cpu_count(),
        host_before=pre.get("host"),
        host_after=host_identity(),
        devices=pre["devices"],
        device_count=len(pre["devices"]),
        versions=_versions(),
        spec=spec,
        started=started,
        finished=dt.datetime.now(dt.timezone.utc).isoformat(),
        env={k: os.environ.get(k) for k in ENV_KEYS},
    )
    if spec["device"] == "cuda":
        prov["driver_clocks"] = _nvidia_smi(
            "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit", "--format=csv"
        )
        prov["topology"] = _nvidia_smi("topo", "-m")
        prov["torch_cuda_device_count"] = torch.cuda.device_count()
    return prov


def dumps(prov: dict) -> str:
    """provenance.json's text: indented, but the generated tokens (batch x steps numbers) one row a line,
    so a record stays readable and a study's records stay small enough to carry."""
    tokens = prov.get("tokens_rank0")
    if not isinstance(tokens, list):
        return json.dumps(prov, indent=1, default=str)
    text = json.dumps({**prov, "tokens_rank0": "@TOKENS@"}, indent=1, default=str)
    rows = ",\n  ".join(json.dumps(r, separators=(",", ":")) for r in tokens)
    return text.replace('"@TOKENS@"', f"[\n  {rows}\n ]")
