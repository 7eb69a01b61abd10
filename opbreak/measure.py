"""The measure step's CLI: one static-batch run of one hardware config, one repeat.

It starts its own ranks (one process each, torch.distributed over gloo on CPU or
NCCL on CUDA), collects every rank's operator table, and writes
``ops.csv``, ``steps.csv`` and ``provenance.json`` atomically: a failed or killed
run leaves no output that Snakemake could mistake for a result.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import pickle
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pandas as pd

from . import hostsetup, locks, provenance, store, transport
from .contract import (
    CONFIG_COLUMNS,
    MEASURE_COLLECTIVES_COLUMNS,
    MEASURE_OPS_COLUMNS,
    MEASURE_OUTPUTS,
    MEASURE_STEPS_COLUMNS,
)
from .identity import spec_hash
from .io import atomic_write_text, free_port, write_csv_atomic


def _rank_main(rank, world, spec, port, outdir):
    """Body of one rank's process: init the group, run the backend, dump results."""
    # Before torch (and CUDA) start: the seed's method needs synchronous launches.
    if spec["timing"] == "blocking_host":
        os.environ["CUDA_LAUNCH_BLOCKING"] = "1"
    transport.apply(spec["transport"], outdir if spec["device"] == "cuda" else None)
    # LightLLM's MemoryManager asserts this (it names its shared-memory counter after it).
    os.environ.setdefault("_NCCL_PORT_", str(port))
    import torch
    import torch.distributed as dist

    from .backends import get_backend
    from .timing import Recorder

    try:
        cuda = spec["device"] == "cuda"
        if cuda:
            torch.cuda.set_device(rank)
        host_setup = hostsetup.apply(spec, rank, world, cuda)
        if world > 1 or spec["backend"] == "lightllm":
            dist.init_process_group(
                "nccl" if cuda else "gloo",
                init_method=f"tcp://127.0.0.1:{port}",
                rank=rank,
                world_size=world,
                timeout=dt.timedelta(seconds=spec["collective_timeout_s"]),
            )
        rec = Recorder(spec["timing"])
        t0 = time.time()
        result = get_backend(spec["backend"]).run_rank(spec, rank, world, rec)
        extra = dict(result.extra)
        extra["host_setup"] = dict(host_setup, os_threads_at_end=hostsetup.record()["os_threads"])
        if spec["timing"] == "torch_profiler":
            trace = rec.export_trace(Path(outdir) / f"trace_rank{rank}.json.gz")
            extra["trace"] = Path(trace).name if trace else None
        out = dict(
            rank=rank,
            ops=rec.op_rows(result.kernel_ms),
            steps=rec.steps,
            collectives=result.collectives,
            tokens=result.tokens.tolist(),
            wall_s=time.time() - t0,
            extra=extra,
        )
        with open(Path(outdir) / f"rank{rank}.pkl", "wb") as f:
            pickle.dump(out, f)
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    except SystemExit as e:  # a clear, expected failure (guard, OOM): message without a traceback
        print(f"error: {e}", file=sys.stderr)
        _rank_error(outdir, rank, str(e))
        os._exit(1)
    except BaseException as e:
        traceback.print_exc()
        _rank_error(outdir, rank, f"{type(e).__name__}: {e}")
        os._exit(1)


def _rank_error(outdir, rank, text):
    """The rank's reason, one line, where the measure process reads it for the job's failure message
    (a collective that timed out, an out-of-memory, a guard), not only into the log."""
    sys.stderr.flush()
    line = " ".join(str(text).split())
    with contextlib.suppress(OSError):  # the exit code still reports the failure
        Path(outdir, f"rank{rank}.error").write_text(line[:300])


def _rank_failed(workdir, rank, code) -> str:
    """Why rank ``rank`` ended: its exit code, the signal that ended it (SIGABRT: e.g. NCCL's watchdog
    after a collective timeout; SIGKILL: killed from outside, e.g. out of host memory), and its own error
    where it wrote one."""
    how = f"exited with code {code}"
    if code < 0 and -code in {s.value for s in signal.Signals}:
        how += f" (killed by {signal.Signals(-code).name})"
    p = Path(workdir, f"rank{rank}.error")
    return f"rank {rank} {how}" + (f" ({p.read_text()})" if p.exists() else "")


def _any_failed(procs) -> bool:
    return any(p.exitcode not in (None, 0) for p in procs)


def _settle(procs, seconds):
    """Give the other ranks up to ``seconds`` to end on their own, so the failure names them all."""
    end = time.monotonic() + seconds
    for p in procs:
        p.join(max(0.0, end - time.monotonic()))


