"""The run's metrics file: one HDF5 file per run, written by training and analysis, read by all.

Layout (version :data:`LAYOUT_VERSION`; the full schema is in docs/ARCHITECTURE.md)::

    /                          attrs: layout_version, run_name
    /train/<name>   [N]        per logged step: step, tokens, loss, lr, grad_norm,
                               tokens_per_second, wall_seconds
    /eval/<name>    [C, ...]   per checkpoint: step, tokens, val_loss, icl_score,
                               icl_score_stderr, loss_by_position [C, n_ctx-1],
                               prefix_matching [C, n_layers, n_heads]; attrs record
                               the indices and sample sizes used

Every group holds series that share their first axis, indexed by its ``step`` dataset;
metric names are the flat slash names used everywhere (``train/loss``, ``eval/icl_score``).

Writes are atomic: the file is copied, updated and renamed into place under a lock, so a
reader (the app, ``interp analyze`` during training) never sees a half-written file, and a
crash mid-write leaves the previous version intact. Files are small (kilobytes to a few MB),
so the copy costs little.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from interp.errors import InterpError

LAYOUT_VERSION = 1
FILENAME = "metrics.h5"


class StoreError(InterpError):
    """A metrics file that is missing, unreadable or of another layout version."""


@contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    with open(Path(run_dir) / ".metrics.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def update(run_dir: Path) -> Iterator[h5py.File]:
    """Open a private copy of the metrics file for writing; it replaces the file on success."""
    run_dir = Path(run_dir)
    path = run_dir / FILENAME
    tmp = run_dir / f".{FILENAME}.tmp{os.getpid()}"
    with _locked(run_dir):
        if path.exists():
            shutil.copyfile(path, tmp)
        with h5py.File(tmp, "a") as handle:
            if "layout_version" not in handle.attrs:
                handle.attrs["layout_version"] = LAYOUT_VERSION
                handle.attrs["run_name"] = run_dir.name
            _check_version(handle, path)
            yield handle
        with open(tmp, "rb+") as raw:
            os.fsync(raw.fileno())
        os.replace(tmp, path)


@contextmanager
def read(run_dir: Path) -> Iterator[h5py.File]:
    """Open the metrics file for reading, refusing other layout versions with a clear message."""
    path = Path(run_dir) / FILENAME
    if not path.is_file():
        raise StoreError(f"{path} does not exist yet; train the run (or wait for its first checkpoint)")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise StoreError(f"{path} is not a readable HDF5 file ({err}); delete it and rerun "
                         f"'interp analyze' to rebuild the analysis") from None
    with handle:
        _check_version(handle, path)
        yield handle


def _check_version(handle: h5py.File, path: Path) -> None:
    version = int(handle.attrs.get("layout_version", -1))
    if version != LAYOUT_VERSION:
        raise StoreError(f"{path} has metrics layout {version}, this interp reads {LAYOUT_VERSION}; "
                         f"move it aside and rerun 'interp analyze' to rewrite it")


def append(handle: h5py.File, group: str, records: dict[str, Any]) -> None:
    """Append rows to the series of ``group``; every value gains one leading axis entry per row.

    Args:
        records: name -> array whose first axis is the rows being appended (all equal length).
    """
    lengths = {len(np.asarray(v)) for v in records.values()}
    if len(lengths) != 1:
        raise ValueError(f"records for {group} have different lengths: {lengths}")
    grp = handle.require_group(group)
    for name, value in records.items():
        value = np.asarray(value)
        if name not in grp:
            grp.create_dataset(name, data=value, maxshape=(None, *value.shape[1:]), chunks=True)
            continue
        dataset = grp[name]
        start = dataset.shape[0]
        dataset.resize(start + len(value), axis=0)
        dataset[start:] = value


def truncate_after(handle: h5py.File, step: int) -> None:
    """Drop every row whose step is greater than ``step`` (used when a run resumes)."""
    for group in handle.values():
        if not isinstance(group, h5py.Group) or "step" not in group:
            continue
        keep = int(np.sum(group["step"][()] <= step))
        for dataset in group.values():
            if isinstance(dataset, h5py.Dataset) and dataset.shape and dataset.shape[0] > keep:
                dataset.resize(keep, axis=0)


def series(run_dir: Path, group: str) -> dict[str, np.ndarray]:
    """Every dataset of a group as numpy arrays, plus its attrs under ``attrs``."""
    with read(run_dir) as handle:
        if group not in handle:
            return {}
        out: dict[str, Any] = {name: ds[()] for name, ds in handle[group].items()
                               if isinstance(ds, h5py.Dataset)}
        out["attrs"] = dict(handle[group].attrs)
        return out


def series_by_step(run_dir: Path, group: str) -> dict[str, np.ndarray]:
    """:func:`series` with rows sorted by ``step`` (rows may be appended out of order)."""
    rows = series(run_dir, group)
    if not len(rows.get("step", [])):
        return rows
    order = np.argsort(rows["step"])
    return {k: (v[order] if k != "attrs" else v) for k, v in rows.items()}


def attrs(run_dir: Path, group: str) -> dict[str, Any]:
    """The attributes of ``group`` ({} if the group does not exist yet)."""
    with read(run_dir) as handle:
        return dict(handle[group].attrs) if group in handle else {}


def steps(run_dir: Path, group: str) -> np.ndarray:
    """Only the ``step`` dataset of ``group`` (cheap: not the arrays of every row)."""
    with read(run_dir) as handle:
        return handle[group]["step"][()] if group in handle and "step" in handle[group] else np.zeros(0, int)
