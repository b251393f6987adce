import json

import pytest
import torch

from opd.models import load_model, load_tokenizer, toy_config


def test_saved_model_is_safetensors_and_loads_from_a_local_path(tiny_model_dir, tokenizer):
    assert (tiny_model_dir / "model.safetensors").exists()
    assert not list(tiny_model_dir.glob("*.bin"))
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    assert cfg["model_type"] == "qwen3" and cfg["vocab_size"] == len(tokenizer)
    model = load_model(tiny_model_dir)
    assert not model.training
    assert load_tokenizer(tiny_model_dir).get_vocab() == tokenizer.get_vocab()


def test_bfloat16_loading(tiny_model_dir):
    model = load_model(tiny_model_dir, dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16


def test_missing_model_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="not a local directory"):
        load_model(tmp_path / "nope")


def test_a_hub_snapshot_missing_on_this_node_names_the_cache_and_the_download_target(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    snapshot = tmp_path / "models--org--m/snapshots" / ("a" * 40)
    with pytest.raises(FileNotFoundError, match=rf"not in the hub cache this job reads .*HF_HUB_CACHE={tmp_path}.*"
                                                r"every node sees.*snakemake .* download"):
        load_tokenizer(snapshot)


def test_toy_config_rejects_bad_heads(tokenizer):
    with pytest.raises(ValueError, match="not divisible"):
        toy_config(tokenizer, layers=1, hidden=30, heads=4)


def test_corrupted_weights_name_the_file(tiny_model_dir, tmp_path):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a download cut short
    with pytest.raises(OSError, match=r"unreadable weights in .*broken/model\.safetensors"):
        load_model(broken)
