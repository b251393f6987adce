import pytest
import torch

from opd.models import load_model
from opd.toy.tokenizer import build_tokenizer
from opd.train.opd import TokenizerMismatch, check_tokenizers, hidden_and_head, pack, prompt_order


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
