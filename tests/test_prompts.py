"""Prompt templates: the schema's default (with the literal braces of ``\\boxed{}``) and
config/paper.yaml's DAPO ``Answer:`` template render; a template without ``{problem}``
is refused by the config check, not by the first job."""

import pytest
import yaml

from opd.chat import ChatFormat
from opd.config import ConfigError, validate_config
from opd.data import fill_template, render_prompt



def minimal(**eval_settings):
    return {"models": {"m": {"hub": "Qwen/Qwen3-1.7B"}}, "benchmarks": {"b": {"path": "b.jsonl"}},
            "eval": eval_settings}


def test_default_template_keeps_boxed_braces(schema, tokenizer):
    template = validate_config(minimal(), schema)["eval"]["prompt_template"]
    text = render_prompt(tokenizer, "What is 2+3?", template, ChatFormat(template=False))
    assert text == "What is 2+3?\n\nPlease reason step by step, and put your final answer within \\boxed{}."


def test_papers_dapo_template_renders(root):
    paper = yaml.safe_load((root / "config/paper.yaml").read_text())
    template = paper["sweeps"]["template"]["points"]["dapo_answer"]["prompt_template"]
    text = fill_template(template, "Find $x$ if $x^{2} = 4$.")
    assert text.startswith("Solve the following math problem step by step.")
    assert "\n\nFind $x$ if $x^{2} = 4$.\n\n" in text
    assert text.endswith('Remember to put your answer on its own line after "Answer:".')


def test_problem_braces_are_not_interpreted():
    assert fill_template("Q: {problem} A:", "{0} and {problem} and {}") == "Q: {0} and {problem} and {} A:"


def test_template_without_placeholder_is_a_config_error(schema):
    with pytest.raises(ConfigError, match=r"config\.eval\.prompt_template"):
        validate_config(minimal(prompt_template="Solve it."), schema)
    with pytest.raises(ValueError, match="no \\{problem\\} placeholder"):
        fill_template("Solve it.", "1+1")


def test_chat_modes_name_the_settings_they_stand_for():
    for mode in ("bare", "chat", "thinking", "non-thinking"):
        assert ChatFormat.parse(mode).mode == mode
    assert ChatFormat.parse("non-thinking").template_kwargs() == {"enable_thinking": False}
    assert ChatFormat.parse("chat").template_kwargs() == {}  # unset: the template's own default
    assert ChatFormat.of_entry({"chat_template": True, "enable_thinking": False}) == ChatFormat.parse("non-thinking")
    with pytest.raises(ValueError, match="unknown chat mode 'fast'"):
        ChatFormat.parse("fast")
    with pytest.raises(ValueError, match="bare prompt"):
        ChatFormat(template=False, enable_thinking=False)


def test_a_thinking_switch_the_chat_template_lacks_is_refused(tokenizer):
    """The toy tokenizers' ChatML has no enable_thinking: a non-thinking prompt would
    silently be the ordinary one."""
    assert render_prompt(tokenizer, "1+2", "{problem}", ChatFormat()).startswith("<|im_start|>")
    with pytest.raises(ValueError, match="no enable_thinking switch.*'non-thinking'"):
        render_prompt(tokenizer, "1+2", "{problem}", ChatFormat(enable_thinking=False))


@pytest.mark.parametrize("entry, message", [
    ({"hub": "Qwen/Qwen3-1.7B", "enable_thinking": "no"}, r"config\.models\.m\.enable_thinking: 'no' is not of type"),
    ({"hub": "Qwen/Qwen3-1.7B", "chat_template": False, "enable_thinking": False},
     r"config\.models\.m\.enable_thinking: needs chat_template: true"),
    ({"toy": {}, "enable_thinking": True}, r"config\.models\.m\.enable_thinking: the toy tokenizers'"),
    ({"tiny": {"architecture": "qwen2", "tokenizer": "r1_distill"}, "enable_thinking": False},
     r"config\.models\.m\.enable_thinking: the r1_distill tokenizer's chat template has no thinking switch"),
])
def test_a_models_chat_settings_are_checked_naming_the_key(schema, entry, message):
    config = minimal()
    config["models"]["m"] = entry
    with pytest.raises(ConfigError, match=message):
        validate_config(config, schema)


def test_a_models_chat_settings_default_to_its_template_and_accept_the_switch(schema):
    config = minimal()
    config["models"]["q"] = {"tiny": {}, "enable_thinking": False}
    models = validate_config(config, schema)["models"]
    assert ChatFormat.of_entry(models["m"]) == ChatFormat() and ChatFormat.of_entry(models["q"]).mode == "non-thinking"


def test_papers_qwen3_rows_run_in_the_modes_the_paper_names(root, schema):
    """3.1's failing teacher is Qwen3-4B (non-thinking); 3.2's Qwen3 row distils a
    non-thinking Qwen3-1.7B from it; the R1-Distill models keep their template's default."""
    paper = validate_config(yaml.safe_load((root / "config/paper.yaml").read_text()), schema)
    models, experiments = paper["models"], paper["experiments"]

    def mode(name):
        return ChatFormat.of_entry(models[name]).mode

    assert mode(experiments["s3.1_nonthinking_teacher"]["teacher"]) == "non-thinking"
    row = experiments["s3.2_qwen3_same_pipeline"]
    assert models[row["student"]]["hub"] == "Qwen/Qwen3-1.7B" and models[row["teacher"]]["hub"] == "Qwen/Qwen3-4B"
    assert mode(row["student"]) == mode(row["teacher"]) == "non-thinking"
    assert mode(experiments["s3.2_rl_teacher"]["student"]) == mode(experiments["s3.2_rl_teacher"]["teacher"]) == "chat"
