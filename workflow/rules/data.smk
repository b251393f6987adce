rule build_toy_tokenizer:
    input:
        script=script_path("build_toy_tokenizer.py"),
    output:
        directory("results/toy/tokenizer"),
    log:
        "logs/build_toy_tokenizer.log",
    threads: rule_threads("build_toy_tokenizer")
    resources:
        **rule_resources("build_toy_tokenizer"),
    conda:
        "../../envs/train.yaml"
    shell:
        "python {input.script:q} --out {output} > {log} 2>&1"


rule build_toy_subword_tokenizer:
    """Byte-level BPE trained on prose solutions: a vocabulary whose top-k means what it does for an LLM."""
    input:
        script=script_path("build_toy_tokenizer.py"),
    output:
        directory("results/toy/tokenizer_subword"),
    log:
        "logs/build_toy_subword_tokenizer.log",
    threads: rule_threads("build_toy_subword_tokenizer")
    resources:
        **rule_resources("build_toy_subword_tokenizer"),
    conda:
        "../../envs/train.yaml"
    shell:
        "python {input.script:q} --kind subword --out {output} > {log} 2>&1"


rule prepare_benchmark:
    input:
        local=lambda wc: local_data(config["benchmarks"][wc.benchmark]),
        script=script_path("prepare_problems.py"),
    output:
        "results/data/benchmarks/{benchmark}.jsonl",
    params:
        spec=lambda wc: as_json(problem_spec(config["benchmarks"][wc.benchmark])),
    log:
        "logs/prepare_benchmark/{benchmark}.log",
    threads: rule_threads("prepare_benchmark")
    resources:
        **rule_resources("prepare_benchmark"),
    conda:
        "../../envs/rollout.yaml"
    shell:
        "python {input.script:q} --name {wildcards.benchmark:q} --spec {params.spec:q} "
        "--out {output} > {log} 2>&1"


rule prepare_prompts:
    """Training prompts, with the problems of the sets named in `exclude` removed, and checked
    against every benchmark of the study if OPD or SFT trains on them."""
    input:
        local=lambda wc: local_data(config["prompt_sets"][wc.prompt_set]),
        exclude=lambda wc: [problem_file(n) for n in config["prompt_sets"][wc.prompt_set]["exclude"]],
        benchmarks=lambda wc: [problem_file(b) for b in overlap_benchmarks(wc.prompt_set)],
        script=script_path("prepare_problems.py"),
    output:
        prompts="results/data/prompts/{prompt_set}.jsonl",
        report="results/data/prompts/{prompt_set}.dedup.json",
    params:
        spec=lambda wc: as_json(problem_spec(config["prompt_sets"][wc.prompt_set])),
        exclude=lambda wc, input: " ".join(f"--exclude {f}" for f in input.exclude),
        dedup=lambda wc: as_json(dedup_spec(config["prompt_sets"][wc.prompt_set])),
        overlap=lambda wc: overlap_flags(wc.prompt_set),
    log:
        "logs/prepare_prompts/{prompt_set}.log",
    threads: rule_threads("prepare_prompts")
    resources:
        **rule_resources("prepare_prompts"),
    conda:
        "../../envs/rollout.yaml"
    shell:
        "python {input.script:q} --name {wildcards.prompt_set:q} --spec {params.spec:q} {params.exclude} "
        "--dedup {params.dedup:q} {params.overlap} --drop-repeats "
        "--out {output.prompts} --report {output.report} > {log} 2>&1"
