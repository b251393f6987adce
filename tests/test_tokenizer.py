import random

import pytest
from transformers import AutoTokenizer

from opd.models import same_tokenizer
from opd.toy.prose import lexicon
from opd.toy.task import Problem, sample_problem, solution
from opd.toy.tokenizer import CHARACTERS, SPECIAL_TOKENS, SUBWORD_VOCAB_SIZE, build_tokenizer, save_tokenizer


def test_round_trip_every_character_one_token(tmp_path):
    save_tokenizer(tmp_path)
    assert (tmp_path / "tokenizer.json").exists()
    tok = AutoTokenizer.from_pretrained(tmp_path)
    text = "".join(CHARACTERS) + solution(Problem(9876, 543), "cot")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert tok.decode(ids) == text
    assert len(tok) == len(SPECIAL_TOKENS) + len(CHARACTERS)


def test_chat_template_and_special_tokens(tmp_path):
    save_tokenizer(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    text = tok.apply_chat_template([{"role": "user", "content": "1+2"}], add_generation_prompt=True,
                                   tokenize=False)
    assert text == "<|im_start|>user\n1+2<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.decode(ids, skip_special_tokens=True) == "user\n1+2\nassistant\n"


def test_unknown_characters_map_to_unk():
    tok = build_tokenizer()
    ids = tok("é", add_special_tokens=False)["input_ids"]
    assert ids == [tok.unk_token_id]


def test_same_tokenizer_compares_vocabularies():
    a, b = build_tokenizer(), build_tokenizer()
    assert same_tokenizer(a, b)
    b.add_tokens(["<extra>"])
    assert not same_tokenizer(a, b)


def test_subword_tokenizer_is_a_few_thousand_tokens_and_round_trips_prose(tmp_path):
    save_tokenizer(tmp_path, "subword")
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert 2000 < len(tok) <= SUBWORD_VOCAB_SIZE
    rng = random.Random(0)
    for _ in range(50):
        p = sample_problem(rng, 1, 4, 9)
        text = solution(p, "prose", rng)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
        # digits one by one, as Qwen's pre-tokenizer splits them: a sum is said digit by digit
        assert all(not any(c.isdigit() for c in t) or len(t.strip()) == 1 for t in tok.convert_ids_to_tokens(ids))
    common = lexicon()[0]
    assert len(tok(common, add_special_tokens=False)["input_ids"]) == 1  # frequent words are one token
    text = tok.apply_chat_template([{"role": "user", "content": "1+2"}], add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\n1+2<|im_end|>\n<|im_start|>assistant\n"
    assert tok.convert_tokens_to_ids("<|im_end|>") == tok.eos_token_id


def test_subword_tokenizer_is_the_same_every_build():
    assert same_tokenizer(build_tokenizer("subword"), build_tokenizer("subword"))
    assert build_tokenizer("subword").backend_tokenizer.to_str() == build_tokenizer("subword").backend_tokenizer.to_str()
    with pytest.raises(ValueError, match="unknown toy tokenizer"):
        build_tokenizer("words")
