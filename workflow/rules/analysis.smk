rule probe_teachers:
    """Candidate teachers scored against a student before any training, ranked."""
    input:
        student=lambda wc: model_files(config["probes"][wc.probe]["student"]),
        teachers=lambda wc: [f for t in config["probes"][wc.probe]["teachers"] for f in model_files(t)],
        prompts=lambda wc: problem_file(config["probes"][wc.probe]["prompts"]),
        evals=lambda wc: list(probe_accuracy(wc.probe).values()),
        script=script_path("probe_teachers.py"),
    output:
        json="results/probes/{probe}.json",
        table=report("results/probes/{probe}.md", caption="../report/probe.rst", category="Teacher probe"),
    wildcard_constraints:
        probe=one_of(config["probes"]),
    params:
        student=lambda wc: f"{config['probes'][wc.probe]['student']}={model_source(config['probes'][wc.probe]['student'])}",
        teachers=lambda wc: " ".join(f"--teacher {t}={model_source(t)}" for t in config["probes"][wc.probe]["teachers"]),
        # the prompts and template go into the probe's record: its predictions are for OPD on those
        settings=lambda wc: as_json({**{k: config["probes"][wc.probe][k]
                                        for k in ("prompts", "num_prompts", "n", "temperature", "max_new_tokens", "k",
                                                  "seed", "verdict")},
                                     "prompt_template": probe_template(wc.probe)}),
        template=lambda wc: probe_template(wc.probe),
        flags=lambda wc: " ".join([model_flags(config["probes"][wc.probe]["student"]),
                                   *(trust_flag(t, f"--trusted-teacher {t}") for t in config["probes"][wc.probe]["teachers"]),
                                   *(f"--teacher-chat {t}={chat_mode(t)}" for t in config["probes"][wc.probe]["teachers"]
                                     if chat_flag(t))]),
        accuracy=lambda wc: " ".join(f"--accuracy {m}:{b}:{p}" for (m, b), p in probe_accuracy(wc.probe).items()),
        dtype=lambda wc: base_entry(config["probes"][wc.probe]["student"])["dtype"],
    log:
        "logs/probe_teachers/{probe}.log",
    threads: rule_threads("probe_teachers")
    resources:
        **rule_resources("probe_teachers"),
    conda:
        "../../envs/rollout.yaml"
    shell:
        "python {input.script:q} --student {params.student:q} {params.teachers} --prompts {input.prompts} "
        "--settings {params.settings:q} --template {params.template:q} {params.flags} {params.accuracy} "
        "--dtype {params.dtype} --threads {threads} --out {output.json} --table {output.table} > {log} 2>&1"


rule rollout_auroc:
    """Does the teacher's per-rollout reward predict correctness? AUROC per experiment."""
    input:
        logs=[f"results/opd/{name}/train_log.jsonl" for name in EXPERIMENTS],
        script=script_path("rollout_auroc.py"),
    output:
        table=report("results/analysis/rollout_auroc.md", caption="../report/auroc.rst", category="Analyses"),
        json="results/analysis/rollout_auroc.json",
    params:
        logs=" ".join(f"--log {name}=results/opd/{name}/train_log.jsonl" for name in EXPERIMENTS),
    log:
        "logs/rollout_auroc.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python {input.script:q} {params.logs} --table {output.table} --out {output.json} > {log} 2>&1"


rule teacher_continuation:
    """The teacher's advantage continuing the student's own partial answers, per prefix length."""
    input:
        student=lambda wc: model_files(config["continuations"][wc.name]["student"]),
        teacher=lambda wc: model_files(config["continuations"][wc.name]["teacher"]),
        benchmark=lambda wc: problem_file(config["continuations"][wc.name]["benchmark"]),
        script=script_path("teacher_continuation.py"),
    output:
        json="results/analysis/continuation/{name}.json",
        table=report("results/analysis/continuation/{name}.md", caption="../report/continuation.rst",
                     category="Analyses"),
    wildcard_constraints:
        name=one_of(config["continuations"]),
    params:
        student=lambda wc: f"{config['continuations'][wc.name]['student']}={model_source(config['continuations'][wc.name]['student'])}",
        teacher=lambda wc: f"{config['continuations'][wc.name]['teacher']}={model_source(config['continuations'][wc.name]['teacher'])}",
        settings=lambda wc: as_json({k: v for k, v in config["continuations"][wc.name].items()
                                     if k not in ("student", "teacher", "benchmark")}),
        template=lambda wc: template_for(config, config["continuations"][wc.name]["benchmark"]),
        flags=lambda wc: " ".join([model_flags(config["continuations"][wc.name]["student"]),
                                   teacher_flags(config["continuations"][wc.name]["teacher"])]),
        dtype=lambda wc: base_entry(config["continuations"][wc.name]["student"])["dtype"],
        grading=as_json(config["eval"]["grading"]),
        batch_size=config["eval"]["batch_size"],
    log:
        "logs/teacher_continuation/{name}.log",
    threads: rule_threads("teacher_continuation")
    resources:
        **rule_resources("teacher_continuation"),
    conda:
        "../../envs/rollout.yaml"
    shell:
        "python {input.script:q} --student {params.student:q} --teacher {params.teacher:q} "
        "--benchmark {input.benchmark} --settings {params.settings:q} --template {params.template:q} {params.flags} "
        "--grading {params.grading:q} --dtype {params.dtype} --batch-size {params.batch_size} --threads {threads} "
        "--out {output.json} --table {output.table} > {log} 2>&1"
