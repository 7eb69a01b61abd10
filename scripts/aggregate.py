"""Thin entry point: aggregate repeats (logic in opbreak.aggregate)."""

import json
import sys

from opbreak.aggregate import aggregate
from opbreak.io import atomic_write_text, write_csv_atomic

sys.stderr = open(snakemake.log[0], "w")
specs = {}
for path in snakemake.input.specs:
    spec = json.loads(open(path).read())
    specs[spec["name"]] = spec
inputs = list(zip(snakemake.input.ops, snakemake.input.steps, snakemake.input.prov))
tables = aggregate(inputs, specs, snakemake.params.unstable_cv)
for key in ("ops_repeats", "ops_summary", "phase_totals", "phase_summary", "steps", "failures"):
    write_csv_atomic(tables[key], snakemake.output[key])
atomic_write_text(snakemake.output.provenance, json.dumps(tables["provenance"], indent=1, default=str))
