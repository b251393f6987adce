"""The experiments a config makes beyond its own: each sweep point (the base experiment with
some settings changed) and each seed's run of an experiment with ``seeds``."""

from __future__ import annotations

import copy
import itertools
import re

from .config_errors import ConfigError
from .config_errors import key as _key


def point_name(sweep: str, overrides: dict) -> str:
    """``<sweep>.<setting>-<value>[_...]``, e.g. ``topk_k.k-16`` or ``lr.lr-1e-05``."""
    def slug(value) -> str:
        return re.sub(r"[^A-Za-z0-9.-]+", "", str(value).replace(" ", "-")) or "x"

    return f"{sweep}." + "_".join(f"{key.rsplit('.', 1)[-1]}-{slug(v)}" for key, v in overrides.items())


def dotted(overrides: dict, prefix: str = "") -> dict:
    """``{objective: {k: 2}}`` as ``{objective.k: 2}``: a point changes the settings it names
    and keeps the base's others (a mapping does not replace the whole section)."""
    flat = {}
    for key, value in overrides.items():
        if isinstance(value, dict) and value:
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def sweep_points(name: str, sweep: dict) -> dict[str, dict]:
    """{point name: {dotted setting: value}}: the grid's combinations, then the named points,
    mappings spelled out as dotted settings. Two points of one name (grid values that read
    alike, a named point called like a grid point) are an error, not one point silently
    replacing the other."""
    grid = sweep.get("grid", {})
    combos = [dotted(dict(zip(grid, values))) for values in itertools.product(*grid.values())] if grid else []
    points: dict[str, dict] = {}
    for overrides in combos:
        point = point_name(name, overrides)
        if point in points:
            raise ConfigError(f"{_key(['sweeps', name, 'grid'])}: {points[point]} and {overrides} both make the "
                              f"point {point!r}")
        points[point] = overrides
    for p, overrides in sweep.get("points", {}).items():
        overrides = dotted(overrides)
        if f"{name}.{p}" in points:
            raise ConfigError(f"{_key(['sweeps', name, 'points', p])}: the grid's point {points[f'{name}.{p}']} "
                              f"has this name too")
        points[f"{name}.{p}"] = overrides
    return points


def point_experiment(config: dict, sweep: str, point: str) -> str:
    """The experiment that serves a sweep point: its own, or the base experiment when the
    point changes nothing (e.g. k=16 in a k sweep over a top-16 base)."""
    return point if point in config["experiments"] else config["sweeps"][sweep]["base"]


def expand_sweeps(config: dict) -> dict[str, str]:
    """Add every sweep point to ``config.experiments`` as an experiment: a copy of the
    base experiment with the point's settings changed. Returns {point: sweep}."""
    origin = {}
    for name, sweep in config.get("sweeps", {}).items():
        base = config["experiments"].get(sweep["base"])
        if base is None or sweep["base"] in origin:
            raise ConfigError(f"{_key(['sweeps', name, 'base'])}: no experiment named {sweep['base']!r}")
        points = sweep_points(name, sweep)
        grid_points = set(points) - {f"{name}.{p}" for p in sweep.get("points", {})}
        if not points:
            raise ConfigError(f"{_key(['sweeps', name])}: give a grid or points")
        for point, overrides in points.items():
            entry = copy.deepcopy(base)
            entry["section"] = sweep.get("section") or base.get("section")
            if "train.seed" in overrides and (sweep.get("seeds") or base.get("seeds")):
                where = "grid" if point in grid_points else f"points.{point.split('.', 1)[1]}"
                raise ConfigError(f"{_key(['sweeps', name, where])}: 'train.seed' is set by the seeds of "
                                  f"{'the sweep' if sweep.get('seeds') else 'its base'} (it would be overwritten); "
                                  "give the seeds to run in config.sweeps.<name>.seeds")
            for setting, value in overrides.items():
                *parents, leaf = setting.split(".")
                target = entry
                for part in parents:
                    target = target.get(part) if isinstance(target, dict) else None
                # a setting of the base; in a mapping the base leaves empty (an override such as
                # `sampling: {}`) any key, which the schema then checks
                if not isinstance(target, dict) or (leaf not in target and target):
                    where = "grid" if point in grid_points else f"points.{point.split('.', 1)[1]}"
                    raise ConfigError(f"{_key(['sweeps', name, where])}: {setting!r} is not an experiment setting")
                target[leaf] = copy.deepcopy(value)
            if entry == {**base, "section": entry["section"]}:
                continue  # the base experiment itself: its run serves this point (see point_experiment)
            if point in config["experiments"]:
                raise ConfigError(f"{_key(['sweeps', name])}: point {point!r} is also an experiment's name")
            if sweep.get("seeds"):
                entry["seeds"] = list(sweep["seeds"])
            config["experiments"][point] = entry
            origin[point] = f"sweeps.{name}"
    return origin


def seed_run(experiment: str, seed: int) -> str:
    return f"{experiment}.seed{seed}"


def seed_runs(config: dict) -> dict[str, dict[int, str]]:
    """{experiment: {seed: run}} for the experiments with ``seeds``; the first seed's run
    is the experiment itself. With ``seed_runs: first``, only that run."""
    every = config.get("seed_runs", "all") == "all"
    return {name: {s: name if i == 0 else seed_run(name, s) for i, s in enumerate(e["seeds"][:None if every else 1])}
            for name, e in config["experiments"].items() if e.get("seeds")}


def expand_seeds(config: dict) -> dict[str, str]:
    """An experiment with ``seeds`` [s0, s1, ...] trains with ``train.seed`` s0, and a copy
    named ``<experiment>.seed<s>`` trains with each other seed (a copy's own ``seeds`` is
    null, so it is one run). Returns {copy: what made it}."""
    origin = {}
    for name, runs in seed_runs(config).items():
        entry = config["experiments"][name]
        entry.setdefault("train", {})["seed"] = entry["seeds"][0]
        for seed, run in list(runs.items())[1:]:
            if run in config["experiments"]:
                raise ConfigError(f"{_key(['experiments', name, 'seeds'])}: seed {seed}'s run {run!r} is also an "
                                  "experiment's name")
            copy_ = copy.deepcopy(entry)
            copy_["seeds"] = None
            copy_["train"]["seed"] = seed
            config["experiments"][run] = copy_
            origin[run] = f"experiments.{name}.seeds"
    return origin


def check_seeds_beside_seed(config: dict) -> None:
    """Before defaults: an experiment's ``train.seed`` other than the first of its ``seeds``
    (which :func:`expand_seeds` makes its train.seed) is refused, not silently replaced."""
    for name, entry in (config.get("experiments") or {}).items():
        seeds, train = (entry.get("seeds"), entry.get("train") or {}) if isinstance(entry, dict) else (None, {})
        if seeds and isinstance(seeds, list) and isinstance(train, dict) and train.get("seed", seeds[0]) != seeds[0]:
            raise ConfigError(f"{_key(['experiments', name, 'train', 'seed'])}: {train['seed']} given beside seeds "
                              f"{seeds}, whose first is this run's train.seed (they would overwrite it); give one "
                              "of the two")
