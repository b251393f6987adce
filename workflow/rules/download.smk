# Hub repositories into the cache, at the lock's commits (hub.smk): local rules, since the
# machine that runs snakemake is the one with internet.
localrules:
    download_hub,
    download,


rule download_hub:
    """One repository at one commit into the cache (local: where snakemake runs has internet)."""
    input:
        script=script_path("download_hub.py"),
    output:
        "results/hub/{kind}/{slug}@{commit}.json",
    wildcard_constraints:
        kind="model|dataset",
        commit=f"[0-9a-f]{{40}}|{UNRESOLVED}",  # a dry run may show the latter; a run refuses it first
    params:
        repo=lambda wc: repo_of(wc.slug),
        cache=HUB_CACHE,
    log:
        "logs/download_hub/{kind}/{slug}@{commit}.log",
    conda:
        "../../envs/rollout.yaml"
    shell:
        "HF_HUB_OFFLINE=$OPD_HUB_OFFLINE_OUTSIDE "  # the user's, not a param: going offline reruns nothing
        "python {input.script:q} --repo {params.repo:q} --kind {wildcards.kind} --commit {wildcards.commit} "
        "--cache {params.cache:q} --out {output} > {log} 2>&1"


rule download:
    """Every hub model and dataset of the study, in the cache: run it on a login node first."""
    input:
        lambda wc: list(hub_records().values()),
