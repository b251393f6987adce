"""Prompt templates: the schema's default (with the literal braces of ``\\boxed{}``) and
config/paper.yaml's DAPO ``Answer:`` template render; a template without ``{problem}``
is refused by the config check, not by the first job."""

import pytest
import yaml

from opd.config import ConfigError, load_schema, validate_config
from opd.data import fill_template, render_prompt


@pytest.fixture(scope="module")
def schema(root):
    return load_schema(root / "workflow/schemas/config.schema.yaml")


def minimal(**eval_settings):
    return {"models": {"m": {"hub": "Qwen/Qwen3-1.7B"}}, "benchmarks": {"b": {"path": "b.jsonl"}},
            "eval": eval_settings}


def test_default_template_keeps_boxed_braces(schema, tokenizer):
    template = validate_config(minimal(), schema)["eval"]["prompt_template"]
    text = render_prompt(tokenizer, "What is 2+3?", template, chat=False)
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
