# Step 3, theory: exact costs, rooflines, the all-reduce model, pair ratios.


rule theory:
    input:
        ops_summary="results/aggregate/ops_summary.csv",
        ops_repeats="results/aggregate/ops_repeats.csv",
        phase_totals="results/aggregate/phase_totals.csv",
        steps="results/aggregate/steps.csv",
        provenance="results/aggregate/provenance.json",
        specs=expand("results/specs/{config}.json", config=CONFIGS),
        catalog=config["hardware_catalog"],
        sweeps=expand("results/sweep/{link}.csv", link=LINKS),
    output:
        ops="results/theory/ops.csv",
        pairs="results/theory/pairs.csv",
        vanilla="results/theory/vanilla_vs_exact.csv",
        allreduce="results/theory/allreduce.csv",
        decode_steps="results/theory/decode_steps.csv",
        ceilings="results/theory/ceilings.csv",
    log:
        "logs/theory.log",
    conda:
        "../envs/analysis.yaml"
    params:
        pairs=PAIRS,
        ratio_flag=config["ratio_flag"],
    script:
        "../scripts/theory.py"
