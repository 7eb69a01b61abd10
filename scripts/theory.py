"""Thin entry point: theory tables (logic in opbreak.theory_tables)."""

import json
import sys

import pandas as pd

from opbreak import contract
from opbreak.hardware import load_catalog
from opbreak.host_views import pair_speedups
from opbreak.io import write_csv_atomic
from opbreak.predict import build_predictions
from opbreak.theory_tables import build

sys.stderr = open(snakemake.log[0], "w")
specs = {}
for path in snakemake.input.specs:
    spec = json.loads(open(path).read())
    specs[spec["name"]] = spec
# Each real-TP config's link, from the rules (rules/common.smk LINK_OF); the files in the rules' order.
by_link = {link: pd.read_csv(p) for link, p in zip(snakemake.params.links, snakemake.input.sweeps)}
nccl_by_link = {link: pd.read_csv(p) for link, p in zip(snakemake.params.nccl_links, snakemake.input.nccl_tests)}
link_of = dict(snakemake.params.link_of)
sweeps = {c: by_link[link] for c, link in link_of.items() if link in by_link}
nccl_refs = {c: nccl_by_link[link] for c, link in link_of.items() if link in nccl_by_link}
ops_repeats = pd.read_csv(snakemake.input.ops_repeats)
steps = pd.read_csv(snakemake.input.steps)
catalog = load_catalog(snakemake.input.catalog)
tables = build(
    specs,
    pd.read_csv(snakemake.input.ops_summary),
    ops_repeats,
    pd.read_csv(snakemake.input.phase_totals),
    steps,
    json.loads(open(snakemake.input.provenance).read()),
    catalog,
    sweeps,
    snakemake.params.pairs,
    snakemake.params.ratio_flag,
    nccl_refs=nccl_refs,
)
for key in ("ops", "pairs", "vanilla", "allreduce", "decode_steps", "ceilings"):
    write_csv_atomic(contract.conform("theory_ops" if key == "ops" else key, tables[key]), snakemake.output[key])
predicted = build_predictions(
    tables["ops"],
    pd.read_csv(snakemake.input.ops_summary),
    pd.read_csv(snakemake.input.phase_summary),
    snakemake.params.pairs,
    snakemake.input.efficiencies,
    snakemake.params.calibrate_from,
    snakemake.input.seed_claims,
    snakemake.params.ratio_flag,
    catalog,
)
for key in ("predicted", "predicted_phases", "predicted_pairs", "efficiencies", "seed_claims"):
    write_csv_atomic(contract.conform(key, predicted[key]), snakemake.output[key])
host_pairs = pair_speedups(pd.read_csv(snakemake.input.decode_probe), snakemake.params.pairs)
write_csv_atomic(contract.conform("host_pairs", host_pairs), snakemake.output.host_pairs)
