"""Synthetic in-context Markov chains (Edelman et al. 2024).

Every sequence has its own transition matrix, each row drawn from Dirichlet(alpha) over the
states, and starts in a uniform random state. Nothing about one sequence's chain carries to
the next, so the only way to predict well is to count bigrams in context: the task that
"statistical induction heads" solve. Tokens are state ids 0..S-1, and S is the BOS id.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable

import numpy as np
import torch

from interp.config import DataConfig
from interp.data.dataset import heldout_rng, train_rng, with_bos
from interp.errors import DataError

_BOS_TEXT = "<bos>"
_STATE = re.compile(r"s(\d+)")


def sample_log_gamma(alpha: float, shape: tuple[int, ...],
                     generator: torch.Generator) -> torch.Tensor:
    """log of Gamma(alpha, 1) samples [*shape], float64, from an explicit generator.

    Marsaglia and Tsang's rejection sampler on shape ``alpha + 1``, boosted down to ``alpha``
    by ``U ** (1 / alpha)``; staying in log space keeps tiny ``alpha`` from underflowing to 0.
    """
    d = alpha + 1 - 1 / 3
    c = 1 / math.sqrt(9 * d)
    n = math.prod(shape)
    out = torch.empty(n, dtype=torch.float64)
    pending = torch.arange(n)
    while len(pending):  # each round accepts > 95% of what is left
        z = torch.randn(len(pending), generator=generator, dtype=torch.float64)
        u = torch.rand(len(pending), generator=generator, dtype=torch.float64)
        v = (1 + c * z) ** 3
        log_v = torch.log(v.clamp_min(1e-300))
        ok = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * log_v)
        out[pending[ok]] = math.log(d) + log_v[ok]
        pending = pending[~ok]
    boost = torch.rand(n, generator=generator, dtype=torch.float64).clamp_min(1e-300)
    return (out + torch.log(boost) / alpha).reshape(shape)


def sample_chains(n_seqs: int, length: int, states: int, alpha: float,
                  generator: torch.Generator) -> torch.Tensor:
    """[n_seqs, length] int64 state sequences, each from its own random transition matrix.

    All matrices are sampled at once; the chains then advance together, one step per
    position: a uniform draw compared with the cumulative row of the current state.
    """
    probs = torch.softmax(sample_log_gamma(alpha, (n_seqs, states, states), generator), dim=-1)
    cumulative = probs.cumsum(dim=-1)  # [n_seqs, states, states]
    uniforms = torch.rand(n_seqs, length, generator=generator, dtype=torch.float64)
    seqs = torch.empty(n_seqs, length, dtype=torch.long)
    seqs[:, 0] = torch.randint(states, (n_seqs,), generator=generator)
    rows = torch.arange(n_seqs)
    for t in range(1, length):
        cum_row = cumulative[rows, seqs[:, t - 1]]  # [n_seqs, states]
        seqs[:, t] = (uniforms[:, t, None] > cum_row).sum(dim=-1).clamp_(max=states - 1)
    return seqs


def _generator(rng: np.random.Generator) -> torch.Generator:
    """A torch generator seeded from a numpy one, so both streams share one seeding scheme."""
    return torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))


class MarkovDataset:
    """Batches of fresh in-context Markov chains; no corpus, no cache."""

    def __init__(self, cfg: DataConfig, n_ctx: int) -> None:
        self.cfg, self.n_ctx = cfg, n_ctx
        self.states, self.alpha = cfg.markov_states, cfg.markov_alpha
        self.bos_token_id = self.states if cfg.prepend_bos else None
        self.vocab_size = self.states + (1 if cfg.prepend_bos else 0)
        self._length = n_ctx - (1 if cfg.prepend_bos else 0)
        self.fingerprint: dict[str, Any] = {
            "source": "markov", "corpus": {"kind": "markov", "states": self.states,
                                           "alpha": self.alpha},
            "vocab_size": self.vocab_size, "bos_token_id": self.bos_token_id,
            "prepend_bos": cfg.prepend_bos}

    def train_batch(self, step: int, batch_size: int, seed: int) -> torch.Tensor:
        """[batch_size, n_ctx] int64 fresh chains, a function of (seed, step) only."""
        return self._batch(batch_size, _generator(train_rng(seed, step)))

    def heldout_batch(self, n_examples: int, seed: int = 0) -> torch.Tensor:
        """[n_examples, n_ctx] int64 chains from a stream no training seed reaches."""
        return self._batch(n_examples, _generator(heldout_rng(seed)))

    def token_counts(self) -> np.ndarray:
        """[vocab_size] int64: 1 per state (states are uniform on average), 0 for BOS."""
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        counts[:self.states] = 1
        return counts

    def encode(self, text: str) -> list[int]:
        """``"<bos> s3 s17"`` -> ``[S, 3, 17]``."""
        ids = []
        for word in text.split():
            match = _STATE.fullmatch(word)
            if word == _BOS_TEXT and self.bos_token_id is not None:
                ids.append(self.bos_token_id)
            elif match and int(match.group(1)) < self.states:
                ids.append(int(match.group(1)))
            else:
                raise DataError(f"'{word}' is not a Markov token; write states as s0..s"
                                f"{self.states - 1}" + (f" and BOS as {_BOS_TEXT}"
                                                        if self.bos_token_id is not None else ""))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """``[S, 3, 17]`` -> ``"<bos> s3 s17"``."""
        return " ".join(_BOS_TEXT if int(i) == self.bos_token_id else f"s{int(i)}" for i in ids)

    def describe(self) -> str:
        bos = ", BOS" if self.bos_token_id is not None else ""
        return (f"markov ({self.states} states, alpha {self.alpha:g}) -> fresh in-context chains "
                f"of {self._length} tokens, vocab {self.vocab_size}{bos}")

    def _batch(self, n: int, generator: torch.Generator) -> torch.Tensor:
        seqs = sample_chains(n, self._length, self.states, self.alpha, generator)
        return with_bos(seqs, self.bos_token_id)
