"""The whole DAG, really run by Snakemake on a tiny toy world in a temporary directory."""

import json
import re
import shutil

import pytest
from safetensors.torch import load_file, save_file
from opd.analysis.findings import FINDINGS
from opd.hub_layouts import write_mirror
from workflow_utils import ROOT, job_counts, snakemake, tiny_config, write_config

pytestmark = pytest.mark.e2e


def test_run_writes_table_summary_and_per_sample_records(study):
    workdir, config = study
    table = (workdir / "results/tables/base_eval.md").read_text()
    assert "| student |" in table and "| teacher |" in table and "easy" in table and "hard" in table
    summary = json.loads((workdir / "results/summary.json").read_text())
    assert set(summary["models"]) == {"student", "teacher"}
    acc = summary["models"]["student"]["benchmarks"]["easy"]["accuracy"]
    assert 0.0 <= acc <= 1.0
    metrics = json.loads((workdir / "results/eval/teacher/hard.json").read_text())
    for key in ("avg@2", "pass@1", "pass@2", "mean_response_tokens", "truncation_rate", "seconds",
                "samples_per_second"):
        assert key in metrics
    samples = (workdir / "results/eval/teacher/hard.samples.jsonl").read_text().splitlines()
    assert len(samples) == 4 * 2
    assert (workdir / "results/models/student/model.safetensors").exists()
    assert (workdir / "results/toy/tokenizer/tokenizer.json").exists()


