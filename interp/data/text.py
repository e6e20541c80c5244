"""A dataset over a cached, tokenised corpus (every source but ``markov``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from interp.config import DataConfig
from interp.data.cache import TokenCache
from interp.data.dataset import format_tokens, heldout_rng, train_rng, with_bos
from interp.data.windows import DocumentWindows, StreamWindows
from interp.errors import DataError

log = logging.getLogger("interp")

# Below this share of the training tokens in documents that hold a window, packing=document
# leaves a material part of the corpus out, and the data layer says so. (FOLDOC's entries: 56%
# at n_ctx 256; pydoc's and the man pages' files: 99.9% and 100%.)
MIN_COVERED = 0.8

_EXTRA_BOS = "<|bos|>"  # how an added BOS id (pre-tokenised arrays) is decoded


def decode_ids(tokenizer, extra_bos: int | None, ids: Iterable[int]) -> str:
    """Text of ``ids``: the tokenizer's decoding, an added BOS id as ``<|bos|>``, and bare ids
    as numbers when there is no tokenizer (a pre-tokenised corpus given without one)."""
    ids = [int(i) for i in ids]
    if tokenizer is None:
        return " ".join(_EXTRA_BOS if i == extra_bos else str(i) for i in ids)
    if extra_bos is None or extra_bos not in ids:
        return tokenizer.decode(ids)
    pieces, run = [], []
    for i in ids + [extra_bos]:
        if i == extra_bos:
            pieces += [tokenizer.decode(run), _EXTRA_BOS]
            run = []
        else:
            run.append(i)
    return "".join(pieces[:-1])


class CachedTextDataset:
    """Training and held-out windows drawn from a :class:`TokenCache`.

    Rows are ``[BOS] + (n_ctx - 1)`` tokens with ``prepend_bos``, else ``n_ctx`` tokens.
    ``packing=document`` keeps each window inside one document; ``concatenate`` lets it
    run across documents joined by the end-of-text token.
    """

    def __init__(self, cfg: DataConfig, n_ctx: int, cache: TokenCache) -> None:
        self.cfg, self.n_ctx, self.cache = cfg, n_ctx, cache
        self.tokenizer = cache.tokenizer
        self.vocab_size = int(cache.meta["vocab_size"])
        self._extra_bos: int | None = None  # an id added past the vocabulary to serve as BOS
        self.bos_token_id = self._choose_bos() if cfg.prepend_bos else None
        separator = self.tokenizer.eot_token_id if self.tokenizer is not None else None
        self._separator = separator if separator is not None else self.bos_token_id
        length = n_ctx - (self.bos_token_id is not None)
        self._train = self._windows(cache.train, cache.train_docs, length)
        self._heldout = self._windows(cache.heldout, cache.heldout_docs, length)
        self._check_fits(length)
        self.fingerprint = self._fingerprint()

    # ----------------------------------------------------------------------- batches

    def train_batch(self, step: int, batch_size: int, seed: int) -> torch.Tensor:
        """[batch_size, n_ctx] int64 windows chosen uniformly, a function of (seed, step) only."""
        index = train_rng(seed, step).integers(0, self._train.total, size=batch_size)
        return with_bos(self._train.gather(index), self.bos_token_id)

    def heldout_batch(self, n_examples: int, seed: int = 0) -> torch.Tensor:
        """[n_examples, n_ctx] int64 distinct held-out windows, the same for every run."""
        rng, total = heldout_rng(seed), self._heldout.total
        if n_examples <= total:
            index = rng.choice(total, size=n_examples, replace=False)
        else:
            log.warning("the held-out split has only %d distinct windows of %d tokens; "
                        "sampling %d with replacement", total, self._heldout.length, n_examples)
            index = rng.integers(0, total, size=n_examples)
        return with_bos(self._heldout.gather(index), self.bos_token_id)

    def token_counts(self) -> np.ndarray:
        """[vocab_size] int64 count of each id in the training documents (BOS/EOT not added)."""
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        counts[:len(self.cache.counts)] = self.cache.counts
        return counts

    # ----------------------------------------------------------------------- text

    def encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            raise DataError("this pre-tokenised corpus has no tokenizer; set data.tokenizer to "
                            "the tokenizer.json (or name) that made its ids to encode text")
        return self.tokenizer.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        return decode_ids(self.tokenizer, self._extra_bos, ids)

    @property
    def extra_bos_token_id(self) -> int | None:
        """The id added past a pre-tokenised vocabulary to serve as BOS (None if none was)."""
        return self._extra_bos

    def describe(self) -> str:
        meta, corpus = self.cache.meta, self.cache.meta["corpus"]
        if corpus["kind"] == "stdlib":
            what = f"Python {corpus['python']}, {corpus['documents']:,} files"
        elif corpus["kind"] == "tokens":
            what = f"{corpus['path']}, shape {tuple(corpus['shape'])}"
        else:
            unit = "files" if corpus["kind"] == "files" else "documents"
            what = f"{corpus['path']}, {corpus['documents']:,} {unit}"
        if corpus["kind"] != "tokens":
            what += f", {corpus['bytes'] / 1e6:.1f} MB"
        vocab = self.tokenizer.name if self.tokenizer is not None else f"ids < {meta['vocab_size']}"
        if self._extra_bos is not None:
            vocab += " + BOS"
        return (f"{corpus['kind']} ({what}) -> {format_tokens(meta['train']['tokens'])} train / "
                f"{format_tokens(meta['heldout']['tokens'])} held-out tokens, {vocab}")

    # ----------------------------------------------------------------------- setup

    def _choose_bos(self) -> int:
        """The tokenizer's BOS (else EOS); for bare token ids, a new id past the vocabulary."""
        if self.tokenizer is not None and self.tokenizer.bos_token_id is not None:
            return self.tokenizer.bos_token_id
        if self.cfg.source != "tokens":
            raise DataError(f"tokenizer '{self.tokenizer.name if self.tokenizer else '?'}' has no "
                            f"BOS or EOS token; set data.prepend_bos=false")
        self._extra_bos = self.vocab_size
        self.vocab_size += 1
        return self._extra_bos

    def _windows(self, tokens: np.ndarray, offsets: np.ndarray,
                 length: int) -> DocumentWindows | StreamWindows:
        if self.cfg.packing == "document":
            return DocumentWindows(tokens, offsets, length)
        return StreamWindows(tokens, offsets, length, self._separator)

    def _check_fits(self, length: int) -> None:
        """Refuse an n_ctx that leaves no training or no held-out window."""
        bos = " (plus BOS)" if self.bos_token_id is not None else ""
        if self._train.total == 0 and self.cfg.packing == "document":
            raise DataError(f"model.n_ctx={self.n_ctx} needs documents of {length} tokens{bos} "
                            f"but the longest training document has {self._train.longest}; "
                            f"lower model.n_ctx or set data.packing=concatenate")
        if self.cfg.packing == "document" and self._train.covered < MIN_COVERED:
            log.warning("only %.0f%% of the training tokens lie in documents of at least %d tokens "
                        "(one window); the rest is never trained on. For a corpus of short "
                        "documents set data.packing=concatenate", 100 * self._train.covered, length)
        if self._train.total == 0:
            raise DataError(f"the training split has only {self._train.longest} tokens, fewer "
                            f"than one window of {length}; add text or lower model.n_ctx")
        if self._heldout.total == 0:
            where = "document" if self.cfg.packing == "document" else "stream"
            also = " or set data.packing=concatenate" if where == "document" else ""
            raise DataError(f"the held-out split is too small for one window of {length} "
                            f"tokens{bos} (its longest {where} has {self._heldout.longest}); "
                            f"raise data.heldout_fraction or lower model.n_ctx{also}")

    def _fingerprint(self) -> dict[str, Any]:
        meta = self.cache.meta
        return {"source": self.cfg.source, "corpus": meta["corpus"], "tokenizer": meta["tokenizer"],
                "cache_key": meta["key"], "vocab_size": self.vocab_size,
                "bos_token_id": self.bos_token_id, "eot_token_id": self._separator,
                "packing": self.cfg.packing, "prepend_bos": self.cfg.prepend_bos,
                "heldout_fraction": self.cfg.heldout_fraction, "max_bytes": self.cfg.max_bytes,
                "split_rule": meta["split_rule"],
                "train": meta["train"], "heldout": meta["heldout"]}

    @property
    def cache_path(self) -> Path:
        """The folder of the token cache (tokenizer.json, arrays, meta.json)."""
        return self.cache.path
