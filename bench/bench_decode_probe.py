"""Issue 20's targets, read from a rendered study's tables (no GPU needed to print them):

  python bench/bench_decode_probe.py [--tables docs/examples/two-gpu-h200/report/tables]

Per config and rank, over its probed context lengths (results/aggregate/decode_probe.csv):
- closure: the probed, host-split step over the plain step it stands for (target: within 10 %);
- replay = eager: the largest abs difference of the graph replay's logits from eager's (target: 0 within
  the LightLLM-vs-torch tolerance; every probe records it);
- no negative part: every part of the split is >= 0.
The probe runs after the timed run and is never booked into its phases: the phase tables' ops plus
``instrumentation`` still add up to the measured phase (tests/test_decode_truth.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from opbreak.report.host import PARTS  # noqa: E402  (the split's parts, as the report names them)

CLOSURE_TOL = 0.10


def table(probe: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (cfg, rank), g in probe.groupby(["config", "rank"], sort=False):
        c = g["closure"].dropna()
        rows.append(
            dict(
                config=cfg,
                rank=int(rank),
                contexts=len(g),
                closure_min=c.min(),
                closure_max=c.max(),
                basis=" / ".join(sorted({b for s in g["closure_basis"].dropna() for b in s.split(" / ")})),
                closure_met=bool(len(c)) and bool(((c - 1).abs() <= CLOSURE_TOL).all()),
                replay_max_abs_diff=g["replay_max_abs_diff"].max(),
                replay_ms=g["replay_ms"].median(),
                step_ms=g["step_ms"].median(),
                no_negative_part=bool((g[list(PARTS)].fillna(0) >= 0).all().all()),
            )
        )
    return pd.DataFrame(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tables", default="docs/examples/two-gpu-h200/report/tables")
    args = ap.parse_args(argv)
    probe = pd.read_csv(Path(args.tables) / "decode_probe.csv")
    t = table(probe)
    pd.set_option("display.width", 200)
    print(t.round(3).to_string(index=False))
    print(
        f"closure within {CLOSURE_TOL:.0%}: {int(t['closure_met'].sum())} of {len(t)} config-ranks; "
        f"replay logits max abs diff {t['replay_max_abs_diff'].max():g}; "
        f"negative parts: {int((~t['no_negative_part']).sum())}"
    )


if __name__ == "__main__":
    main()
