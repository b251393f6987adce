rule prepare_model:
    """Pretrain a toy model from its recipe (hub and local models are used in place)."""
    input:
        tokenizer="results/toy/tokenizer",
        script=script_path("prepare_model.py"),
    output:
        directory("results/models/{model}"),
    wildcard_constraints:
        model=one_of(TOY_MODELS),
    params:
        recipe=lambda wc: as_json(config["models"][wc.model]["toy"]),
    log:
        "logs/prepare_model/{model}.log",
    threads: rule_threads("prepare_model")
    resources:
        **rule_resources("prepare_model"),
    conda:
        "../../envs/train.yaml"
    shell:
        "python {input.script} --tokenizer {input.tokenizer} --recipe {params.recipe:q} "
        "--out {output} --threads {threads} > {log} 2>&1"
