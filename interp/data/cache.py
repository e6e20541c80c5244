"""The token cache: a corpus tokenised once, stored as memory-mapped arrays, reused by every run.

Layout, under ``<root>/tokens/<key>/`` (root = ``data.cache_dir``, ``$INTERP_CACHE`` or
``~/.cache/interp``; key = a hash of the corpus fingerprint, the tokenizer, the BPE vocabulary
size, ``heldout_fraction`` and ``max_bytes``)::

    meta.json          what was cached: fingerprints, dtype, vocabulary, special ids, counts
    tokenizer.json     the trained or loaded tokenizer (when it has a fast backend)
    train.bin          [n_train_tokens] raw uint16 (vocab <= 65536) or uint32 token ids
    train_docs.npy     [n_train_docs + 1] int64 offsets of each document in train.bin
    heldout.bin        [n_heldout_tokens] held-out token ids, same dtype
    heldout_docs.npy   [n_heldout_docs + 1] int64 offsets
    counts.npy         [vocab_size] int64 count of each id in train.bin

Documents are stored back to back with no separators; a dataset inserts end-of-text tokens
itself when it packs documents together. A cache is built in a temporary folder and renamed
into place, under a file lock, so a reader never sees half a cache and two processes never
build the same one twice. A folder without ``meta.json`` (an interrupted build) is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from interp.config import DataConfig
from interp.data.sources import (CorpusScan, Document, iter_documents, iter_token_documents,
                                 open_token_array, scan_corpus)
from interp.data.tokenizer import Tokenizer, load_tokenizer, load_tokenizer_file, train_bpe
from interp.errors import DataError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locking, the atomic rename still holds
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("interp")

FORMAT_VERSION = 1
_ENCODE_CHUNK_BYTES = 4 << 20  # text handed to one encode_batch call
_ENCODE_CHUNK_DOCS = 2048
_WRITE_CHUNK = 1 << 22  # tokens copied per write from a pre-tokenised array


@dataclass
class TokenCache:
    """A built cache, its arrays memory-mapped read-only from disk."""

    path: Path
    meta: dict[str, Any]
    tokenizer: Tokenizer | None  # None for a pre-tokenised array given without a tokenizer
    train: np.ndarray  # [n_train_tokens] uint16 | uint32
    train_docs: np.ndarray  # [n_train_docs + 1] int64
    heldout: np.ndarray  # [n_heldout_tokens]
    heldout_docs: np.ndarray  # [n_heldout_docs + 1] int64
    counts: np.ndarray  # [vocab_size] int64


def cache_root(cfg: DataConfig) -> Path:
    """``data.cache_dir``, else ``$INTERP_CACHE``, else ``~/.cache/interp``."""
    return Path(cfg.cache_dir or os.environ.get("INTERP_CACHE") or "~/.cache/interp").expanduser()


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype holding every id of a vocabulary."""
    if vocab_size <= 2**16:
        return np.dtype(np.uint16)
    if vocab_size <= 2**32:
        return np.dtype(np.uint32)
    raise DataError(f"a vocabulary of {vocab_size:,} ids does not fit uint32 token storage; "
                    f"use a tokenizer with at most 2**32 ids")


