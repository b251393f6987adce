import pytest
import torch

from opd.models import hidden_and_head, load_model
from opd.toy.tokenizer import build_tokenizer
from opd.batching import pack
from opd.train.opd import TokenizerMismatch, check_tokenizers, prompt_order


def test_different_tokenizers_are_refused():
    a = build_tokenizer()
    check_tokenizers(a, build_tokenizer(), "s", "t")
    other = build_tokenizer()
    other.add_tokens(["<x>"])
    with pytest.raises(TokenizerMismatch, match="different tokenizers"):
        check_tokenizers(a, other, "s", "t")


def test_prompt_order_covers_each_epoch_once_and_is_reproducible():
    steps = [prompt_order(10, s, 4, seed=3) for s in range(1, 6)]  # 20 positions = 2 epochs
    flat = [i for s in steps for i in s]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    assert flat[:10] != flat[10:]
    assert steps == [prompt_order(10, s, 4, seed=3) for s in range(1, 6)]


def test_pack_points_each_response_token_at_the_position_that_predicts_it(tokenizer, tiny_model_dir):
    prompts, responses = [[5, 6, 7], [8]], [[9, 10], [11, 12, 13]]
    ids, mask, flat, targets = pack(prompts, responses, pad_id=0)
    width = ids.shape[1]
    for f, t in zip(flat.tolist(), targets.tolist()):
        b, pos = divmod(f, width)
        assert ids[b, pos + 1] == t
    assert targets.tolist() == [9, 10, 11, 12, 13]
    model = load_model(tiny_model_dir)
    trunk, head = hidden_and_head(model)
    with torch.no_grad():
        h = trunk(input_ids=ids, attention_mask=mask).last_hidden_state.reshape(-1, head.shape[1])[flat]
        logits = model(input_ids=ids, attention_mask=mask).logits.reshape(-1, head.shape[0])[flat]
    assert torch.allclose(h @ head.T, logits, atol=1e-5)


def test_prediction_positions_are_row_major_and_skip_prompts_and_padding():
    from opd.batching import IGNORE, pad_pairs, prediction_positions

    ids, mask, labels = pad_pairs([[1, 2], [3]], [[4], [5, 6, 7]], pad_id=0)
    assert ids.tolist() == [[1, 2, 4, 0], [3, 5, 6, 7]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert labels.tolist() == [[IGNORE, IGNORE, 4, IGNORE], [IGNORE, 5, 6, 7]]
    flat, targets = prediction_positions(labels)
    assert flat.tolist() == [1, 4, 5, 6] and targets.tolist() == [4, 5, 6, 7]


def test_token_budget_micro_batches_cover_every_sequence_once_within_the_budget():
    import random

    from opd.batching import micro_batches, split_to

    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(1, 300) for _ in range(rng.randint(1, 40))]
        budget = rng.randint(50, 1200)
        batches = micro_batches(lengths, 8, budget)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for b in batches:
            assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= budget
        assert micro_batches(lengths, 8) == [list(range(len(lengths)))[i:i + 8] for i in range(0, len(lengths), 8)]
        more = split_to(batches, len(batches) + 3)
        assert sorted(i for b in more for i in b) == list(range(len(lengths)))
        assert len(more) == min(len(batches) + 3, len(lengths))


def student_gradients(student, teacher, prompts, responses, **settings):
    """The gradient one OPD step accumulates, flattened, under these training settings."""
    loss, grad, _ = opd_step(student, teacher, prompts, responses, **settings)
    return loss, grad


def opd_step(student, teacher, prompts, responses, teacher_prompts=None, **settings):
    """One OPD step's accumulation: its loss, the student's gradient (flattened) and each
    sequence's token rewards (log q - log p of its response tokens)."""
    import torch

    from opd.distributed import Dist
    from opd.losses import Objective
    from opd.train.opd import OPDSettings, accumulate_gradients
    from opd.packing import register
    from opd.train.teacher import Teacher
    from opd.train.updater import Updater, enable_checkpointing

    student.zero_grad(set_to_none=True)
    enable_checkpointing(student, settings.get("gradient_checkpointing", False))
    if not settings.get("gradient_checkpointing"):
        student.gradient_checkpointing_disable()
    student.train()
    s = OPDSettings(max_new_tokens=16, chunk_size=8, **settings)
    lengths = [len(r) for r in responses]
    counts = (sum(lengths), sum(n > 0 for n in lengths), len(lengths))
    updater = Updater(student, torch.optim.SGD(student.parameters(), lr=0.0), 1.0, Dist())
    packed = settings.get("pack_sequences", False)
    for model in (student, teacher):
        model.set_attn_implementation(register() if packed else "sdpa")
    loss, _, rewards, _ = accumulate_gradients(prompts, responses, s, Objective(k=4), *hidden_and_head(student),
                                               Teacher(teacher), updater, 0, counts, teacher_prompts)
    return loss, torch.cat([p.grad.flatten() for p in student.parameters() if p.grad is not None]), rewards


