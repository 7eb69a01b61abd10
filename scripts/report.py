"""Thin entry point: render report/all.md and its figures (logic in opbreak.report)."""

import sys

from opbreak.report import TABLES, render

sys.stderr = open(snakemake.log[0], "w")
paths = {name: snakemake.input[name] for name in TABLES}
paths["provenance"] = snakemake.input.provenance
timings = render(
    paths,
    out_md=snakemake.output.md,
    fig_dir=snakemake.output.figures,
    configs=list(snakemake.params.configs),
    pairs_decl=[dict(p) for p in snakemake.params.pairs],
    study=snakemake.params.study,
    template=snakemake.input.template,
    params=dict(snakemake.params.report_params),
    declared={k: dict(v) for k, v in snakemake.params.declared.items()},
)
print("report timings (s): " + ", ".join(f"{k}={v:.2f}" for k, v in timings.items()), file=sys.stderr)