def name_hash(name: str) -> float:
    """A stable number in [0, 1) from a document name (the same on every run and machine)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") / 2**64


def heldout_names(names: list[str], fraction: float) -> set[str]:
    """Documents set aside: those whose name hashes below ``fraction``.

    Small corpora may hash none (or all) of their documents low, so at least one document
    (the last by name) is held out and at least one (the first by name) is kept for training.
    A single document is not split here: its tail is held out instead (see the builders).
    """
    if len(names) < 2:
        return set()
    held = {n for n in names if name_hash(n) < fraction}
    ordered = sorted(names)
    if not held:
        held.add(ordered[-1])
    if len(held) == len(names):
        held.discard(ordered[0])
    return held


def cache_key(cfg: DataConfig, corpus: dict[str, Any], tokenizer: Tokenizer | None) -> str:
    """Hash of everything that changes the cached tokens (not the corpus's absolute path)."""
    trained = cfg.source != "tokens" and cfg.tokenizer == "bpe"
    ident = {"format": FORMAT_VERSION,
             "corpus": {k: v for k, v in corpus.items() if k != "path"},
             "tokenizer": tokenizer.fingerprint["sha256"] if tokenizer else cfg.tokenizer,
             "vocab_size": cfg.vocab_size if trained else None,
             "heldout_fraction": cfg.heldout_fraction, "max_bytes": cfg.max_bytes}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def open_cache(cfg: DataConfig) -> TokenCache:
    """The token cache for ``cfg``, built first if missing or incomplete."""
    scan = scan_corpus(cfg)
    tokenizer = None if cfg.tokenizer == "bpe" else load_tokenizer(cfg.tokenizer)
    key = cache_key(cfg, scan.fingerprint, tokenizer)
    folder = cache_root(cfg) / "tokens"
    final = folder / key
    cached = _try_open(final, tokenizer)
    if cached is not None:
        log.info("using token cache %s", final)
        return cached
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create the cache folder '{folder}' ({err.strerror}); set "
                        f"data.cache_dir or $INTERP_CACHE to a writable folder") from None
    with _locked(folder / f"{key}.lock"):
        cached = _try_open(final, tokenizer)  # another process may have built it meanwhile
        if cached is None:
            _build(final, cfg, scan, tokenizer)
            cached = _try_open(final, tokenizer)
    if cached is None:
        raise DataError(f"the token cache at '{final}' cannot be read after building it; "
                        f"delete that folder and try again")
    return cached


def open_cache_by_key(root: Path, key: str) -> TokenCache | None:
    """The complete cache ``key`` under ``root``, or None; scans no corpus and builds nothing.

    For a run made before runs carried their own data (:mod:`interp.rundata`): its recorded
    cache key finds the tokens this user built for it, without following its config's paths.
    ``key`` comes from a run's files, so anything but a bare hex digest is refused (None).
    """
    if not re.fullmatch(r"[0-9a-f]{8,64}", str(key)):
        return None
    return _try_open(Path(root) / "tokens" / key, None)


# --------------------------------------------------------------------------- reading

def _try_open(path: Path, tokenizer: Tokenizer | None) -> TokenCache | None:
    """The cache at ``path``, or None when it is missing, incomplete or corrupt."""
    if not (path / "meta.json").is_file():
        if path.exists():
            log.warning("token cache %s is incomplete (no meta.json); rebuilding it", path)
        return None
    try:
        meta = json.loads((path / "meta.json").read_text())
        if meta.get("format") != FORMAT_VERSION:
            return None
        dtype = np.dtype(meta["dtype"])
        arrays = {split: _open_split(path, split, dtype, meta[split]["tokens"])
                  for split in ("train", "heldout")}
        counts = np.load(path / "counts.npy", allow_pickle=False)
        if tokenizer is None and meta["tokenizer"] is not None:
            tok = meta["tokenizer"]
            tokenizer = load_tokenizer_file(path / "tokenizer.json", tok["name"],
                                            tok["bos_token_id"], tok["eot_token_id"])
    except (OSError, ValueError, KeyError, TypeError, DataError) as err:
        log.warning("token cache %s is corrupt (%s); rebuilding it", path, err)
        return None
    return TokenCache(path, meta, tokenizer, *arrays["train"], *arrays["heldout"], counts)


