"""Rebuild a damaged or missing metrics file from the run's checkpoints, losing nothing they hold.

Policy: a damaged ``metrics.h5`` is never deleted or written to. :func:`recover_metrics` moves
it aside as ``metrics.h5.damaged-<time>`` and writes a new file with

- the ``train`` and ``eval`` series rebuilt from the checkpoints: every checkpoint's
  ``trainer.json`` carries the train records flushed with it and its own eval row
  (``records``, written by :mod:`interp.train`), so together they hold both series whole;
- rows of those two series that no checkpoint holds (runs made before checkpoints carried
  records), copied from the damaged file where HDF5 can still read them;
- no ``analysis``, ``probes`` or ``phase`` group: ``interp analyze`` measures every
  checkpoint again (it has them all), which is exact, where salvaged rows might not be.

It returns one line saying where the old file went and what was rebuilt or lost. The same
rebuild runs when the file is missing while checkpoints exist (a user who deleted it).
Torch-free: it reads JSON and HDF5 only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from interp import store
from interp.errors import InterpError
from interp.fileio import inside_run
from interp.runs import list_checkpoints, read_config

SERIES = ("train", "eval")


def recover_metrics(run_dir: str | Path) -> str | None:
    """Move a damaged metrics file aside and rebuild it (or build a missing one); None when the
    file was sound, else one line for the user."""
    run_dir = Path(run_dir)
    found: dict[str, Any] = {}

    def build(handle: h5py.File, aside: Path | None) -> None:
        found.update(_rebuild(handle, run_dir, aside))

    missing = not (run_dir / store.FILENAME).exists()
    if missing:
        if not any(_records(c.path) for c in list_checkpoints(run_dir)):
            return None  # nothing to rebuild from (a new run, or checkpoints without records)
        store.rebuild_missing(run_dir, build)
        return f"{run_dir / store.FILENAME} was missing; rebuilt it from the checkpoints ({_counts(found)})"
    aside = store.replace_damaged(run_dir, build)
    if aside is None:
        return None
    return (f"{run_dir / store.FILENAME} was damaged; moved it to {aside.name} (kept, not modified) and "
            f"rebuilt it from the checkpoints ({_counts(found)}); analysis rows are not kept ('interp "
            f"analyze' measures them again)")


def _counts(found: dict[str, Any]) -> str:
    parts = []
    for group in SERIES:
        got, want = found.get(group, 0), found.get(f"{group}_expected", 0)
        lost = f", {want - got} lost" if want > got else ""
        parts.append(f"{group} {got} of {want} rows{lost}")
    return "; ".join(parts)


def _rebuild(handle: h5py.File, run_dir: Path, aside: Path | None) -> dict[str, Any]:
    """Fill ``handle`` with the train and eval series; return rows written and expected."""
    rows = {group: _from_checkpoints(run_dir, group) for group in SERIES}
    salvaged = _salvage(aside) if aside is not None else {}
    counts: dict[str, Any] = {}
    for group in SERIES:
        records, attrs = rows[group]
        records = _merge(records, salvaged.get(group, {}))
        if records:
            store.append(handle, group, records)
            handle[group].attrs.update(attrs or salvaged.get(f"{group}_attrs", {}))
        counts[group] = len(records.get("step", []))
        counts[f"{group}_expected"] = max(counts[group], _expected(run_dir, group))
    return counts


def _records(checkpoint: Path) -> dict[str, Any] | None:
    """The ``records`` of a checkpoint's trainer.json, when that file matches its manifest."""
    try:
        manifest = json.loads(inside_run(checkpoint.parent, checkpoint / "manifest.json").read_text())
        raw = inside_run(checkpoint.parent, checkpoint / "trainer.json").read_bytes()
        entry = manifest["trainer.json"]
        if len(raw) != entry["bytes"] or hashlib.sha256(raw).hexdigest() != entry["sha256"]:
            return None
        return json.loads(raw).get("records")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _from_checkpoints(run_dir: Path, group: str) -> tuple[dict[str, np.ndarray], dict]:
    """Rows of ``group`` ({name: array}) from every checkpoint's records, sorted by step."""
    columns: dict[str, list] = {}
    dtypes: dict[str, str] = {}
    attrs: dict = {}
    for checkpoint in list_checkpoints(run_dir):
        records = _records(checkpoint.path) or {}
        part = records.get(group)
        if not part:
            continue
        dtypes.update(records.get(f"{group}_dtypes", {}))
        attrs = records.get(f"{group}_attrs", attrs)
        for name, values in part.items():
            columns.setdefault(name, []).extend(values)
    if not columns or len({len(v) for v in columns.values()}) != 1:
        return {}, {}
    arrays = {k: np.asarray(v, dtype=dtypes.get(k)) for k, v in columns.items()}
    order = np.argsort(arrays["step"], kind="stable")
    return {k: v[order] for k, v in arrays.items()}, attrs


def _salvage(aside: Path) -> dict[str, Any]:
    """What HDF5 can still read of the train and eval groups of a damaged file ({} if nothing)."""
    out: dict[str, Any] = {}
    try:
        with h5py.File(aside, "r") as old:
            for group in SERIES:
                try:
                    columns = {n: d[()] for n, d in old[group].items() if isinstance(d, h5py.Dataset)}
                    if "step" in columns and len({len(v) for v in columns.values()}) == 1:
                        out[group], out[f"{group}_attrs"] = columns, dict(old[group].attrs)
                except (OSError, KeyError, RuntimeError, ValueError):
                    continue
    except (OSError, RuntimeError, ValueError):
        return {}
    return out


def _merge(rows: dict[str, np.ndarray], extra: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``rows`` plus the rows of ``extra`` at steps ``rows`` lacks (same columns only), by step."""
    if not extra or (rows and set(extra) != set(rows)):
        return rows
    if not rows:
        return extra
    new = ~np.isin(extra["step"], rows["step"])
    if not new.any():
        return rows
    merged = {k: np.concatenate([rows[k], extra[k][new]]) for k in rows}
    order = np.argsort(merged["step"], kind="stable")
    return {k: v[order] for k, v in merged.items()}


def _expected(run_dir: Path, group: str) -> int:
    """How many rows ``group`` should hold up to the newest checkpoint (for the 'lost' count)."""
    found = list_checkpoints(run_dir)
    if not found:
        return 0
    last = found[-1].step
    if group == "eval":
        return len(found)
    try:
        train = read_config(run_dir).train
    except InterpError:  # a damaged config.json only makes the count unknown
        return 0
    steps = set(range(train.log_every, last + 1, train.log_every))
    if last == train.steps:
        steps.add(last)
    return len(steps)
