"""The measure step's all-reduce size sweep (nccl-tests style: algbw, busbw).

Runs on the config's own ranks and transport (gloo on CPU, NCCL on GPUs) so the
theory step can fit the alpha-beta model to this machine rather than a datasheet.
"""

import argparse
from .collectives import allreduce_sweep
from .io import write_csv_atomic


def main(argv=None):
    ap = argparse.ArgumentParser(prog="opbreak-sweep", description=__doc__)
    ap.add_argument("--config-name", required=True)
    ap.add_argument("--world", type=int, required=True, help="ranks (the config's tp)")
    ap.add_argument("--device", choices=["cpu", "cuda"], required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", type=int, nargs="+", required=True, help="message sizes in bytes")
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args(argv)
    cuda = args.device == "cuda"
    df = allreduce_sweep(args.sizes, args.world, backend="nccl" if cuda else "gloo", device=args.device,
                         iters=args.iters)
    df.insert(0, "config", args.config_name)
    df.insert(1, "world_size", args.world)
    write_csv_atomic(df, args.out)
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
