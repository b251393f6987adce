import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
if os.environ.get("PYTEST_XDIST_WORKER"):
    # each of the workers one thread of torch's (and of the jobs it starts): a pool per worker
    # as wide as the machine would spin against the other worker's
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def schema():
    from opd.config import load_schema

    return load_schema(ROOT / "workflow/schemas/config.schema.yaml")


@pytest.fixture
def toy():
    """The toy config as a user edits it: each entry on its own (not shared by anchors)."""
    import json

    import yaml

    return json.loads(json.dumps(yaml.safe_load((ROOT / "config/config.yaml").read_text())))


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    from opd.models import load_tokenizer
    from opd.toy.tokenizer import save_tokenizer

    path = tmp_path_factory.mktemp("tokenizer")
    save_tokenizer(path)
    return load_tokenizer(path)


@pytest.fixture(scope="session")
def qwen3_tokenizer():
    """The real Qwen3 tokenizer as the project builds it offline (its released chat template)."""
    from opd.qwen_tokenizers import build_qwen_tokenizer

    return build_qwen_tokenizer("qwen3")


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


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A live single-node SLURM cluster (tests/slurm_cluster.py) for the session, with the
    profile installed under its name by docs/cluster.md's one-time step."""
    import slurm_cluster

    why = slurm_cluster.available()
    if why:
        if os.environ.get("OPD_SLURM_TESTS") == "1":
            pytest.fail(f"OPD_SLURM_TESTS=1 but no test cluster can start: {why}")
        pytest.skip(f"no SLURM test cluster: {why}")
    root = tmp_path_factory.mktemp("slurm")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XDG_CONFIG_HOME", str(install_profile(tmp_path_factory.mktemp("xdg"))))
        try:
            slurm_cluster.start(root)
            yield root
        finally:
            slurm_cluster.stop(root)


def install_profile(config_home: Path) -> Path:
    """docs/cluster.md's one-time step, run as written, into a private config directory."""
    step = next(line for line in (ROOT / "docs/cluster.md").read_text().splitlines()
                if line.startswith("mkdir -p") and "profiles/slurm" in line)
    subprocess.run(["bash", "-c", step], cwd=ROOT, check=True, env={**os.environ, "XDG_CONFIG_HOME": str(config_home)})
    assert (config_home / "snakemake/slurm/config.yaml").exists()
    return config_home


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, the tests that share a costly session fixture run on one worker:
    the live cluster (one per machine: /etc/slurm) and the tiny study (built once)."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "cluster" in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group("cluster"))
        elif "study" in item.fixturenames and "study" not in params:
            item.add_marker(pytest.mark.xdist_group("study"))
