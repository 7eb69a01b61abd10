"""The measure step's all-reduce size sweep, timed as nccl-tests times it (algbw, busbw).

Per size: warm-up, then rounds of [one aligning call + stream sync, N calls back to back, one
stream sync] (nccl-tests' BenchTime, no barrier); on CUDA also CUDA events around the same loops
and a CUDA graph of N calls replayed (the host-free floor). See :func:`opbreak.collectives.allreduce_sweep`.

Runs on the config's own ranks and transport (gloo on CPU; NCCL on GPUs with the
config's ``transport`` environment, :mod:`opbreak.transport`) so the theory step
fits the alpha-beta model to this machine and this path rather than a datasheet.
"""

import argparse
import os
import tempfile

from . import transport
from .collectives import allreduce_sweep
from .io import write_csv_atomic


def main(argv=None):
    ap = argparse.ArgumentParser(prog="opbreak-sweep", description=__doc__)
    ap.add_argument("--config-name", required=True)
    ap.add_argument("--world", type=int, required=True, help="ranks (the config's tp)")
    ap.add_argument("--device", choices=["cpu", "cuda"], required=True)
    ap.add_argument("--transport", choices=sorted(transport.TRANSPORTS), default="auto")
    ap.add_argument("--gpu-ids", default="", help="GPUs of the link's config (CUDA_VISIBLE_DEVICES), e.g. 0,1")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", type=int, nargs="+", required=True, help="message sizes in bytes")
    ap.add_argument("--iters", type=int, default=20, help="back-to-back calls per timed round")
    ap.add_argument("--rounds", type=int, default=8, help="timed rounds per size")
    ap.add_argument("--warmup", type=int, default=5, help="untimed calls per size before its rounds")
    ap.add_argument("--no-graph", action="store_true", help="skip the CUDA graph replay (graph_time_s empty)")
    args = ap.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and args.gpu_ids and "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_VISIBLE_DEVICES"] = args.gpu_ids
    with tempfile.TemporaryDirectory(prefix="opbreak-sweep-") as logs:
        transport.apply(args.transport, logs if cuda else None)
        df = allreduce_sweep(
            args.sizes,
            args.world,
            backend="nccl" if cuda else "gloo",
            device=args.device,
            iters=args.iters,
            rounds=args.rounds,
            warmup=args.warmup,
            graph=not args.no_graph,
        )
        used = ",".join(transport.used(logs)) if cuda else "gloo/tcp"
    df.insert(0, "config", args.config_name)
    df.insert(1, "world_size", args.world)
    df.insert(2, "transport", args.transport)
    df["nccl_used"] = used
    write_csv_atomic(df, args.out)
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
