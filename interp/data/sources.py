"""Where documents come from: one iterator per ``data.source`` and a fingerprint of the corpus.

Every text source yields ``(name, text)`` pairs in a stable order. The name matters: the
held-out split is decided by a hash of it, so it must not change between runs or machines
(relative paths, line numbers, row numbers; never absolute paths). Empty documents are
skipped, and ``data.max_bytes`` cuts the stream after that many UTF-8 bytes.

The ``tokens`` source holds token ids instead of text; :func:`open_token_array` validates
the array and :func:`iter_token_documents` yields its documents as id arrays.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from interp.config import DataConfig
from interp.errors import DataError

log = logging.getLogger("interp")

Document = tuple[str, str]  # (name, text)

_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__"}
_GLOB_CHARS = set("*?[")
_BINARY_SNIFF = 8192  # bytes inspected for a NUL to call a file binary
_HASH_CHUNK = 1 << 22  # tokens hashed per chunk of a pre-tokenised array


# --------------------------------------------------------------------------- text documents

def iter_documents(cfg: DataConfig) -> Iterator[Document]:
    """Yield ``(name, text)`` for each non-empty document of a text source, within max_bytes."""
    if cfg.source == "markov":
        return iter(())
    if cfg.source == "tokens":
        raise DataError("data.source=tokens holds token ids, not text; "
                        "use open_token_array / iter_token_documents for it")
    return _limit_bytes(_TEXT_SOURCES[cfg.source](cfg), cfg.max_bytes)


def _limit_bytes(docs: Iterable[Document], max_bytes: int) -> Iterator[Document]:
    """Skip empty documents; stop once ``max_bytes`` UTF-8 bytes are out (0 = no limit)."""
    budget = max_bytes
    for name, text in docs:
        if not text:
            continue
        if max_bytes:
            data = text.encode("utf-8")
            if len(data) >= budget:
                text = data[:budget].decode("utf-8", errors="ignore")
                if text:
                    yield name, text
                return
            budget -= len(data)
        yield name, text


def stdlib_root() -> Path:
    """The running interpreter's standard library directory."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path) -> list[str]:
    """Relative paths of every ``*.py`` under ``root``, outside site-/dist-packages, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        base = Path(dirpath)
        found += [(base / f).relative_to(root).as_posix() for f in filenames if f.endswith(".py")]
    return sorted(found)


def _stdlib(cfg: DataConfig) -> Iterator[Document]:
    root = stdlib_root()
    for rel in stdlib_files(root):
        text = _read_text(root / rel)
        if text is not None:
            yield rel, text


def _files(cfg: DataConfig) -> Iterator[Document]:
    not_utf8: list[str] = []
    try:
        for name, path in resolve_files(cfg.path):
            text = _read_text(path, not_utf8)
            if text is None:
                log.debug("skipping binary or unreadable file %s", path)
                continue
            yield name, text
    finally:  # also when the reader stops early (data.max_bytes)
        _warn_not_utf8(not_utf8)


# Files named in the warning about text that is not UTF-8; the rest are counted.
_NOT_UTF8_NAMED = 3


def _warn_not_utf8(paths: list[str]) -> None:
    """One warning for every file read with invalid UTF-8 (its bad bytes became U+FFFD)."""
    if not paths:
        return
    named = ", ".join(paths[:_NOT_UTF8_NAMED])
    more = f" and {len(paths) - _NOT_UTF8_NAMED} more" if len(paths) > _NOT_UTF8_NAMED else ""
    log.warning("%d file(s) of the corpus are not valid UTF-8 (%s%s): their invalid bytes were "
                "replaced by U+FFFD; convert them first (for example 'iconv -f latin1 -t utf-8')",
                len(paths), named, more)


def _jsonl(cfg: DataConfig) -> Iterator[Document]:
    key = cfg.text_field
    for name, path in resolve_files(cfg.path, suffixes=(".jsonl", ".json", ".ndjson")):
        with open(path, encoding="utf-8", errors="replace") as handle:
            for lineno, line in enumerate(handle, 1):
                if line.strip():
                    yield f"{name}:{lineno:09d}", _jsonl_text(line, key, path, lineno)


def _jsonl_text(line: str, key: str, path: Path, lineno: int) -> str:
    """The text field of one JSON line, or a DataError naming the file and line."""
    where = f"{path} line {lineno}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{where} is not valid JSON ({err.msg}); each line must be one "
                        f"JSON object with a '{key}' field") from None
    if not isinstance(obj, dict) or key not in obj:
        keys = ", ".join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise DataError(f"{where} has no '{key}' field (found: {keys or 'nothing'}); "
                        f"set data.text_field to the field that holds the text")
    text = obj[key]
    if text is None:
        return ""
    if not isinstance(text, str):
        raise DataError(f"{where}: field '{key}' is {type(text).__name__}, not a string; "
                        f"set data.text_field to a text field")
    return text


def _dictd(cfg: DataConfig) -> Iterator[Document]:
    """Each entry of each dictd dictionary named by its ``.index`` file (:mod:`interp.data.dictd`)."""
    from interp.data import dictd  # only this source reads the format
    for name, path in resolve_files(cfg.path, suffixes=(".index",)):
        for headword, text in dictd.entries(path):
            yield f"{name}:{headword}", text


def _hf(cfg: DataConfig) -> Iterator[Document]:
    dataset = open_hf_dataset(cfg)
    key = cfg.text_field
    if key not in dataset.column_names:
        raise DataError(f"dataset '{cfg.path}' (split '{cfg.split}') has no column '{key}'; "
                        f"set data.text_field to one of: {', '.join(dataset.column_names)}")
    row = 0
    for batch in dataset.select_columns([key]).iter(batch_size=1000):
        for text in batch[key]:
            if text is not None and not isinstance(text, str):
                raise DataError(f"dataset '{cfg.path}' row {row}: column '{key}' holds "
                                f"{type(text).__name__}, not text; set data.text_field")
            yield f"row{row:09d}", text or ""
            row += 1


def open_hf_dataset(cfg: DataConfig) -> Any:
    """A ``datasets.Dataset``: a ``save_to_disk`` folder, else ``datasets.load_dataset``."""
    import datasets  # slow to import and only needed here

    path = Path(cfg.path).expanduser()
    if _is_saved_dataset(path):
        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as err:  # noqa: BLE001 - any failure is a bad folder to the user
            raise DataError(f"could not read the saved dataset at '{path}' ({_first_line(err)}); "
                            f"save it again with Dataset.save_to_disk") from None
        if isinstance(loaded, datasets.DatasetDict):
            if cfg.split not in loaded:
                raise DataError(f"dataset at '{path}' has no split '{cfg.split}'; "
                                f"set data.split to one of: {', '.join(loaded)}")
            loaded = loaded[cfg.split]
        return loaded
    if not path.exists() and cfg.path.startswith((".", "/", "~")):
        raise DataError(f"data.path '{cfg.path}' does not exist; give a save_to_disk folder, a "
                        f"folder of data files or a Hugging Face dataset name")
    try:
        return datasets.load_dataset(cfg.path, split=cfg.split)
    except Exception as err:  # noqa: BLE001 - hub, network and format errors alike
        raise DataError(f"could not load Hugging Face dataset '{cfg.path}' split '{cfg.split}' "
                        f"({_first_line(err)}); check data.path and data.split "
                        f"(offline, it must be a local folder or already cached)") from None


def _is_saved_dataset(path: Path) -> bool:
    """True for a folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return path.is_dir() and ((path / "dataset_dict.json").is_file()
                              or (path / "state.json").is_file())