@pytest.fixture(scope="module")
def step_case(tiny_model_dir, teacher_model_dir):
    import random

    from opd.models import load_model

    rng = random.Random(0)
    student, teacher = load_model(tiny_model_dir), load_model(teacher_model_dir).requires_grad_(False)
    vocab = student.config.vocab_size
    prompts = [[rng.randrange(3, vocab) for _ in range(rng.randint(2, 9))] for _ in range(7)]
    responses = [[rng.randrange(3, vocab) for _ in range(rng.randint(1, 16))] for _ in range(7)]
    responses[3] = []  # a rollout that stopped at once
    return student, teacher, prompts, responses


def test_token_budget_micro_batches_give_the_padded_update(step_case):
    import torch

    loss, grad = student_gradients(*step_case, micro_batch_size=2)
    for budget in (8, 30, 64, 10_000):
        b_loss, b_grad = student_gradients(*step_case, micro_batch_size=2, max_tokens_per_micro_batch=budget)
        assert b_loss == pytest.approx(loss, rel=1e-5)
        torch.testing.assert_close(b_grad, grad, rtol=1e-4, atol=1e-7)


def test_activation_checkpointing_gives_the_same_gradients(step_case):
    import torch

    loss, grad = student_gradients(*step_case, micro_batch_size=3)
    c_loss, c_grad = student_gradients(*step_case, micro_batch_size=3, gradient_checkpointing=True)
    assert step_case[0].is_gradient_checkpointing
    assert c_loss == pytest.approx(loss, rel=1e-6)
    torch.testing.assert_close(c_grad, grad, rtol=1e-5, atol=1e-7)


def test_bf16_mixed_precision_gradients_are_the_fp32_ones_within_bf16_rounding(step_case):
    """bf16 keeps 8 significant bits (unit roundoff 2^-9, 0.2%); the roundings of a few dozen
    matmuls and activations in a 1-layer forward and backward compound to a few tenths of a
    percent in a typical gradient entry. We require the whole gradient within 3% (relative
    L2) and the loss within 1%: a bf16 bug (a lost cast, fp32 weights overwritten by bf16)
    gives errors of order one."""
    import torch

    loss, grad = student_gradients(*step_case, micro_batch_size=4)
    b_loss, b_grad = student_gradients(*step_case, micro_batch_size=4, precision="bf16")
    assert b_grad.dtype == torch.float32  # fp32 master weights and gradients
    assert b_loss == pytest.approx(loss, rel=1e-2)
    rel = (b_grad - grad).norm() / grad.norm()
    assert rel < 0.03, float(rel)
    assert all(p.dtype == torch.float32 for p in step_case[0].parameters())


def test_a_rank_short_of_micro_batches_runs_empty_ones_that_change_nothing(step_case):
    """With ZeRO or a sharded teacher every backward and forward is a collective: a rank with
    fewer micro-batches than another runs the missing ones, at weight 0."""
    import torch

    from opd.distributed import Dist
    from opd.train.updater import Updater

    class OtherRankHasMore(Dist):
        def gather(self, items):
            return [*items, 9]

    student = step_case[0]
    updater = Updater(student, torch.optim.SGD(student.parameters(), lr=0.0), 1.0, OtherRankHasMore(0, 2),
                      equal_micro_batches=True)
    batches = updater.micro_batches([5, 9, 3], size=2, max_tokens=None)
    assert batches == [[0], [1], [2], [], [], [], [], [], []]  # split to single sequences, then padded
    loss, grad = student_gradients(*step_case, micro_batch_size=2)
    original = Updater.micro_batches
    try:
        Updater.micro_batches = lambda self, *args: [*original(self, *args), [], []]
        f_loss, f_grad = student_gradients(*step_case, micro_batch_size=2)
    finally:
        Updater.micro_batches = original
    assert f_loss == loss
    torch.testing.assert_close(f_grad, grad, rtol=0, atol=0)


def test_a_packed_row_points_each_response_token_at_the_position_that_predicts_it():
    from opd.packing import pack_row

    ids, positions, bounds, longest, flat, targets = pack_row([[1, 2], [3]], [[7, 8], [9, 4, 5]])
    assert ids.tolist() == [[1, 2, 7, 8, 3, 9, 4, 5]]
    assert positions.tolist() == [[0, 1, 2, 3, 0, 1, 2, 3]]  # restarting at every sequence
    assert bounds.tolist() == [0, 4, 8] and longest == 4
    assert targets.tolist() == [7, 8, 9, 4, 5] and flat.tolist() == [1, 2, 4, 5, 6]


