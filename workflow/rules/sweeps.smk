# Ablation sweeps: each point is an experiment (trained and evaluated by the other rules);
# here its summary, the sweep's tables, and a named target per sweep (`snakemake sweep_<name>`).


rule sweep_point:
    """One sweep point: accuracies before/after/teacher, gap recovery, token-level metrics,
    over the point's seeds."""
    input:
        evals=lambda wc: list(point_evals(wc).values()),
        logs=lambda wc: [f"results/opd/{run}/train_log.jsonl" for run in point_runs(wc).values()],
        script=script_path("make_sweep.py"),
    output:
        "results/sweeps/{sweep}/points/{point}.json",
    wildcard_constraints:
        sweep=one_of(SWEEPS),
    params:
        runs=lambda wc: " ".join(f"--run {seed}:{run}:results/opd/{run}/train_log.jsonl"
                                 for seed, run in point_runs(wc).items()),
        evals=lambda wc: " ".join(f"--eval {m}:{b}:{p}" for (m, b), p in point_evals(wc).items()),
        spec=lambda wc: as_json({
            **{k: config["experiments"][sweep_point_experiment(wc)][k] for k in ("student", "teacher", "section")},
            "benchmarks": experiment_benchmarks(sweep_point_experiment(wc)),
            "overrides": SWEEPS[wc.sweep][f"{wc.sweep}.{wc.point}"],
        }),
    log:
        "logs/sweep_point/{sweep}/{point}.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python {input.script:q} point {params.runs} --spec {params.spec:q} {params.evals} "
        "--out {output} > {log} 2>&1"


rule sweep_table:
    """A sweep's points side by side (markdown, LaTeX, JSON)."""
    input:
        points=lambda wc: [f"results/sweeps/{wc.sweep}/points/{p.split('.', 1)[1]}.json" for p in SWEEPS[wc.sweep]],
        script=script_path("make_sweep.py"),
    output:
        markdown=report("results/sweeps/{sweep}/table.md", caption="../report/sweep.rst", category="Sweeps"),
        latex="results/sweeps/{sweep}/table.tex",
        json="results/sweeps/{sweep}/summary.json",
    wildcard_constraints:
        sweep=one_of(SWEEPS),
    params:
        base=lambda wc: config["sweeps"][wc.sweep]["base"],
        points=lambda wc, input: " ".join(f"--point {p}" for p in input.points),
    log:
        "logs/sweep_table/{sweep}.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python {input.script:q} table --sweep {wildcards.sweep} --base {params.base} {params.points} "
        "--markdown {output.markdown} --latex {output.latex} --json {output.json} > {log} 2>&1"


for _sweep in SWEEPS:

    rule:
        name:
            f"sweep_{_sweep}"
        input:
            f"results/sweeps/{_sweep}/table.md",
        localrule: True
        default_target: False
