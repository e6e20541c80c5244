"""What a run carries of its data (``<run>/data/``), so that it can be analysed and viewed anywhere.

A run folder is what researchers share. Its analysis needs the tokenizer, fixed held-out
sequences and the training split's token counts (the middle-frequency pool of the
repeated-token probe and the copyable set of the copying scores); the app needs the tokenizer
and a held-out sample. Training writes them into the run when it starts, so a copy of the run
needs neither the corpus nor the token cache it was made from::

    data/data.json               format, kind, the data fingerprint (corpus, tokenizer, cache
                                 key, split rule), description, n_ctx, vocab_size, the BOS,
                                 separator and added-BOS ids, the tokenizer's name and special
                                 ids, the held-out sets, and the sha256 and size of each file
    data/tokenizer.json          the tokenizer (``tokenizers`` JSON; absent for bare token ids
                                 or a tokenizer without a fast backend)
    data/token_counts.npy        [vocab_size] int64 count of each id in the training split
    data/heldout-<n>-<seed>.npy  [n, n_ctx] the corpus's ``heldout_batch(n, seed)``, BOS included

Arrays are ``.npy`` files written and read with ``allow_pickle=False``: nothing is pickled.
Markov runs carry only data.json: their sequences are a function of the config's numbers.

**Policy: a run folder from elsewhere is untrusted input.**

- ``interp analyze``, ``interp report`` and the app read only files inside the run folder and
  this user's own token cache. They never follow ``data.path`` or ``data.cache_dir`` from a
  run's config.json (a shared run could name /etc/passwd as its corpus or a system folder as
  its cache), and they write nothing outside the run folder except, for an old stdlib run,
  this user's own cache (below).
- A symbolic link in the run folder is followed only when it resolves inside it; a run that
  holds a link out of its folder is refused in one line (:mod:`interp.fileio`), and the
  files of ``data/`` must lie in ``data/`` itself (below).
- Only training reads the corpus a config names: ``interp train`` with the config the user
  gives, and ``interp train --resume RUN``, which continues RUN on the data its config.json
  names (read a foreign config.json before resuming it).
- A run made before runs carried their data gets ``data/`` on its first ``interp analyze``,
  from this user's token cache (``$INTERP_CACHE`` or ``~/.cache/interp``, never the run's
  ``data.cache_dir``), found by the cache key in its run.json: it is there only if this user
  built that corpus and tokenizer. A run on the standard library with the trained BPE is
  rebuilt from this Python's standard library when the key matches (no path is read from
  the config). Otherwise the one-line error says to analyse it where its cache is (set
  ``$INTERP_CACHE`` to it) or to resume it where its corpus is (training writes ``data/``).
- Held-out sets other than the one carried (``--icl-examples N``) come from the same cache in
  the same way and are added to ``data/``; without the cache, the error names the sets the run
  carries.
- Sizes are bounded before anything is allocated: the config by the limits of
  :mod:`interp.config` (``read_config``), each file here by its size and its ``.npy`` header
  (``MAX_*`` below, checked against the config), a checkpoint's tensors by the shapes its
  config implies (:func:`interp.checkpoints.load_model`).

Torch-free on import (the app's runs and curves views import none); the dataset classes of
:mod:`interp.data` are imported where a dataset is opened.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from interp.config import MODEL_LIMITS, TRAIN_LIMITS, DataConfig, RunConfig
from interp.errors import DataError
from interp.fileio import sha256_file as _sha256
from interp.runs import read_config, read_run_info, write_json_atomic

log = logging.getLogger("interp")

FOLDER = "data"
FORMAT = 1
HELDOUT_EXAMPLES = 256  # the held-out set every run carries: the analysis's default icl_examples
HELDOUT_SEED = 0
MAX_JSON_BYTES = 4 << 20  # data.json: a fingerprint and a few numbers
MAX_TOKENIZER_BYTES = 64 << 20  # tokenizer.json: 1.4 MB for GPT-2, under 20 MB for large vocabularies
MAX_EXAMPLES = TRAIN_LIMITS["eval_examples"]
_FILE_NAME = re.compile(r"tokenizer\.json|token_counts\.npy|heldout-\d{1,6}-\d{1,10}\.npy")


def heldout_file(examples: int, seed: int) -> str:
    return f"heldout-{examples}-{seed}.npy"


# --------------------------------------------------------------------------- opening

def open_run_data(run_dir: str | Path, config: RunConfig | None = None, write: bool = False):
    """The dataset a run's analysis and app use, from the run folder (policy in the module
    docstring): a :class:`RunData` over ``data/``, a Markov dataset for Markov runs, or, for a
    run made before runs carried their data, this user's cached tokens for it (then, with
    ``write``, saved into the run's ``data/`` first). Raises a one-line DataError."""
    run_dir = Path(run_dir)
    config = config or read_config(run_dir)
    if config.data.source == "markov":
        from interp.data import MarkovDataset

        return MarkovDataset(config.data, config.model.n_ctx)  # reads no file
    if (run_dir / FOLDER / "data.json").is_file():
        return RunData(run_dir / FOLDER, config)
    source = user_cache_dataset(run_dir, config)
    if source is None:
        raise DataError(f"'{run_dir}' carries no tokenizer or probes (made before runs carried them) "
                        f"and {_no_cache(run_dir)}, or run 'interp train --resume {run_dir}' where its "
                        f"corpus is (training stores them in the run)")
    if not write:
        return source
    save_run_data(run_dir, source)
    log.info("%s: stored its tokenizer and probes in %s (made before runs carried them)",
             run_dir, run_dir / FOLDER)
    return RunData(run_dir / FOLDER, config)


