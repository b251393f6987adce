"""The cluster's partition limits (``sinfo``) against the config's resources, checked while
the DAG is built: a job whose runtime is above its partition's MaxTime stays pending with
``PartitionTimeLimit`` without a word, and one asking for more GPUs per node than the
partition's nodes have never starts.
"""

from __future__ import annotations

import re
import shutil
import subprocess

SINFO_FORMAT = "%P|%l|%G"  # partition (default marked *), time limit, generic resources per node


def minutes(limit: str) -> float | None:
    """A SLURM time limit (``infinite``, ``[days-]hours:minutes:seconds``, ``minutes:seconds``
    or ``minutes``) in minutes; None for no limit. (The SLURM plugin's
    ``parse_time_to_minutes`` reads ``30:00`` as 30 hours, not sinfo's 30 minutes.)"""
    limit = limit.strip()
    if limit.lower() in ("infinite", "unlimited", "n/a"):
        return None
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:  # days-hours[:minutes[:seconds]]
        parts += [0] * (3 - len(parts))
        hours, mins, secs = parts
    else:
        hours, mins, secs = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
    return int(days or 0) * 1440 + hours * 60 + mins + secs / 60


def gpus_per_node(gres: str, model: str | None = None) -> int:
    """GPUs on one node from sinfo's GRES column (``gpu:8``, ``gpu:a100:4(S:0-1),gpu:v100:2``),
    of the given model only when one is named."""
    total = 0
    for m in re.finditer(r"gpu(?::([^:,(]+))?:(\d+)", gres):
        if model is None or m.group(1) == model:
            total += int(m.group(2))
    return total


def parse_sinfo(text: str) -> tuple[dict[str, dict], str | None]:
    """``{partition: {"max_minutes", "gres": [one GRES column per node configuration]}}`` and
    the default partition, from ``sinfo -h -o '%P|%l|%G'``."""
    parts, default = {}, None
    for line in text.splitlines():
        if line.count("|") != 2:
            continue
        name, limit, gres = line.split("|")
        if name.endswith("*"):
            name = default = name[:-1]
        p = parts.setdefault(name, {"max_minutes": minutes(limit), "gres": []})
        p["gres"].append(gres)
    return parts, default


def read_sinfo() -> str | None:
    """sinfo's partition table, or None where there is no SLURM to ask."""
    if not shutil.which("sinfo"):
        return None
    try:
        done = subprocess.run(["sinfo", "-h", "-o", SINFO_FORMAT], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def check_partitions(rules: dict[str, dict], partitions: dict[str, dict], default: str | None) -> list[str]:
    """Errors, each naming the setting, for rules whose resources the partition cannot give."""
    errors = []
    for rule, r in rules.items():
        name = r.get("partition") or default
        where = f"resources.rules.{rule} (or resources.default)"
        if name is None:
            continue
        if name not in partitions:
            errors.append(f"{where}.partition: {name!r} is not a partition of this cluster "
                          f"(sinfo lists {', '.join(sorted(partitions))})")
            continue
        p = partitions[name]
        if p["max_minutes"] is not None and r["runtime"] > p["max_minutes"]:
            errors.append(f"{where}.runtime: {r['runtime']} min is above partition {name}'s MaxTime of "
                          f"{p['max_minutes']:g} min: the job would stay pending (PartitionTimeLimit)")
        if r.get("gpus"):
            most = max(gpus_per_node(g, r.get("gpu_model")) for g in p["gres"])
            if r["gpus"] > most:
                kind = f" {r['gpu_model']}" if r.get("gpu_model") else ""
                errors.append(f"{where}.gpus: {r['gpus']} GPUs per node, but partition {name}'s nodes have at "
                              f"most {most}{kind}: the job would never start")
    return errors
