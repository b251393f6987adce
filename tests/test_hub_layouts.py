"""config/paper.yaml's dataset entries, exactly as written, against local stand-ins laid out
as the hub repositories and read through `datasets` (the hub's code path); the rehearsal's
entries are paper.yaml's with the hub id replaced by the stand-in's directory."""

import pytest
import yaml

from opd.config import load_schema, validate_config
from opd.data import dataset_problems
from opd.hub_layouts import DAPO_TEMPLATE, LAYOUTS, write_mirror
from opd.io import DataError


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory):
    out = tmp_path_factory.mktemp("hub")
    for hub_id in LAYOUTS:
        write_mirror(hub_id, out)
    return out


@pytest.fixture(scope="module")
def configs(root):
    schema = load_schema(root / "workflow/schemas/config.schema.yaml")
    return {name: validate_config(yaml.safe_load((root / f"config/{name}.yaml").read_text()), schema)
            for name in ("paper", "rehearsal")}


def paper_entries(configs):
    paper = configs["paper"]
    return {**paper["benchmarks"], **paper["prompt_sets"]}


def read(entry, source):
    return dataset_problems(source, entry["split"], entry["problem_key"], entry["answer_key"], entry["id_key"],
                            subset=entry["subset"], where=entry["where"], template=entry["strip_template"])


def test_every_hub_dataset_of_the_paper_has_a_stand_in(configs):
    assert {e["hub"] for e in paper_entries(configs).values()} <= set(LAYOUTS)


@pytest.mark.parametrize("name", ["aime24", "aime25", "amc23", "sft_prompts", "dapo", "deepmath"])
def test_papers_entry_reads_its_dataset(name, configs, mirrors):
    entry = paper_entries(configs)[name]
    rows = read(entry, str(mirrors / entry["hub"]))
    assert rows and all(r["problem"].strip() for r in rows)
    assert all("Answer:" not in r["problem"] for r in rows)  # DAPO's own template taken off
    if entry["answer_key"] is None:
        assert all(r["answer"] is None for r in rows)
    else:
        assert all(r["answer"] for r in rows)


def test_sft_prompts_keep_the_math_domain_only(configs, mirrors):
    entry = paper_entries(configs)["sft_prompts"]
    everything = read({**entry, "where": {}}, str(mirrors / entry["hub"]))
    assert 0 < len(read(entry, str(mirrors / entry["hub"]))) < len(everything)


def test_a_wrong_column_fails_naming_the_dataset_row_and_columns(configs, mirrors):
    entry = paper_entries(configs)["sft_prompts"]
    with pytest.raises(DataError, match=r"OpenThoughts3-1.2M\[train\]:1: missing key 'problem' "
                                        r"\(columns: conversations, difficulty, domain, source\)"):
        read({**entry, "problem_key": "problem"}, str(mirrors / entry["hub"]))
    dapo = paper_entries(configs)["dapo"]
    with pytest.raises(DataError, match="not written with strip_template"):
        read({**dapo, "strip_template": "Q: {problem}"}, str(mirrors / dapo["hub"]))


def test_dapo_template_is_the_papers_5_2_template(configs):
    dapo_answer = configs["paper"]["sweeps"]["template"]["points"]["dapo_answer"]["prompt_template"]
    assert configs["paper"]["prompt_sets"]["dapo"]["strip_template"] == DAPO_TEMPLATE == dapo_answer


def test_rehearsal_reads_the_data_as_the_paper_does(configs):
    paper = paper_entries(configs)
    reh = configs["rehearsal"]
    for kind in ("benchmarks", "prompt_sets"):
        for name, entry in reh[kind].items():
            assert entry["path"] == f"rehearsal/hub/{paper[name]['hub']}", name
            same = {k: v for k, v in entry.items() if k != "path"}
            assert same == {k: v for k, v in paper[name].items() if k != "hub" and k in same}, name
