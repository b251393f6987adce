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
        "python {input.script} --out {output} > {log} 2>&1"


rule prepare_benchmark:
    input:
        script=script_path("prepare_benchmark.py"),
    output:
        "results/data/benchmarks/{benchmark}.jsonl",
    params:
        spec=lambda wc: as_json(benchmark_data_spec(wc.benchmark)),
    log:
        "logs/prepare_benchmark/{benchmark}.log",
    threads: rule_threads("prepare_benchmark")
    resources:
        **rule_resources("prepare_benchmark"),
    conda:
        "../../envs/rollout.yaml"
    shell:
        "python {input.script} --name {wildcards.benchmark:q} --spec {params.spec:q} "
        "--out {output} > {log} 2>&1"