def _failures(procs, workdir) -> list[str]:
    """Every rank that ended badly on its own, those ended by a signal first: a killed or aborted rank
    is usually the cause, its peers' errors (a connection reset, a collective timeout) the consequence."""
    bad = sorted(((r, p.exitcode) for r, p in enumerate(procs) if p.exitcode not in (None, 0)), key=lambda x: x[1] >= 0)
    return [_rank_failed(workdir, r, code) for r, code in bad]


def _die_with_parent():
    """Linux: a rank gets SIGKILL when the measure process dies, so no orphan keeps a GPU."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _rank_entry(*args):
    _die_with_parent()
    _rank_main(*args)


def _terminate_on_signals():
    """SIGTERM (scheduler preemption, snakemake abort) unwinds like Ctrl-C: ranks are killed."""

    def handler(signum, frame):
        raise SystemExit(f"measure: received signal {signum}; ranks killed, no output written")

    signal.signal(signal.SIGTERM, handler)


def launch(spec: dict, workdir: str, timeout_s: float) -> list[dict]:
    """Start one process per rank; any failure or timeout kills all of them."""
    import torch.multiprocessing as mp

    world = 1 if spec["emulate_tp"] else spec["tp"]
    port = free_port()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_rank_entry, args=(r, world, spec, port, workdir), daemon=False) for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout_s
    failed = None
    try:
        while any(p.is_alive() for p in procs) and not _any_failed(procs):
            if time.monotonic() > deadline:
                failed = f"timed out after {timeout_s:.0f} s (job timeout_s)"
                break
            time.sleep(0.05)
        if failed is None and _any_failed(procs):
            _settle(procs, seconds=2.0)  # a peer's own error follows a killed rank's within moments
            failed = "; ".join(_failures(procs, workdir))
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        for p in procs:
            p.join(5)
    if failed:
        raise RuntimeError(f"config {spec['name']!r}: {failed}; no output written")
    results = []
    for r in range(world):
        with open(Path(workdir) / f"rank{r}.pkl", "rb") as f:
            results.append(pickle.load(f))
    return results


def tables(spec: dict, repeat: int, results: list[dict]):
    """Tidy long tables of the data contract, one row per (rank, phase, op)."""
    meta = {k: spec[k] for k in CONFIG_COLUMNS}
    meta["model"] = spec["model"]["name"]
    meta["gpu_ids"] = ",".join(map(str, spec["gpu_ids"]))
    ops, steps, coll = [], [], []
    key = dict(config=spec["name"], repeat=repeat)
    for res in results:
        for row in res["ops"]:
            ops.append(dict(study=spec["study"], **key, rank=res["rank"], **row, timing_method=spec["timing"], **meta))
        steps.extend(dict(**key, rank=res["rank"], **row) for row in res["steps"])
        coll.extend(dict(**key, rank=res["rank"], **row) for row in res.get("collectives", ()))
    # columns fixed even when empty (a failure record, a CPU run without kernels)
    return (
        pd.DataFrame(ops, columns=MEASURE_OPS_COLUMNS),
        pd.DataFrame(steps).reindex(columns=MEASURE_STEPS_COLUMNS),
        pd.DataFrame(coll, columns=MEASURE_COLLECTIVES_COLUMNS),
    )


def _failed(args, spec, out, started, error, kind="error"):
    """Fail the job, or on its last attempt write an explicit failure record (never partial data).

    A config with a stored good measurement (a forced ``--remeasure`` that failed) keeps it: the
    stored one is restored, its provenance records the failed rerun (the run summary lists it).
    """
    if not args.record_failure:
        raise SystemExit(f"measure failed: {error}")
    entry = _stored(args, spec)
    if entry is not None:
        print(f"measure failed on its last attempt ({error}); keeping the stored measurement {entry}", file=sys.stderr)
        note = dict(rerun_failed=dict(error=error, kind=kind, host=socket.gethostname(), started=started))
        store.restore(entry, out, note)
        return None
    print(f"measure failed on its last attempt, recording the failure: {error}", file=sys.stderr)
    hint = store.other_specs_hint(args.store, spec) if args.store else ""  # kept, and named
    for name, df in zip(MEASURE_OUTPUTS, tables(spec, args.repeat, [])):
        write_csv_atomic(df, out / name)
    prov = dict(
        config=spec["name"],
        repeat=args.repeat,
        status="failed",
        error=error,
        failure_kind=kind,
        spec=spec,
        started=started,
        finished=dt.datetime.now(dt.timezone.utc).isoformat(),
        host=socket.gethostname(),
    )
    if hint:
        print(hint, file=sys.stderr)
        prov["other_specs"] = hint
    atomic_write_text(out / "provenance.json", provenance.dumps(prov))


def _stored(args, spec):
    """The newest stored good measurement of this spec and repeat (None without a store)."""
    if not args.store:
        return None
    return store.latest(args.store, spec["name"], spec_hash(spec), args.repeat)


def _parse_args(argv):
    ap = argparse.ArgumentParser(prog="opbreak-measure", description=__doc__)
    ap.add_argument("--spec", required=True, help="resolved config spec (JSON, from the spec rule)")
    ap.add_argument("--repeat", type=int, required=True)
    ap.add_argument("--outdir", required=True)
    ap.add_argument(
        "--record-failure",
        action="store_true",
        help="last attempt: if the run fails, write a failure record (no measurements, status "
        "failed) and exit 0 so a --keep-going pipeline still reports the config as failed",
    )
    ap.add_argument(
        "--store",
        help="measurement store folder (opbreak.store): a stored good run of this spec and repeat is "
        "restored instead of measured, and a successful run is archived there",
    )
    ap.add_argument("--remeasure", action="store_true", help="measure even when the store has this run")
    return ap.parse_args(argv)


def _keep_traces(work, out):
    """The ranks' profiler traces (torch_profiler, an optional extra output), moved in atomically."""
    for t in sorted(Path(work).glob("trace_rank*.json.gz")):
        shutil.move(str(t), str(out / (t.name + ".tmp")))
        os.replace(out / (t.name + ".tmp"), out / t.name)


