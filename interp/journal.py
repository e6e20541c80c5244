"""The journal of a run's metrics: each update's operations in a small HDF5 file of its own.

Folder ``metrics.journal/`` beside ``metrics.h5``; one entry per ``store.update`` that did
not compact, named ``<journal id>-<sequence>.h5``. The journal id is a random hex string in
the root attributes of ``metrics.h5`` (``journal_id``): an entry belongs to the file whose id
it carries, so when a compaction (or a rebuild) puts a new ``metrics.h5`` in place, with a new
id, the entries folded into it stop counting at that instant, whether or not they have been
deleted yet. Sequences count from 1 for each id.

Why entries are safe to read while they are written, and after a ``kill -9``:

- an entry is written to ``.<name>.tmp<pid>``, fsynced, then renamed to its name, so it is
  either absent or whole; a writer killed on the way leaves a temporary that the next writer
  deletes under the metrics lock (no live writer owns one then: writers hold the lock while
  theirs exists). The folder is not fsynced after the rename (neither was metrics.h5's folder
  before the journal): after a power cut the newest update may be missing, never torn;
- readers take the entries of the id they read, in sequence order, and stop being sure at a
  gap: they list again, and only a gap that stays (a file removed by hand) is warned about
  and skipped;
- entries are written with ``libver="latest"`` (checksummed HDF5 metadata) and Fletcher-32
  checksums on their datasets, so damage shows as an error, not as wrong numbers. A damaged
  entry is skipped with a one-line warning (logger ``interp.store``); a compaction keeps it as
  ``<name>.damaged`` (never deleted) instead of folding it.

Layout of an entry: root attributes ``format`` (:data:`FORMAT`), ``journal_id``, ``seq``,
``ops`` (how many), ``manifest`` (JSON: each operation's kind, path and columns' dtypes and
shapes, so that a reader need not open every dataset); then one group per operation, ``0000``, ``0001``, ... with attributes
``op`` and ``path`` and the operation's data (:class:`interp.storeview.Op`): an append's
columns as datasets, an attribute update as the attributes of a subgroup ``values``, a whole
dataset as ``data`` (attribute ``resizable``), a truncation's ``step`` as an attribute.

Parsed entries are cached per process by (path, inode, size, mtime): entries never change
once written, so a writer parses each one once and an update costs the same at the 200th
checkpoint as at the 10th.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from interp.fileio import fsync_path as _fsync
from interp.fileio import inside_run
from interp.storeview import Op, Ref

DIRNAME = "metrics.journal"
FORMAT = "interp-metrics-journal/1"
_ENTRY = re.compile(r"^([0-9a-f]{32})-(\d{8})\.h5$")

log = logging.getLogger("interp.store")


class Vanished(Exception):
    """An entry listed a moment ago is gone: a compaction ran meanwhile; read again."""


@dataclass
class Entry:
    path: Path
    seq: int
    ops: list[Op]
    size: int
    verified: bool = False


def new_id() -> str:
    return uuid.uuid4().hex


def directory(run_dir: Path) -> Path:
    """The journal folder, as an absolute path (entries are known by path across calls);
    :class:`~interp.errors.LinkOutside` if it is a link out of the run folder (nothing is
    read, written or deleted through it)."""
    root = Path(run_dir).absolute()
    return inside_run(root, root / DIRNAME)


# --------------------------------------------------------------------------- writing

def write(run_dir: Path, journal_id: str, seq: int, ops: list[Op]) -> Entry:
    """Write ``ops`` as entry ``seq`` of ``journal_id``: to a temporary, fsynced, renamed."""
    folder = directory(run_dir)
    folder.mkdir(exist_ok=True)
    path = folder / f"{journal_id}-{seq:08d}.h5"
    tmp = folder / f".{path.name}.tmp{os.getpid()}"
    try:
        with h5py.File(tmp, "w", libver="latest") as handle:
            handle.attrs.update(format=FORMAT, journal_id=journal_id, seq=seq, ops=len(ops),
                                manifest=json.dumps([_manifest(op) for op in ops]))
            for k, op in enumerate(ops):
                _write_op(handle.create_group(f"{k:04d}"), op)
        _fsync(tmp)  # the data on disk before the name points at it
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    entry = Entry(path, seq, [_on_disk(op, path, k) for k, op in enumerate(ops)],
                  path.stat().st_size, verified=True)
    _remember(path, entry)  # its writer will not parse it again
    return entry


def _write_op(group: h5py.Group, op: Op) -> None:
    group.attrs.update(op=op.kind, path=op.path)
    if op.kind == "append":
        for name, value in op.columns.items():
            _write_array(group, name, value)
    elif op.kind == "attrs":
        group.create_group("values").attrs.update(op.values)
    elif op.kind == "dataset":
        _write_array(group, "data", op.columns["data"])
        group.attrs["resizable"] = op.resizable
    elif op.kind == "truncate":
        group.attrs["step"] = op.step


def _manifest(op: Op) -> dict[str, Any]:
    """What a reader needs to know of an operation without opening its datasets (opening one
    costs more than reading a small one): kind, path, each column's dtype and shape."""
    return {"op": op.kind, "path": op.path, "resizable": op.resizable, "step": op.step,
            "columns": {name: [np.dtype(v.dtype).str, list(v.shape)] for name, v in op.columns.items()}}