def test_packed_rows_give_the_padded_update(step_case):
    """One row per micro-batch, attention within each sequence (opd_varlen): the loss and
    gradients of padded rows, with and without checkpointing, whatever the row budget."""
    import torch

    loss, grad = student_gradients(*step_case, micro_batch_size=3)
    for budget in (None, 20, 10_000):
        p_loss, p_grad = student_gradients(*step_case, micro_batch_size=3, pack_sequences=True,
                                           max_tokens_per_micro_batch=budget, gradient_checkpointing=budget == 20)
        assert p_loss == pytest.approx(loss, rel=1e-5)
        torch.testing.assert_close(p_grad, grad, rtol=1e-4, atol=1e-6)
    student_gradients(*step_case, micro_batch_size=3)  # back to SDPA for the other tests


def test_a_model_loaded_for_packing_samples_as_it_did(tiny_model_dir, tokenizer):
    """Outside a packed row opd_varlen is SDPA: rollouts (KV cache, padding masks) unchanged."""
    from opd.models import load_model
    from opd.packing import use_packing
    from opd.rollout import SamplingParams
    from opd.rollout.hf import HFBackend

    prompts = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in ("1+2=", "13+7=", "5+55=")]
    sampling = SamplingParams(n=2, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=3)
    plain = load_model(tiny_model_dir)
    packed = load_model(tiny_model_dir)
    use_packing(packed)
    assert packed.config._attn_implementation == "opd_varlen"
    a = HFBackend(plain, tokenizer, progress=False).generate(prompts, sampling)
    b = HFBackend(packed, tokenizer, progress=False).generate(prompts, sampling)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]


def test_the_recipe_scores_the_student_at_its_rollout_temperature_and_validates_at_its_own_length(
        tmp_path, tiny_model_dir, teacher_model_dir, monkeypatch):
    """The loss of a run sampling at T scores the student's logits over T (the released code
    divides them by the rollout temperature; the config never sets it apart), and validation
    samples up to ``eval_max_new_tokens``, not the rollouts' limit."""
    import opd.train.opd as recipe
    from opd.chat import ChatFormat
    from opd.data import toy_problems
    from opd.losses import Objective

    temperatures, validation_lengths = [], []
    loss, evaluate = recipe.opd_loss, recipe.evaluate_over_ranks

    def recording_loss(*args, **kwargs):
        temperatures.append(args[5].student_temperature)
        return loss(*args, **kwargs)

    def recording_evaluation(backend, tok, problems, sampling, *args):
        validation_lengths.append(sampling.max_new_tokens)
        return evaluate(backend, tok, problems, sampling, *args)

    monkeypatch.setattr(recipe, "opd_loss", recording_loss)
    monkeypatch.setattr(recipe, "evaluate_over_ranks", recording_evaluation)
    settings = recipe.OPDSettings(steps=1, prompts_per_step=2, n=2, temperature=0.8, max_new_tokens=6, eval_n=1,
                                  eval_max_new_tokens=9)
    recipe.train(str(tiny_model_dir), str(teacher_model_dir), toy_problems(1, 4, 1, 2, "p"),
                 {"b": toy_problems(2, 1, 1, 2, "b")}, settings, Objective(k=4), tmp_path / "run",
                 template="{problem}", chat=ChatFormat(template=False),
                 teacher_chat=ChatFormat(template=False), grading={})
    assert temperatures and set(temperatures) == {0.8}
    assert validation_lengths == [9, 9]  # before the first step and after the last


@pytest.fixture(scope="module")
def qwen3_pair(qwen3_tokenizer):
    """A tiny random Qwen3 student and teacher around the real Qwen3 tokenizer (in memory)."""
    from transformers import AutoModelForCausalLM

    from opd.tiny import TinyRecipe, tiny_config

    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        config = tiny_config(TinyRecipe(hidden=16, heads=2, kv_heads=1), qwen3_tokenizer)
        models.append(AutoModelForCausalLM.from_config(config, attn_implementation="sdpa"))
    return models


