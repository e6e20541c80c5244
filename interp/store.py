"""The run's metrics: one HDF5 file per run plus a journal of recent updates, written by
training and analysis, read by all.

Layout of ``metrics.h5`` (version :data:`LAYOUT_VERSION`; the full schema is in
docs/ARCHITECTURE.md)::

    /                          attrs: layout_version, run_name, journal_id
    /train/<name>   [N]        per logged step: step, tokens, loss, lr, grad_norm,
                               tokens_per_second, wall_seconds
    /eval/<name>    [C, ...]   per checkpoint: step, tokens, val_loss, icl_score,
                               icl_score_stderr, loss_by_position [C, n_ctx-1],
                               prefix_matching [C, n_layers, n_heads]; attrs record
                               the indices and sample sizes used

Every group holds series that share their first axis, indexed by its ``step`` dataset;
metric names are the flat slash names used everywhere (``train/loss``, ``eval/icl_score``).

How writes stay cheap and safe (a journal folded in by compaction)
------------------------------------------------------------------
``metrics.h5`` is never written in place. An :func:`update` records what its block does
(rows appended, attributes set, groups or datasets created or deleted, a truncation) and
stores it as one small HDF5 file in ``metrics.journal/`` (:mod:`interp.journal`): written to a
temporary name, fsynced and renamed, so it is there whole or not at all. Its cost is the size
of the update, whatever the size of the run: with a 12-layer, 12-head model's full per-head
records (about 1.4 MB per checkpoint), an append at the 200th checkpoint costs what it costs at
the 10th, while copying the file, as this module did before, cost ten times as much at the
200th as at the 10th (``benchmarks/bench_store.py``).

Readers open ``metrics.h5`` and replay the journal's entries on an in-memory view
(:mod:`interp.storeview`): they see ``metrics.h5`` plus every whole entry, in order, and
never a half-written one. Entries belong to the ``metrics.h5`` whose ``journal_id`` they
carry, so a reader never applies an entry twice.

Compaction folds the journal into a new ``metrics.h5``: the file is copied, the journal's
operations are applied to the copy with h5py, the copy gets a new ``journal_id`` and is
fsynced and renamed into place (the copy-and-rename of old), then the folded entries are
deleted. It runs inside an update when the journal has grown to :data:`COMPACT_RATIO` times the
size of ``metrics.h5`` (every entry counting at least :data:`ENTRY_FLOOR`), so the copies cost a
bounded multiple of the bytes appended (the file doubles between two of them) and small runs
compact at almost every update, as before; and when a process that wrote entries exits
normally (the end of ``interp train`` or ``interp analyze``), so that a finished run is one
plain HDF5 file again, readable by h5py alone. While a writer runs (or after it was killed),
a tool that opens ``metrics.h5`` with h5py directly sees the state of the last compaction;
:func:`read`, :func:`series` and the rest see everything. During a compaction a reader sees the old file and
its entries, or the new file and none of them; one that had the old file open keeps reading
it, and one that finds an entry gone, or ``metrics.h5`` replaced while it was listing the
journal, reads again. :func:`compact` folds the journal on demand.

A ``kill -9`` loses at most the update being written: a half-written entry or copy is a
temporary that the next writer deletes; a compaction killed after its rename leaves entries
whose id no longer matches, which readers ignore and the next writer deletes. A damaged
entry is skipped with a one-line warning (see :mod:`interp.journal`). Writers are serialised
by a lock file (``.metrics.lock``); readers take no lock. Caches keyed on the file's
modification time (the app's) still see every update: an update that writes an entry touches
``metrics.h5``'s mtime (not its bytes).
"""

from __future__ import annotations

import atexit
import fcntl
import io
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from interp import journal
from interp.errors import InterpError
from interp.fileio import fsync_path as _fsync
from interp.fileio import inside_run, open_lock_file
from interp.storeview import (
    DamagedMetrics,
    DataNode,
    EntryDamaged,
    Group,
    GroupNode,
    Op,
    Ref,
    Sources,
    StoreError,
    Tree,
    View,
    apply_h5,
    truncate_h5,
    write_rows,
)

__all__ = ["DamagedMetrics", "StoreError", "append", "attrs", "compact", "read", "readable",
           "rebuild_missing", "replace_damaged", "rewrite", "series", "series_by_step", "steps",
           "truncate_after", "update"]

