rule eval_model:
    """avg@n, pass@k, lengths and truncation of one model on one benchmark."""
    input:
        model=model_inputs,
        benchmark="results/data/benchmarks/{benchmark}.jsonl",
        script=script_path("eval_model.py"),
        plan=memory_checked("eval_model"),
    output:
        metrics="results/eval/{model}/{benchmark}.json",
        samples="results/eval/{model}/{benchmark}.samples.jsonl",
    params:
        model=lambda wc: model_source(wc.model),
        sampling=lambda wc: as_json(sampling_for(config, wc.benchmark)),
        template=lambda wc: template_for(config, wc.benchmark),
        model_flags=lambda wc: model_flags(wc.model),
        dtype=lambda wc: base_entry(wc.model)["dtype"],
        backend=config["eval"]["backend"],
        vllm=lambda wc: vllm_flags("eval_model", sampling_for(config, wc.benchmark)["max_new_tokens"]),
        batch_size=config["eval"]["batch_size"],
        grading=as_json(config["eval"]["grading"]),
    log:
        "logs/eval_model/{model}/{benchmark}.log",
    # `--cache eval_model` with $SNAKEMAKE_OUTPUT_CACHE set: studies on one cluster share
    # evaluations of the same model, benchmark and settings (keyed by provenance)
    cache: "omit-software"
    threads: rule_threads("eval_model")
    resources:
        **rule_resources("eval_model"),
    conda:
        "../../envs/rollout.yaml"
    shell:
        "python {input.script:q} --model {params.model:q} --benchmark {input.benchmark} "
        "--sampling {params.sampling:q} --template {params.template:q} {params.model_flags} "
        "--dtype {params.dtype} --backend {params.backend} {params.vllm} --batch-size {params.batch_size} "
        "--grading {params.grading:q} --threads {threads} "
        "--out {output.metrics} --samples {output.samples} > {log} 2>&1"