def _open_split(path: Path, split: str, dtype: np.dtype,
                n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens [n_tokens] memmap, offsets [n_docs + 1] int64) of one split, sizes checked."""
    bin_path = path / f"{split}.bin"
    if bin_path.stat().st_size != n_tokens * dtype.itemsize:
        raise ValueError(f"{bin_path.name} has the wrong size")
    tokens = (np.memmap(bin_path, dtype=dtype, mode="r", shape=(n_tokens,)) if n_tokens
              else np.zeros(0, dtype=dtype))  # numpy cannot map an empty file
    offsets = np.load(path / f"{split}_docs.npy", allow_pickle=False)
    if offsets.ndim != 1 or offsets[0] != 0 or offsets[-1] != n_tokens:
        raise ValueError(f"{split}_docs.npy does not match {bin_path.name}")
    return tokens, offsets


# --------------------------------------------------------------------------- building

class _SplitWriter:
    """Appends documents' ids to ``<split>.bin`` and records their offsets (and counts)."""

    def __init__(self, folder: Path, split: str, dtype: np.dtype, vocab_size: int) -> None:
        self.folder, self.split, self.dtype = folder, split, dtype
        self.handle = open(folder / f"{split}.bin", "wb")
        self.offsets = [0]
        self.counts = np.zeros(vocab_size, dtype=np.int64)
        self._uncounted: list[np.ndarray] = []  # counted in bulk: one bincount per document
        self._n_uncounted = 0  # would cost O(vocab) each, too much for big vocabularies

    def add(self, ids: np.ndarray) -> None:
        """One document's ids (any integer array, possibly memory-mapped); empty ones dropped."""
        if len(ids) == 0:
            return
        for start in range(0, len(ids), _WRITE_CHUNK):
            piece = np.asarray(ids[start:start + _WRITE_CHUNK]).astype(self.dtype, copy=False)
            self.handle.write(piece.tobytes())
            self._uncounted.append(piece)
            self._n_uncounted += len(piece)
            if self._n_uncounted >= _WRITE_CHUNK:
                self._count()
        self.offsets.append(self.offsets[-1] + len(ids))

    def _count(self) -> None:
        if self._uncounted:
            ids = np.concatenate(self._uncounted)
            self.counts += np.bincount(ids, minlength=len(self.counts))[:len(self.counts)]
        self._uncounted, self._n_uncounted = [], 0

    def close(self) -> dict[str, int]:
        self._count()
        self.handle.close()
        np.save(self.folder / f"{self.split}_docs.npy", np.asarray(self.offsets, dtype=np.int64))
        return {"documents": len(self.offsets) - 1, "tokens": self.offsets[-1]}


def _build(final: Path, cfg: DataConfig, scan: CorpusScan, tokenizer: Tokenizer | None) -> None:
    """Build the cache in a temporary folder next to ``final``, then rename it into place."""
    started = time.perf_counter()
    for stale in final.parent.glob(f".build-{final.name}-*"):  # left by a killed build; we
        shutil.rmtree(stale, ignore_errors=True)  # hold the lock, so no one else is using it
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{final.name}-", dir=final.parent))
    try:
        build = _build_tokens if cfg.source == "tokens" else _build_text
        meta = build(cfg, scan, tokenizer, tmp)
        meta.update(format=FORMAT_VERSION, key=final.name, source=cfg.source,
                    corpus=scan.fingerprint, heldout_fraction=cfg.heldout_fraction,
                    max_bytes=cfg.max_bytes, build_seconds=round(time.perf_counter() - started, 2))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("cached %s train / %s held-out tokens in %s (%.1f s)", f"{meta['train']['tokens']:,}",
             f"{meta['heldout']['tokens']:,}", final, time.perf_counter() - started)


def _build_text(cfg: DataConfig, scan: CorpusScan, tokenizer: Tokenizer | None,
                out: Path) -> dict[str, Any]:
    held = heldout_names(scan.names, cfg.heldout_fraction)
    single = len(scan.names) == 1
    if tokenizer is None:
        tokenizer = _train_tokenizer(cfg, scan, held)
    tokenizer.save(out / "tokenizer.json")
    dtype = token_dtype(tokenizer.vocab_size)
    writers = {s: _SplitWriter(out, s, dtype, tokenizer.vocab_size) for s in ("train", "heldout")}
    log.info("tokenising %.1f MB with %s...", sum(scan.sizes) / 1e6, tokenizer.name)
    for chunk in _chunks(iter_documents(cfg)):
        names = [name for name, _ in chunk]
        for name, ids in zip(names, tokenizer.encode_batch([text for _, text in chunk])):
            _route(writers, np.asarray(ids, dtype=dtype), name in held, single, cfg.heldout_fraction)
    return _finish(writers, tokenizer, tokenizer.vocab_size, dtype, single)


