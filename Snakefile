# The OPD study ("Rethinking On-Policy Distillation of Large Language Models") as a DAG.
# The default config is the toy world; `--configfile config/<other>.yaml` runs another study.
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The toy world is the default; a study given with --configfile replaces it (config files
# are deep-merged, so loading both would leak toy models into another study). --config
# key=value alone edits the default study.
# Snakemake's reader of a config file says "not valid JSON or YAML" and no more: the
# default one is read here first, for the file and line (a --configfile is read by Snakemake
# before this file: scripts/check_config.py names its line).
if not workflow.overwrite_configfiles:
    import sys

    sys.path.insert(0, str(Path(workflow.basedir) / "src"))
    from opd.config import ConfigError, check_config_files

    try:
        check_config_files([Path(workflow.basedir) / "config/config.yaml"])
    except ConfigError as e:
        raise WorkflowError(f"invalid config: {e}") from None

    configfile: Path(workflow.basedir) / "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/hub.smk"
include: "workflow/rules/plan.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/canary_jobs.smk"
include: "workflow/rules/canary.smk"


rule all:
    input:
        "results/tables/base_eval.md",
        "results/tables/experiments.md",
        "results/tables/findings.md",
        "results/summary.json",
        [f"results/sweeps/{s}/table.md" for s in SWEEPS],
        [f"results/probes/{p}.md" for p in config["probes"]],
        [f"results/figures/{g}.png" for g in FIGURES],
        "results/analysis/rollout_auroc.md" if EXPERIMENTS else [],
        [f"results/analysis/continuation/{c}.md" for c in config["continuations"]],
    default_target: True
