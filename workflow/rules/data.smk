rule build_toy_tokenizer:
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
        "python {SCRIPTS}/build_toy_tokenizer.py --out {output} > {log} 2>&1"


rule prepare_benchmark:
    output:
        "results/data/benchmarks/{benchmark}.jsonl",
    params:
        spec=lambda wc: as_json(config["benchmarks"][wc.benchmark]),
    log:
        "logs/prepare_benchmark/{benchmark}.log",
    threads: rule_threads("prepare_benchmark")
    resources:
        **rule_resources("prepare_benchmark"),
    conda:
        "../../envs/rollout.yaml"
    shell:
        "python {SCRIPTS}/prepare_benchmark.py --name {wildcards.benchmark:q} --spec {params.spec:q} "
        "--out {output} > {log} 2>&1"