def test_cold_start_and_opd_experiment(study):
    workdir, _ = study
    report = json.loads((workdir / "results/sft/cold/filter_report.json").read_text())
    dedup_sft = json.loads((workdir / "results/data/prompts/sft_p.dedup.json").read_text())
    assert report["generated"] == dedup_sft["kept"]
    assert report["kept"] + sum(report["dropped"].values()) == report["generated"]
    assert report["kept"] >= 4  # at least one SFT batch
    dedup = json.loads((workdir / "results/data/prompts/opd_p.dedup.json").read_text())
    assert dedup["kept"] + dedup["removed_as_duplicates"] == 20
    opd = {json.loads(l)["problem"] for l in (workdir / "results/data/prompts/opd_p.jsonl").read_text().splitlines()}
    sft = {json.loads(l)["problem"] for l in (workdir / "results/data/prompts/sft_p.jsonl").read_text().splitlines()}
    assert not opd & sft
    log = [json.loads(l) for l in (workdir / "results/opd/distilled/train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 1, 2]
    for key in ("loss", "overlap_ratio", "overlap_mass_student", "overlap_mass_teacher", "adv_intersection",
                "entropy_gap", "entropy_student", "entropy_teacher", "response_length", "truncation_rate",
                "accuracy", "grad_norm", "tokens_per_s", "time_rollout", "time_teacher", "time_update"):
        assert key in log[1], key
    assert set(log[1]["val"]) == {"easy", "hard"}
    summary = json.loads((workdir / "results/summary.json").read_text())
    exp = summary["experiments"]["distilled"]
    assert exp["student"] == "cold" and exp["teacher"] == "teacher"
    for key in ("acc_before", "acc_after", "acc_teacher", "gap_recovery"):
        assert key in exp["benchmarks"]["hard"]
    for key in ("overlap_ratio_first", "overlap_ratio_last", "overlap_mass_student_last"):
        assert key in exp
    assert "| distilled |" in (workdir / "results/tables/experiments.md").read_text()
    # the run directory keeps its fingerprint, log and starts; its checkpoints went after the export
    assert (workdir / "results/runs/opd/distilled/starts.jsonl").exists()
    assert not list((workdir / "results/runs/opd/distilled").glob("step_*"))


def test_second_invocation_has_nothing_to_do(study):
    workdir, _ = study
    run = snakemake(workdir, "--configfile", str(workdir / "config.yaml"), "-n")
    assert run.returncode == 0
    assert "Nothing to be done" in run.stdout + run.stderr


def test_editing_one_benchmarks_sampling_reruns_only_its_evaluations(study, tmp_path):
    workdir, config = study
    config = json.loads(json.dumps(config))
    config["benchmarks"]["hard"]["sampling"] = {"temperature": 0.5}
    edited = write_config(tmp_path / "edited.yaml", config)
    run = snakemake(workdir, "--configfile", str(edited), "-n")
    assert run.returncode == 0, run.stderr[-3000:]
    counts = job_counts(run.stdout + run.stderr)
    # student, teacher, the SFT model, the experiment and the sweep's two points (two seeds
    # each) are evaluated on "hard"; nothing retrains
    assert counts == {"eval_model": 8, "sweep_point": 2, "sweep_table": 1, "probe_teachers": 1, "tables": 1,
                      "all": 1}, counts
    log = run.stdout + run.stderr
    assert "output: results/eval/student/hard.json" in log
    assert "output: results/eval/student/easy.json" not in log


def test_sweep_points_are_experiments_with_a_table(study):
    workdir, _ = study
    table = (workdir / "results/sweeps/k/table.md").read_text()
    for point in ("k-2", "sampled"):
        assert f"| {point} |" in table
        log = (workdir / f"results/opd/k.{point}/train_log.jsonl").read_text().splitlines()
        assert len(log) == 3
    assert "objective.kind=sampled" in table
    assert "\\begin{tabular}" in (workdir / "results/sweeps/k/table.tex").read_text()
    summary = json.loads((workdir / "results/summary.json").read_text())
    assert {"k.k-2", "k.sampled", "k.k-2.seed1", "k.sampled.seed1"} <= set(summary["experiments"])


def test_seeds_run_separately_and_report_their_spread(study):
    workdir, _ = study
    summary = json.loads((workdir / "results/summary.json").read_text())
    runs = {"k.sampled": 0, "k.sampled.seed1": 1}
    logs = {}
    for name, seed in runs.items():
        logs[name] = (workdir / f"results/opd/{name}/train_log.jsonl").read_text()
        stamp = json.loads((workdir / f"results/runs/opd/{name}/fingerprint.json").read_text())
        assert stamp["settings"]["seed"] == seed
    assert logs["k.sampled"] != logs["k.sampled.seed1"]  # other prompts and rollouts
    exp = summary["experiments"]["k.sampled"]
    assert exp["seed_runs"] == {"0": "k.sampled", "1": "k.sampled.seed1"}
    after = exp["seeds"]["benchmarks"]["hard"]["acc_after"]
    assert after["per_seed"] == {str(s): summary["experiments"][n]["benchmarks"]["hard"]["acc_after"]
                                 for n, s in runs.items()}
    assert after["mean"] == pytest.approx(sum(after["per_seed"].values()) / 2)
    assert summary["experiments"]["k.sampled.seed1"]["seed_of"] == "k.sampled"
    point = summary["sweeps"]["k"]["points"]["sampled"]
    assert point["seeds"]["benchmarks"]["hard"]["acc_after"] == after
    assert "| k.sampled.seed1 |" not in (workdir / "results/tables/experiments.md").read_text()
    assert re.search(r"\| sampled \| objective.kind=sampled \| hard \| [0-9.]+ \| [0-9.]+ ± [0-9.]+ \|",
                     (workdir / "results/sweeps/k/table.md").read_text())


def test_probe_ranks_teachers_and_figures_are_drawn(study):
    workdir, _ = study
    probe = json.loads((workdir / "results/probes/teachers.json").read_text())
    assert sorted(probe["ranking"]) == ["cold", "teacher"]
    for scores in probe["scores"].values():
        assert 0.0 <= scores["overlap_ratio"] <= 1.0 and scores["positions"] > 0
    assert "| 1 |" in (workdir / "results/probes/teachers.md").read_text()
    cont = json.loads((workdir / "results/analysis/continuation/cont.json").read_text())
    assert [r["prefix_tokens"] for r in cont["rows"]] == [0, 4] and cont["rows"][0]["prefixes"] == 4
    assert "| distilled |" in (workdir / "results/tables/section_none.md").read_text()
    assert "\\begin{tabular}" in (workdir / "results/tables/section_none.tex").read_text()
    summary = json.loads((workdir / "results/summary.json").read_text())
    assert set(summary["sweeps"]) == {"k"} and set(summary["probes"]) == {"teachers"}
    assert set(summary["continuations"]) == {"cont"} and "rollout_auroc" in summary["analyses"]
    auroc = json.loads((workdir / "results/analysis/rollout_auroc.json").read_text())
    assert set(auroc) == {"distilled", "k.k-2", "k.sampled", "k.k-2.seed1", "k.sampled.seed1"}
    assert auroc["distilled"]["rollouts"] == 2 * 2 * 2  # steps x prompts x n
    for group in ("section_none", "sweep_k"):
        assert (workdir / f"results/figures/{group}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_papers_findings_are_judged_on_the_run(study):
    workdir, _ = study
    summary = json.loads((workdir / "results/summary.json").read_text())
    findings = summary["findings"]
    assert list(findings) == list(FINDINGS)
    assert findings["reverse"]["verdict"] == "not run" and findings["alignment"]["verdict"] == "not run"
    assert findings["thinking_pattern"]["verdict"] == "too few seeds"  # "distilled" ran one seed
    assert findings["thinking_pattern"]["why"].startswith("distilled: one seed")
    # two seeds each: decided by the rule (the tiny models' figures mean nothing)
    assert findings["sampled_token"]["verdict"] in ("holds", "fails")
    assert findings["long_horizon"]["verdict"] in ("holds", "fails", "undecided")
    assert findings["reward_auroc"]["verdict"] in ("holds", "fails", "undecided")
    sampled = summary["experiments"]["k.sampled"]
    before = sampled["benchmarks"]["easy"]["acc_before"], sampled["benchmarks"]["hard"]["acc_before"]
    gains = [(sampled["seeds"]["benchmarks"]["easy"]["acc_after"]["per_seed"][s] - before[0]
              + sampled["seeds"]["benchmarks"]["hard"]["acc_after"]["per_seed"][s] - before[1]) / 2 for s in ("0", "1")]
    gain = findings["sampled_token"]["figures"][0]
    assert (gain["run"], gain["seeds"]) == ("k.sampled", 2) and gain["mean"] == pytest.approx(sum(gains) / 2)
    table = (workdir / "results/tables/findings.md").read_text()
    for name, f in findings.items():
        assert f"| {f['paper']} | {name} | " in table and f"| **{f['verdict']}**" in table


@pytest.mark.parametrize("edit", ["grid_value", "named_point"])
def test_editing_one_sweep_point_reruns_only_that_point(study, tmp_path, edit):
    workdir, config = study
    config = json.loads(json.dumps(config))
    if edit == "grid_value":
        config["sweeps"]["k"]["grid"]["objective.k"] = [3]  # k-2 leaves, k-3 arrives
    else:
        config["sweeps"]["k"]["points"]["sampled"] = {"objective.kind": "full"}
    run = snakemake(workdir, "--configfile", str(write_config(tmp_path / "edited.yaml", config)), "-n")
    assert run.returncode == 0, run.stderr[-3000:]
    counts = job_counts(run.stdout + run.stderr)
    assert counts == {"opd_train": 2, "eval_model": 4, "sweep_point": 1, "sweep_table": 1, "figure": 1, "tables": 1,
                      "rollout_auroc": 1, "all": 1}, counts  # the point's two seeds
    point = "k.k-3" if edit == "grid_value" else "k.sampled"
    assert f"output: results/opd/{point}/model" in run.stdout + run.stderr


def test_one_sweep_is_a_target(study):
    workdir, _ = study
    run = snakemake(workdir, "--configfile", str(workdir / "config.yaml"), "-n", "sweep_k")
    assert run.returncode == 0 and "Nothing to be done" in run.stdout + run.stderr


def test_invalid_config_fails_before_any_job(tmp_path):
    config = tiny_config()
    config["models"]["student"]["toy"]["stepz"] = 3
    cfg = write_config(tmp_path / "bad.yaml", config)
    run = snakemake(tmp_path, "--configfile", str(cfg), "--cores", "1")
    assert run.returncode != 0
    assert "invalid config: unknown key config.models.student.toy.stepz" in run.stderr
    assert not (tmp_path / "results").exists()


def base_only(config: dict) -> dict:
    """The config without training: models and benchmarks only."""
    return {k: v for k, v in config.items()
            if k not in ("prompt_sets", "sft", "experiments", "sweeps", "probes", "continuations")}


def test_local_model_and_data_in_a_path_with_spaces_are_loaded_in_place_and_tracked(tmp_path, tiny_model_dir):
    """A clone, a model and a benchmark in directories whose names hold spaces; then weights
    overwritten in place and a gold answer edited rerun what used them."""
    clone = tmp_path / "my clone" / "opd"
    clone.mkdir(parents=True)
    for part in ("Snakefile", "workflow", "scripts", "src", "config", "envs"):
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy)(ROOT / part, clone / part)
    model = tmp_path / "my models" / "mirror"
    shutil.copytree(tiny_model_dir, model)
    bench = tmp_path / "my data" / "easy.jsonl"
    bench.parent.mkdir()
    bench.write_text("".join(json.dumps({"id": f"e{i}", "problem": f"{i}+1=", "answer": str(i + 1)}) + "\n"
                             for i in range(3)))
    config = base_only(tiny_config())
    config["models"] = {"mirror": {"path": str(model)}}
    config["benchmarks"] = {"easy": {"path": str(bench)}}
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    cfg = write_config(workdir / "config.yaml", config)
    run = snakemake(workdir, "--configfile", str(cfg), "--cores", "1", snakefile=clone / "Snakefile")
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((workdir / "results/eval/mirror/easy.json").read_text())
    assert metrics["model"] == str(model)
    assert not (workdir / "results/models").exists()  # nothing copied or trained
    weights = model / "model.safetensors"
    tensors = load_file(weights)
    save_file({k: v * 1.01 for k, v in tensors.items()}, weights, metadata={"format": "pt"})  # overwritten in place
    dry = snakemake(workdir, "--configfile", str(cfg), "-n", snakefile=clone / "Snakefile")
    assert job_counts(dry.stdout) == {"eval_model": 1, "tables": 1, "all": 1}, dry.stdout[-2000:]
    run = snakemake(workdir, "--configfile", str(cfg), "--cores", "1", snakefile=clone / "Snakefile")
    assert run.returncode == 0, run.stderr[-3000:]
    bench.write_text(bench.read_text().replace('"answer": "3"', '"answer": "4"'))
    dry = snakemake(workdir, "--configfile", str(cfg), "-n", snakefile=clone / "Snakefile")
    assert job_counts(dry.stdout) == {"prepare_benchmark": 1, "eval_model": 1, "tables": 1, "all": 1}, \
        dry.stdout[-2000:]


def job_blocks(output: str) -> list[str]:
    """A dry run's output, cut into one block per job (and what precedes the first)."""
    return re.split(r"\n(?=(?:local)?rule \w+:)", output)


def shell_commands(output: str, rule: str) -> list[str]:
    """The shell commands a dry run with --printshellcmds prints for one rule's jobs."""
    return [b.split("Shell command:", 1)[1].split("\n", 1)[0] for b in job_blocks(output)
            if re.match(rf"(?:local)?rule {rule}:", b) and "Shell command:" in b]


def test_each_model_decides_its_own_remote_code(tmp_path):
    """A student whose entry trusts remote code never lends that trust to its teachers."""
    config = tiny_config()
    config["models"] = {"student": {"hub": "org/student", "trust_remote_code": True},
                        "teacher": {"hub": "org/teacher"},
                        "trusted_teacher": {"hub": "org/trusted", "trust_remote_code": True}}
    config.pop("sft")
    config.pop("sweeps", None)
    config["experiments"]["distilled"]["student"] = "student"
    config["probes"] = {"p": {"student": "student", "teachers": ["teacher", "trusted_teacher"],
                              "prompts": "opd_p"}}
    config["continuations"] = {"c": {"student": "student", "teacher": "teacher", "benchmark": "easy",
                                     "prefix_tokens": [0, 4]}}
    cfg = write_config(tmp_path / "config.yaml", config)
    run = snakemake(tmp_path, "--configfile", str(cfg), "-n", "-p")
    assert run.returncode == 0, run.stderr[-3000:]
    (opd,) = shell_commands(run.stdout, "opd_train")
    assert "--trust-remote-code" in opd and "--teacher-trust-remote-code" not in opd
    (probe,) = shell_commands(run.stdout, "probe_teachers")
    assert "--trusted-teacher trusted_teacher" in probe and "--trusted-teacher teacher " not in probe
    (cont,) = shell_commands(run.stdout, "teacher_continuation")
    assert "--trust-remote-code" in cont and "--teacher-trust-remote-code" not in cont
    evals = shell_commands(run.stdout, "eval_model")
    assert all(("--trust-remote-code" in e) == ("models--org--teacher/" not in e) for e in evals)


def test_each_model_is_prompted_in_its_own_chat_mode(tmp_path):
    """Every job that renders a prompt for a model passes that model's own chat mode (a
    model trained from it keeps it); a teacher's goes beside its student's, never shared."""
    config = tiny_config()
    config["models"] = {"student": {"hub": "org/student", "enable_thinking": False},
                        "teacher": {"hub": "org/teacher", "chat_template": False},
                        "plain": {"hub": "org/plain"},
                        "built": {"tiny": {}, "enable_thinking": False}}
    config.pop("sweeps", None)
    config["probes"]["teachers"]["teachers"] = ["teacher", "plain", "cold"]
    cfg = write_config(tmp_path / "config.yaml", config)
    run = snakemake(tmp_path, "--configfile", str(cfg), "-n", "-p", "all", "canary")
    assert run.returncode == 0, run.stderr[-3000:]
    for rule in ("opd_train", "canary_opd"):  # student: the SFT run "cold" of the non-thinking student
        (opd,) = shell_commands(run.stdout, rule)
        assert "--chat non-thinking " in opd and "--teacher-chat bare " in opd, opd
    for rule in ("teacher_rollouts", "canary_rollouts"):
        (rollouts,) = shell_commands(run.stdout, rule)
        assert "--chat bare " in rollouts
    (sft,) = shell_commands(run.stdout, "sft")
    assert "--chat non-thinking " in sft
    (probe,) = shell_commands(run.stdout, "probe_teachers")
    assert "--chat non-thinking " in probe and "--teacher-chat teacher=bare " in probe
    assert "--teacher-chat cold=non-thinking " in probe and "--teacher-chat plain" not in probe
    (cont,) = shell_commands(run.stdout, "teacher_continuation")
    assert "--chat non-thinking " in cont and "--teacher-chat bare " in cont
    (built,) = shell_commands(run.stdout, "prepare_model")  # trained on the prompts it will be given
    assert "--chat non-thinking " in built
    evals = shell_commands(run.stdout, "eval_model")
    modes = {"models--org--student/": "--chat non-thinking ", "models--org--teacher/": "--chat bare ",
             "models--org--plain/": None, "results/models/built ": "--chat non-thinking ",
             "results/sft/cold/": "--chat non-thinking ",
             "results/opd/distilled/": "--chat non-thinking "}
    for where, flag in modes.items():
        commands = [e for e in evals if where in e]
        assert commands and all((flag in c) if flag else "--chat" not in c for c in commands), where


def job_priorities(output: str) -> dict[tuple[str, str], int]:
    """(rule, wildcards) -> the priority a dry run prints (none printed: 0)."""
    out = {}
    for b in job_blocks(output):
        if m := re.match(r"(?:local)?rule (\w+):", b):
            wildcards = re.search(r"\n\s+wildcards: (.*)", b)
            priority = re.search(r"\n\s+priority: (\d+)", b)
            out[m.group(1), wildcards.group(1) if wildcards else ""] = int(priority.group(1)) if priority else 0
    return out


def test_training_jobs_that_start_the_longest_chains_come_first(tmp_path):
    """The toy study's chains: a base model, an OPD run, a run distilled from that one; a
    teacher's rollouts, the cold start, OPD after it."""
    run = snakemake(tmp_path, "-n")
    assert run.returncode == 0, run.stderr[-3000:]
    priorities = job_priorities(run.stdout)
    assert {m: priorities["prepare_model", f"model={m}"] for m in
            ("student", "teacher_new_skill", "teacher_other_format", "teacher_same_pipeline")} == \
        {"student": 3, "teacher_new_skill": 3, "teacher_other_format": 3, "teacher_same_pipeline": 2}
    assert priorities["teacher_rollouts", "sft=student_coldstart"] == 3
    assert priorities["sft", "sft=student_coldstart"] == 2
    assert priorities["opd_train", "experiment=opd_new_skill"] == 2  # reverse distillation follows it
    assert priorities["opd_train", "experiment=reverse_to_base"] == 1
    assert priorities["opd_train", "experiment=objective.top4"] == 1
    assert priorities["eval_model", "model=objective.top4, benchmark=shared"] == 0


def test_the_5_2_addition_adds_its_runs_to_the_toy_world(tmp_path):
    run = snakemake(tmp_path, "-n", "-p", "sweep_prompt_template", "sweep_prompt_content", "--configfile",
                    str(ROOT / "config/config.yaml"), str(ROOT / "config/recipes_5_2.yaml"))
    assert run.returncode == 0, run.stderr[-3000:]
    (pretrain,) = [c for c in shell_commands(run.stdout, "prepare_model") if "student_two_templates" in c]
    assert '"prompt_template": ["{problem}", "Solve: {problem}"]' in pretrain
    opd = {re.search(r"--run-dir (\S+)", c).group(1): c for c in shell_commands(run.stdout, "opd_train")}
    assert set(opd) == {f"results/runs/opd/{p}" for p in
                        ("prompt_template.teacher_template", "prompt_template.other_template",
                         "prompt_content.other_content")}
    other = opd["results/runs/opd/prompt_template.other_template"]
    assert "results/models/student_two_templates" in other and "'Solve: {problem}'" in other
    assert "opd_prompts_4digit.jsonl" in opd["results/runs/opd/prompt_content.other_content"]


def test_the_subword_world_builds_its_models_around_its_own_tokenizer(tmp_path):
    run = snakemake(tmp_path, "-n", "-p", "sweep_objective_subword", "--configfile",
                    str(ROOT / "config/config.yaml"), str(ROOT / "config/subword_world.yaml"))
    assert run.returncode == 0, run.stderr[-3000:]
    (build,) = shell_commands(run.stdout, "build_toy_subword_tokenizer")
    assert "--kind subword --out results/toy/tokenizer_subword" in build
    assert not shell_commands(run.stdout, "build_toy_tokenizer")  # the character world is not needed
    pretrain = shell_commands(run.stdout, "prepare_model")
    assert len(pretrain) == 2 and all("--tokenizer results/toy/tokenizer_subword" in c and '"format": "prose"' in c
                                      for c in pretrain)
    opd = shell_commands(run.stdout, "opd_train")
    assert len(opd) == 5 and all("results/models/teacher_subword" in c for c in opd)


def test_the_format_cold_start_samples_the_teacher_on_the_students_digits_only(tmp_path):
    run = snakemake(tmp_path, "-n", "-p", "results/eval/coldstart_format_then_opd/new_digits.json", "--configfile",
                    str(ROOT / "config/config.yaml"), str(ROOT / "config/coldstart_format.yaml"))
    assert run.returncode == 0, run.stderr[-3000:]
    (rollouts,) = shell_commands(run.stdout, "teacher_rollouts")
    assert "results/data/prompts/coldstart_prompts.jsonl" in rollouts and "teacher_other_format" in rollouts
    (opd,) = shell_commands(run.stdout, "opd_train")
    assert "--student results/sft/student_coldstart_format/model" in opd


def test_command_line_config_alone_edits_the_default_study(tmp_path):
    run = snakemake(tmp_path, "-n", "--config", "base_eval={'models': ['student'], 'benchmarks': ['shared']}")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "missing key" not in run.stdout + run.stderr


def test_nested_command_line_values_are_read_as_the_numbers_they_are(tmp_path):
    """Snakemake reads --config's nested values as strings: n: 2 arrived as '2'."""
    run = snakemake(tmp_path, "results/eval/student/shared.json", "-n", "-p", "--config",
                    "eval={sampling: {n: 2, temperature: 1e-1}}", "base_eval={models: [student], benchmarks: [shared]}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (command,) = shell_commands(run.stdout, "eval_model")
    assert '"n": 2,' in command and '"temperature": 0.1' in command


def test_a_yaml_error_in_the_default_config_names_its_line(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    for part in ("Snakefile", "workflow", "scripts", "src", "config", "envs"):
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy)(ROOT / part, clone / part)
    default = clone / "config/config.yaml"
    default.write_text(default.read_text().replace("seed_runs: first", "seed_runs: first\n  bad: indent", 1))
    run = snakemake(tmp_path, "-n", snakefile=clone / "Snakefile")
    assert run.returncode != 0
    assert f"invalid config: {default} line 11, column 6: not valid YAML: mapping values are not allowed here" in \
        run.stdout + run.stderr


def test_two_studies_in_two_config_files_are_refused(tmp_path):
    run = snakemake(tmp_path, "-n", "--configfile", str(ROOT / "config/paper.yaml"), str(ROOT / "config/config.yaml"))
    assert run.returncode != 0
    assert "several config files define a study" in run.stdout + run.stderr


def test_a_target_naming_no_model_says_so(tmp_path):
    run = snakemake(tmp_path, "-n", "results/eval/ghost/x.json")
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert "KeyError" not in out
    assert "results/eval/ghost/x.json" in out and "No rule to produce" in out


def test_missing_local_model_is_reported_before_running(tmp_path):
    config = base_only(tiny_config())
    config["models"] = {"gone": {"path": str(tmp_path / "no_such_model")}}
    cfg = write_config(tmp_path / "config.yaml", config)
    run = snakemake(tmp_path, "--configfile", str(cfg), "-n")
    assert run.returncode != 0
    assert f"invalid config: config.models.gone.path: {tmp_path / 'no_such_model'} does not exist" in \
        run.stdout + run.stderr


@pytest.mark.parametrize("missing, message", [("config.json", "has no config.json"),
                                              ("tokenizer.json", "has no tokenizer files (one of tokenizer.json")])
def test_a_model_directory_missing_a_file_is_refused_by_the_dry_run_naming_the_key_and_file(
        tmp_path, tiny_model_dir, missing, message):
    model = tmp_path / "mirror"
    shutil.copytree(tiny_model_dir, model)
    for name in [missing] + (["vocab.json", "tokenizer.model"] if missing == "tokenizer.json" else []):
        (model / name).unlink(missing_ok=True)
    config = base_only(tiny_config())
    config["models"] = {"mirror": {"path": str(model)}}
    cfg = write_config(tmp_path / "config.yaml", config)
    run = snakemake(tmp_path, "--configfile", str(cfg), "-n")
    assert run.returncode != 0
    assert f"invalid config: config.models.mirror.path: {model} {message}" in run.stdout + run.stderr


def test_lint_is_clean():
    run = snakemake(ROOT, "--lint")
    assert "Congratulations, your workflow is in a" in run.stdout + run.stderr, \
        run.stdout[-3000:] + run.stderr[-3000:]


def test_two_studies_share_base_evaluations_through_the_cache(tmp_path):
    """Snakemake's between-workflow cache: the second study gets the same evaluation from it."""
    config = base_only(tiny_config())
    config["models"] = {"student": config["models"]["student"]}
    config["benchmarks"] = {"easy": config["benchmarks"]["easy"]}
    cache = tmp_path / "cache"
    cache.mkdir()
    runs = []
    for study in ("one", "two"):
        workdir = tmp_path / study
        workdir.mkdir()
        cfg = write_config(workdir / "config.yaml", config)
        runs.append(snakemake(workdir, "--configfile", str(cfg), "--cores", "1", "--cache", "eval_model",
                              env_extra={"SNAKEMAKE_OUTPUT_CACHE": str(cache)}))
        assert runs[-1].returncode == 0, runs[-1].stderr[-3000:]
    stored = "Moving output file results/eval/student/easy.json to cache"
    first, second = (r.stdout + r.stderr for r in runs)
    assert stored in first  # evaluated once, then stored
    assert stored not in second and "Symlinking output file results/eval/student/easy.json from cache" in second
    one, two = ((tmp_path / s / "results/eval/student/easy.json").read_text() for s in ("one", "two"))
    assert one == two  # the same file, not a second (differently timed) evaluation


def test_report_builds_with_tables_figures_and_analyses(study, tmp_path):
    workdir, _ = study
    report = tmp_path / "report.html"
    run = snakemake(workdir, "--configfile", str(workdir / "config.yaml"), "--report", str(report))
    assert run.returncode == 0, run.stderr[-3000:]
    html = report.read_text()
    for item in ("experiments.md", "findings.md", "sweep_k.png", "teachers.md", "rollout_auroc.md", "cont.md"):
        assert item in html, item


def test_a_hub_model_is_downloaded_first_then_read_offline_at_its_locked_commit(tmp_path, tiny_model_dir):
    """The order a cluster user follows: `download` where the hub is reachable fills the cache
    at the lock's commit (here the cache is filled beforehand and the hub is offline); the
    study's jobs then run with the hub offline, whatever the user's environment says, read
    that snapshot, and the tables name the commit; a snapshot gone from the cache is fetched
    again, and where the hub cannot be reached its job fails naming the download target."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "hf/models--opd-test--tiny/snapshots" / sha
    shutil.copytree(tiny_model_dir, snapshot)
    data_sha = "fedcba9876543210fedcba9876543210fedcba98"
    shutil.move(write_mirror("math-ai/aime25", tmp_path / "mirror"), tmp_path / f"hf/datasets--math-ai--aime25/snapshots/{data_sha}")
    config = base_only(tiny_config())
    config["models"] = {"hubbed": {"hub": "opd-test/tiny"}}  # no revision: the lock pins `main`
    config["benchmarks"] = {"easy": {"hub": "math-ai/aime25", "split": "test", "revision": data_sha}}
    config["hub"] = {"cache": str(tmp_path / "hf"), "lock": str(tmp_path / "study.lock.yaml")}
    (tmp_path / "study.lock.yaml").write_text(f"model:\n  opd-test/tiny: {{main: {sha}}}\n")
    cfg = write_config(tmp_path / "config.yaml", config)
    work = tmp_path / "work"
    run = snakemake(work, "download", "--cores", "1", "--configfile", str(cfg))
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    record = json.loads((work / f"results/hub/model/opd-test--tiny@{sha}.json").read_text())
    assert record["snapshot"] == str(snapshot) and record["files"] >= 3
    assert job_counts(run.stdout + run.stderr) == {"download": 1, "download_hub": 2}

    run = snakemake(work, "results/summary.json", "--cores", "2", "--configfile", str(cfg),
                    env_extra={"HF_HUB_OFFLINE": None})  # the user's shell: online
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "download_hub" not in job_counts(run.stdout + run.stderr)
    assert f"model: {snapshot} (HF_HUB_OFFLINE=1)" in (work / "logs/eval_model/hubbed/easy.log").read_text()
    assert json.loads((work / "results/summary.json").read_text())["hub"]["models.hubbed"]["commit"] == sha
    table = (work / "results/tables/base_eval.md").read_text()
    assert f"| models.hubbed | opd-test/tiny | {sha} |" in table
    assert f"| benchmarks.easy | math-ai/aime25 | {data_sha} |" in table
    assert len((work / "results/data/benchmarks/easy.jsonl").read_text().splitlines()) == 8  # the mirror's

    shutil.rmtree(tmp_path / "hf")  # the cache emptied (or one the nodes do not share)
    run = snakemake(work, "results/eval/hubbed/easy.json", "--cores", "1", "--configfile", str(cfg),
                    "--forcerun", "eval_model")
    assert run.returncode != 0
    assert "is no longer in" in run.stderr and "download_hub" in job_counts(run.stdout + run.stderr)
    log = (work / f"logs/download_hub/model/opd-test--tiny@{sha}.log").read_text()
    assert "is not in the hub cache" in log and "download" in log.splitlines()[-1], log[-2000:]


def test_an_unlocked_hub_model_stops_a_run_that_cannot_reach_the_hub_naming_the_key(tmp_path):
    """No commit in the lock and the hub unreachable: the dry run warns and plans; the run
    refuses before any job, naming the config key and the lock file."""
    config = base_only(tiny_config())
    config["models"] = {"hubbed": {"hub": "opd-test/tiny"}}
    config["benchmarks"] = {"easy": config["benchmarks"]["easy"]}
    cfg = write_config(tmp_path / "config.yaml", config)
    dry = snakemake(tmp_path / "work", "-n", "--configfile", str(cfg))
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "warning: these hub repositories have no commit in hub.lock.yaml" in dry.stderr
    run = snakemake(tmp_path / "work", "--cores", "1", "--configfile", str(cfg))
    assert run.returncode != 0
    assert "config.models.hubbed: model opd-test/tiny@main" in run.stderr, run.stderr[-3000:]
    assert not (tmp_path / "work/logs").exists()  # no job ran
