# The canary (`snakemake --profile slurm --configfile config/paper.yaml canary`): every
# distinct GPU job shape of the study (canary_jobs.smk) for a few steps at its real lengths,
# on the study's resources, never retried; then one table, results/canary/table.md, of the
# device memory per phase beside the memory plan, the speeds, and the GPU-hours the whole
# study would take at them. Its jobs train from the base models (a cold-started student has
# its base's shape) and keep nothing but their logs.


rule canary:
    """Every GPU job shape of the study for a few steps, and their table."""
    input:
        "results/canary/table.md",


rule canary_table:
    """Measured memory and speed of each canary job beside its plan, and the study's GPU-hours."""
    input:
        runs=canary_outputs(),
        data=sorted({problem_file(b) for b in config["benchmarks"]}
                    | {problem_file(s["prompts"]) for s in config["sft"].values()}),
        script=script_path("canary_table.py"),
    output:
        table="results/canary/table.md",
        summary="results/canary/summary.json",
    params:
        manifest=lambda wc: canary_manifest(),
    log:
        "logs/canary/table.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python {input.script:q} --manifest {params.manifest:q} --table {output.table} --summary {output.summary} "
        "> {log} 2>&1"


rule canary_opd:
    """One OPD shape: the first experiment of that shape, from its base models, a few steps."""
    input:
        student=lambda wc: model_files(base_model(config["experiments"][wc.rep]["student"])),
        teacher=lambda wc: model_files(base_model(config["experiments"][wc.rep]["teacher"])),
        prompts=lambda wc: problem_file(config["experiments"][wc.rep]["prompts"]),
        benchmarks=lambda wc: [problem_file(b) for b in experiment_benchmarks(wc.rep)],
        script=script_path("opd_train.py"),
    output:
        log="results/canary/opd/{rep}/train_log.jsonl",
    wildcard_constraints:
        rep=one_of(CANARY_OPD),
    params:
        student=lambda wc: model_source(base_model(config["experiments"][wc.rep]["student"])),
        teacher=lambda wc: model_source(base_model(config["experiments"][wc.rep]["teacher"])),
        teacher_dtype=lambda wc: base_entry(config["experiments"][wc.rep]["teacher"])["dtype"],
        student_dtype=lambda wc: base_entry(config["experiments"][wc.rep]["student"])["dtype"],
        flags=lambda wc: model_flags(config["experiments"][wc.rep]["student"]),
        teacher_flags=lambda wc: teacher_flags(config["experiments"][wc.rep]["teacher"]),
        benchmarks=lambda wc: " ".join(f"--benchmark {b}={problem_file(b)}" for b in experiment_benchmarks(wc.rep)),
        settings=lambda wc: as_json(canary_train(config["experiments"][wc.rep]["train"], CANARY["steps"], "opd")),
        objective=lambda wc: as_json(config["experiments"][wc.rep]["objective"]),
        template=lambda wc: experiment_template(wc.rep),
        grading=as_json(config["eval"]["grading"]),
        val_limit=CANARY["val_per_rank"] * ranks("opd_train"),
        run_dir="results/canary/runs/opd/{rep}",
        launch=rule_launcher("opd_train"),
    log:
        "logs/canary/opd/{rep}.log",
    retries: 0  # a failing shape is the canary's finding, not a reason to spend its GPUs again
    threads: rule_threads("opd_train")
    resources:
        **rule_resources("opd_train"),
    conda:
        "../../envs/train.yaml"
    shell:
        "rm -rf {params.run_dir} && {params.launch} {input.script:q} --student {params.student:q} "
        "--teacher {params.teacher:q} --teacher-dtype {params.teacher_dtype} --student-dtype {params.student_dtype} "
        "{params.flags} {params.teacher_flags} --prompts {input.prompts} {params.benchmarks} "
        "--val-limit {params.val_limit} --settings {params.settings:q} --objective {params.objective:q} "
        "--template {params.template:q} --grading {params.grading:q} --run-dir {params.run_dir} "
        "--log-out {output.log} --threads {threads} > {log} 2>&1; status=$?; rm -rf {params.run_dir}; exit $status"


