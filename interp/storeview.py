"""The merged view of a run's metrics: ``metrics.h5`` with its journal replayed on top, in memory.

:mod:`interp.store` never edits ``metrics.h5`` in place. Readers and writers build a view: the
groups, attributes and dataset shapes of ``metrics.h5`` (the data stays on disk and is read on
demand; only ``step`` datasets, a few KB, are read at once, because every append and every
truncation needs them), then the journal's operations (:mod:`interp.journal`) replayed on it in
order. A writer records its own operations on the same view, so what it reads inside
``store.update`` includes what it wrote, and the journal stores them when the update ends.

An operation (:class:`Op`) is one of

- ``append``: rows added to the series of a group (already stripped of steps stored before);
- ``attrs``: attributes set on a group;
- ``group`` / ``dataset``: a group, or a whole dataset, created (a dataset replaces one of that
  name);
- ``delete``: a group or dataset removed;
- ``truncate``: every top-level group with a ``step`` dataset cut to its rows with step <= s.

Each has two appliers that must agree: :meth:`Tree.apply` on the view, and :func:`apply_h5` on
a real HDF5 file, which is how a compaction folds the journal into a new ``metrics.h5``
(``tests/test_store.py`` replays random operation sequences both ways and compares).

The handles (:class:`Group`, :class:`Dataset`, :class:`Attrs`) are the part of h5py's
interface that interp uses: membership, item access, iteration, ``attrs``, reading with
``ds[()]`` or a slice, and inside an update ``create_group``, ``require_group``,
``create_dataset``, ``del`` and attribute writes. Writing into part of a dataset
(``ds[i] = x``, ``resize``) has no journal form: :func:`interp.store.rewrite` gives a real
h5py file for that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from interp.errors import InterpError


class StoreError(InterpError):
    """A metrics file that is missing, unreadable or of another layout version."""


class DamagedMetrics(StoreError):
    """A metrics file that HDF5 cannot open (truncated, overwritten, not HDF5)."""


class EntryDamaged(StoreError):
    """A journal entry whose data HDF5 cannot read back (its checksum or structure is wrong)."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path} is damaged ({reason})")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class Ref:
    """A dataset on disk, read when asked for: ``file`` and the dataset's ``name`` in it."""
    file: str
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


Source = "np.ndarray | Ref"


@dataclass
class Op:
    """One recorded change (kinds in the module docstring). ``columns`` holds the rows of an
    append (name -> array or :class:`Ref`), or ``{"data": ...}`` for a dataset."""
    kind: str
    path: str = ""
    columns: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    resizable: bool = False

    def nbytes(self) -> int:
        """Bytes of data the operation carries (what it adds to a journal entry)."""
        return sum(int(np.prod(c.shape)) * np.dtype(c.dtype).itemsize for c in self.columns.values())


@dataclass
class GroupNode:
    attrs: dict[str, Any] = field(default_factory=dict)
    children: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataNode:
    """A dataset as the concatenation along axis 0 of the leading ``rows`` of each source."""
    pieces: list[tuple[Any, int]]
    dtype: np.dtype
    tail: tuple[int, ...]
    resizable: bool
    scalar: bool = False

    @classmethod
    def of(cls, source: Any, resizable: bool) -> DataNode:
        shape = tuple(source.shape)
        if not shape:
            return cls([(source, 0)], np.dtype(source.dtype), (), False, scalar=True)
        return cls([(source, shape[0])], np.dtype(source.dtype), shape[1:], resizable)

    @property
    def rows(self) -> int:
        return sum(n for _, n in self.pieces)

    @property
    def shape(self) -> tuple[int, ...]:
        return () if self.scalar else (self.rows, *self.tail)

    def keep(self, rows: int) -> None:
        """Keep only the first ``rows`` rows."""
        kept, left = [], rows
        for source, n in self.pieces:
            if left <= 0:
                break
            kept.append((source, min(n, left)))
            left -= n
        self.pieces = kept


def split(path: str) -> tuple[str, str]:
    """(parent path, last name) of a slash path; the root's parent is ''."""
    path = path.strip("/")
    head, _, name = path.rpartition("/")
    return head, name


