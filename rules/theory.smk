# Step 3, theory: exact costs, rooflines, the all-reduce model, pair ratios, predictions.


rule theory:
    input:
        ops_summary="results/aggregate/ops_summary.csv",
        phase_summary="results/aggregate/phase_summary.csv",
        ops_repeats="results/aggregate/ops_repeats.csv",
        phase_totals="results/aggregate/phase_totals.csv",
        steps="results/aggregate/steps.csv",
        provenance="results/aggregate/provenance.json",
        decode_probe="results/aggregate/decode_probe.csv",
        specs=expand("results/specs/{config}.json", config=CONFIGS),
        catalog=config["hardware_catalog"],
        sweeps=[f"results/sweep/{link}.csv" for link in LINKS],
        nccl_tests=list(NCCL_TESTS_OF.values()),
        efficiencies=config["efficiencies"],
        seed_claims=config["seed_claims"],
        calibration=calibration_input,
    output:
        ops="results/theory/ops.csv",
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
    log:
        "logs/theory.log",
    conda:
        "../envs/analysis.yaml"
    params:
        links=list(LINKS),  # the order of input.sweeps
        nccl_links=list(NCCL_TESTS_OF),  # the order of input.nccl_tests
        link_of=LINK_OF,
        pairs=PAIRS,
        ratio_flag=config["ratio_flag"],
        calibrate_from=config.get("calibrate_from"),  # optional, no schema default: absent = the sourced efficiencies alone
    script:
        "../scripts/theory.py"
