rule opd_train:
    """On-policy distillation of one experiment; its run directory survives retries."""
    input:
        student=lambda wc: model_files(config["experiments"][wc.experiment]["student"]),
        teacher=lambda wc: model_files(config["experiments"][wc.experiment]["teacher"]),
        prompts=lambda wc: problem_file(config["experiments"][wc.experiment]["prompts"]),
        benchmarks=lambda wc: [problem_file(b) for b in experiment_benchmarks(wc.experiment)],
        script=script_path("opd_train.py"),
        plan=memory_checked("opd_train"),
        disk=disk_planned("opd_train"),
    output:
        model=directory("results/opd/{experiment}/model"),
        log="results/opd/{experiment}/train_log.jsonl",
    wildcard_constraints:
        experiment=one_of(EXPERIMENTS),
    params:
        student=lambda wc: model_source(config["experiments"][wc.experiment]["student"]),
        teacher=lambda wc: model_source(config["experiments"][wc.experiment]["teacher"]),
        teacher_dtype=lambda wc: base_entry(config["experiments"][wc.experiment]["teacher"])["dtype"],
        student_dtype=lambda wc: base_entry(config["experiments"][wc.experiment]["student"])["dtype"],
        flags=lambda wc: model_flags(config["experiments"][wc.experiment]["student"]),
        teacher_flags=lambda wc: teacher_flags(config["experiments"][wc.experiment]["teacher"]),
        benchmarks=lambda wc: " ".join(
            f"--benchmark {b}={problem_file(b)}" for b in experiment_benchmarks(wc.experiment)
        ),
        settings=lambda wc: as_json(config["experiments"][wc.experiment]["train"]),
        objective=lambda wc: as_json(config["experiments"][wc.experiment]["objective"]),
        template=lambda wc: experiment_template(wc.experiment),
        grading=as_json(config["eval"]["grading"]),
        run_dir="results/runs/opd/{experiment}",
        launch=rule_launcher("opd_train"),
    log:
        "logs/opd_train/{experiment}.log",
    threads: rule_threads("opd_train")
    priority: lambda wc: CHAIN_LENGTH[wc.experiment]
    resources:
        **rule_resources("opd_train"),
    conda:
        "../../envs/train.yaml"
    shell:
        "{params.launch} {input.script:q} --student {params.student:q} --teacher {params.teacher:q} "
        "--teacher-dtype {params.teacher_dtype} --student-dtype {params.student_dtype} {params.flags} {params.teacher_flags} --prompts {input.prompts} {params.benchmarks} "
        "--settings {params.settings:q} --objective {params.objective:q} --template {params.template:q} "
        "--grading {params.grading:q} --run-dir {params.run_dir} --out {output.model} "
        "--log-out {output.log} --threads {threads} > {log} 2>&1"


rule teacher_rollouts:
    """The teacher's filtered answers to the cold-start prompts."""
    input:
        teacher=lambda wc: model_files(config["sft"][wc.sft]["teacher"]),
        prompts=lambda wc: problem_file(config["sft"][wc.sft]["prompts"]),
        script=script_path("teacher_rollouts.py"),
        plan=memory_checked("teacher_rollouts"),
    output:
        rollouts="results/sft/{sft}/teacher_rollouts.jsonl",
        report="results/sft/{sft}/filter_report.json",
    wildcard_constraints:
        sft=one_of(SFT_RUNS),
    params:
        teacher=lambda wc: model_source(config["sft"][wc.sft]["teacher"]),
        flags=lambda wc: model_flags(config["sft"][wc.sft]["teacher"]),
        dtype=lambda wc: base_entry(config["sft"][wc.sft]["teacher"])["dtype"],
        sampling=lambda wc: as_json(config["sft"][wc.sft]["sampling"]),
        filter=lambda wc: as_json(config["sft"][wc.sft]["filter"]),
        template=lambda wc: config["eval"]["prompt_template"],
        batch_size=config["eval"]["batch_size"],
        backend=config["eval"]["backend"],
        engines=lambda wc: rollout_flags("teacher_rollouts", wc.sft),
        work_dir="results/runs/rollouts/{sft}",
    log:
        "logs/teacher_rollouts/{sft}.log",
    threads: rule_threads("teacher_rollouts")
    priority: lambda wc: CHAIN_LENGTH[wc.sft] + 1  # the SFT run's first step
    resources:
        **rule_resources("teacher_rollouts"),
    conda:
        "../../envs/rollout.yaml"
    shell:
        "python {input.script:q} --teacher {params.teacher:q} {params.flags} --dtype {params.dtype} "
        "--prompts {input.prompts} --sampling {params.sampling:q} --filter {params.filter:q} "
        "--template {params.template:q} --batch-size {params.batch_size} --backend {params.backend} {params.engines} "
        "--work-dir {params.work_dir} --threads {threads} --out {output.rollouts} --report {output.report} > {log} 2>&1"


rule sft:
    """Off-policy cold start: the student fine-tuned on the teacher's answers."""
    input:
        student=lambda wc: model_files(config["sft"][wc.sft]["student"]),
        data="results/sft/{sft}/teacher_rollouts.jsonl",
        script=script_path("sft_train.py"),
        plan=memory_checked("sft"),
        disk=disk_planned("sft"),
    output:
        model=directory("results/sft/{sft}/model"),
        log="results/sft/{sft}/train_log.jsonl",
    wildcard_constraints:
        sft=one_of(SFT_RUNS),
    params:
        student=lambda wc: model_source(config["sft"][wc.sft]["student"]),
        flags=lambda wc: model_flags(config["sft"][wc.sft]["student"]),
        settings=lambda wc: as_json(config["sft"][wc.sft]["train"]),
        template=lambda wc: config["eval"]["prompt_template"],
        run_dir="results/runs/sft/{sft}",
        launch=rule_launcher("sft"),
    log:
        "logs/sft/{sft}.log",
    threads: rule_threads("sft")
    priority: lambda wc: CHAIN_LENGTH[wc.sft]
    resources:
        **rule_resources("sft"),
    conda:
        "../../envs/train.yaml"
    shell:
        "{params.launch} {input.script:q} --model {params.student:q} {params.flags} --data {input.data} "
        "--settings {params.settings:q} --template {params.template:q} --run-dir {params.run_dir} "
        "--out {output.model} --log-out {output.log} --threads {threads} > {log} 2>&1"
