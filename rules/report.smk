# Step 4, report: report/all.md from jinja2 templates, seaborn figures.


rule report:
    input:
        ops_summary="results/aggregate/ops_summary.csv",
        phase_summary="results/aggregate/phase_summary.csv",
        phase_totals="results/aggregate/phase_totals.csv",
        ops_repeats="results/aggregate/ops_repeats.csv",
        steps="results/aggregate/steps.csv",
        failures="results/aggregate/failures.csv",
        provenance="results/aggregate/provenance.json",
        theory_ops="results/theory/ops.csv",
        pairs="results/theory/pairs.csv",
        vanilla="results/theory/vanilla_vs_exact.csv",
        allreduce="results/theory/allreduce.csv",
        decode_steps="results/theory/decode_steps.csv",
        ceilings="results/theory/ceilings.csv",
        predicted="results/theory/predicted.csv",
        predicted_phases="results/theory/predicted_phases.csv",
        predicted_pairs="results/theory/predicted_pairs.csv",
        efficiencies="results/theory/efficiencies.csv",
        seed_claims="results/theory/seed_claims.csv",
        host_pairs="results/theory/host_pairs.csv",
        rank_ops="results/aggregate/rank_ops.csv",
        collectives="results/aggregate/collectives.csv",
        phase_split="results/aggregate/phase_split.csv",
        capture_cost="results/aggregate/capture_cost.csv",
        decode_probe="results/aggregate/decode_probe.csv",
        host_ops="results/aggregate/host_ops.csv",
        template="report/templates/all.md.j2",
    output:
        md="report/all.md",
        figures=report(
            directory("report/figures"),
            patterns=["{name}.png"],
            caption="../report/templates/figures.rst",
            category="Operator breakdown",
        ),
    log:
        "logs/report.log",
    conda:
        "../envs/analysis.yaml"
    params:
        configs=list(CONFIGS),
        pairs=PAIRS,
        declared=CONFIGS,
        study=config["study"],
        report_params={
            "unstable_cv": config["unstable_cv"],
            "ratio_flag": config["ratio_flag"],
        },
    script:
        "../scripts/report.py"
