rule tables:
    """The base-evaluation and experiment tables, the paper's findings judged on this run,
    and results/summary.json."""
    input:
        evals=[f"results/eval/{m}/{b}.json" for m, b in ALL_EVALS],
        logs=[f"results/opd/{name}/train_log.jsonl" for name in EXPERIMENTS],
        attached=list(SUMMARY_ATTACHMENTS.values()),
        hub=lambda wc: list(hub_attachments().values()),
        script=script_path("make_tables.py"),
    output:
        table=report("results/tables/base_eval.md", caption="../report/base_eval.rst", category="Tables"),
        experiments=report("results/tables/experiments.md", caption="../report/table.rst", category="Tables"),
        summary="results/summary.json",
        findings=report("results/tables/findings.md", caption="../report/findings.rst", category="Tables"),
        sections=[f"results/tables/section_{s}.{ext}" for s in SECTIONS for ext in ("md", "tex")],
        probes=[report("results/tables/probes.md", caption="../report/probe_check.rst", category="Teacher probe")]
        if config["probes"] else [],
    params:
        evals=" ".join(f"--eval {m}:{b}:results/eval/{m}/{b}.json" for m, b in ALL_EVALS),
        base=" ".join(f"--base {m}:{b}" for m, b in BASE_EVAL),
        experiments=lambda wc: experiments_manifest(),  # a function: its templates hold "{problem}"
        seeds=as_json(SEED_RUNS),
        sections=" ".join(f"--section {s}={','.join(names)}" for s, names in SECTIONS.items()),
        attach=" ".join(f"--attach {key}={path}" for key, path in SUMMARY_ATTACHMENTS.items()),
        hub=lambda wc: " ".join(f"--attach hub.{key}={path}" for key, path in hub_attachments().items()),
        probe_table="--probe-table results/tables/probes.md" if config["probes"] else "",
        findings=as_json(config["findings"]),
    log:
        "logs/tables.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python {input.script:q} {params.evals} {params.base} --experiments {params.experiments:q} --seeds {params.seeds:q} "
        "--table {output.table} --experiments-table {output.experiments} --summary {output.summary} "
        "{params.sections} --section-dir results/tables {params.attach} {params.hub} {params.probe_table} "
        "--findings {params.findings:q} --findings-table {output.findings} > {log} 2>&1"



rule figure:
    """Training dynamics of a paper section's experiments or a sweep's points."""
    input:
        logs=lambda wc: [f"results/opd/{n}/train_log.jsonl" for n in FIGURES[wc.group]],
        script=script_path("make_figure.py"),
    output:
        report("results/figures/{group}.png", caption="../report/dynamics.rst", category="Training dynamics"),
    wildcard_constraints:
        group=one_of(FIGURES),
    params:
        logs=lambda wc: " ".join(f"--log {n}=results/opd/{n}/train_log.jsonl" for n in FIGURES[wc.group]),
    log:
        "logs/figure/{group}.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python {input.script:q} {params.logs} --title {wildcards.group} --out {output} > {log} 2>&1"