def _write_array(group: h5py.Group, name: str, value: np.ndarray) -> None:
    """One chunk per dataset with a Fletcher-32 checksum (HDF5 needs a chunked layout for it;
    empty and 0-d arrays have no chunks and go without)."""
    if value.ndim and value.size:
        group.create_dataset(name, data=value, chunks=value.shape, fletcher32=True)
    else:
        group.create_dataset(name, data=value)


def _on_disk(op: Op, path: Path, k: int) -> Op:
    """``op`` with its arrays replaced by references into the entry (steps stay in memory)."""
    def ref(name: str, value: Any) -> Any:
        if _eager(op, name):
            return value
        return Ref(str(path), f"/{k:04d}/{name}", tuple(value.shape), np.dtype(value.dtype))
    return replace(op, columns={name: ref(name, v) for name, v in op.columns.items()})


def _eager(op: Op, column: str) -> bool:
    """Steps are kept in memory: every append (duplicates) and truncation needs them, and they
    weigh a few KB. That is an append's ``step`` column, or a whole dataset named ``step``."""
    name = op.path if op.kind == "dataset" else column
    return name.rsplit("/", 1)[-1] == "step"


# --------------------------------------------------------------------------- reading

_cache: dict[tuple, Entry] = {}
_damaged: dict[str, str] = {}
_lock = threading.Lock()
_CACHE_LIMIT = 20000


def load(run_dir: Path, journal_id: str | None, verify: bool = False) -> tuple[list[Entry], int]:
    """The readable entries of ``journal_id`` in order, and the next sequence number.

    Damaged entries are skipped with a warning (once per process). A gap in the sequence is
    looked at again (an entry may have been renamed into place while the folder was listed);
    one that stays is warned about and skipped. ``verify`` reads every dataset once (its
    checksum), so that damage to data is found here rather than when it is used.
    Raises :class:`Vanished` when a listed entry disappears (a compaction ran meanwhile).
    """
    if journal_id is None:
        return [], 1
    for _ in range(3):
        names = _listing(run_dir, journal_id)
        seqs = sorted(names)
        if not seqs or seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[0] == 1:
            break
    else:
        _warn_once(str(directory(run_dir)), f"entries of {journal_id} are missing from the sequence "
                   f"1..{seqs[-1]}; the rest is read")
    entries = [entry for seq in seqs if (entry := _entry(names[seq], seq, journal_id, verify))]
    return entries, (seqs[-1] + 1 if seqs else 1)


def _listing(run_dir: Path, journal_id: str) -> dict[int, Path]:
    folder = directory(run_dir)
    try:
        with os.scandir(folder) as listed:
            entries = list(listed)
    except FileNotFoundError:
        return {}
    found = {}
    for entry in entries:
        match = _ENTRY.match(entry.name)
        if match and match.group(1) == journal_id:
            if entry.is_symlink():  # an entry that links out of the run is refused, not read
                inside_run(folder.parent, folder / entry.name)
            found[int(match.group(2))] = folder / entry.name
    return found


def _entry(path: Path, seq: int, journal_id: str, verify: bool) -> Entry | None:
    if str(path) in _damaged:
        return None
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise Vanished(str(path)) from None
    key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _lock:
        entry = _cache.get(key)
    try:
        if entry is None:
            entry = _parse(path, seq, journal_id, stat.st_size)
        if verify and not entry.verified:
            _verify(path)
            entry.verified = True
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as err:
        if not path.exists():  # deleted by a compaction while being read (h5py may not say so)
            raise Vanished(str(path)) from None
        mark_damaged(str(path), reason(err))
        return None
    _remember(path, entry, key)
    return entry


