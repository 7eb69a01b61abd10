# opbreak: where LLM inference time goes, operator by operator, prefill and decode.
# snakemake --cores 1 report/all.md   (default config runs on any CPU)
from snakemake.utils import min_version

min_version("8.0")


# A --configfile (e.g. config/studies/*.yaml) replaces the default instead of merging into it,
# so a study never inherits the default's configs, models or defaults.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/measure.smk"
include: "rules/aggregate.smk"
include: "rules/theory.smk"
include: "rules/report.smk"


localrules:
    all,
    spec,
    aggregate,
    theory,
    report,


# A failed measurement is loud: the last lines name each failed config and repeat with its
# reason, and the run exits non-zero unless the study expects missing hardware (opbreak/runsummary.py).
onstart:
    run_started()


onsuccess:
    run_summary(ok=True)


onerror:
    run_summary(ok=False)


rule all:
    default_target: True
    input:
        "report/all.md",