_TEXT_SOURCES: dict[str, Callable[[DataConfig], Iterator[Document]]] = {
    "stdlib": _stdlib, "files": _files, "jsonl": _jsonl, "dictd": _dictd, "hf": _hf,
}


# --------------------------------------------------------------------------- files

def resolve_files(spec: str, suffixes: tuple[str, ...] = ()) -> list[tuple[str, Path]]:
    """``(name, path)`` of a file, of the files under a directory, or of a glob's matches.

    Names are the file name, the path relative to the directory, or the matched path, so
    they stay the same wherever the corpus is read from. Hidden files and folders are
    skipped in directories; ``suffixes`` (if given) filters directory listings only.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return [(path.name, path)]
    if path.is_dir():
        found = sorted(_walk_files(path, suffixes))
        if not found:
            raise DataError(f"directory '{spec}' holds no files; put text files in it "
                            f"or point data.path at another directory")
        return [(rel, path / rel) for rel in found]
    if _GLOB_CHARS & set(spec):
        matches = sorted(m for m in glob.glob(os.path.expanduser(spec), recursive=True)
                         if os.path.isfile(m))
        if not matches:
            raise DataError(f"glob '{spec}' matches no files; check the pattern "
                            f"(use ** with a / for subdirectories)")
        return [(m, Path(m)) for m in matches]
    raise DataError(f"data.path '{spec}' does not exist; give a text file, a directory "
                    f"or a glob pattern")


def _walk_files(root: Path, suffixes: tuple[str, ...]) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or (suffixes and not name.endswith(suffixes)):
                continue
            full = Path(dirpath) / name
            if full.is_file():
                yield full.relative_to(root).as_posix()


def _read_text(path: Path, not_utf8: list[str] | None = None) -> str | None:
    """UTF-8 text of a file (bad bytes replaced), or None if binary or unreadable.

    A file with invalid UTF-8 is still read (one bad byte should not drop a document), and
    its path is appended to ``not_utf8`` so that the caller can say so.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        log.warning("skipping unreadable file %s (%s)", path, err.strerror)
        return None
    if b"\0" in data[:_BINARY_SNIFF]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        if not_utf8 is not None:
            not_utf8.append(str(path))
        return data.decode("utf-8", errors="replace")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


# --------------------------------------------------------------------------- token arrays

