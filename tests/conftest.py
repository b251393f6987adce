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


@pytest.fixture(scope="session")
def teacher_model_dir(tmp_path_factory, tokenizer):
    """A second tiny model (another seed): a teacher that differs from tiny_model_dir."""
    from opd.toy.pretrain import ToyRecipe, pretrain

    path = tmp_path_factory.mktemp("teacher")
    pretrain(tokenizer, ToyRecipe(layers=1, hidden=32, heads=2, steps=3, batch_size=8, seed=9), path,
             show_progress=False)
    return path


@pytest.fixture(scope="session")
def study(tmp_path_factory):
    """A completed local run of the tiny toy world: (workdir, config)."""
    from workflow_utils import snakemake, tiny_config, write_config

    workdir = tmp_path_factory.mktemp("study")
    config = tiny_config()
    cfg = write_config(workdir / "config.yaml", config)
    run = snakemake(workdir, "--configfile", str(cfg), "--cores", "2")
    assert run.returncode == 0, run.stderr[-4000:]
    return workdir, config