def analysis_data(run_dir: str | Path, config: RunConfig, examples: int, seed: int):
    """:func:`open_run_data` (writing ``data/`` when missing) with the held-out set
    ``(examples, seed)`` the analysis asks for; a set the run does not carry is built from this
    user's cache for the run and added to ``data/``."""
    data = open_run_data(run_dir, config, write=True)
    if not isinstance(data, RunData) or data.has_heldout(examples, seed):
        return data
    source = user_cache_dataset(Path(run_dir), config)
    if source is None:
        carried = " or ".join(f"--icl-examples {n}" for n, s in data.heldout_sets() if s == seed) or "none"
        raise DataError(f"'{run_dir}' carries held-out sequences for {carried} only, and "
                        f"{_no_cache(run_dir)}; or analyse it with {carried}")
    add_heldout(run_dir, source, examples, seed)
    return RunData(Path(run_dir) / FOLDER, config)


def user_cache_dataset(run_dir: Path, config: RunConfig):
    """The run's dataset from this user's token cache, found by the cache key its run.json
    records (None if this user has no cache for it); never from the paths in its config."""
    from interp.data import CachedTextDataset, cache_root
    from interp.data.cache import open_cache_by_key

    key = _recorded_key(run_dir)
    if key is None:
        return None
    cache = open_cache_by_key(cache_root(DataConfig()), key) or _rebuild_stdlib(config, key)
    if cache is None:
        return None
    data = CachedTextDataset(config.data, config.model.n_ctx, cache)
    _check_vocab(data.vocab_size, config, f"the token cache {cache.path}")
    return data


def _recorded_key(run_dir: Path) -> str | None:
    data = read_run_info(run_dir).get("data")
    key = data.get("cache_key") if isinstance(data, dict) else None
    return key if isinstance(key, str) else None


def _no_cache(run_dir: Path) -> str:
    """Why the user's cache cannot help, and what to do: half of an error line."""
    from interp.data import cache_root

    root = cache_root(DataConfig())
    return (f"this user's token cache {root} has none for it (key {_recorded_key(run_dir) or 'not recorded'}); "
            f"analyse it where its cache is (set $INTERP_CACHE to that folder)")


