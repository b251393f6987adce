"""Local stand-ins for the hub datasets that config/paper.yaml reads, in each one's own
layout: the repository's file names and format (parquet or JSONL), its README configs,
and its column names and types (nested where the hub's are). The rehearsal reads them
with ``datasets.load_dataset(<directory>)``, the code path of a hub id, so a wrong column,
subset or split name in the paper's config fails on a laptop instead of on the cluster.

The rows are toy-world problems (what the rehearsal's tiny models were trained on) in
the datasets' clothes; the layouts are those documented on the datasets' cards.
"""

from __future__ import annotations

from pathlib import Path

from .data import fill_template, toy_problems
from .io import write_jsonl

# DAPO-Math-17k ships its prompts already written in this template (open-r1's Processed copy
# keeps the templated text in `prompt` and the answer in `solution`)
DAPO_TEMPLATE = ("Solve the following math problem step by step. The last line of your response should be of the "
                 "form Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n{problem}\n\n"
                 "Remember to put your answer on its own line after \"Answer:\".")


def _readme(configs: dict[str, dict[str, str]]) -> str:
    """A dataset card's YAML header: {config name: {split: data file glob}}."""
    lines = ["---", "configs:"]
    for name, splits in configs.items():
        lines += [f"- config_name: {name}", "  data_files:"]
        for split, path in splits.items():
            lines += [f"  - split: {split}", f"    path: {path}"]
    return "\n".join(lines + ["---", ""])


def _parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def aime_2024(out: Path, problems: list[dict]) -> None:
    rows = [{"id": 60 + i, "problem": p["problem"], "solution": f"So the answer is ${p['answer']}$.",
             "answer": p["answer"], "url": f"https://example.invalid/aime/{i}", "year": "2024"}
            for i, p in enumerate(problems)]
    _parquet(out / "data/train-00000-of-00001.parquet", rows)
    (out / "README.md").write_text(_readme({"default": {"train": "data/train-*"}}))


def aime25(out: Path, problems: list[dict]) -> None:
    write_jsonl(out / "test.jsonl", [{"problem": p["problem"], "answer": p["answer"], "id": str(i)}
                                for i, p in enumerate(problems)])
    (out / "README.md").write_text("---\nlicense: mit\n---\n")  # no configs: the split comes from the file name


def amc23(out: Path, problems: list[dict]) -> None:
    write_jsonl(out / "test.jsonl", [{"id": i, "question": p["problem"], "answer": float(p["answer"]),
                                 "url": f"https://example.invalid/amc/{i}"} for i, p in enumerate(problems)])
    (out / "README.md").write_text("---\nlicense: mit\n---\n")


def openthoughts3(out: Path, problems: list[dict]) -> None:
    """Math rows and, as the real set has, rows of other domains (the config keeps math only)."""
    rows = []
    for i, p in enumerate(problems):
        domain = "code" if i % 5 == 4 else "math"
        rows.append({"difficulty": 1 + i % 9, "source": "ai2-adapt-dev/openmath-2-math", "domain": domain,
                     "conversations": [{"from": "human", "value": p["problem"]},
                                       {"from": "gpt", "value": f"<think>\n</think>\n\\boxed{{{p['answer']}}}"}]})
    half = len(rows) // 2
    _parquet(out / "data/train-00000-of-00002.parquet", rows[:half])
    _parquet(out / "data/train-00001-of-00002.parquet", rows[half:])
    (out / "README.md").write_text(_readme({"default": {"train": "data/train-*"}}))


def dapo_processed(out: Path, problems: list[dict]) -> None:
    prompts = [fill_template(DAPO_TEMPLATE, p["problem"]) for p in problems]
    rows = [{"prompt": prompt, "solution": p["answer"], "data_source": "math_dapo",
             "source_prompt": [{"content": prompt, "role": "user"}],
             "ability": "MATH", "reward_model": {"ground_truth": p["answer"], "style": "rule-lighteval/MATH_v2"},
             "extra_info": {"index": f"{i:08x}-0000-0000-0000-000000000000"}}
            for i, (p, prompt) in enumerate(zip(problems, prompts))]
    for subset in ("all", "en"):  # every prompt here is English
        _parquet(out / f"{subset}/train-00000-of-00001.parquet", rows)
    _parquet(out / "cn/train-00000-of-00001.parquet", rows[:1])
    (out / "README.md").write_text(_readme({s: {"train": f"{s}/train-*"} for s in ("all", "en", "cn")}))


def deepmath(out: Path, problems: list[dict]) -> None:
    rows = [{"question": p["problem"], "final_answer": p["answer"], "difficulty": 4.5,
             "topic": "Mathematics -> Algebra",
             **{f"r1_solution_{k}": f"<think>\n</think>\n\\boxed{{{p['answer']}}}" for k in (1, 2, 3)}}
            for p in problems]
    _parquet(out / "data/train-00000-of-00001.parquet", rows)
    (out / "README.md").write_text(_readme({"default": {"train": "data/train-*"}}))


# hub id -> (writer, toy problems: seed, count, min digits, max digits)
LAYOUTS = {
    "HuggingFaceH4/aime_2024": (aime_2024, (101, 8, 1, 2)),
    "math-ai/aime25": (aime25, (102, 8, 1, 2)),
    "math-ai/amc23": (amc23, (103, 8, 1, 2)),
    "open-thoughts/OpenThoughts3-1.2M": (openthoughts3, (104, 40, 1, 2)),
    "open-r1/DAPO-Math-17k-Processed": (dapo_processed, (105, 48, 1, 2)),
    "zwhe99/DeepMath-103K": (deepmath, (106, 24, 1, 2)),
}


def write_mirror(hub_id: str, out: str | Path) -> Path:
    """The stand-in for ``hub_id`` under ``out/<owner>/<name>``."""
    writer, (seed, count, lo, hi) = LAYOUTS[hub_id]
    target = Path(out) / hub_id
    writer(target, toy_problems(seed, count, lo, hi, hub_id.split("/")[1]))
    return target