def join(base: str, name: str) -> str:
    name = name.strip("/")
    return f"{base}/{name}" if base and name else (base or name)


class Sources:
    """How a view reads its sources: arrays as they are; :class:`Ref` through ``read_ref``
    (the leading ``rows`` rows, or all of a 0-d dataset for None), and ``read_ref_into``
    (those rows straight into ``out``, without a copy)."""

    def read(self, source: Any, rows: int | None = None) -> np.ndarray:
        if isinstance(source, Ref):
            return self.read_ref(source, rows)
        return source if rows is None else source[:rows]

    def read_into(self, source: Any, rows: int, out: np.ndarray) -> None:
        if isinstance(source, Ref):
            self.read_ref_into(source, rows, out)
        else:
            out[...] = source[:rows]

    def read_ref(self, ref: Ref, rows: int | None) -> np.ndarray:
        raise NotImplementedError

    def read_ref_into(self, ref: Ref, rows: int, out: np.ndarray) -> None:
        out[...] = self.read_ref(ref, rows)


class Tree:
    """The view's nodes and how each operation changes them, reading data through ``sources``."""

    def __init__(self, root: GroupNode, sources: Sources):
        self.root, self.sources = root, sources

    def find(self, path: str) -> Any:
        node = self.root
        for name in filter(None, path.strip("/").split("/")):
            if not isinstance(node, GroupNode) or name not in node.children:
                return None
            node = node.children[name]
        return node

    def require(self, path: str) -> GroupNode:
        """The group at ``path``, created with its missing parents (as h5py's require_group)."""
        node = self.root
        for name in filter(None, path.strip("/").split("/")):
            node = node.children.setdefault(name, GroupNode())
            if not isinstance(node, GroupNode):
                raise TypeError(f"'{path}' is a dataset, not a group")
        return node

    def read(self, node: DataNode) -> np.ndarray:
        """The dataset's values (a numpy scalar for a 0-d dataset, as h5py's ``ds[()]``)."""
        if node.scalar:
            return self.sources.read(node.pieces[0][0])[()]
        pieces = [(source, n) for source, n in node.pieces if n]
        if len(pieces) == 1:
            return np.asarray(self.sources.read(*pieces[0])).astype(node.dtype, copy=False)
        out = np.empty(node.shape, node.dtype)  # each piece read into its place: no second copy
        at = 0
        for source, n in pieces:
            self.sources.read_into(source, n, out[at:at + n])
            at += n
        return out

    def apply(self, op: Op) -> None:
        getattr(self, f"_apply_{op.kind}")(op)

    def _apply_append(self, op: Op) -> None:
        group = self.require(op.path)
        for name, source in op.columns.items():
            node = group.children.get(name)
            if isinstance(node, DataNode):
                node.pieces.append((source, source.shape[0]))
            else:
                group.children[name] = DataNode.of(source, resizable=True)

    def _apply_attrs(self, op: Op) -> None:
        self.require(op.path).attrs.update(op.values)

    def _apply_group(self, op: Op) -> None:
        self.require(op.path)

    def _apply_dataset(self, op: Op) -> None:
        head, name = split(op.path)
        self.require(head).children[name] = DataNode.of(op.columns["data"], op.resizable)

    def _apply_delete(self, op: Op) -> None:
        head, name = split(op.path)
        parent = self.find(head)
        if isinstance(parent, GroupNode):
            parent.children.pop(name, None)

    def _apply_truncate(self, op: Op) -> None:
        for group in self.root.children.values():
            step = group.children.get("step") if isinstance(group, GroupNode) else None
            if not isinstance(step, DataNode):
                continue
            keep = int(np.sum(self.read(step) <= op.step))
            for node in group.children.values():
                if isinstance(node, DataNode) and not node.scalar and node.rows > keep:
                    node.keep(keep)


# --------------------------------------------------------------------------- the same on HDF5

