import torch

from opd.chat import ChatFormat
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
        evaluate(backend, tokenizer, problems, SamplingParams(n=1, max_new_tokens=4), "{problem}",
                 ChatFormat(template=False), grader)
    with pytest.raises(ValueError, match="prompt 0 is"):
        backend.generate([[1] * context], SamplingParams(n=1, max_new_tokens=4))


def test_the_decode_loop_chooses_the_tokens_generate_chooses(tokenizer, tiny_model_dir):
    """Same seed, same left-padded batch: token for token what ``generate`` samples, greedy,
    tempered and top-p, with rows that stop early padded as ``generate`` pads them."""
    model = load_model(tiny_model_dir)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    ps = prompts(tokenizer, ["12+7", "3+4", "100+250", "9"])
    backend = make_backend("hf", model, tokenizer, batch_size=16, progress=False)  # one batch, one RNG stream
    reasons = set()
    for sp in (SamplingParams(n=3, temperature=0, max_new_tokens=12),
               SamplingParams(n=3, temperature=1.0, top_p=1.0, max_new_tokens=40, seed=5),
               SamplingParams(n=3, temperature=0.7, top_p=0.95, max_new_tokens=40, seed=6)):
        ours = backend.generate(ps, sp)
        jobs = sorted(((i, j) for i in range(len(ps)) for j in range(sp.n)), key=lambda ij: len(ps[ij[0]]))
        width = max(len(p) for p in ps)
        ids = torch.full((len(jobs), width), tokenizer.pad_token_id)
        mask = torch.zeros_like(ids)
        for row, (i, _) in enumerate(jobs):
            ids[row, width - len(ps[i]):], mask[row, width - len(ps[i]):] = torch.tensor(ps[i]), 1
        torch.manual_seed(sp.seed)
        greedy = sp.temperature == 0
        seqs = model.generate(input_ids=ids, attention_mask=mask, do_sample=not greedy, max_new_tokens=sp.max_new_tokens,
                              temperature=None if greedy else sp.temperature, top_p=None if greedy else sp.top_p,
                              top_k=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        theirs = {}
        for row, (i, j) in enumerate(jobs):
            tokens = seqs[row, width:].tolist()
            theirs[i, j] = tokens[: tokens.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in tokens else tokens
        assert {(r.prompt_index, r.sample_index): r.token_ids for r in ours} == theirs, sp
        reasons |= {r.finish_reason for r in ours}
    assert reasons == {"stop", "length"}


def test_a_hub_generation_config_does_not_bend_the_sampled_distribution(tokenizer, tiny_model_dir):
    """A repetition penalty or top-k in generation_config.json would make the rollouts
    off-policy for the loss that scores them: the backend samples the model's own softmax."""
    model = load_model(tiny_model_dir)
    ps = prompts(tokenizer, ["12+7", "3+4"])
    sp = SamplingParams(n=4, temperature=1.0, top_p=1.0, max_new_tokens=30, seed=2)
    plain = make_backend("hf", model, tokenizer, progress=False).generate(ps, sp)
    model.generation_config.repetition_penalty = 5.0
    model.generation_config.top_k = 2
    bent = make_backend("hf", model, tokenizer, progress=False).generate(ps, sp)
    assert [r.token_ids for r in bent] == [r.token_ids for r in plain]


def test_a_sliding_window_model_samples_what_generate_samples(tokenizer):
    """A model whose attention looks back only a few tokens builds that window into its own
    mask: the loop leaves the mask to it, and chooses what ``generate`` chooses."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, use_sliding_window=True, sliding_window=4,
                         max_window_layers=0, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    model = AutoModelForCausalLM.from_config(config).eval()
    assert set(model.config.layer_types) == {"sliding_attention"}
    ps = prompts(tokenizer, ["12+7", "3+4", "100+250"])
    sp = SamplingParams(n=1, temperature=0, max_new_tokens=24)
    backend = make_backend("hf", model, tokenizer, batch_size=16, progress=False)
    backend.stop_ids = set()  # full-length rows: the window slides well past every prompt
    ours = {r.prompt_index: r.token_ids for r in backend.generate(ps, sp)}
    order = sorted(range(len(ps)), key=lambda i: len(ps[i]))
    width = max(len(p) for p in ps)
    ids = torch.full((len(ps), width), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    for row, i in enumerate(order):
        ids[row, width - len(ps[i]):], mask[row, width - len(ps[i]):] = torch.tensor(ps[i]), 1
    model.generation_config.eos_token_id = None  # generate too runs every row to the end
    seqs = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=sp.max_new_tokens,
                          pad_token_id=tokenizer.pad_token_id)
    assert {i: seqs[row, width:].tolist() for row, i in enumerate(order)} == ours
