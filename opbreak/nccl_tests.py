"""nccl-tests (``all_reduce_perf``) as the sweep's reference: build, run per link, parse its table.

nccl-tests is NVIDIA's own collective benchmark (https://github.com/NVIDIA/nccl-tests); this
repository does not vendor it. The study's ``nccl_tests`` field names either a built
``all_reduce_perf`` (``binary``) or a source checkout (``src``) that the ``nccl_tests_build`` rule
compiles with the host's ``nvcc`` against the NCCL that torch ships (:func:`build_command`), so
both measure the same library. Per link the ``nccl_tests`` rule runs it with the link's transport
environment and NVLink multicast off, one process driving the link's ``tp`` GPUs (``-g tp``),
and writes ``results/sweep/<link>.nccl-tests.csv`` (:func:`table`).

Its times are the NCCL floor: a C++ loop launching ``ncclAllReduce`` back to back, no
``torch.distributed`` call in between. The sweep's are the framework's call floor over the same
link; the report shows both per size.

The parser (:func:`parse`) reads the text table nccl-tests 2.x prints (``src/util.cu``
writeResultHeader / writeBenchmarkLine*): ``#`` header lines, then per size ``size count type
redop root`` and, out of place then in place, ``time(us) algbw(GB/s) busbw(GB/s) #wrong``
(with ``-I 1`` also ``i_min i_max i_p99 i_cv%`` per side); ``#wrong`` is ``N/A`` with ``-c 0``.
Lines that are neither (NCCL INFO logs, warnings) are skipped.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import subprocess
import sys

import pandas as pd

from . import transport
from .contract import NCCL_TESTS_COLUMNS
from .io import atomic_write_text, write_csv_atomic

_VERSION = re.compile(r"^#\s*nccl-tests version (\S+)")
_SETUP = re.compile(r"^#\s*nThread (\d+) nGpus (\d+) .*?warmup iters: (\d+) iters: (\d+)")
_DATA = re.compile(r"^\s*\d+\s+\d+\s+\S+\s+\S+\s+-?\d+\s")


class NcclTestsError(ValueError):
    """nccl-tests' output has no result table (it failed, or it is not nccl-tests' output)."""


def _num(tok: str) -> float:
    return math.nan if tok.upper() == "N/A" else float(tok)


def parse(text: str) -> tuple[pd.DataFrame, dict]:
    """(table, meta) of one nccl-tests run's stdout. Times in seconds (nccl-tests prints us).

    ``meta``: ``version``, ``n_gpus``, ``n_threads``, ``warmup``, ``iters`` where the header
    says them, ``per_iteration`` (True with ``-I 1``), ``avg_busbw_GBps``."""
    meta: dict = {"per_iteration": False}
    rows = []
    for line in text.splitlines():
        if m := _VERSION.match(line):
            meta["version"] = m.group(1)
        elif m := _SETUP.match(line):
            meta.update(
                n_threads=int(m.group(1)), n_gpus=int(m.group(2)), warmup=int(m.group(3)), iters=int(m.group(4))
            )
        elif line.startswith("#") and "i_min" in line:
            meta["per_iteration"] = True
        elif line.startswith("#") and "Avg bus bandwidth" in line:
            try:
                meta["avg_busbw_GBps"] = float(line.split(":", 1)[1].split()[0])
            except (IndexError, ValueError):
                pass
        elif _DATA.match(line):
            tok = line.split()
            side = 8 if meta["per_iteration"] else 4
            if len(tok) < 5 + 2 * side:
                continue  # a line cut short (a crash mid-run): not a result
            oop, inp = tok[5 : 5 + side], tok[5 + side : 5 + 2 * side]
            rows.append(
                dict(
                    size_bytes=int(tok[0]),
                    count=int(tok[1]),
                    type=tok[2],
                    redop=tok[3],
                    root=int(tok[4]),
                    time_s=_num(oop[0]) * 1e-6,
                    algbw_GBps=_num(oop[1]),
                    busbw_GBps=_num(oop[2]),
                    wrong=_num(oop[3]),
                    inplace_time_s=_num(inp[0]) * 1e-6,
                    inplace_algbw_GBps=_num(inp[1]),
                    inplace_busbw_GBps=_num(inp[2]),
                    inplace_wrong=_num(inp[3]),
                )
            )
    if not rows:
        head = "\n".join(text.strip().splitlines()[:8])
        raise NcclTestsError(f"no nccl-tests result table in its output; it begins:\n{head}")
    return pd.DataFrame(rows, columns=NCCL_TESTS_COLUMNS), meta


def size_args(sizes) -> list[str]:
    """``-b -e -f`` covering ``sizes`` (bytes): their own factor where they are a geometric series
    with an integer ratio, else factor 2 from the smallest to the largest."""
    s = sorted({int(x) for x in sizes})
    factor = 2
    if len(s) >= 2 and s[1] % s[0] == 0:
        f = s[1] // s[0]
        if f >= 2 and all(b == a * f for a, b in zip(s, s[1:])):
            factor = f
    return ["-b", str(s[0]), "-e", str(s[-1]), "-f", str(factor)]


def run_args(binary, sizes, tp, iters=20, warmup=5, dtype="half") -> list[str]:
    """The ``all_reduce_perf`` command line for one link: one process, ``tp`` GPUs, one thread."""
    return [str(binary), *size_args(sizes), "-g", str(tp), "-n", str(iters), "-w", str(warmup), "-d", dtype]


def torch_nccl_home() -> str:
    """The folder of the NCCL that torch ships (pip ``nvidia-nccl-cu*``: ``include/``, ``lib/``)."""
    try:
        import nvidia.nccl
    except ImportError as e:
        raise RuntimeError(
            "torch's NCCL (pip nvidia-nccl-cu*) is not installed here (a CPU torch, or one with NCCL built in): "
            "build nccl-tests against your NCCL yourself and set nccl_tests.binary"
        ) from e
    return list(nvidia.nccl.__path__)[0]  # a namespace package in some wheels: no __file__


def build_command(src, build_dir, nccl_home, cuda_home=None, gencode=None) -> str:
    """Shell command that builds ``all_reduce_perf`` from the nccl-tests checkout ``src`` into
    ``build_dir`` (absolute) with the host's nvcc against ``nccl_home``'s NCCL.

    torch's wheel ships ``lib/libnccl.so.2`` without the ``libnccl.so`` link the linker wants, so a
    shim folder ``build_dir/nccl`` holds ``include`` and ``lib/libnccl.so`` links to it."""
    build_dir = os.path.abspath(build_dir)
    shim = os.path.join(build_dir, "nccl")
    q = shlex.quote
    parts = [
        f"mkdir -p {q(shim)}/lib",
        f"ln -sfn {q(os.path.join(nccl_home, 'include'))} {q(shim)}/include",
        f"ln -sf {q(os.path.join(nccl_home, 'lib', 'libnccl.so.2'))} {q(shim)}/lib/libnccl.so",
        f"ln -sf {q(os.path.join(nccl_home, 'lib', 'libnccl.so.2'))} {q(shim)}/lib/libnccl.so.2",
    ]
    make = ["make", "-C", q(os.path.join(os.path.abspath(src), "src")), "MPI=0", f"BUILDDIR={q(build_dir)}"]
    make.append(f"NCCL_HOME={q(shim)}")
    if cuda_home:
        make.append(f"CUDA_HOME={q(cuda_home)}")
    if gencode:
        make.append(f"NVCC_GENCODE={q(gencode)}")
    make.append("-j8")
    return " && ".join(parts + [" ".join(make)])


def default_build_dir(src) -> str:
    """Outside the repository and results: ``~/.cache/opbreak/nccl-tests/<name>-<hash of the path>``."""
    import hashlib

    src = os.path.abspath(src)
    tag = hashlib.sha1(src.encode()).hexdigest()[:8]
    return os.path.join(os.path.expanduser("~"), ".cache", "opbreak", "nccl-tests", f"{os.path.basename(src)}-{tag}")


def build(src, build_dir=None, gencode=None) -> dict:
    """Build ``all_reduce_perf`` from ``src`` (see :func:`build_command`); what it built, for the run rule."""
    import shutil

    homes = [os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"]
    cands = [shutil.which("nvcc")] + [os.path.join(h, "bin", "nvcc") for h in homes if h]
    nvcc = next((c for c in cands if c and os.access(c, os.X_OK)), None)
    if not nvcc:
        raise RuntimeError("nccl_tests.src needs the host's nvcc: on PATH, in $CUDA_HOME/bin or /usr/local/cuda/bin")
    cuda_home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    nccl_home = torch_nccl_home()
    build_dir = os.path.abspath(build_dir or default_build_dir(src))
    cmd = build_command(src, build_dir, nccl_home, cuda_home=cuda_home, gencode=gencode)
    print(cmd, flush=True)
    subprocess.run(["bash", "-c", cmd], check=True)
    binary = os.path.join(build_dir, "all_reduce_perf")
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"the build made no {binary}")
    return dict(binary=binary, nccl_lib=os.path.join(nccl_home, "lib"), src=os.path.abspath(src), command=cmd)


def table(df: pd.DataFrame, meta: dict, *, config: str, world_size: int, transport: str, command: str):
    """The per-link CSV: the parsed rows with the link, nccl-tests' version and the command."""
    out = df.copy()
    out.insert(0, "config", config)
    out.insert(1, "world_size", world_size)
    out.insert(2, "transport", transport)
    out["nccl_tests_version"] = meta.get("version", "")
    out["iters"] = meta.get("iters", math.nan)
    out["command"] = command
    return out