def apply_h5(handle: h5py.File, op: Op, read: Callable[[Any], np.ndarray]) -> None:
    """Apply ``op`` to an open HDF5 file (a compaction), as :meth:`Tree.apply` does to the view."""
    group = handle.require_group(op.path) if op.path and op.kind in ("append", "attrs", "group") else handle
    if op.kind == "append":
        write_rows(group, {name: read(source) for name, source in op.columns.items()})
    elif op.kind == "attrs":
        group.attrs.update(op.values)
    elif op.kind == "dataset":
        if op.path in handle:
            del handle[op.path]
        _create(handle, op.path, read(op.columns["data"]), op.resizable)
    elif op.kind == "delete":
        if op.path in handle:
            del handle[op.path]
    elif op.kind == "truncate":
        truncate_h5(handle, op.step)
    elif op.kind != "group":
        raise ValueError(f"unknown metrics operation {op.kind!r}")


def _create(parent: h5py.Group, name: str, value: np.ndarray, resizable: bool) -> h5py.Dataset:
    if resizable and value.ndim:
        return parent.create_dataset(name, data=value, maxshape=(None, *value.shape[1:]), chunks=True)
    return parent.create_dataset(name, data=value)


def write_rows(group: h5py.Group, columns: dict[str, np.ndarray]) -> None:
    """Append rows to the datasets of ``group``, creating resizable ones where missing."""
    for name, value in columns.items():
        if name not in group:
            _create(group, name, value, resizable=True)
            continue
        dataset = group[name]
        start = dataset.shape[0]
        dataset.resize(start + len(value), axis=0)
        dataset[start:] = value


def truncate_h5(handle: h5py.File, step: int) -> None:
    """Drop every row whose step is greater than ``step`` in each top-level group with steps.

    A dataset written whole (not resizable: ``phase/step``) is rewritten with its first rows,
    where h5py's resize would refuse it."""
    for group in handle.values():
        if not isinstance(group, h5py.Group) or "step" not in group:
            continue
        keep = int(np.sum(group["step"][()] <= step))
        for name, dataset in list(group.items()):
            if not isinstance(dataset, h5py.Dataset) or not dataset.shape or dataset.shape[0] <= keep:
                continue
            if dataset.chunks is not None and dataset.maxshape[0] is None:
                dataset.resize(keep, axis=0)
            else:
                rows = dataset[:keep]
                del group[name]
                group.create_dataset(name, data=rows)


# --------------------------------------------------------------------------- h5py-like handles

class View:
    """A tree with its handles; ``record`` (set inside an update) takes the writes."""

    def __init__(self, tree: Tree, record: Callable[[Op], None] | None = None,
                 normalise: Callable[[dict], dict] | None = None):
        self.tree, self._record, self._normalise = tree, record, normalise

    def root(self) -> Group:
        return Group(self, "")

    def write(self, op: Op) -> None:
        if self._record is None:
            raise TypeError("the metrics were opened for reading; write inside interp.store.update")
        self._record(op)

    def attr_values(self, values: dict) -> dict:
        return self._normalise(values) if self._normalise else dict(values)

    def handle(self, path: str, node: Any) -> Group | Dataset:
        return Group(self, path) if isinstance(node, GroupNode) else Dataset(self, path)


