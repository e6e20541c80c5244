"""Sweep files: a base preset, fixed overrides, a grid over config fields and a list of seeds.

A sweep file is YAML or TOML::

    preset: markov            # the base config (see `interp presets`)
    config:                   # optional: fixed overrides for every run
      train.steps: 800
    grid:                     # each key a config field, each value a non-empty list
      model.n_layers: [1, 2, 3]
      model.attn_only: [true, false]
    seeds: [0, 1]             # optional, default [0]
    analyze: true             # optional: analyse each run when it finishes (default true)
    ablation: true            # optional: include the per-head ablations (default true)

The runs are the product of the grid values and the seeds, in file order. Each run's
directory name lists its grid values and seed (``n_layers=2_attn_only=true_seed=0``), so a
run is found again when the sweep is started again. Everything is checked before anything
starts: an unknown key, an empty grid, a value of the wrong type all raise a ConfigError
naming the file and line.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.config import SECTIONS, RunConfig, load_config_file, merge, preset, resolve_key
from interp.errors import ConfigError
from interp.sweep.marks import Marks, locator

TOP_KEYS = {"preset", "config", "grid", "seeds", "analyze", "ablation", "name"}
MAX_NAME_BYTES = 200  # run folder names: most filesystems stop at 255 bytes; leave room for ".stale-<time>"


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its directory name (unique in the sweep) and full config."""

    name: str
    config: RunConfig