def _rebuild_stdlib(config: RunConfig, key: str):
    """For a standard-library run with the trained BPE: this Python's standard library through
    this user's cache, if it gives the run's cache key. The stdlib source reads no path from
    the config, and ``cache_dir`` is dropped, so nothing the run names is followed."""
    from interp.data.cache import cache_key, open_cache
    from interp.data.sources import scan_corpus

    cfg = config.data
    if cfg.source != "stdlib" or cfg.tokenizer != "bpe":
        return None
    safe = DataConfig(source="stdlib", vocab_size=cfg.vocab_size, max_bytes=cfg.max_bytes,
                      heldout_fraction=cfg.heldout_fraction, packing=cfg.packing,
                      prepend_bos=cfg.prepend_bos)
    if cache_key(safe, scan_corpus(safe).fingerprint, None) != key:
        return None  # another Python version: its stdlib is another corpus
    log.info("rebuilding the token cache of this Python's standard library for %s", key)
    return open_cache(safe)


def _check_vocab(vocab_size: int, config: RunConfig, where: str) -> None:
    if config.model.d_vocab and vocab_size != config.model.d_vocab:
        raise DataError(f"{where} has {vocab_size} token ids but the run's config.json says "
                        f"model.d_vocab={config.model.d_vocab}; the run folder is inconsistent")


# --------------------------------------------------------------------------- writing