def _route(writers: dict, ids: np.ndarray, held_out: bool, single: bool, fraction: float) -> None:
    """Send a document's ids to its split; a lone document gives its tail to the held-out one."""
    if single:
        cut = _tail_cut(len(ids), fraction)
        writers["train"].add(ids[:cut])
        writers["heldout"].add(ids[cut:])
    else:
        writers["heldout" if held_out else "train"].add(ids)


def _train_tokenizer(cfg: DataConfig, scan: CorpusScan, held: set[str]) -> Tokenizer:
    """Train the BPE on training documents only (the head of a lone document)."""
    keep = 1 - cfg.heldout_fraction
    n_bytes = sum(size for name, size in zip(scan.names, scan.sizes) if name not in held)
    log.info("training BPE (vocab %d) on %.1f MB...", cfg.vocab_size, n_bytes / 1e6)
    texts = (text[:math.floor(len(text) * keep)] if len(scan.names) == 1 else text
             for name, text in iter_documents(cfg) if name not in held)
    return train_bpe(texts, cfg.vocab_size, length=len(scan.names) - len(held))


def _build_tokens(cfg: DataConfig, scan: CorpusScan, tokenizer: Tokenizer | None,
                  out: Path) -> dict[str, Any]:
    array = open_token_array(cfg)
    high = scan.fingerprint["max_id"]
    if tokenizer is not None and high >= tokenizer.vocab_size:
        raise DataError(f"'{cfg.path}' holds token id {high} but tokenizer '{tokenizer.name}' has "
                        f"only {tokenizer.vocab_size} ids; set data.tokenizer to the tokenizer "
                        f"that made these ids, or to bpe to use the ids alone")
    vocab_size = tokenizer.vocab_size if tokenizer is not None else high + 1
    dtype = token_dtype(vocab_size)
    if tokenizer is not None:
        tokenizer.save(out / "tokenizer.json")
    held = heldout_names(scan.names, cfg.heldout_fraction)
    single = len(scan.names) == 1
    writers = {s: _SplitWriter(out, s, dtype, vocab_size) for s in ("train", "heldout")}
    for name, ids in iter_token_documents(array):
        _route(writers, ids, name in held, single, cfg.heldout_fraction)
    return _finish(writers, tokenizer, vocab_size, dtype, single)


def _finish(writers: dict[str, _SplitWriter], tokenizer: Tokenizer | None, vocab_size: int,
            dtype: np.dtype, single: bool) -> dict[str, Any]:
    """Close the split files, save the counts and describe them for meta.json."""
    sizes = {split: writer.close() for split, writer in writers.items()}
    np.save(writers["train"].folder / "counts.npy", writers["train"].counts)
    return {**sizes, "vocab_size": vocab_size, "dtype": dtype.name,
            "tokenizer": tokenizer.fingerprint if tokenizer is not None else None,
            "split_rule": "single document: its last heldout_fraction of tokens held out"
                          if single else "documents whose name hashes below heldout_fraction"}


def _tail_cut(n_tokens: int, fraction: float) -> int:
    """Where a lone document splits: its last ``fraction`` (at least one token) is held out."""
    return max(0, n_tokens - max(1, math.ceil(n_tokens * fraction)))


def _chunks(docs: Iterable[Document]) -> Iterator[list[Document]]:
    """Groups of documents of about ``_ENCODE_CHUNK_BYTES`` for one ``encode_batch`` call."""
    chunk: list[Document] = []
    size = 0
    for doc in docs:
        chunk.append(doc)
        size += len(doc[1])
        if size >= _ENCODE_CHUNK_BYTES or len(chunk) >= _ENCODE_CHUNK_DOCS:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (waiting, with a message, if another holds it)."""
    with open(path, "a") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another process building the token cache (%s)", path)
                fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)