def at_sizes(ref: pd.DataFrame | None, sizes, col="time_s"):
    """``ref[col]`` at each of ``sizes``: exact where nccl-tests ran that size, else log-log
    interpolated inside its range, NaN outside (or without a reference)."""
    import numpy as np

    sizes = np.asarray(sizes, dtype=float)
    if ref is None or ref.empty:
        return np.full(sizes.shape, math.nan)
    r = ref.sort_values("size_bytes")
    x, y = np.log(r["size_bytes"].to_numpy(float)), np.log(r[col].to_numpy(float))
    out = np.exp(np.interp(np.log(sizes), x, y))
    out[(sizes < r["size_bytes"].min()) | (sizes > r["size_bytes"].max())] = math.nan
    return out


def cli() -> argparse.ArgumentParser:
    """The command line of :func:`main` (a gencode value starts with '-': pass it as ``--gencode=...``)."""
    ap = argparse.ArgumentParser(prog="opbreak-nccl-tests", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run all_reduce_perf for one link and write its CSV")
    r.add_argument("--binary", required=True, help="all_reduce_perf, or the build step's JSON")
    r.add_argument("--config-name", required=True)
    r.add_argument("--world", type=int, required=True)
    r.add_argument("--transport", default="auto")
    r.add_argument("--gpu-ids", default="")
    r.add_argument("--sizes", type=int, nargs="+", required=True)
    r.add_argument("--iters", type=int, default=20)
    r.add_argument("--warmup", type=int, default=5)
    r.add_argument("--nccl-lib", default="", help="folder put first on LD_LIBRARY_PATH (torch's NCCL)")
    r.add_argument("--raw", required=True, help="nccl-tests' own output, kept")
    r.add_argument("--out", required=True)
    b = sub.add_parser("build", help="build all_reduce_perf from a nccl-tests source folder")
    b.add_argument("--src", required=True)
    b.add_argument("--build-dir", default="")
    b.add_argument("--gencode", default="")
    b.add_argument("--out", required=True, help="JSON: the binary and torch's NCCL lib folder")
    p = sub.add_parser("parse", help="print the table parsed from a captured output")
    p.add_argument("file")
    return ap


def main(argv=None):
    """``python -m opbreak.nccl_tests run ...`` (the nccl_tests rule), ``build ...`` or ``parse FILE``."""
    args = cli().parse_args(argv)
    if args.cmd == "parse":
        df, meta = parse(open(args.file).read())
        print(meta)
        print(df.to_string(index=False))
        return
    if args.cmd == "build":
        import json

        info = build(args.src, args.build_dir or None, args.gencode or None)
        atomic_write_text(args.out, json.dumps(info, indent=1))
        return

    if args.binary.endswith(".json"):
        import json

        info = json.load(open(args.binary))
        args.binary, args.nccl_lib = info["binary"], args.nccl_lib or info["nccl_lib"]
    env = dict(os.environ)
    env.update(transport.SAFETY_ENV)
    env.update(transport.TRANSPORTS[args.transport]["env"])
    if args.gpu_ids and "CUDA_VISIBLE_DEVICES" not in os.environ:
        env["CUDA_VISIBLE_DEVICES"] = args.gpu_ids
    if args.nccl_lib:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [args.nccl_lib, env.get("LD_LIBRARY_PATH", "")]))
    cmd = run_args(args.binary, args.sizes, args.world, args.iters, args.warmup)
    shown = " ".join(
        [f"{k}={env[k]}" for k in (*transport.SAFETY_ENV, "NCCL_P2P_DISABLE") if k in env]
        + [shlex.quote(c) for c in cmd]
    )
    print(shown, flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    atomic_write_text(args.raw, f"# {shown}\n{proc.stdout}")
    sys.stderr.write(proc.stderr)
    if proc.returncode:
        sys.exit(f"all_reduce_perf exited {proc.returncode}; its output is in {args.raw}")
    df, meta = parse(proc.stdout)
    if (df[["wrong", "inplace_wrong"]].fillna(0) > 0).any().any():
        sys.exit(f"all_reduce_perf reports wrong results (#wrong > 0); see {args.raw}")
    out = table(df, meta, config=args.config_name, world_size=args.world, transport=args.transport, command=shown)
    write_csv_atomic(out, args.out)
    print(out.to_string(index=False))


if __name__ == "__main__":
    main()
