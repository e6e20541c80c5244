"""The interface every token dataset offers the training loop and the measures.

Batches are pure functions of their seeds: ``train_batch(step, batch_size, seed)`` draws from
a generator seeded by ``(seed, step)`` alone, so a resumed run needs only its step number, and
``heldout_batch(n, seed)`` draws from a separate stream that no run's seed reaches, so every
checkpoint of every run on the same data is scored on the same sequences.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol, runtime_checkable

import numpy as np
import torch

# First word of the seed of each random stream; different first words keep them disjoint.
_TRAIN_STREAM = 0x7472_6169  # "trai"
_HELDOUT_STREAM = 0x6865_6C64  # "held"


@runtime_checkable
class TokenDataset(Protocol):
    """Token batches for training and evaluation, and the vocabulary they use."""

    vocab_size: int  # the model's d_vocab (BOS included)
    bos_token_id: int | None  # None when data.prepend_bos is False
    n_ctx: int  # length of every row
    fingerprint: dict[str, Any]  # JSON-serialisable identity of the data, recorded in each run

    def train_batch(self, step: int, batch_size: int, seed: int) -> torch.Tensor:
        """[batch_size, n_ctx] int64 training rows, a deterministic function of (seed, step)."""
        ...

    def heldout_batch(self, n_examples: int, seed: int = 0) -> torch.Tensor:
        """[n_examples, n_ctx] int64 held-out rows, the same for every run on this data."""
        ...

    def token_counts(self) -> np.ndarray:
        """[vocab_size] int64 count of each id in the training split."""
        ...

    def encode(self, text: str) -> list[int]:
        ...

    def decode(self, ids: Iterable[int]) -> str:
        ...

    def describe(self) -> str:
        """One line saying what the data is, e.g. for the CLI and run summaries."""
        ...


def train_rng(seed: int, step: int) -> np.random.Generator:
    """The generator of training batch ``step`` of a run seeded ``seed``."""
    return np.random.default_rng([_TRAIN_STREAM, seed % 2**64, step % 2**64])


def heldout_rng(seed: int) -> np.random.Generator:
    """The generator of held-out sequences; disjoint from every training stream."""
    return np.random.default_rng([_HELDOUT_STREAM, seed % 2**64])


def with_bos(rows: np.ndarray | torch.Tensor, bos_token_id: int | None) -> torch.Tensor:
    """Rows [batch, n] as int64 torch, with a BOS column in front when there is a BOS."""
    rows = torch.as_tensor(rows, dtype=torch.long)
    if bos_token_id is None:
        return rows
    bos = torch.full((rows.shape[0], 1), bos_token_id, dtype=torch.long)
    return torch.cat([bos, rows], dim=1)


def format_tokens(n: int) -> str:
    """Token counts for humans: ``9.1M``, ``0.19M``, ``8,432``."""
    if n >= 10_000_000:
        return f"{n / 1e6:.0f}M"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 10_000:
        return f"{n / 1e6:.2f}M"
    return f"{n:,}"
