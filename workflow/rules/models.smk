rule prepare_model:
    """Build a model from its recipe: a toy model pretrained on the toy task, or a tiny model of
    a real architecture around a real Qwen tokenizer (hub and local models are used in place)."""
    input:
        tokenizer=lambda wc: tokenizer_dir(wc.model),
        script=script_path("prepare_model.py"),
    output:
        directory("results/models/{model}"),
    wildcard_constraints:
        model=one_of(BUILT_MODELS),
    params:
        kind=lambda wc: "toy" if "toy" in config["models"][wc.model] else "tiny",
        recipe=lambda wc: as_json(config["models"][wc.model].get("toy") or config["models"][wc.model]["tiny"]),
        chat=lambda wc: chat_flag(wc.model),
    log:
        "logs/prepare_model/{model}.log",
    threads: rule_threads("prepare_model")
    priority: lambda wc: CHAIN_LENGTH[wc.model]
    resources:
        **rule_resources("prepare_model"),
    conda:
        "../../envs/train.yaml"
    shell:
        "python {input.script:q} --tokenizer {input.tokenizer} --{params.kind} {params.recipe:q} {params.chat} "
        "--out {output} --threads {threads} > {log} 2>&1"


rule build_qwen_tokenizer:
    """Qwen's real tokenizer (a flavour's special tokens and chat template), built offline."""
    input:
        script=script_path("build_qwen_tokenizer.py"),
    output:
        directory("results/tokenizers/{flavour}"),
    wildcard_constraints:
        flavour="qwen3|r1_distill",
    log:
        "logs/build_qwen_tokenizer/{flavour}.log",
    threads: rule_threads("build_qwen_tokenizer")
    resources:
        **rule_resources("build_qwen_tokenizer"),
    conda:
        "../../envs/train.yaml"
    shell:
        "python {input.script:q} --flavour {wildcards.flavour} --out {output} > {log} 2>&1"
