"""One measurement at a time per host, and a recovery that never unlocks a live run.

A measure process holds an exclusive ``fcntl`` lock on one file per resource it measures on (each
GPU id it uses; ``cpu`` for a CPU config) under ``/tmp/opbreak-locks/`` (``OPBREAK_LOCK_DIR``) from
before its ranks start until they have exited. The kernel drops the lock when the process dies, so a
crash or ``kill -9`` never leaves a stale lock; its ranks die with it (``PR_SET_PDEATHSIG``). Another
measurement on the host (a second snakemake, another study folder, the same run restarted after a
kill of snakemake while its measure job lives on) waits, saying who holds the lock, up to its
``OPBREAK_LOCK_WAIT_S`` (default 6 h), then fails clearly.

Each snakemake run also holds ``.snakemake/opbreak-run.lock`` in its working directory (taken in
``onstart``). ``python -m opbreak.unlock`` (the README's recovery) refuses while that run or any
measurement on the host is alive, and otherwise runs ``snakemake --unlock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path


class LockTimeout(SystemExit):
    """Another measurement held the host lock for longer than this one may wait."""


RUN_LOCK = ".snakemake/opbreak-run.lock"
_run_lock_file = None  # held for the life of the snakemake process


def wait_s() -> float:
    """How long a measurement waits for the host lock before it fails (OPBREAK_LOCK_WAIT_S, default 6 h)."""
    return float(os.environ.get("OPBREAK_LOCK_WAIT_S", 6 * 3600))


def lock_dir() -> Path:
    return Path(os.environ.get("OPBREAK_LOCK_DIR", "/tmp/opbreak-locks"))


def resources(spec) -> list[str]:
    if spec["device"] != "cuda":
        return ["cpu"]
    ids = os.environ.get("CUDA_VISIBLE_DEVICES") or ",".join(map(str, spec.get("gpu_ids") or [0]))
    return [f"gpu{g.strip()}" for g in ids.split(",") if g.strip()]


def _holder(f) -> str:
    try:
        f.seek(0)
        return f.read().strip() or "unknown process"
    except OSError:
        return "unknown process"


@contextlib.contextmanager
def host_lock(spec, wait_s: float, what: str, poll_s: float = 0.5, out=sys.stderr):
    """Exclusive host-wide locks on the spec's resources, waiting up to ``wait_s``."""
    d = lock_dir()
    d.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        d.chmod(0o1777)
    files = []
    try:
        for res in resources(spec):
            path = d / f"{res}.lock"
            f = open(path, "a+")
            with contextlib.suppress(OSError):
                os.chmod(path, 0o666)
            deadline = time.monotonic() + wait_s
            said = False
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not said:
                        print(f"waiting for {path}: another measurement runs on this host ({_holder(f)})", file=out)
                        out.flush()
                        said = True
                    if time.monotonic() > deadline:
                        who = _holder(f)
                        f.close()
                        raise LockTimeout(
                            f"another measurement held {path} for {wait_s:.0f} s ({who}); "
                            "one measurement at a time per host: wait for it or stop it"
                        ) from None
                    time.sleep(poll_s)
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} measuring {what} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
            f.flush()
            files.append(f)
        yield [f.name for f in files]
    finally:
        for f in files:
            with contextlib.suppress(OSError):
                f.seek(0)
                f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()


def held(path) -> str | None:
    """Who holds the lock file ``path`` (None when free)."""
    path = Path(path)
    if not path.exists():
        return None
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(f)
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def measurements_alive() -> list[str]:
    d = lock_dir()
    if not d.is_dir():
        return []
    return [f"{p}: {h}" for p in sorted(d.glob("*.lock")) if (h := held(p))]


def take_run_lock(workdir="."):
    """Called in the Snakefile's onstart: this directory's run is alive while the process lives."""
    global _run_lock_file
    path = Path(workdir) / RUN_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return  # snakemake's own lock refuses a second run here
    f.seek(0)
    f.truncate()
    f.write(f"snakemake pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
    f.flush()
    _run_lock_file = f


def unlock_main(argv=None):
    """``python -m opbreak.unlock``: snakemake --unlock, refused while a run or measurement is alive."""
    argv = list(sys.argv[1:] if argv is None else argv)
    alive = []
    run = held(RUN_LOCK)
    if run:
        alive.append(f"{RUN_LOCK}: {run}")
    alive += measurements_alive()
    if alive:
        print(
            "refusing to unlock: a run or measurement is still alive on this host:\n  "
            + "\n  ".join(alive)
            + "\nwait for it to end (or stop that process), then run this again",
            file=sys.stderr,
        )
        return 2
    return subprocess.call([sys.executable, "-m", "snakemake", "--unlock", *argv])
