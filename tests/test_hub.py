"""Hub repositories pinned to commits (opd.hub): the refs of a study, the lock, the cache layout."""

import pytest
import yaml

from opd.hub import HubError, HubRef, pin, read_lock, record_path, repo_of, slug, snapshot_dir, study_refs, write_lock

A = "a" * 40
B = "b" * 40


def study():
    return {
        "models": {"student": {"hub": "org/student"}, "teacher": {"hub": "org/teacher", "revision": A},
                   "again": {"hub": "org/student"}, "toy": {"toy": {}}},
        "benchmarks": {"bench": {"hub": "org/bench", "revision": "v1.0"}, "local": {"path": "x.jsonl"}},
        "prompt_sets": {"p": {"hub": "org/prompts", "dedup": {"method": "embedding", "model": "org/embed"}},
                        "q": {"toy": {}, "dedup": {"method": "exact", "model": "org/embed"}}},
    }


def test_a_study_reads_each_hub_repository_once_per_revision_with_every_key_naming_it():
    refs = {(r.kind, r.repo, r.revision): r.keys for r in study_refs(study())}
    assert refs == {
        ("model", "org/student", "main"): ("models.student", "models.again"),
        ("model", "org/teacher", A): ("models.teacher",),
        ("dataset", "org/bench", "v1.0"): ("benchmarks.bench",),
        ("dataset", "org/prompts", "main"): ("prompt_sets.p",),
        ("model", "org/embed", "main"): ("prompt_sets.p.dedup.model",),  # exact dedup needs no model
    }


def test_an_embedding_model_in_a_local_directory_is_not_a_hub_repository(tmp_path):
    config = study()
    config["prompt_sets"]["p"]["dedup"]["model"] = str(tmp_path)
    assert "org/embed" not in {r.repo for r in study_refs(config)}


def test_the_first_run_resolves_what_the_lock_lacks_and_later_runs_read_the_lock(tmp_path):
    refs = study_refs(study())
    asked = []

    def hub(ref):
        asked.append(ref.repo)
        return B

    commits, lock, missing = pin(refs, read_lock(tmp_path / "absent.yaml"), hub)
    assert not missing and sorted(asked) == ["org/bench", "org/embed", "org/prompts", "org/student"]  # not the commit
    assert commits[HubRef("model", "org/teacher", A)] == A and commits[HubRef("dataset", "org/bench", "v1.0")] == B
    write_lock(tmp_path / "hub.lock.yaml", lock)
    assert yaml.safe_load((tmp_path / "hub.lock.yaml").read_text())["dataset"]["org/bench"] == {"v1.0": B}

    again, same, missing = pin(refs, read_lock(tmp_path / "hub.lock.yaml"), lambda ref: pytest.fail("asked the hub"))
    assert again == commits and same == lock and not missing


def test_offline_whatever_the_lock_lacks_is_left_unresolved():
    lock = {"model": {"org/student": {"main": B}}}
    commits, new, missing = pin(study_refs(study()), lock, None)
    assert {r.repo for r in missing} == {"org/bench", "org/prompts", "org/embed"}
    assert commits[HubRef("model", "org/student", "main")] == B and new["model"] == lock["model"]


def test_a_malformed_lock_names_the_file_and_the_entry(tmp_path):
    path = tmp_path / "hub.lock.yaml"
    path.write_text("model:\n  org/student: {main: abc}\n")
    with pytest.raises(HubError, match=r"hub.lock.yaml: model org/student: revision 'main' must map to a 40-hex"):
        read_lock(path)
    path.write_text("models: {}\n")
    with pytest.raises(HubError, match="expected the keys model and dataset"):
        read_lock(path)


def test_snapshots_lie_where_the_hub_library_itself_finds_them(tmp_path):
    from huggingface_hub import snapshot_download

    for kind, repo in (("model", "org/student"), ("dataset", "org/bench")):
        path = snapshot_dir(tmp_path, kind, repo, A)
        path.mkdir(parents=True)
        (path / "config.json").write_text("{}")
        assert snapshot_download(repo, repo_type=kind, revision=A, cache_dir=tmp_path, local_files_only=True) == str(path)


def test_a_record_path_names_the_repository_and_commit_and_the_slug_round_trips():
    assert record_path("model", "Qwen/Qwen3-1.7B", A) == f"results/hub/model/Qwen--Qwen3-1.7B@{A}.json"
    assert repo_of(slug("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")) == "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
