BASE_EVAL = base_eval_pairs(config)


rule base_eval_table:
    """Every base model on every benchmark, as a table and in results/summary.json."""
    input:
        evals=[f"results/eval/{m}/{b}.json" for m, b in BASE_EVAL],
        script=script_path("make_tables.py"),
    output:
        table="results/tables/base_eval.md",
        summary="results/summary.json",
    params:
        evals=" ".join(f"--eval {m}:{b}:results/eval/{m}/{b}.json" for m, b in BASE_EVAL),
    log:
        "logs/base_eval_table.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python {input.script} {params.evals} --table {output.table} "
        "--summary {output.summary} > {log} 2>&1"
