"""The study's hub repositories pinned to commits, and where each commit lies in the cache.

Compute nodes often have no internet, and a hub id names whatever its branch holds today.
So the machine that runs ``snakemake`` (a login node) resolves each model and dataset of
the study to a commit once and writes it to a lock file that later runs and every job read;
local download rules fetch those commits into the Hugging Face cache, and the jobs load the
snapshot directories with the hub offline. Two runs a month apart then train on the same
weights and data, and the tables say which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from opd.io import write_text

COMMIT = re.compile(r"^[0-9a-f]{40}$")
KINDS = ("model", "dataset")
LOCK_HEADER = ("# The commit each hub repository of the study resolved to (written by the workflow on the\n"
               "# first run that saw it). Commit this file: later runs and every job use these commits.\n")


class HubError(ValueError):
    pass


@dataclass(frozen=True)
class HubRef:
    """A repository at the revision the config asks for (``main`` when it names none)."""

    kind: str
    repo: str
    revision: str
    keys: tuple[str, ...] = field(default=(), compare=False)  # the config keys that name it

    @property
    def pinned(self) -> bool:
        return bool(COMMIT.match(self.revision))


def study_refs(config: dict) -> list[HubRef]:
    """Every hub repository the study reads: models, benchmarks and prompt sets given by
    ``hub``, and the sentence-embedding model of an ``embedding`` dedup that is not a local
    directory. One entry per repository and revision, with all the keys that name it."""
    found: dict[tuple[str, str, str], list[str]] = {}

    def add(kind, repo, revision, key):
        found.setdefault((kind, repo, revision or "main"), []).append(key)

    for name, entry in config["models"].items():
        if "hub" in entry:
            add("model", entry["hub"], entry.get("revision"), f"models.{name}")
    for section in ("benchmarks", "prompt_sets"):
        for name, entry in config.get(section, {}).items():
            if "hub" in entry:
                add("dataset", entry["hub"], entry.get("revision"), f"{section}.{name}")
            dedup = entry.get("dedup") or {}
            if dedup.get("method") == "embedding" and not Path(dedup["model"]).exists():
                add("model", dedup["model"], None, f"{section}.{name}.dedup.model")
    return [HubRef(kind, repo, revision, tuple(keys)) for (kind, repo, revision), keys in found.items()]


def read_lock(path: str | Path) -> dict:
    """``{kind: {repo: {revision: commit}}}``; an absent file is an empty lock."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        lock = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise HubError(f"{path}: not YAML: {e}") from None
    if not isinstance(lock, dict) or set(lock) - set(KINDS):
        raise HubError(f"{path}: expected the keys {' and '.join(KINDS)}, each mapping repo -> revision -> commit")
    for kind, repos in lock.items():
        for repo, revisions in (repos or {}).items():
            pairs = revisions.items() if isinstance(revisions, dict) else [("?", revisions)]
            for revision, commit in pairs:
                if not COMMIT.match(str(commit)):
                    raise HubError(f"{path}: {kind} {repo}: revision {revision!r} must map to a 40-hex commit, "
                                   f"not {commit!r}")
    return lock


def write_lock(path: str | Path, lock: dict) -> None:
    body = yaml.safe_dump({k: lock[k] for k in KINDS if lock.get(k)}, sort_keys=True, default_flow_style=False)
    write_text(path, LOCK_HEADER + body)


def pin(refs: list[HubRef], lock: dict, resolve=None) -> tuple[dict[HubRef, str], dict, list[HubRef]]:
    """(commit of each ref, the lock with what ``resolve`` found added, refs left unresolved).

    A commit in the config is its own pin; otherwise the lock's entry is used; otherwise
    ``resolve(ref)`` asks the hub (None: offline, nothing is resolved)."""
    commits, new, missing = {}, {k: {r: dict(v) for r, v in (lock.get(k) or {}).items()} for k in KINDS}, []
    for ref in refs:
        locked = new[ref.kind].get(ref.repo, {}).get(ref.revision)
        if ref.pinned:
            commits[ref] = ref.revision
        elif locked:
            commits[ref] = locked
        elif resolve is not None and (commit := resolve(ref)):
            commits[ref] = new[ref.kind].setdefault(ref.repo, {})[ref.revision] = commit
        else:
            missing.append(ref)
    return commits, new, missing


def remote_commit(ref: HubRef) -> str | None:
    """The commit the hub's ``ref.revision`` points at now; None when the hub cannot be asked."""
    from huggingface_hub import HfApi

    try:
        return HfApi().repo_info(ref.repo, repo_type=ref.kind, revision=ref.revision, timeout=30).sha
    except Exception as e:  # offline, unknown repo or revision, gated: the caller says which refs
        print(f"hub: cannot resolve {ref.kind} {ref.repo}@{ref.revision}: {type(e).__name__}: {str(e)[:200]}")
        return None


def unresolved_message(missing: list[HubRef], lock_path: str | Path) -> str:
    names = "\n  ".join(f"{', '.join('config.' + k for k in ref.keys)}: {ref.kind} {ref.repo}@{ref.revision}"
                        for ref in missing)
    return (f"these hub repositories have no commit in {lock_path} and the hub could not be asked "
            f"(HF_HUB_OFFLINE, or no internet here):\n  {names}\n"
            "Run snakemake once where the hub is reachable (a login node): it writes the commits to the "
            "lock file; or give each entry `revision:` a 40-hex commit.")


def slug(repo: str) -> str:
    """A repository id as one path component (the hub forbids ``--`` in names)."""
    return repo.replace("/", "--")


def repo_of(slug_: str) -> str:
    return slug_.replace("--", "/", 1)


def snapshot_dir(cache: str | Path, kind: str, repo: str, commit: str) -> Path:
    """Where ``huggingface_hub`` keeps a commit's files: ``<cache>/<kind>s--org--name/snapshots/<commit>``."""
    return Path(cache) / f"{kind}s--{slug(repo)}" / "snapshots" / commit


def record_path(kind: str, repo: str, commit: str) -> str:
    """The download rule's output for one commit: a repository at another commit is another file."""
    return f"results/hub/{kind}/{slug(repo)}@{commit}.json"
