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
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

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
    """Open a private copy of the metrics file for writing; it replaces the file on success.

    The copy is removed whatever happens (an error in the block, a full disk), so a failed
    update leaves the previous file and nothing else. A file that HDF5 cannot open raises
    :class:`DamagedMetrics`, never an OSError: :func:`recover` moves it aside and rebuilds it.
    """
    run_dir = Path(run_dir)
    path = run_dir / FILENAME
    tmp = run_dir / f".{FILENAME}.tmp{os.getpid()}"
    with _locked(run_dir):
        try:
            if path.exists():
                shutil.copyfile(path, tmp)
            with _open(tmp, "a", path) as handle:
                if "layout_version" not in handle.attrs:
                    handle.attrs["layout_version"] = LAYOUT_VERSION
                    handle.attrs["run_name"] = run_dir.name
                _check_version(handle, path)
                yield handle
            with open(tmp, "rb+") as raw:
                os.fsync(raw.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


@contextmanager
def read(run_dir: Path) -> Iterator[h5py.File]:
    """Open the metrics file for reading, refusing other layout versions with a clear message."""
    path = Path(run_dir) / FILENAME
    if not path.is_file():
        raise StoreError(f"{path} does not exist yet; train the run (or wait for its first checkpoint)")
    with _open(path, "r", path) as handle:
        _check_version(handle, path)
        try:
            yield handle
        except OSError as err:  # a dataset whose blocks are damaged, found on reading it
            raise DamagedMetrics(f"{path} is damaged ({str(err).split('(')[0].strip()}); "
                                 f"'interp analyze {path.parent}' moves it aside and rebuilds it "
                                 f"from the checkpoints") from None


class DamagedMetrics(StoreError):
    """A metrics file that HDF5 cannot open (truncated, overwritten, not HDF5)."""


def _open(file: Path, mode: str, shown: Path) -> h5py.File:
    """``h5py.File(file, mode)``, a damaged file raising :class:`DamagedMetrics` in one line
    whose advice keeps the data: analysis and resume rebuild it (:func:`recover`)."""
    try:
        return h5py.File(file, mode)
    except OSError as err:
        reason = str(err).split("(")[0].strip().rstrip(":") or type(err).__name__
        raise DamagedMetrics(f"{shown} is damaged ({reason}); 'interp analyze {shown.parent}' moves it "
                             f"aside and rebuilds it from the checkpoints") from None


def replace_damaged(run_dir: Path, build: Callable[[h5py.File, Path | None], None]) -> Path | None:
    """If the metrics file is damaged (it cannot be opened, or a dataset cannot be read), move
    it aside as ``metrics.h5.damaged-<time>`` and write a new one with ``build(handle, aside)``;
    return the path it was moved to (None when the file was sound or absent).

    The damaged file is never deleted or modified: whatever a later tool can still read in it
    stays there. Done under the metrics lock, so no writer sees the file missing in between.
    """
    run_dir = Path(run_dir)
    path = run_dir / FILENAME
    with _locked(run_dir):
        if not path.exists() or readable(path):
            return None
        aside = path.with_name(f"{FILENAME}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        while aside.exists():  # two recoveries in one second: never overwrite the first
            aside = aside.with_name(aside.name + "x")
        os.replace(path, aside)
        _write_new(run_dir, lambda handle: build(handle, aside))
        return aside


def rebuild_missing(run_dir: Path, build: Callable[[h5py.File, Path | None], None]) -> None:
    """Write a metrics file with ``build(handle, None)`` where none exists (under the lock)."""
    run_dir = Path(run_dir)
    with _locked(run_dir):
        if not (run_dir / FILENAME).exists():
            _write_new(run_dir, lambda handle: build(handle, None))


def _write_new(run_dir: Path, build: Callable[[h5py.File], None]) -> None:
    """A new metrics file written to a temporary name and renamed into place (lock held)."""
    tmp = run_dir / f".{FILENAME}.tmp{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as handle:
            handle.attrs["layout_version"] = LAYOUT_VERSION
            handle.attrs["run_name"] = run_dir.name
            build(handle)
        with open(tmp, "rb+") as raw:
            os.fsync(raw.fileno())
        os.replace(tmp, run_dir / FILENAME)
    finally:
        tmp.unlink(missing_ok=True)


def readable(path: Path) -> bool:
    """Whether HDF5 opens the file and reads every dataset in it (files are small: this reads
    kilobytes to a few MB). A file of another layout version counts as readable: it is not
    damaged, and its reader says how to rewrite it."""
    def visit(_name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):
            item[()]

    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(visit)
            dict(handle.attrs)
    except (OSError, RuntimeError, KeyError, ValueError):
        return False
    return True


def _check_version(handle: h5py.File, path: Path) -> None:
    version = int(handle.attrs.get("layout_version", -1))
    if version != LAYOUT_VERSION:
        raise StoreError(f"{path} has metrics layout {version}, this interp reads {LAYOUT_VERSION}; "
                         f"move it aside and rerun 'interp analyze' to rewrite it")


def append(handle: h5py.File, group: str, records: dict[str, Any]) -> None:
    """Append rows to the series of ``group``; every value gains one leading axis entry per row.

    A row whose ``step`` is already stored in the group (or repeated among the new rows) is
    dropped, not appended: whoever wrote it first wins. Two writers that race (two analyses,
    a resume of a live run) then cannot leave duplicate rows, which would bias every series
    statistic; :mod:`interp.runlock` keeps such writers apart in the first place.

    Args:
        records: name -> array whose first axis is the rows being appended (all equal length).
    """
    lengths = {len(np.asarray(v)) for v in records.values()}
    if len(lengths) != 1:
        raise ValueError(f"records for {group} have different lengths: {lengths}")
    grp = handle.require_group(group)
    keep = _new_rows(grp, records)
    if not keep.any():
        return
    for name, value in records.items():
        value = np.asarray(value)[keep]
        if name not in grp:
            grp.create_dataset(name, data=value, maxshape=(None, *value.shape[1:]), chunks=True)
            continue
        dataset = grp[name]
        start = dataset.shape[0]
        dataset.resize(start + len(value), axis=0)
        dataset[start:] = value


def _new_rows(grp: h5py.Group, records: dict[str, Any]) -> np.ndarray:
    """Mask of the rows to append: those whose step is neither stored nor repeated before."""
    n = len(np.asarray(next(iter(records.values()))))
    if "step" not in records:
        return np.ones(n, bool)
    seen = {int(s) for s in grp["step"][()]} if "step" in grp else set()
    keep = np.zeros(n, bool)
    for i, step in enumerate(np.asarray(records["step"]).tolist()):
        keep[i] = int(step) not in seen
        seen.add(int(step))
    return keep


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
