"""Bring this example's measurements (recorded before the decode-truth outputs existed) to today's format.

Run on the copies in results/measure/, never on the committed files:
- ops.csv gains an empty ``kernel_ms`` column (no CUPTI view was captured then);
- steps.csv's ``instrumented`` (True/False) becomes ``mode`` (``events``/``plain``), what it meant;
- a header-only collectives.csv is written where none exists (TP1 and emulated TP run no collective).
Nothing measured is changed.
"""

import sys
from pathlib import Path

import pandas as pd

COLLECTIVES = "config,repeat,rank,phase,step,context_len,call,op,kernel,start_us,end_us\n"

for rep in sorted(Path(sys.argv[1]).glob("*/rep*")):
    ops = pd.read_csv(rep / "ops.csv")
    if "kernel_ms" not in ops:
        ops.insert(ops.columns.get_loc("time_ms") + 1, "kernel_ms", float("nan"))
        ops.to_csv(rep / "ops.csv", index=False)
    steps = pd.read_csv(rep / "steps.csv")
    if "mode" not in steps and "instrumented" in steps:
        flag = steps.pop("instrumented").astype(str).str.lower() == "true"
        steps["mode"] = flag.map({True: "events", False: "plain"})
        steps.to_csv(rep / "steps.csv", index=False)
    if not (rep / "collectives.csv").exists():
        (rep / "collectives.csv").write_text(COLLECTIVES)
