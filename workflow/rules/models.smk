rule prepare_model:
    """Pretrain a toy model from its recipe (hub and local models are used in place)."""
    input:
        tokenizer="results/toy/tokenizer",
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
        "python {SCRIPTS}/prepare_model.py --tokenizer {input.tokenizer} --recipe {params.recipe:q} "
        "--out {output} --threads {threads} > {log} 2>&1"