rule canary_sft:
    """One SFT shape: its base student on random examples of the study's length, a few steps."""
    input:
        student=lambda wc: model_files(base_model(config["sft"][wc.rep]["student"])),
        script=script_path("sft_train.py"),
    output:
        log="results/canary/sft/{rep}/train_log.jsonl",
    wildcard_constraints:
        rep=one_of(CANARY_SFT),
    params:
        student=lambda wc: model_source(base_model(config["sft"][wc.rep]["student"])),
        flags=lambda wc: model_flags(config["sft"][wc.rep]["student"]),
        settings=lambda wc: as_json(canary_train(config["sft"][wc.rep]["train"], CANARY["steps"], "sft")),
        examples=lambda wc: CANARY["steps"] * config["sft"][wc.rep]["train"]["batch_size"],
        run_dir="results/canary/runs/sft/{rep}",
        launch=rule_launcher("sft"),
    log:
        "logs/canary/sft/{rep}.log",
    retries: 0
    threads: rule_threads("sft")
    resources:
        **rule_resources("sft"),
    conda:
        "../../envs/train.yaml"
    shell:
        "rm -rf {params.run_dir} && {params.launch} {input.script:q} --model {params.student:q} {params.flags} "
        "--synthetic-examples {params.examples} --settings {params.settings:q} --run-dir {params.run_dir} "
        "--log-out {output.log} --threads {threads} > {log} 2>&1; status=$?; rm -rf {params.run_dir}; exit $status"


rule canary_rollouts:
    """One teacher-rollout shape on the first prompts of its set."""
    input:
        teacher=lambda wc: model_files(base_model(config["sft"][wc.rep]["teacher"])),
        prompts=lambda wc: problem_file(config["sft"][wc.rep]["prompts"]),
        script=script_path("teacher_rollouts.py"),
    output:
        rollouts=temp("results/canary/rollouts/{rep}/rollouts.jsonl"),
        report="results/canary/rollouts/{rep}/report.json",
    wildcard_constraints:
        rep=one_of(CANARY_ROLLOUTS),
    params:
        teacher=lambda wc: model_source(base_model(config["sft"][wc.rep]["teacher"])),
        flags=lambda wc: model_flags(config["sft"][wc.rep]["teacher"]),
        dtype=lambda wc: base_entry(config["sft"][wc.rep]["teacher"])["dtype"],
        sampling=lambda wc: as_json(config["sft"][wc.rep]["sampling"]),
        template=lambda wc: config["eval"]["prompt_template"],
        engines=lambda wc: rollout_flags("teacher_rollouts", wc.rep),
        problems=CANARY["problems"],
        backend=config["eval"]["backend"],
    log:
        "logs/canary/rollouts/{rep}.log",
    retries: 0
    threads: rule_threads("teacher_rollouts")
    resources:
        **rule_resources("teacher_rollouts"),
    conda:
        "../../envs/rollout.yaml"
    shell:
        "python {input.script:q} --teacher {params.teacher:q} {params.flags} --dtype {params.dtype} "
        "--prompts {input.prompts} --max-prompts {params.problems} --sampling {params.sampling:q} "
        "--template {params.template:q} --backend {params.backend} {params.engines} --threads {threads} "
        "--work-dir \"$(mktemp -d)\" --out {output.rollouts} --report {output.report} > {log} 2>&1"


rule canary_eval:
    """One evaluation shape on the first problems of its benchmark."""
    input:
        model=lambda wc: model_files(base_model(wc.model)),
        benchmark="results/data/benchmarks/{benchmark}.jsonl",
        script=script_path("eval_model.py"),
    output:
        metrics="results/canary/eval/{model}/{benchmark}.json",
        samples=temp("results/canary/eval/{model}/{benchmark}.samples.jsonl"),
    wildcard_constraints:
        model=one_of({m for m, _ in CANARY_EVAL}),
    params:
        model=lambda wc: model_source(base_model(wc.model)),
        sampling=lambda wc: as_json(sampling_for(config, wc.benchmark)),
        template=lambda wc: template_for(config, wc.benchmark),
        model_flags=lambda wc: model_flags(wc.model),
        dtype=lambda wc: base_entry(wc.model)["dtype"],
        vllm=lambda wc: vllm_flags("eval_model", sampling_for(config, wc.benchmark)["max_new_tokens"]),
        problems=CANARY["problems"],
        backend=config["eval"]["backend"],
        batch_size=config["eval"]["batch_size"],
    log:
        "logs/canary/eval/{model}/{benchmark}.log",
    retries: 0
    threads: rule_threads("eval_model")
    resources:
        **rule_resources("eval_model"),
    conda:
        "../../envs/rollout.yaml"
    shell:
        "python {input.script:q} --model {params.model:q} --benchmark {input.benchmark} --max-problems {params.problems} "
        "--sampling {params.sampling:q} --template {params.template:q} {params.model_flags} --dtype {params.dtype} "
        "--backend {params.backend} {params.vllm} --batch-size {params.batch_size} --threads {threads} "
        "--out {output.metrics} --samples {output.samples} > {log} 2>&1"
