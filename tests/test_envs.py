"""The conda environments the rules use are pinned and agree with pyproject.toml."""

import re
import tomllib

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
