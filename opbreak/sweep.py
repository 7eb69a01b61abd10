"""The measure step's all-reduce size sweep (nccl-tests style: algbw, busbw).

Runs on the config's own ranks and transport (gloo on CPU, NCCL on GPUs) so the
theory step can fit the alpha-beta model to this machine rather than a datasheet.
"""

import argparse
import json
from pathlib import Path

from .collectives import allreduce_sweep
from .io import write_csv_atomic


def main(argv=None):
    ap = argparse.ArgumentParser(prog="opbreak-sweep", description=__doc__)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", type=int, nargs="+", required=True, help="message sizes in bytes")
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text())
    cuda = spec["device"] == "cuda"
    df = allreduce_sweep(args.sizes, spec["tp"], backend="nccl" if cuda else "gloo",
                         device="cuda" if cuda else "cpu", iters=args.iters)
    df.insert(0, "config", spec["name"])
    df.insert(1, "world_size", spec["tp"])
    write_csv_atomic(df, args.out)
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
