"""The README and docs/: short, and every file they point to exists."""

import re

from workflow_utils import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# a repository path written out, e.g. `config/paper.yaml`, docs/cluster.md, scripts/gpu_check.py
PATH = re.compile(r"(?<![\w./-])((?:docs|config|scripts|tests|src|workflow|profiles|envs)/[\w./-]*[\w/])")
PLACEHOLDER = re.compile(r"[<*{]")
WRITTEN_BY_A_RUN = {"config/paper.hub.lock.yaml"}  # the first run on a login node writes it


def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, len(lines)


def links(doc):
    """Relative link targets of a markdown file, resolved from its directory."""
    for target in LINK.findall(doc.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor in the same page
        yield target, (doc.parent / target.split("#")[0]).resolve()


def test_every_markdown_link_to_a_repository_file_resolves():
    missing = [f"{doc.relative_to(ROOT)}: {target}" for doc in DOCS for target, path in links(doc)
               if not path.exists()]
    assert not missing, missing


def test_every_repository_path_the_docs_name_exists():
    missing = []
    for doc in DOCS:
        for lineno, line in enumerate(doc.read_text().splitlines(), start=1):
            for path in PATH.findall(line):
                path = path.split("::")[0]
                if PLACEHOLDER.search(line[line.index(path):line.index(path) + len(path) + 1]):
                    continue  # a pattern such as config/<study>.yaml or envs/*.yaml
                if path not in WRITTEN_BY_A_RUN and not (ROOT / path).exists():
                    missing.append(f"{doc.relative_to(ROOT)}:{lineno}: {path}")
    assert not missing, missing


def test_the_readme_shows_the_example_config_as_it_is():
    """The README's YAML block is config/example_own_opd.yaml, which tests/test_own_experiment.py
    runs: what a reader copies is what is tested."""
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks == [(ROOT / "config/example_own_opd.yaml").read_text()]