def direct_log_probs(model, prompt: list[int], response: list[int]) -> torch.Tensor:
    """log-probabilities of the response tokens from one forward pass over prompt + response."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + response])).logits[0, len(prompt) - 1:-1]
    return logits.log_softmax(-1).gather(-1, torch.tensor(response)[:, None])[:, 0]


@pytest.mark.parametrize("layout", [{"micro_batch_size": 2}, {"micro_batch_size": 4, "max_tokens_per_micro_batch": 70},
                                    {"micro_batch_size": 3, "pack_sequences": True}], ids=["padded", "budget", "packed"])
def test_a_non_thinking_teacher_scores_the_response_after_its_own_rendering(qwen3_tokenizer, qwen3_pair, layout):
    """A thinking student's rollouts scored by a non-thinking teacher (3.1's failing pair):
    the teacher's log-probabilities are those of a forward pass over its own prompt (with
    the empty think block) plus the student's response, the student's over its own, padded,
    token-budgeted and packed alike; over the student's prompt they would differ."""
    from opd.chat import ChatFormat
    from opd.data import prompt_token_ids
    from opd.train.opd import own_prompts

    tok, (student, teacher) = qwen3_tokenizer, qwen3_pair
    problems = [{"problem": q} for q in ("1+1", "What is 13+29?", "Compute 2*7.")]
    template = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{}."
    student_ids = prompt_token_ids(tok, problems, template, ChatFormat())
    teacher_ids = own_prompts(student_ids, prompt_token_ids(tok, problems, template, ChatFormat(enable_thinking=False)))
    assert teacher_ids is not None and all(len(t) == len(s) + 4 for s, t in zip(student_ids, teacher_ids))
    assert own_prompts(student_ids, prompt_token_ids(tok, problems, template, ChatFormat(enable_thinking=True))) is None
    texts = ["2", "The sum is 42, so \\boxed{42}.<|im_end|>", "", "<think>\n7 twice</think>\n\\boxed{14}<|im_end|>",
             "\\boxed{2}<|im_end|>"]
    responses = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    which = [0, 1, 1, 2, 0]  # the prompt each rollout answers
    prompts, own = [student_ids[i] for i in which], [teacher_ids[i] for i in which]
    try:
        _, _, rewards = opd_step(student, teacher, prompts, responses, own, **layout)
    finally:
        for model in (student, teacher):
            model.set_attn_implementation("sdpa")
    assert [len(r) for r in rewards] == [len(r) for r in responses]
    for r, p, t, response in zip(rewards, prompts, own, responses):
        if not response:
            continue
        log_q = direct_log_probs(teacher, t, response)
        torch.testing.assert_close(r, log_q - direct_log_probs(student, p, response), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(direct_log_probs(teacher, p, response), log_q, atol=1e-3)  # another context


def test_the_recipe_gives_the_teacher_its_own_rendering_of_each_prompt(tmp_path, tiny_model_dir, teacher_model_dir,
                                                                      tokenizer, monkeypatch):
    """train(): the student samples after its chat rendering, the teacher (here prompted bare)
    reads each rollout after its own rendering of the same prompt; the run directory
    records both modes."""
    import opd.train.opd as recipe
    from opd.chat import ChatFormat
    from opd.data import prompt_token_ids, toy_problems
    from opd.io import read_json
    from opd.losses import Objective

    seen = []
    accumulate = recipe.accumulate_gradients

    def recording(prompts, responses, *args):
        seen.append((prompts, args[-1]))
        return accumulate(prompts, responses, *args)

    monkeypatch.setattr(recipe, "accumulate_gradients", recording)
    problems = toy_problems(1, 4, 1, 2, "p")
    settings = recipe.OPDSettings(steps=1, prompts_per_step=2, n=2, max_new_tokens=6, eval_n=1)
    recipe.train(str(tiny_model_dir), str(teacher_model_dir), problems, {}, settings, Objective(k=4), tmp_path / "run",
                 template="{problem}", chat=ChatFormat(), teacher_chat=ChatFormat(template=False), grading={})
    chat = prompt_token_ids(tokenizer, problems, "{problem}", ChatFormat())
    bare = prompt_token_ids(tokenizer, problems, "{problem}", ChatFormat(template=False))
    ((prompts, teacher_prompts),) = seen
    assert len(prompts) == 4 and all(p in chat for p in prompts)
    assert teacher_prompts == [bare[chat.index(p)] for p in prompts]
    assert read_json(tmp_path / "run" / "fingerprint.json")["chat"] == {"student": "chat", "teacher": "bare"}


def test_a_prompt_set_smaller_than_a_step_is_refused_before_any_model_is_loaded(tmp_path):
    import opd.train.opd as recipe
    from opd.data import toy_problems
    from opd.chat import ChatFormat
    from opd.losses import Objective

    settings = recipe.OPDSettings(steps=1, prompts_per_step=24)
    with pytest.raises(ValueError, match=r"^prompt set results/data/prompts/p.jsonl: 1 prompts, fewer than "
                                         r"train.prompts_per_step \(24\)"):
        recipe.train(str(tmp_path / "no_student"), str(tmp_path / "no_teacher"), toy_problems(1, 1, 1, 2, "p"), {},
                     settings, Objective(), tmp_path / "run", template="{problem}", chat=ChatFormat(template=False),
                     teacher_chat=ChatFormat(template=False), grading={},
                     prompts_source="prompt set results/data/prompts/p.jsonl")