def open_token_array(cfg: DataConfig) -> np.ndarray:
    """The validated ``.npy`` of a ``tokens`` source: [n_tokens] or [n_docs, doc_len] ints."""
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise DataError(f"data.path '{cfg.path}' does not exist; give a .npy file of token ids")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"'{path}' is not a readable .npy array ({_first_line(err)}); save the "
                        f"token ids with numpy.save as an integer array") from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"'{path}' is an .npz archive; save one integer array with numpy.save")
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"'{path}' holds {array.dtype} values, not integer token ids; "
                        f"save the ids with an integer dtype (e.g. uint16 or int32)")
    if array.ndim not in (1, 2) or array.size == 0:
        raise DataError(f"'{path}' has shape {tuple(array.shape)}; give a non-empty 1-D token "
                        f"stream or a 2-D array with one document per row")
    low, high = _min_max(array)
    if low < 0:
        raise DataError(f"'{path}' holds negative token ids (min {low}); token ids must be >= 0")
    if high >= 2**32:
        raise DataError(f"'{path}' holds token id {high}, too large for uint32 token storage; "
                        f"remap the ids below 2**32")
    return array


def _min_max(array: np.ndarray) -> tuple[int, int]:
    """Smallest and largest id, read in chunks so a large memory-mapped array stays on disk."""
    flat = array.reshape(-1)
    lows, highs = [], []
    for start in range(0, flat.size, _HASH_CHUNK):
        chunk = np.asarray(flat[start:start + _HASH_CHUNK])
        lows.append(int(chunk.min()))
        highs.append(int(chunk.max()))
    return min(lows), max(highs)


def iter_token_documents(array: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, ids)`` per document: the whole stream of a 1-D array, or each row of a 2-D one."""
    if array.ndim == 1:
        yield "tokens", array
        return
    for row in range(array.shape[0]):
        yield f"row{row:09d}", array[row]


# --------------------------------------------------------------------------- fingerprints

@dataclass
class CorpusScan:
    """One read of a corpus: its fingerprint and its document names in order.

    The names are kept because the held-out split is decided from them before the
    (expensive) tokenizer training and encoding passes.
    """

    fingerprint: dict[str, Any]
    names: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  # UTF-8 bytes (text) or tokens (ids) per doc


def scan_corpus(cfg: DataConfig) -> CorpusScan:
    """Read the corpus once to fingerprint it; raise a DataError if it has no text."""
    if cfg.source == "markov":
        return CorpusScan({"kind": "markov", "states": cfg.markov_states,
                           "alpha": cfg.markov_alpha})
    if cfg.source == "tokens":
        return _scan_tokens(cfg)
    digest = hashlib.sha256()
    scan = CorpusScan({})
    for name, text in iter_documents(cfg):
        data = text.encode("utf-8")
        digest.update(name.encode("utf-8") + b"\0" + len(data).to_bytes(8, "little") + data)
        scan.names.append(name)
        scan.sizes.append(len(data))
    where = "the Python standard library" if cfg.source == "stdlib" else f"'{cfg.path}'"
    if not scan.names:
        raise DataError(f"corpus at {where} has no text; point data.path at non-empty "
                        f"text files (or check data.text_field / data.max_bytes)")
    fingerprint: dict[str, Any] = {"kind": cfg.source, "path": _corpus_path(cfg)}
    if cfg.source == "stdlib":
        fingerprint["python"] = ".".join(map(str, sys.version_info[:3]))
    if cfg.source == "hf":
        fingerprint["split"] = cfg.split
    if cfg.source in ("jsonl", "hf"):
        fingerprint["text_field"] = cfg.text_field
    fingerprint.update(documents=len(scan.names), bytes=sum(scan.sizes),
                       max_bytes=cfg.max_bytes, sha256=digest.hexdigest())
    scan.fingerprint = fingerprint
    return scan


def corpus_fingerprint(cfg: DataConfig) -> dict[str, Any]:
    """JSON-serialisable identity of the corpus: kind, path, counts, bytes and a sha256.

    The hash covers each document's name and text in order, so a renamed file (which may
    move between the train and held-out splits) changes it too. For ``stdlib`` the Python
    version is recorded: the corpus differs between versions.
    """
    return scan_corpus(cfg).fingerprint


def _corpus_path(cfg: DataConfig) -> str:
    if cfg.source == "stdlib":
        return str(stdlib_root())
    path = Path(cfg.path).expanduser()
    return str(path.resolve()) if path.exists() else cfg.path  # a glob or a hub name as given


def _scan_tokens(cfg: DataConfig) -> CorpusScan:
    array = open_token_array(cfg)
    digest = hashlib.sha256(f"{array.dtype.str}{tuple(array.shape)}".encode())
    flat = array.reshape(-1)
    for start in range(0, flat.size, _HASH_CHUNK):
        digest.update(np.ascontiguousarray(flat[start:start + _HASH_CHUNK]).tobytes())
    names = [name for name, _ in iter_token_documents(array)]
    rows = 1 if array.ndim == 1 else array.shape[0]
    sizes = [array.shape[-1]] * rows
    fingerprint = {"kind": "tokens", "path": _corpus_path(cfg), "shape": list(array.shape),
                   "dtype": array.dtype.str, "documents": len(names),
                   "bytes": int(array.nbytes), "max_id": _min_max(array)[1],
                   "sha256": digest.hexdigest()}
    return CorpusScan(fingerprint, names, sizes)
