rule tables:
    """The base-evaluation and experiment tables, and results/summary.json."""
    input:
        evals=[f"results/eval/{m}/{b}.json" for m, b in ALL_EVALS],
        logs=[f"results/opd/{name}/train_log.jsonl" for name in EXPERIMENTS],
        script=script_path("make_tables.py"),
    output:
        table="results/tables/base_eval.md",
        experiments="results/tables/experiments.md",
        summary="results/summary.json",
    params:
        evals=" ".join(f"--eval {m}:{b}:results/eval/{m}/{b}.json" for m, b in ALL_EVALS),
        base=" ".join(f"--base {m}:{b}" for m, b in BASE_EVAL),
        experiments=experiments_manifest(),
    log:
        "logs/tables.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python {input.script} {params.evals} {params.base} --experiments {params.experiments:q} "
        "--table {output.table} --experiments-table {output.experiments} --summary {output.summary} > {log} 2>&1"