@dataclass(frozen=True)
class Sweep:
    """A parsed, validated sweep; ``runs`` are in grid order with seeds innermost."""

    name: str
    source: Path
    preset: str
    fixed: dict[str, Any]
    grid: dict[str, list[Any]]
    seeds: list[int]
    analyze: bool = True
    ablation: bool = True
    runs: list[SweepRun] = field(default_factory=list)


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file; raise ConfigError with ``FILE line N: ...`` on bad input."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml", ".toml"):
        raise ConfigError(f"sweep file '{path}' must end in .yaml, .yml or .toml")
    raw = load_config_file(path)
    where = locator(path, path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a sweep file must be a mapping with preset, grid and seeds")
    for key in raw:
        if key not in TOP_KEYS:
            raise where.error(key, f"unknown sweep key '{key}'; allowed: {', '.join(sorted(TOP_KEYS))}")
    name = str(raw.get("name", path.stem))
    # One folder directly under --out: no separator, and not '.', '..' or hidden.
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", name):
        raise where.error("name", f"sweep name '{name}' may only hold letters, digits, '_', '.', '-' "
                                  f"and must not start with '.'")
    base_name = raw.get("preset", "default")
    try:
        base = preset(str(base_name))
    except ConfigError as err:
        raise where.error("preset", str(err)) from None
    fixed = _mapping(raw.get("config", {}), "config", where)
    base = _apply(base, fixed, where)
    grid = _grid(raw.get("grid"), where)
    seeds = _seeds(raw.get("seeds", [0]), where)
    flags = {key: raw.get(key, True) for key in ("analyze", "ablation")}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise where.error(key, f"'{key}' must be true or false, not {value!r}")
    runs = _expand(base, grid, seeds, where)
    return Sweep(name, path, str(base_name), fixed, grid, seeds, runs=runs, **flags)


def _mapping(value: Any, key: str, where: Marks) -> dict[str, Any]:
    """Flatten ``{"model": {"n_layers": 2}}`` and ``{"model.n_layers": 2}`` alike to dotted keys."""
    if not isinstance(value, dict):
        raise where.error(key, f"'{key}' must be a mapping of config fields to values")
    flat: dict[str, Any] = {}
    for name, item in value.items():
        pairs = ({f"{name}.{k}": v for k, v in item.items()} if isinstance(item, dict) and name in SECTIONS
                 else {str(name): item})
        for field_key, field_value in pairs.items():
            if field_key in flat:  # written flat and nested: one would silently win
                raise where.error(field_key, f"'{field_key}' is given twice in '{key}'; keep one", section=key)
            flat[field_key] = field_value
    return flat


def _apply(base: RunConfig, values: dict[str, Any], where: Marks) -> RunConfig:
    """Merge dotted overrides together (fields may depend on each other, such as data.source
    and data.path); on an error, name the line of the key it is about."""
    nested: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        try:
            section, name = resolve_key(key)
        except ConfigError as err:
            raise where.error(key, f"'{key}' = {value!r}: {err}", value, "config") from None
        nested.setdefault(section, {})[name] = value
    try:
        return merge(base, nested)
    except ConfigError as err:
        culprit = _culprit(base, values, str(err))
        raise where.error(culprit, f"'{culprit}' = {values[culprit]!r}: {err}", values[culprit],
                          "config") from None


def _culprit(base: RunConfig, values: dict[str, Any], message: str) -> str:
    """The key an error is about: the first one that fails alone, else the first it names."""
    for key, value in values.items():
        try:
            section, name = resolve_key(key)
            merge(base, {section: {name: value}})
        except ConfigError:
            return key
    named = [k for k in values if k in message or k.rpartition(".")[2] in message]
    return named[0] if named else next(iter(values))


def _merge_one(base: RunConfig, key: str, value: Any, where: Marks) -> RunConfig:
    try:
        section, name = resolve_key(key)
        return merge(base, {section: {name: value}})
    except ConfigError as err:
        raise where.error(key, f"'{key}' = {value!r}: {err}", value, "grid") from None


def _grid(value: Any, where: Marks) -> dict[str, list[Any]]:
    if value is None:
        raise ConfigError(f"{where.path}: the sweep has no 'grid'; give at least one config "
                          f"field with a list of values, e.g. grid: {{model.n_layers: [1, 2]}}")
    grid = _mapping(value, "grid", where)
    if not grid:
        raise where.error("grid", "the grid is empty; give at least one config field with a "
                                  "list of values, e.g. model.n_layers: [1, 2]")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise where.error(key, f"grid field '{key}' must be a non-empty list of values, "
                                   f"not {values!r}", section="grid")
        if len(set(map(repr, values))) != len(values):
            raise where.error(key, f"grid field '{key}' repeats a value: {values!r}", section="grid")
    return grid


def _seeds(value: Any, where: Marks) -> list[int]:
    ok = isinstance(value, list) and value and all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
    if not ok or len(set(value)) != len(value):
        raise where.error("seeds", f"'seeds' must be a non-empty list of distinct integers >= 0, "
                                   f"not {value!r}")
    return list(value)


def _expand(base: RunConfig, grid: dict[str, list[Any]], seeds: list[int],
            where: Marks) -> list[SweepRun]:
    # Check each value alone first, so the error names the value's own line.
    for key, values in grid.items():
        for value in values:
            _merge_one(base, key, value, where)
    runs, points = [], {}
    for point in itertools.product(*grid.values()):
        config = base
        for key, value in zip(grid, point):
            config = _merge_one(config, key, value, where)
        _check_distinct_name(dict(zip(grid, point)), points, where)
        for seed in seeds:
            seeded = merge(config, {"train": {"seed": seed}})
            runs.append(SweepRun(run_name(dict(zip(grid, point)), seed), seeded))
    return runs


def _check_distinct_name(point: dict[str, Any], seen: dict[str, dict[str, Any]], where: Marks) -> None:
    """Refuse two grid points whose run folders would have one name (values that differ only
    in characters a folder name does not keep, such as "a/b" and "a-b"): one run would
    silently stand for both. Refused rather than renamed, so that a run's folder name never
    depends on which other values the grid holds."""
    name = run_name(point, 0)
    if len(name.encode()) > MAX_NAME_BYTES:
        key = max(point, key=lambda k: len(_token(point[k])))
        raise where.error(key, f"the run folder name '{name[:40]}...' would be {len(name.encode())} bytes, "
                               f"beyond {MAX_NAME_BYTES}; use shorter grid values for '{key}'", point[key],
                          "grid")
    if name in seen:
        other = seen[name]
        key = next(k for k in point if point[k] != other[k])
        raise where.error(key, f"grid values {other[key]!r} and {point[key]!r} of '{key}' give the same run "
                               f"folder name '{name}' (folder names keep only letters, digits and . + -); "
                               f"make the values differ in those characters", point[key], "grid")
    seen[name] = point


def run_name(point: dict[str, Any], seed: int) -> str:
    """``{"model.n_layers": 2, "model.attn_only": True}, 0`` -> ``n_layers=2_attn_only=true_seed=0``."""
    parts = [f"{key.rpartition('.')[2]}={_token(value)}" for key, value in point.items()]
    return "_".join([*parts, f"seed={seed}"])


def _token(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return re.sub(r"[^A-Za-z0-9.+-]", "-", str(value))
