# Step 2, aggregate: every repeat kept, summaries with CIs, outliers, instability.


rule aggregate:
    input:
        ops=measure_outputs("ops.csv"),
        steps=measure_outputs("steps.csv"),
        collectives=measure_outputs("collectives.csv"),
        prov=measure_outputs("provenance.json"),
        specs=expand("results/specs/{config}.json", config=CONFIGS),
    output:
        ops_repeats="results/aggregate/ops_repeats.csv",
        ops_summary="results/aggregate/ops_summary.csv",
        phase_totals="results/aggregate/phase_totals.csv",
        phase_summary="results/aggregate/phase_summary.csv",
        steps="results/aggregate/steps.csv",
        failures="results/aggregate/failures.csv",
        rank_ops="results/aggregate/rank_ops.csv",
        collectives="results/aggregate/collectives.csv",
        phase_split="results/aggregate/phase_split.csv",
        capture_cost="results/aggregate/capture_cost.csv",
        decode_probe="results/aggregate/decode_probe.csv",
        host_ops="results/aggregate/host_ops.csv",
        provenance="results/aggregate/provenance.json",
    log:
        "logs/aggregate.log",
    conda:
        "../envs/analysis.yaml"
    params:
        unstable_cv=config["unstable_cv"],
    script:
        "../scripts/aggregate.py"
