# Step 1, deploy-and-measure: one job per hardware config and repeat.


rule spec:
    output:
        "results/specs/{config}.json",
    log:
        "logs/spec/{config}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        spec=lookup(dpath="{config}", within=SPECS),
    script:
        "../scripts/write_spec.py"


rule measure:
    input:
        spec="results/specs/{config}.json",
    output:
        ops="results/measure/{config}/rep{repeat}/ops.csv",
        steps="results/measure/{config}/rep{repeat}/steps.csv",
        collectives="results/measure/{config}/rep{repeat}/collectives.csv",
        prov="results/measure/{config}/rep{repeat}/provenance.json",
    log:
        "logs/measure/{config}/rep{repeat}.log",
    # Retried `retries` times (cluster noise, preemption); the last attempt records a failure
    # instead of failing (the run summary lists it and the run exits non-zero). A repeat whose spec
    # has a stored good measurement is restored from the store (opbreak/store.py), not measured:
    # it needs no GPU; `remeasure:` names configs to measure anew.
    retries: RETRIES
    conda:
        "../envs/measure.yaml"
    resources:
        gpu=lambda wc: 0 if stored(wc) else CONFIGS[wc.config]["num_gpus"],
        gpu_model=slurm_field("gpu_model"),
        slurm_partition=slurm_field("partition"),
        slurm_account=slurm_field("account"),
        runtime=slurm_field("runtime"),
        mem_mb=slurm_field("mem_mb"),
        cpus_per_task=slurm_field("cpus_per_task"),
        on_last_attempt=lambda wc, attempt: (
            "--record-failure" if attempt > RETRIES else ""
        ),
        remeasure=lambda wc: "--remeasure" if wc.config in REMEASURE else "",
    shell:
        "python -m opbreak.measure --spec {input.spec} --repeat {wildcards.repeat} {resources.on_last_attempt}"
        " --store measurements {resources.remeasure}"
        " --outdir results/measure/{wildcards.config}/rep{wildcards.repeat} > {log} 2>&1"


rule sweep:
    # One per link (GPU, ranks, NCCL transport), not per model or batch: rules/common.smk LINKS.
    output:
        "results/sweep/{link}.csv",
    log:
        "logs/sweep/{link}.log",
    conda:
        "../envs/measure.yaml"
    resources:
        gpu=lambda wc: CONFIGS[LINKS[wc.link]]["num_gpus"],
        slurm_partition=slurm_field("partition"),
        slurm_account=slurm_field("account"),
        runtime=slurm_field("runtime"),
    params:
        world=link_spec("tp"),
        device=link_spec("device"),
        transport=link_spec("transport"),
        gpu_ids=lambda wc: ",".join(map(str, SPECS[LINKS[wc.link]]["gpu_ids"] or [])),
        sizes=" ".join(str(int(s)) for s in config["allreduce_sweep"]["sizes"]),
        iters=int(config["allreduce_sweep"]["iters"]),
    shell:
        "python -m opbreak.sweep --config-name {wildcards.link} --world {params.world}"
        " --device {params.device} --transport {params.transport} --iters {params.iters}"
        " --gpu-ids '{params.gpu_ids}' --sizes {params.sizes} --out {output} > {log} 2>&1"


# nccl-tests beside the sweep, per link (study field `nccl_tests`; absent: never requested, the report says so).
ruleorder: nccl_tests > sweep  # <link>.nccl-tests.csv is nccl-tests' table, not a sweep of a link so named


rule nccl_tests_build:
    # Only with nccl_tests.src: built with the host's nvcc against torch's NCCL, outside the repository.
    output:
        "results/sweep/nccl-tests.build.json",
    log:
        "logs/sweep/nccl-tests-build.log",
    conda:
        "../envs/measure.yaml"
    params:
        src=NCCL_TESTS.get("src", ""),
        build_dir=NCCL_TESTS.get("build_dir", ""),
        gencode=NCCL_TESTS.get("gencode", ""),
    shell:
        "python -m opbreak.nccl_tests build --src='{params.src}' --build-dir='{params.build_dir}'"
        " --gencode='{params.gencode}' --out {output} > {log} 2>&1"


rule nccl_tests:
    input:
        NCCL_TESTS_BINARY,
    output:
        csv="results/sweep/{link}.nccl-tests.csv",
        raw="results/sweep/{link}.nccl-tests.txt",
    log:
        "logs/sweep/{link}.nccl-tests.log",
    conda:
        "../envs/measure.yaml"
    resources:
        gpu=lambda wc: CONFIGS[LINKS[wc.link]]["num_gpus"],
        slurm_partition=slurm_field("partition"),
        slurm_account=slurm_field("account"),
        runtime=slurm_field("runtime"),
    params:
        world=link_spec("tp"),
        transport=link_spec("transport"),
        gpu_ids=lambda wc: ",".join(map(str, SPECS[LINKS[wc.link]]["gpu_ids"] or [])),
        sizes=" ".join(str(int(s)) for s in config["allreduce_sweep"]["sizes"]),
        iters=int(NCCL_TESTS.get("iters", 20)),
        warmup=int(NCCL_TESTS.get("warmup", 5)),
    shell:
        "python -m opbreak.nccl_tests run --binary '{input}' --config-name {wildcards.link}"
        " --world {params.world} --transport {params.transport} --gpu-ids '{params.gpu_ids}'"
        " --sizes {params.sizes} --iters {params.iters} --warmup {params.warmup}"
        " --raw {output.raw} --out {output.csv} > {log} 2>&1"