def save_run_data(run_dir: str | Path, data) -> None:
    """Write ``data/`` for ``data`` (a dataset of :mod:`interp.data`) unless the run has it.

    Built in a hidden temporary folder and renamed into place, so a reader never sees part of
    it; data.json, which lists the other files with their sha256, is written last.
    """
    run_dir = Path(run_dir)
    final = run_dir / FOLDER
    if (final / "data.json").is_file():
        return
    tmp = run_dir / f".{FOLDER}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        meta = _write_files(tmp, data)
        (tmp / "data.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        if final.is_symlink() or final.is_file():  # nothing this code writes: never follow it
            final.unlink()
        elif final.exists():  # a folder without data.json: left by nothing this code writes
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_files(folder: Path, data) -> dict[str, Any]:
    """The files of ``data/`` in ``folder``; returns data.json's content."""
    meta: dict[str, Any] = {"format": FORMAT, "fingerprint": data.fingerprint,
                            "description": data.describe(), "n_ctx": int(data.n_ctx),
                            "vocab_size": int(data.vocab_size), "bos_token_id": data.bos_token_id,
                            "heldout": [], "files": {}}
    if data.fingerprint.get("source") == "markov":
        return {**meta, "kind": "markov"}
    tokenizer = data.tokenizer
    meta.update(kind="text", extra_bos_token_id=data.extra_bos_token_id, tokenizer=None)
    if tokenizer is not None:
        meta["tokenizer"] = {"name": tokenizer.name, "bos_token_id": tokenizer.bos_token_id,
                             "eot_token_id": tokenizer.eot_token_id}
        if not tokenizer.save(folder / "tokenizer.json"):
            log.warning("tokenizer %s has no tokenizer.json form; the run carries its token ids "
                        "but not its text", tokenizer.name)
    np.save(folder / "token_counts.npy", np.asarray(data.token_counts(), dtype=np.int64), allow_pickle=False)
    _save_heldout(folder / heldout_file(HELDOUT_EXAMPLES, HELDOUT_SEED), data, HELDOUT_EXAMPLES, HELDOUT_SEED)
    meta["heldout"].append({"examples": HELDOUT_EXAMPLES, "seed": HELDOUT_SEED,
                            "file": heldout_file(HELDOUT_EXAMPLES, HELDOUT_SEED)})
    meta["files"] = {p.name: _file_record(p) for p in sorted(folder.iterdir()) if p.name != "data.json"}
    return meta


def _save_heldout(path: Path, data, examples: int, seed: int) -> None:
    """``data.heldout_batch(examples, seed)`` as .npy at ``path``, in the smallest id dtype."""
    from interp.data.cache import token_dtype

    rows = data.heldout_batch(examples, seed=seed).numpy()
    with open(path, "wb") as handle:  # np.save on a path would add its own .npy suffix
        np.save(handle, rows.astype(token_dtype(data.vocab_size)), allow_pickle=False)


def add_heldout(run_dir: str | Path, data, examples: int, seed: int) -> None:
    """Add the held-out set ``(examples, seed)`` of ``data`` to the run's ``data/`` (the caller
    holds the run's analysis lock, so data.json has one writer)."""
    if not _int(examples, 1, MAX_EXAMPLES) or not _int(seed, 0, 2**32):
        raise DataError(f"held-out sets hold 1 to {MAX_EXAMPLES} sequences, not {examples}")
    folder = Path(run_dir) / FOLDER
    meta = json.loads((folder / "data.json").read_text())
    final = folder / heldout_file(examples, seed)
    tmp = folder / f".{final.name}.tmp{os.getpid()}"
    try:
        _save_heldout(tmp, data, examples, seed)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    meta["heldout"] = [s for s in meta["heldout"] if (s["examples"], s["seed"]) != (examples, seed)]
    meta["heldout"].append({"examples": examples, "seed": seed, "file": final.name})
    meta["files"][final.name] = _file_record(final)
    write_json_atomic(folder / "data.json", meta)


def _file_record(path: Path) -> dict[str, Any]:
    return {"sha256": _sha256(path), "bytes": path.stat().st_size}


# --------------------------------------------------------------------------- reading

class RunData:
    """The dataset a run carries in ``data/``: what analysis and the app use, no corpus.

    Offers the :class:`interp.data.TokenDataset` interface except training batches:
    ``heldout_batch(n, seed)`` returns a carried set exactly (a DataError names the carried
    ones otherwise), ``token_counts``, ``encode``, ``decode``, ``describe``, and the
    ``tokenizer``, ``fingerprint``, ``vocab_size``, ``bos_token_id`` and ``n_ctx`` attributes.
    Every file is checked against data.json (size and sha256) and the config (shapes, id
    ranges) before it is used.
    """

    def __init__(self, folder: Path, config: RunConfig) -> None:
        self.folder, self.n_ctx = Path(folder), config.model.n_ctx
        meta = self._read_meta(config)
        self.meta, self.fingerprint = meta, meta["fingerprint"]
        self.vocab_size = meta["vocab_size"]
        self.bos_token_id = meta["bos_token_id"]
        self.extra_bos_token_id = meta.get("extra_bos_token_id")
        self.tokenizer = self._read_tokenizer()
        self._sets = {(s["examples"], s["seed"]): s["file"] for s in meta["heldout"]}

    # ----------------------------------------------------------------------- dataset

    def heldout_sets(self) -> list[tuple[int, int]]:
        """The (examples, seed) held-out sets carried, sorted."""
        return sorted(self._sets)

    def has_heldout(self, examples: int, seed: int = 0) -> bool:
        return (examples, seed) in self._sets

    def heldout_batch(self, n_examples: int, seed: int = 0):
        """[n_examples, n_ctx] int64: the corpus's ``heldout_batch(n_examples, seed)`` as carried."""
        import torch

        if not self.has_heldout(n_examples, seed):
            carried = ", ".join(f"{n} (seed {s})" for n, s in self.heldout_sets())
            raise DataError(f"{self.folder} carries held-out sets of {carried} sequences, not "
                            f"{n_examples} (seed {seed})")
        name = self._sets[(n_examples, seed)]
        rows = self._array(name, (n_examples, self.n_ctx))
        if rows.size and (rows.min() < 0 or rows.max() >= self.vocab_size):
            raise DataError(f"{self.folder / name} holds ids outside the vocabulary of {self.vocab_size}")
        return torch.from_numpy(rows.astype(np.int64))

    def token_counts(self) -> np.ndarray:
        """[vocab_size] int64 count of each id in the training split."""
        return self._array("token_counts.npy", (self.vocab_size,)).astype(np.int64)

    def encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            raise DataError("this run carries no tokenizer (bare token ids, or one without a "
                            "tokenizer.json form), so typed text cannot be encoded")
        return self.tokenizer.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        from interp.data.text import decode_ids

        return decode_ids(self.tokenizer, self.extra_bos_token_id, ids)

    def describe(self) -> str:
        return f"{self.meta.get('description', '?')} (carried by the run)"

    # ----------------------------------------------------------------------- checks

    def _read_meta(self, config: RunConfig) -> dict[str, Any]:
        path = self.folder / "data.json"
        self._check_size(path, MAX_JSON_BYTES)
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise self._damaged(f"data.json cannot be read ({type(err).__name__})") from None
        ok = (isinstance(meta, dict) and meta.get("format") == FORMAT and meta.get("kind") == "text"
              and isinstance(meta.get("fingerprint"), dict) and isinstance(meta.get("files"), dict)
              and isinstance(meta.get("heldout"), list) and _int(meta.get("vocab_size"), 1, MODEL_LIMITS["d_vocab"])
              and meta.get("n_ctx") == config.model.n_ctx
              and all(_id_or_none(meta.get(k), meta["vocab_size"]) for k in ("bos_token_id", "extra_bos_token_id"))
              and _id_or_none(meta["fingerprint"].get("eot_token_id"), meta["vocab_size"])
              and all(isinstance(s, dict) and _int(s.get("examples"), 1, MAX_EXAMPLES) and _int(s.get("seed"), 0, 2**32)
                      and s.get("file") == heldout_file(s["examples"], s["seed"]) for s in meta["heldout"])
              and all(_FILE_NAME.fullmatch(str(name)) and isinstance(r, dict) for name, r in meta["files"].items()))
        if not ok:
            raise self._damaged("data.json is not a data record of this interp, or does not match "
                                "config.json (n_ctx, vocabulary)")
        _check_vocab(meta["vocab_size"], config, str(path))
        return meta

    def _read_tokenizer(self):
        from interp.data.tokenizer import load_tokenizer_file

        spec = self.meta.get("tokenizer")
        if not isinstance(spec, dict) or "tokenizer.json" not in self.meta["files"]:
            return None
        path = self._verified("tokenizer.json", MAX_TOKENIZER_BYTES)
        vocab = self.vocab_size
        if not all(_id_or_none(spec.get(k), vocab) for k in ("bos_token_id", "eot_token_id")):
            raise self._damaged("data.json's tokenizer ids are outside the vocabulary")
        tokenizer = load_tokenizer_file(path, str(spec.get("name", "tokenizer.json"))[:100],
                                        spec.get("bos_token_id"), spec.get("eot_token_id"))
        if tokenizer.vocab_size > vocab:
            raise self._damaged(f"tokenizer.json has {tokenizer.vocab_size} ids, more than the run's {vocab}")
        return tokenizer

    def _array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A carried .npy of exactly ``shape`` and an integer dtype; its header is read first,
        so a file claiming another size is refused before its data is read."""
        path = self._verified(name, 8 * int(np.prod(shape)) + 4096)
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise self._damaged(f"{name} cannot be read ({str(err).splitlines()[0][:100]})") from None
        if array.shape != shape or array.dtype.kind not in "iu":
            raise self._damaged(f"{name} holds {array.dtype} {array.shape}, not integers of shape {shape}")
        return np.array(array)

    def _verified(self, name: str, max_bytes: int) -> Path:
        """``name`` if data.json lists it and it has the recorded size and sha256."""
        record, path = self.meta["files"].get(name), self.folder / name
        if not isinstance(record, dict):
            raise self._damaged(f"data.json does not list {name}")
        self._check_size(path, max_bytes)
        if path.stat().st_size != record.get("bytes") or _sha256(path) != record.get("sha256"):
            raise self._damaged(f"{name} differs from its record in data.json")
        return path

    def _check_size(self, path: Path, max_bytes: int) -> None:
        """Refuse a file that is not inside the run folder (a link out of it: a run from
        elsewhere must not make us read /etc/...) or is larger than it can need."""
        try:
            inside = path.resolve().is_relative_to(self.folder.parent.resolve())
            size = path.stat().st_size
        except OSError as err:
            raise self._damaged(f"{path.name} cannot be read ({err.strerror})") from None
        if not inside or path.parent.resolve() != self.folder.parent.resolve() / FOLDER:
            raise self._damaged(f"{path.name} links outside the run folder")
        if size > max_bytes:
            raise self._damaged(f"{path.name} is {size:,} bytes, more than the {max_bytes:,} it can need")

    def _damaged(self, what: str) -> DataError:
        return DataError(f"{self.folder}: {what}; the run's data folder is damaged: copy it again from "
                         f"where the run was made, or move it aside and analyse the run where its token "
                         f"cache is")


def _int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _id_or_none(value: Any, vocab_size: int) -> bool:
    return value is None or _int(value, 0, vocab_size - 1)