def _provenance(spec, repeat, started, prov_pre, results, nccl_used) -> dict:
    """What was measured, where and how: the host's facts, the transport NCCL used, CPU ceilings, ranks' extras."""
    prov = provenance.collect(spec, repeat, started, prov_pre)
    prov["transport"] = dict(
        config=spec["transport"],
        label=transport.label(spec["transport"]),
        nccl_used=nccl_used,
    )
    if spec["device"] == "cpu":
        # CPU ceilings are measured, not typed in: this host, now, with the threads rank 0 ran with (as
        # opbreak.hostsetup applied them), so a rank's achieved FLOP/s and its ceiling count the same cores.
        import torch

        from .hardware import measure_cpu_ceilings

        threads = results[0]["extra"]["host_setup"]["torch_threads"]
        torch.set_num_threads(threads)
        prov["ceilings"] = dict(measure_cpu_ceilings(dtype=getattr(torch, spec["dtype"])), threads=threads)
    prov["tokens_rank0"] = results[0]["tokens"]
    prov["backend_extra"] = {str(r["rank"]): r.get("extra", {}) for r in results}
    return prov


def main(argv=None):
    args = _parse_args(argv)
    spec = json.loads(Path(args.spec).read_text())
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc).isoformat()
    entry = None if args.remeasure else _stored(args, spec)
    if entry is not None:  # measured before (here or on another host): never measured again
        store.restore(entry, out)
        print(f"{spec['name']} repeat {args.repeat}: restored from the store, {entry} -> {out}")
        return None
    try:
        prov_pre = provenance.preflight(spec)  # guards: fails before any rank starts
    except provenance.NoGPUHost as e:  # no driver on this host: final now, a retry here cannot pass
        args.record_failure = True
        return _failed(args, spec, out, started, str(e), kind="missing_hardware")
    except provenance.HardwareMismatch as e:
        return _failed(args, spec, out, started, str(e), kind="missing_hardware")
    except SystemExit as e:
        return _failed(args, spec, out, started, str(e))
    _terminate_on_signals()
    # One measurement at a time on this host: held from before the ranks start until the CPU
    # ceilings (also timed) are measured; the kernel drops it if this process dies.
    held = contextlib.ExitStack()
    try:
        held.enter_context(locks.host_lock(spec, locks.wait_s(), f"{spec['name']} repeat {args.repeat}"))
    except locks.LockTimeout as e:  # the host lock's wait ran out: recorded on the last attempt
        return _failed(args, spec, out, started, str(e))
    with held:
        with tempfile.TemporaryDirectory(prefix="opbreak-") as work:
            try:
                results = launch(spec, work, spec["timeout_s"])
            except RuntimeError as e:
                return _failed(args, spec, out, started, str(e))
            _keep_traces(work, out)
            nccl_used = transport.used(work)
        frames = tables(spec, args.repeat, results)
        prov = _provenance(spec, args.repeat, started, prov_pre, results, nccl_used)
        for name, df in zip(MEASURE_OUTPUTS, frames):
            write_csv_atomic(df, out / name)
        atomic_write_text(out / "provenance.json", provenance.dumps(prov))
        if args.store:  # kept for good: a later failed or changed run cannot delete it
            entry = store.archive(args.store, out, f"measured here ({out})", prov)
            print(f"archived in the store: {entry}")
    print(
        f"{spec['name']} repeat {args.repeat}: {len(frames[0])} op rows, {len(frames[1])} steps, "
        f"{len(frames[2])} collective kernels -> {out}"
    )


if __name__ == "__main__":
    main()
