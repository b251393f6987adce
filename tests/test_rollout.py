import torch

from opd.models import load_model
from opd.rollout import SamplingParams, make_backend
from opd.rollout.hf import response_logprobs


def prompts(tokenizer, texts):
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_greedy_is_deterministic_and_batch_independent(tokenizer, tiny_model_dir):
    model = load_model(tiny_model_dir)
    ps = prompts(tokenizer, ["12+7", "3+4", "100+250"])
    greedy = SamplingParams(n=2, temperature=0, max_new_tokens=12)
    a = make_backend("hf", model, tokenizer, batch_size=6, progress=False).generate(ps, greedy)
    b = make_backend("hf", model, tokenizer, batch_size=1, progress=False).generate(ps, greedy)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    assert [(r.prompt_index, r.sample_index) for r in a] == [(i, j) for i in range(3) for j in range(2)]
    assert a[0].token_ids == a[1].token_ids  # greedy: every sample the same


def test_sampling_is_seeded_and_finish_reasons_are_right(tokenizer, tiny_model_dir):
    model = load_model(tiny_model_dir)
    backend = make_backend("hf", model, tokenizer, batch_size=8, progress=False)
    ps = prompts(tokenizer, ["12+7", "3+4"])
    sp = SamplingParams(n=4, temperature=1.0, top_p=1.0, max_new_tokens=10, seed=3)
    a, b = backend.generate(ps, sp), backend.generate(ps, sp)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    for r in a:
        assert 1 <= len(r.token_ids) <= 10
        if r.finish_reason == "stop":
            assert r.token_ids[-1] == tokenizer.eos_token_id
            assert tokenizer.eos_token_id not in r.token_ids[:-1]
        else:
            assert r.finish_reason == "length" and len(r.token_ids) == 10


def test_logprobs_match_a_plain_forward_pass(tokenizer, tiny_model_dir):
    model = load_model(tiny_model_dir)
    backend = make_backend("hf", model, tokenizer, batch_size=8, progress=False)
    ps = prompts(tokenizer, ["12+7", "345+6"])
    rollouts = backend.generate(ps, SamplingParams(n=2, temperature=1.0, top_p=1.0, max_new_tokens=8),
                                logprobs=True)
    for r in rollouts:
        seq = torch.tensor([ps[r.prompt_index] + r.token_ids])
        with torch.no_grad():
            logits = model(input_ids=seq).logits[0].log_softmax(-1)
        start = len(ps[r.prompt_index])
        expected = [logits[start + k - 1, t].item() for k, t in enumerate(r.token_ids)]
        assert torch.allclose(torch.tensor(r.logprobs), torch.tensor(expected), atol=1e-4)
    again = response_logprobs(model, [ps[0]], [rollouts[0].token_ids], tokenizer.pad_token_id)
    assert torch.allclose(torch.tensor(again[0]), torch.tensor(rollouts[0].logprobs), atol=1e-5)


def test_a_prompt_longer_than_the_context_is_refused_by_name_before_any_compute(tokenizer, tiny_model_dir):
    import pytest

    from opd.evaluation import evaluate
    from opd.grading import Grader

    model = load_model(tiny_model_dir)
    backend = make_backend("hf", model, tokenizer)
    context = model.config.max_position_embeddings
    problems = [{"id": "ok", "problem": "1+1=", "answer": "2"},
                {"id": "huge", "problem": "1+" * context + "1=", "answer": "1"}]
    with Grader() as grader, pytest.raises(ValueError, match=rf"problem 'huge' is \d+ tokens long.*context of {context}"):
        evaluate(backend, tokenizer, problems, SamplingParams(n=1, max_new_tokens=4), "{problem}", False, grader)
    with pytest.raises(ValueError, match="prompt 0 is"):
        backend.generate([[1] * context], SamplingParams(n=1, max_new_tokens=4))