def _remember(path: Path, entry: Entry, key: tuple | None = None) -> None:
    if key is None:
        stat = path.stat()
        key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _lock:
        if len(_cache) > _CACHE_LIMIT:
            _cache.clear()
        _cache[key] = entry


def _parse(path: Path, seq: int, journal_id: str, size: int) -> Entry:
    """An entry's operations, with references to its data; raises on anything malformed.
    Shapes and dtypes come from the manifest; only steps and attribute values are read."""
    with h5py.File(path, "r") as handle:
        attrs = handle.attrs
        if attrs.get("format") != FORMAT or attrs.get("journal_id") != journal_id or int(attrs["seq"]) != seq:
            raise ValueError("not an entry of this journal")
        manifest = json.loads(attrs["manifest"])
        if len(manifest) != int(attrs["ops"]):
            raise ValueError("its manifest does not list every operation")
        ops = [_parse_op(handle, f"{k:04d}", described, path) for k, described in enumerate(manifest)]
    return Entry(path, seq, ops, size)


def _parse_op(handle: h5py.File, group: str, described: dict[str, Any], path: Path) -> Op:
    kind = described["op"]
    op = Op(kind, str(described["path"]), resizable=bool(described["resizable"]), step=int(described["step"]))
    for name, (dtype, shape) in described["columns"].items():
        stored = f"/{group}/{name}"
        op.columns[name] = (handle[stored][()] if _eager(op, name)
                            else Ref(str(path), stored, tuple(shape), np.dtype(dtype)))
    if kind == "append":
        lengths = {c.shape[0] if c.shape else -1 for c in op.columns.values()}
        if len(lengths) != 1 or lengths.pop() < 1:
            raise ValueError("an append whose columns differ in length")
    elif kind == "attrs":
        op.values = dict(handle[f"{group}/values"].attrs)
    elif kind == "dataset" and "data" not in op.columns:
        raise ValueError("a dataset operation without data")
    elif kind not in ("append", "attrs", "dataset", "group", "delete", "truncate"):
        raise ValueError(f"unknown operation {kind!r}")
    return op


def _verify(path: Path) -> None:
    """Read every dataset once: HDF5 checks each one's Fletcher-32 checksum."""
    def visit(_name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):
            item[()]

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)


def reason(err: BaseException) -> str:
    return str(err).split("(")[0].strip().rstrip(":") or type(err).__name__


def mark_damaged(path: str, reason: str) -> None:
    """Skip this entry from now on in this process, saying so once."""
    with _lock:
        _damaged[path] = reason
    _warn_once(path, f"{path} is damaged ({reason}); skipped: the metrics are read without that "
               f"update (a compaction keeps the file as {Path(path).name}.damaged)")


_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning("%s", message)


def damaged() -> set[str]:
    with _lock:
        return set(_damaged)


# --------------------------------------------------------------------------- housekeeping

def clean_temporaries(run_dir: Path) -> None:
    """Delete what writers killed mid-write left (metrics lock held: no live writer owns any)."""
    for tmp in Path(run_dir).glob(".metrics.h5.tmp*"):
        tmp.unlink(missing_ok=True)
    folder = directory(run_dir)
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp*"):
            tmp.unlink(missing_ok=True)


def retire(run_dir: Path, journal_id: str | None) -> None:
    """After a new ``metrics.h5`` (id ``journal_id``) is in place: entries of other ids are
    folded into it or belong to a file that is gone, so they are deleted, except damaged ones,
    which are kept as ``<name>.damaged``. The folder goes when nothing is left in it."""
    folder = directory(run_dir)
    if not folder.is_dir():
        return
    bad = damaged()
    for path in folder.iterdir():
        match = _ENTRY.match(path.name)
        if not match or match.group(1) == journal_id:
            continue
        if str(path) in bad:
            os.replace(path, path.with_name(path.name + ".damaged"))
        else:
            path.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty: entries of the current id, or damaged ones kept


def move_aside(run_dir: Path, suffix: str) -> Path | None:
    """Rename the journal folder to ``metrics.journal.<suffix>`` (its metrics.h5 was damaged)."""
    folder = directory(run_dir)
    if not folder.is_dir():
        return None
    aside = folder.with_name(f"{DIRNAME}.{suffix}")
    os.replace(folder, aside)
    return aside
