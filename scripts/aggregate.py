"""Thin entry point: aggregate repeats (logic in opbreak.aggregate); a bad measure file stops it with one line."""

import json
import sys

import pandas as pd

from opbreak import contract
from opbreak.aggregate import aggregate
from opbreak.checks import MeasureFileError
from opbreak.host_views import decode_probe, host_ops
from opbreak.io import atomic_write_text, write_csv_atomic
from opbreak.views import decode_tables

sys.stderr = open(snakemake.log[0], "w")
specs = {}
for path in snakemake.input.specs:
    spec = json.loads(open(path).read())
    specs[spec["name"]] = spec
inputs = list(zip(snakemake.input.ops, snakemake.input.steps, snakemake.input.prov, snakemake.input.collectives))
try:
    tables = aggregate(inputs, specs, snakemake.params.unstable_cv)
except MeasureFileError as e:  # one line naming the file and the problem, no traceback
    line = f"opbreak aggregate: bad measurement file: {e}"
    print(line, file=sys.stderr)
    print(line, file=sys.__stderr__)
    sys.exit(1)
for key in ("ops_repeats", "ops_summary", "phase_totals", "phase_summary", "steps", "failures"):
    write_csv_atomic(contract.conform(key, tables[key]), snakemake.output[key])
coll = tables["collectives_all"]
coll = coll if coll is not None else pd.DataFrame(columns=contract.MEASURE_COLLECTIVES_COLUMNS)
views = decode_tables(tables["ops_repeats"], tables["steps_all"], coll)
for key in ("rank_ops", "collectives", "phase_split", "capture_cost"):
    write_csv_atomic(contract.conform(key, views[key]), snakemake.output[key])
probe = decode_probe(tables["provenance"], tables["steps_all"])
write_csv_atomic(contract.conform("decode_probe", probe), snakemake.output.decode_probe)
write_csv_atomic(contract.conform("host_ops", host_ops(tables["provenance"])), snakemake.output.host_ops)
# every repeat's record, without the generated tokens (they stay in the measure outputs; nothing downstream reads them)
records = [{k: v for k, v in p.items() if k != "tokens_rank0"} for p in tables["provenance"]]
atomic_write_text(snakemake.output.provenance, json.dumps(records, indent=1, default=str))