LAYOUT_VERSION = 1
FILENAME = "metrics.h5"
JOURNAL = journal.DIRNAME
# Compact when the journal weighs this many times metrics.h5. At 1 the file at least doubles
# between compactions, so all of them together copy about twice the final file, and the
# journal never holds more than the file does (what a reader replays).
COMPACT_RATIO = 1.0
# An entry counts as at least this many bytes: small runs (entries of a few KB) compact every
# few updates, which keeps their journal short and costs what one copy of a small file costs.
ENTRY_FLOOR = 256 * 1024
_ATTEMPTS = 8  # reads started again when a compaction replaced what they were reading


@contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    with open_lock_file(Path(run_dir) / ".metrics.lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- the view's state

class _Files(Sources):
    """The HDF5 files one view reads: metrics.h5 and journal entries, opened when first needed
    (a reader of :func:`read` opens them all at once, keeping them readable if a compaction
    deletes them meanwhile) and closed together."""

    def __init__(self, main_path: Path):
        self.main_name = str(main_path.absolute())
        self.open: dict[str, h5py.File] = {}

    def handle(self, name: str) -> h5py.File:
        if name not in self.open:
            try:
                self.open[name] = h5py.File(name, "r")
            except OSError:
                if not os.path.exists(name):  # h5py says "can't retrieve stat info" for some
                    raise journal.Vanished(name) from None
                raise
        return self.open[name]

    def read_ref(self, ref: Ref, rows: int | None) -> np.ndarray:
        with self._reading(ref):
            dataset = self.handle(ref.file)[ref.name]
            return dataset[()] if rows is None or rows == dataset.shape[0] else dataset[:rows]

    def read_ref_into(self, ref: Ref, rows: int, out: np.ndarray) -> None:
        with self._reading(ref):
            self.handle(ref.file)[ref.name].read_direct(out, np.s_[:rows])

    @contextmanager
    def _reading(self, ref: Ref) -> Iterator[None]:
        """Errors in one line: metrics.h5 damaged, or the entry (which readers then skip)."""
        try:
            yield
        except journal.Vanished:
            raise
        except (OSError, RuntimeError, KeyError, ValueError) as err:
            if ref.file == self.main_name:
                raise _damaged(Path(ref.file), err) from None
            raise EntryDamaged(ref.file, journal.reason(err)) from None

    def close(self) -> None:
        for handle in self.open.values():
            handle.close()
        self.open.clear()


_scratch: h5py.File | None = None
_scratch_lock = threading.Lock()


@dataclass
class _State:
    """metrics.h5 and its journal as one view, and what an update has recorded on it."""
    run_dir: Path
    path: Path
    files: _Files
    tree: Tree
    exists: bool
    journal_id: str | None
    entries: list
    next_seq: int
    ops: list[Op] = field(default_factory=list)

    def view(self, writable: bool) -> View:
        return View(self.tree, self.record if writable else None, self.normalise)

    def record(self, op: Op) -> None:
        self.tree.apply(op)
        self.ops.append(op)

    def normalise(self, values: dict[str, Any]) -> dict[str, Any]:
        """Attribute values as HDF5 will give them back (numpy scalars, str), raising where
        h5py would (None, a dict), at the moment they are set: they go through the attributes
        of an HDF5 file in memory."""
        global _scratch
        with _scratch_lock:
            if _scratch is None:
                _scratch = h5py.File(io.BytesIO(), "w")
            out = {}
            try:
                for key, value in values.items():
                    _scratch.attrs[key] = value
                    out[key] = _scratch.attrs[key]
            finally:
                for key in list(_scratch.attrs):
                    del _scratch.attrs[key]
            return out

    def all_ops(self) -> Iterator[Op]:
        for entry in self.entries:
            yield from entry.ops
        yield from self.ops

    def close(self) -> None:
        self.files.close()


def _load(run_dir: Path, writer: bool, pin: bool) -> _State:
    """Open metrics.h5 and replay its journal (retrying while a compaction moves things)."""
    for _ in range(_ATTEMPTS):
        try:
            return _load_once(run_dir, writer, pin)
        except journal.Vanished:
            continue
    raise StoreError(f"{run_dir / FILENAME} was replaced at every attempt to read it; try again")


def _load_once(run_dir: Path, writer: bool, pin: bool) -> _State:
    path = inside_run(run_dir, run_dir / FILENAME)  # never read through a link out of the run
    files = _Files(path)
    try:
        if not path.exists():
            if not writer:
                raise _missing(path)
            tree = Tree(GroupNode(), files)
            return _State(run_dir, path, files, tree, False, None, [], 1)
        inode = path.stat().st_ino
        files.open[files.main_name] = _open(path, "r", path)
        root = _tree_of(files.open[files.main_name], files.main_name, path)
        journal_id = root.attrs.get("journal_id")
        journal_id = str(journal_id) if journal_id is not None else None
        entries, next_seq = journal.load(run_dir, journal_id, verify=pin)
        if pin:
            for entry in entries:
                files.handle(str(entry.path))
        if path.stat().st_ino != inode:
            raise journal.Vanished(str(path))  # compacted while we listed: read again
        tree = Tree(root, files)
        for entry in entries:
            for op in entry.ops:
                tree.apply(op)
        return _State(run_dir, path, files, tree, True, journal_id, entries, next_seq)
    except BaseException:
        files.close()
        raise


def _tree_of(handle: h5py.File, name: str, path: Path) -> GroupNode:
    """The groups and attributes of metrics.h5, datasets as references (steps read at once)."""
    def node(obj: Any) -> Any:
        if isinstance(obj, h5py.Group):
            return GroupNode(dict(obj.attrs), {key: node(child) for key, child in obj.items()})
        shape = tuple(obj.shape)
        source = obj[()] if obj.name.rsplit("/", 1)[-1] == "step" else Ref(name, obj.name, shape, obj.dtype)
        return DataNode.of(source, resizable=bool(shape) and obj.maxshape[0] is None)

    try:
        return node(handle)
    except (OSError, RuntimeError, KeyError) as err:
        raise _damaged(path, err) from None


# --------------------------------------------------------------------------- writing

@contextmanager
def update(run_dir: Path) -> Iterator[Group]:
    """A handle on the metrics for writing (h5py-like: see :mod:`interp.storeview`); what the
    block does is stored when it ends, as a journal entry or by a compaction.

    An error in the block stores nothing (and leaves nothing behind). A metrics file that HDF5
    cannot open raises :class:`DamagedMetrics`, never an OSError: :func:`recover` moves it
    aside and rebuilds it.
    """
    run_dir = Path(run_dir)
    with _locked(run_dir):
        journal.clean_temporaries(run_dir)
        state = _load(run_dir, writer=True, pin=False)
        try:
            journal.retire(run_dir, state.journal_id)  # entries of an earlier file, if any
            _begin(state)
            yield state.view(writable=True).root()
            _commit(state)
        finally:
            state.close()


def _begin(state: _State) -> None:
    """A new file gets its layout attributes; a file of another layout is refused."""
    if "layout_version" not in state.tree.root.attrs:
        state.record(Op("attrs", "", values=state.normalise(
            {"layout_version": LAYOUT_VERSION, "run_name": state.run_dir.name})))
    _check_version(state.tree.root.attrs, state.path)


def _commit(state: _State) -> None:
    """Store the update: nothing, a journal entry, or (new file, an old file without a journal
    id, or a journal that outweighs the file) a compaction."""
    if state.exists and not state.ops:
        return
    if not state.exists or state.journal_id is None:
        with _compacting(state):
            pass
        return
    if _journal_weight(state) >= COMPACT_RATIO * state.path.stat().st_size:
        try:
            with _compacting(state):
                pass
            return
        except EntryDamaged as err:  # found on folding it: keep this update as an entry instead
            journal.mark_damaged(err.path, err.reason)
    journal.write(state.run_dir, state.journal_id, state.next_seq, state.ops)
    os.utime(state.path)  # caches keyed on metrics.h5's mtime (the app) see the new rows
    _fold_at_exit(state.run_dir)


_journalled: set[Path] = set()


def _fold_at_exit(run_dir: Path) -> None:
    """Compact ``run_dir`` when this process exits normally, so that a finished command leaves
    one plain metrics.h5 (what a tool reading it with h5py alone sees). A killed process
    skips this; its journal stays valid and the next writer carries on with it."""
    if not _journalled:
        atexit.register(_fold_journalled)
    _journalled.add(Path(run_dir).absolute())


def _fold_journalled() -> None:
    for run_dir in sorted(_journalled):
        try:
            if (run_dir / FILENAME).exists():
                compact(run_dir)
        except (InterpError, OSError, RuntimeError, ValueError):
            pass  # the journal is still valid: readers replay it, the next writer folds it
    _journalled.clear()


def _journal_weight(state: _State) -> int:
    pending = sum(op.nbytes() for op in state.ops)
    return sum(max(e.size, ENTRY_FLOOR) for e in state.entries) + max(pending, ENTRY_FLOOR)


@contextmanager
def _compacting(state: _State) -> Iterator[h5py.File]:
    """A copy of metrics.h5 with the journal and this update applied; it replaces the file
    (with a new journal id) when the block ends, and the folded entries are deleted."""
    tmp = state.run_dir / f".{FILENAME}.tmp{os.getpid()}"
    journal_id = journal.new_id()
    try:
        if state.exists:
            shutil.copyfile(state.path, tmp)
        with h5py.File(tmp, "a" if state.exists else "w") as handle:
            for op in state.all_ops():
                apply_h5(handle, op, state.files.read)
            handle.attrs["journal_id"] = journal_id
            yield handle
        _fsync(tmp)  # the data on disk before the name points at it
        os.replace(tmp, state.path)
    finally:
        tmp.unlink(missing_ok=True)
    journal.retire(state.run_dir, journal_id)


@contextmanager
def rewrite(run_dir: Path) -> Iterator[h5py.File]:
    """A real h5py file holding the whole store (metrics.h5 with its journal folded in), which
    replaces the store when the block ends: for what :func:`update` cannot express (writing
    into part of a dataset). It copies the file, so it costs what the file weighs."""
    run_dir = Path(run_dir)
    with _locked(run_dir), _folding(run_dir) as handle:
        yield handle


def compact(run_dir: Path) -> bool:
    """Fold the journal into metrics.h5 now; False when there was nothing to fold."""
    run_dir = Path(run_dir)
    with _locked(run_dir), _folding(run_dir, only_a_journal=True) as handle:
        return handle is not None


@contextmanager
def _folding(run_dir: Path, only_a_journal: bool = False) -> Iterator[h5py.File | None]:
    """A compaction (lock held) whose file the block may still change; None, and nothing
    done, for ``only_a_journal`` when there is no journal to fold. A damaged entry found on
    the way is skipped (with its warning) and the compaction starts again without it."""
    journal.clean_temporaries(run_dir)
    while True:
        state = _load(run_dir, writer=True, pin=False)
        with ExitStack() as stack:
            stack.callback(state.close)
            if only_a_journal and (not state.exists or (state.journal_id and not state.entries)):
                yield None
                return
            _begin(state)
            try:
                handle = stack.enter_context(_compacting(state))
            except EntryDamaged as err:
                journal.mark_damaged(err.path, err.reason)
                continue
            yield handle
            return


def append(handle: Any, group: str, records: dict[str, Any]) -> None:
    """Append rows to the series of ``group``; every value gains one leading axis entry per row.

    A row whose ``step`` is already stored in the group (or repeated among the new rows) is
    dropped, not appended: whoever wrote it first wins. Two writers that race (two analyses,
    a resume of a live run) then cannot leave duplicate rows, which would bias every series
    statistic; :mod:`interp.runlock` keeps such writers apart in the first place.

    Args:
        handle: what :func:`update` yields, or an h5py file (:func:`rewrite`, a rebuild).
        records: name -> array whose first axis is the rows being appended (all equal length).
    """
    lengths = {len(np.asarray(v)) for v in records.values()}
    if len(lengths) != 1:
        raise ValueError(f"records for {group} have different lengths: {lengths}")
    grp = handle.require_group(group)
    stored = grp["step"][()] if "step" in grp else None
    keep = _new_rows(stored, records)
    if not keep.any():
        return
    columns = {name: np.asarray(value)[keep] for name, value in records.items()}
    if isinstance(grp, h5py.Group):
        write_rows(grp, columns)
        return
    for name, value in columns.items():  # the journal stores rows as the file would hold them
        if name in grp:
            columns[name] = _fitted(grp[name], value, f"{group}/{name}")
    grp.record(Op("append", grp.name.strip("/"), columns=columns))


def _fitted(dataset: Any, value: np.ndarray, name: str) -> np.ndarray:
    """Rows cast to a stored dataset's dtype (as h5py does on writing into it)."""
    if tuple(value.shape[1:]) != tuple(dataset.shape[1:]):
        raise ValueError(f"rows of {name} have shape {value.shape[1:]}, the stored ones "
                         f"{dataset.shape[1:]}")
    return value.astype(dataset.dtype, copy=False)


def _new_rows(stored: np.ndarray | None, records: dict[str, Any]) -> np.ndarray:
    """Mask of the rows to append: those whose step is neither stored nor repeated before."""
    n = len(np.asarray(next(iter(records.values()))))
    if "step" not in records:
        return np.ones(n, bool)
    seen = {int(s) for s in stored} if stored is not None else set()
    keep = np.zeros(n, bool)
    for i, step in enumerate(np.asarray(records["step"]).tolist()):
        keep[i] = int(step) not in seen
        seen.add(int(step))
    return keep


def truncate_after(handle: Any, step: int) -> None:
    """Drop every row whose step is greater than ``step`` (used when a run resumes)."""
    if isinstance(handle, h5py.Group):
        truncate_h5(handle, step)
    else:
        handle.record(Op("truncate", "", step=int(step)))


# --------------------------------------------------------------------------- damaged or new files

def replace_damaged(run_dir: Path, build: Callable[[h5py.File, Path | None], None]) -> Path | None:
    """If the metrics file is damaged (it cannot be opened, or a dataset cannot be read), move
    it aside as ``metrics.h5.damaged-<time>`` and write a new one with ``build(handle, aside)``;
    return the path it was moved to (None when the file was sound or absent).

    The damaged file is never deleted or modified: whatever a later tool can still read in it
    stays there; so is its journal, moved to ``metrics.journal.damaged-<time>``. Done under the
    metrics lock, so no writer sees the file missing in between.
    """
    run_dir = Path(run_dir)
    path = inside_run(run_dir, run_dir / FILENAME)
    with _locked(run_dir):
        journal.clean_temporaries(run_dir)
        if not path.exists() or readable(path):
            return None
        stamp = time.strftime('%Y%m%d-%H%M%S')
        aside = path.with_name(f"{FILENAME}.damaged-{stamp}")
        while aside.exists():  # two recoveries in one second: never overwrite the first
            aside = aside.with_name(aside.name + "x")
        os.replace(path, aside)
        journal.move_aside(run_dir, aside.name.replace(f"{FILENAME}.", "", 1))
        _write_new(run_dir, lambda handle: build(handle, aside))
        return aside


def rebuild_missing(run_dir: Path, build: Callable[[h5py.File, Path | None], None]) -> None:
    """Write a metrics file with ``build(handle, None)`` where none exists (under the lock)."""
    run_dir = Path(run_dir)
    with _locked(run_dir):
        journal.clean_temporaries(run_dir)
        if not inside_run(run_dir, run_dir / FILENAME).exists():  # a dangling link out is refused
            _write_new(run_dir, lambda handle: build(handle, None))


def _write_new(run_dir: Path, build: Callable[[h5py.File], None]) -> None:
    """A new metrics file written to a temporary name and renamed into place (lock held); the
    entries of the file it replaces, if any, no longer count (new journal id) and are deleted."""
    tmp = run_dir / f".{FILENAME}.tmp{os.getpid()}"
    journal_id = journal.new_id()
    try:
        with h5py.File(tmp, "w") as handle:
            handle.attrs["layout_version"] = LAYOUT_VERSION
            handle.attrs["run_name"] = run_dir.name
            handle.attrs["journal_id"] = journal_id
            build(handle)
        _fsync(tmp)
        os.replace(tmp, run_dir / FILENAME)
    finally:
        tmp.unlink(missing_ok=True)
    journal.retire(run_dir, journal_id)


def readable(path: Path) -> bool:
    """Whether HDF5 opens the file and reads every dataset in it. A file of another layout
    version counts as readable: it is not damaged, and its reader says how to rewrite it."""
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


def _open(file: Path, mode: str, shown: Path) -> h5py.File:
    """``h5py.File(file, mode)``, a damaged file raising :class:`DamagedMetrics` in one line
    whose advice keeps the data: analysis and resume rebuild it (:func:`recover`)."""
    try:
        return h5py.File(file, mode)
    except OSError as err:
        if not file.exists():  # replaced between a look and the open: read again
            raise journal.Vanished(str(file)) from None
        raise _damaged(shown, err) from None


def _damaged(path: Path, err: BaseException) -> DamagedMetrics:
    reason = str(err).split("(")[0].strip().rstrip(":") or type(err).__name__
    return DamagedMetrics(f"{path} is damaged ({reason}); 'interp analyze {path.parent}' moves it "
                          f"aside and rebuilds it from the checkpoints")


def _check_version(root_attrs: dict, path: Path) -> None:
    version = int(root_attrs.get("layout_version", -1))
    if version != LAYOUT_VERSION:
        raise StoreError(f"{path} has metrics layout {version}, this interp reads {LAYOUT_VERSION}; "
                         f"move it aside and rerun 'interp analyze' to rewrite it")


# --------------------------------------------------------------------------- reading

def _missing(path: Path) -> StoreError:
    return StoreError(f"{path} does not exist yet; train the run (or wait for its first checkpoint)")


@contextmanager
def read(run_dir: Path) -> Iterator[Group]:
    """A read-only handle on the metrics (metrics.h5 with its journal), h5py-like; refuses
    other layout versions with a clear message. Every journal entry is opened (and its
    checksums checked) at the start, so the handle reads one state however long it is held."""
    path = Path(run_dir) / FILENAME
    if not path.is_file():
        raise _missing(path)
    state = _load(Path(run_dir), writer=False, pin=True)
    try:
        _check_version(state.tree.root.attrs, path)
        try:
            yield state.view(writable=False).root()
        except OSError as err:  # a dataset whose blocks are damaged, found on reading it
            raise _damaged(path, err) from None
    finally:
        state.close()


def _reading(run_dir: Path, question: Callable[[Group], Any]) -> Any:
    """``question(root)`` on the metrics; started again without an entry found damaged on the
    way (each such entry is warned about once and skipped), or when a compaction deleted one."""
    run_dir = Path(run_dir)
    path = run_dir / FILENAME
    for _ in range(10_000):  # each pass skips one more damaged entry, or follows a compaction
        state = _load(run_dir, writer=False, pin=False)
        try:
            _check_version(state.tree.root.attrs, path)
            return question(state.view(writable=False).root())
        except EntryDamaged as err:
            journal.mark_damaged(err.path, err.reason)
        except journal.Vanished:
            continue
        finally:
            state.close()
    raise StoreError(f"{path} could not be read; try again")


def series(run_dir: Path, group: str) -> dict[str, np.ndarray]:
    """Every dataset of a group as numpy arrays, plus its attrs under ``attrs``."""
    def question(root: Group) -> dict[str, Any]:
        if group not in root:
            return {}
        out: dict[str, Any] = {name: ds[()] for name, ds in root[group].items() if not isinstance(ds, Group)}
        out["attrs"] = dict(root[group].attrs)
        return out
    return _reading(run_dir, question)


def series_by_step(run_dir: Path, group: str) -> dict[str, np.ndarray]:
    """:func:`series` with rows sorted by ``step`` (rows may be appended out of order)."""
    rows = series(run_dir, group)
    if not len(rows.get("step", [])):
        return rows
    order = np.argsort(rows["step"])
    return {k: (v[order] if k != "attrs" else v) for k, v in rows.items()}


def attrs(run_dir: Path, group: str) -> dict[str, Any]:
    """The attributes of ``group`` ({} if the group does not exist yet)."""
    return _reading(run_dir, lambda root: dict(root[group].attrs) if group in root else {})


def steps(run_dir: Path, group: str) -> np.ndarray:
    """Only the ``step`` dataset of ``group`` (cheap: steps are read when the view is built)."""
    def question(root: Group) -> np.ndarray:
        if group in root and "step" in root[group]:
            return root[group]["step"][()]
        return np.zeros(0, int)
    return _reading(run_dir, question)
