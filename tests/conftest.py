import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    from opd.models import load_tokenizer
    from opd.toy.tokenizer import save_tokenizer

    path = tmp_path_factory.mktemp("tokenizer")
    save_tokenizer(path)
    return load_tokenizer(path)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A real (untrained-ish) toy model saved with save_pretrained: a few quick steps."""
    from opd.toy.pretrain import ToyRecipe, pretrain

    path = tmp_path_factory.mktemp("tiny_model")
    pretrain(tokenizer, ToyRecipe(layers=1, hidden=32, heads=2, steps=3, batch_size=8), path, show_progress=False)
    return path