class Group:
    """A group of the view (see the module docstring for what it offers)."""

    def __init__(self, view: View, path: str):
        self._view, self._path = view, path.strip("/")

    @property
    def name(self) -> str:
        return "/" + self._path

    def _node(self) -> GroupNode:
        node = self._view.tree.find(self._path)
        if not isinstance(node, GroupNode):
            raise KeyError(f"group '{self.name}' does not exist (deleted in this update?)")
        return node

    @property
    def attrs(self) -> Attrs:
        return Attrs(self._view, self._path)

    def __contains__(self, name: str) -> bool:
        return self._view.tree.find(join(self._path, name)) is not None

    def __getitem__(self, name: str) -> Group | Dataset:
        path = join(self._path, name)
        node = self._view.tree.find(path)
        if node is None:
            raise KeyError(f"'{name}' is not in '{self.name}'")
        return self._view.handle(path, node)

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._node().children))

    def __len__(self) -> int:
        return len(self._node().children)

    def keys(self) -> list[str]:
        return list(self)

    def values(self) -> list:
        return [self[name] for name in self]

    def items(self) -> list[tuple[str, Any]]:
        return [(name, self[name]) for name in self]

    def create_group(self, name: str) -> Group:
        if name in self:
            raise ValueError(f"Unable to create group ('{name}' already exists in '{self.name}')")
        path = join(self._path, name)
        self._view.write(Op("group", path))
        return Group(self._view, path)

    def require_group(self, name: str) -> Group:
        if name not in self:
            return self.create_group(name)
        found = self[name]
        if not isinstance(found, Group):
            raise TypeError(f"'{name}' in '{self.name}' is a dataset, not a group")
        return found

    def create_dataset(self, name: str, shape: tuple | None = None, dtype: Any = None,
                       data: Any = None, maxshape: tuple | None = None, **_layout: Any) -> Dataset:
        """A whole dataset; ``maxshape`` with None first makes it a series (appendable).
        Layout keywords (chunks, compression) are h5py's business and are ignored here."""
        if name in self:
            raise ValueError(f"Unable to create dataset ('{name}' already exists in '{self.name}')")
        value = np.zeros(shape, dtype or "f4") if data is None else np.asarray(data, dtype=dtype)
        path = join(self._path, name)
        resizable = bool(maxshape) and maxshape[0] is None
        self._view.write(Op("dataset", path, columns={"data": np.array(value)}, resizable=resizable))
        return Dataset(self._view, path)

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(f"'{name}' is not in '{self.name}'")
        self._view.write(Op("delete", join(self._path, name)))

    def record(self, op: Op) -> None:
        """Take an operation built elsewhere (``store.append``, ``store.truncate_after``)."""
        self._view.write(op)

    def __repr__(self) -> str:
        return f"<metrics group {self.name}>"


class Dataset:
    """A dataset of the view: its shape and dtype without reading, its values when indexed."""

    def __init__(self, view: View, path: str):
        self._view, self._path = view, path

    def _node(self) -> DataNode:
        node = self._view.tree.find(self._path)
        if not isinstance(node, DataNode):
            raise KeyError(f"dataset '/{self._path}' does not exist (deleted in this update?)")
        return node

    name = property(lambda self: "/" + self._path)
    shape = property(lambda self: self._node().shape)
    dtype = property(lambda self: self._node().dtype)
    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: int(np.prod(self.shape)))
    maxshape = property(lambda self: ((None,) if self._node().resizable else self.shape[:1])
                        + self.shape[1:])
    attrs = property(lambda self: {})

    def __len__(self) -> int:
        if self._node().scalar:
            raise TypeError("a scalar dataset has no length")
        return self._node().rows

    def __getitem__(self, key: Any) -> Any:
        return self._view.tree.read(self._node())[key]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        value = np.asarray(self._view.tree.read(self._node()))
        return value.astype(dtype) if dtype is not None else value

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError("metrics datasets are written whole (create_dataset) or by store.append; "
                        "use interp.store.rewrite to change part of one")

    def __repr__(self) -> str:
        return f"<metrics dataset {self.name} {self.shape} {self.dtype}>"


class Attrs(MutableMapping):
    """A group's attributes; inside an update, setting them records one operation per call."""

    def __init__(self, view: View, path: str):
        self._view, self._path = view, path

    def _values(self) -> dict[str, Any]:
        node = self._view.tree.find(self._path)
        if not isinstance(node, GroupNode):
            raise KeyError(f"group '/{self._path}' does not exist")
        return node.attrs

    def __getitem__(self, key: str) -> Any:
        return self._values()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._values()))

    def __len__(self) -> int:
        return len(self._values())

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._values()  # a clear error for a deleted group
        values = self._view.attr_values(dict(*args, **kwargs))
        if values:
            self._view.write(Op("attrs", self._path, values=values))

    def __delitem__(self, key: str) -> None:
        raise TypeError("metrics attributes are set, not deleted; delete and recreate the group")

    def __repr__(self) -> str:
        return f"<metrics attributes of /{self._path}: {dict(self._values())}>"
