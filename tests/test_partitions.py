"""Partition limits read from sinfo's table, checked against a rule's resources."""

import pytest

from opd.partitions import check_partitions, gpus_per_node, minutes, parse_sinfo

SINFO = """cpu*|infinite|(null)
gpu|2-00:00:00|gpu:a100:8(S:0-1)
gpu|2-00:00:00|gpu:v100:4
short|30:00|gpu:2
"""


@pytest.mark.parametrize("text, expected", [
    ("infinite", None), ("UNLIMITED", None), ("30", 30), ("30:00", 30), ("1:30:00", 90),
    ("2-00:00:00", 2880), ("1-12", 2160), ("1-00:30", 1470), ("0:45:30", 45.5)])
def test_slurm_time_limits_in_minutes(text, expected):
    assert minutes(text) == expected


def test_gpus_per_node_by_model_or_all():
    assert gpus_per_node("(null)") == 0
    assert gpus_per_node("gpu:8") == 8
    assert gpus_per_node("gpu:a100:4(S:0-1),gpu:v100:2") == 6
    assert gpus_per_node("gpu:a100:4(S:0-1),gpu:v100:2", "v100") == 2


def test_the_sinfo_table_and_its_default_partition():
    parts, default = parse_sinfo(SINFO)
    assert default == "cpu" and set(parts) == {"cpu", "gpu", "short"}
    assert parts["gpu"]["max_minutes"] == 2880 and parts["cpu"]["max_minutes"] is None


def rules(**r):
    return {"opd_train": {"runtime": 60, "gpus": 0, **r}}


def test_what_the_partition_gives_passes():
    parts, default = parse_sinfo(SINFO)
    assert check_partitions(rules(partition="gpu", runtime=2880, gpus=8), parts, default) == []
    assert check_partitions(rules(runtime=10_000), parts, default) == []  # the default partition: no limit
    assert check_partitions(rules(partition="gpu", gpus=4, gpu_model="v100"), parts, default) == []


def test_a_runtime_above_max_time_names_the_setting():
    parts, default = parse_sinfo(SINFO)
    (err,) = check_partitions(rules(partition="short", runtime=31), parts, default)
    assert "resources.rules.opd_train" in err and ".runtime: 31 min" in err and "MaxTime of 30 min" in err


def test_more_gpus_than_a_node_has_or_an_unknown_partition_is_refused():
    parts, default = parse_sinfo(SINFO)
    (err,) = check_partitions(rules(partition="gpu", gpus=16), parts, default)
    assert ".gpus: 16 GPUs per node" in err and "at most 8" in err
    (err,) = check_partitions(rules(partition="gpu", gpus=8, gpu_model="v100"), parts, default)
    assert "at most 4 v100" in err
    (err,) = check_partitions(rules(partition="gpus"), parts, default)
    assert "'gpus' is not a partition" in err and "cpu, gpu, short" in err
