"""Per-head attention scores: prefix matching (induction) and previous-token.

Functions take any model with TransformerLens hook names (``blocks.{l}.attn.hook_pattern``)
and ``run_with_cache``, and return [n_layers, n_heads] tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.measures.activations import activations
from interp.measures.icl import _device

POOL_QUANTILES = (0.25, 0.95)


def middle_frequency_pool(counts: np.ndarray, exclude: tuple[int, ...] = (),
                          quantiles: tuple[float, float] = POOL_QUANTILES) -> np.ndarray:
    """Token ids whose training frequency lies between two quantiles of the frequencies.

    The paper drops "the most and least frequent tokens" without saying how many; we keep
    tokens that occur, are not special, and whose count is between the 25th and 95th
    percentile of the counts of such tokens (so the top 5% and bottom 25% are dropped).
    With equal counts (synthetic data) every token is kept.
    """
    counts = np.asarray(counts, dtype=np.float64).copy()
    counts[list(exclude)] = 0
    present = np.flatnonzero(counts > 0)
    if present.size == 0:
        raise ValueError("no token has a positive count; cannot build a prefix-matching pool")
    low, high = np.quantile(counts[present], quantiles)
    return present[(counts[present] >= low) & (counts[present] <= high)]


def repeated_random_tokens(pool: np.ndarray, n_sequences: int = 32, seq_len: int = 25,
                           repeats: int = 4, bos_token_id: int | None = None, seed: int = 0
                           ) -> Int[Tensor, "batch pos"]:
    """Sequences of ``seq_len`` distinct random pool tokens repeated ``repeats`` times.

    The paper's setup is 25 tokens x 4 repeats after a BOS token. Tokens are distinct within
    a repeat so that every token's earlier occurrences are exactly its copies in earlier
    repeats. ``seq_len`` is cut to the pool size when the pool is smaller.
    """
    rng = np.random.default_rng([seed, n_sequences, seq_len, repeats])
    seq_len = min(seq_len, len(pool))
    rows = np.stack([rng.choice(pool, size=seq_len, replace=False) for _ in range(n_sequences)])
    tokens = np.tile(rows, (1, repeats))
    if bos_token_id is not None:
        tokens = np.concatenate([np.full((n_sequences, 1), bos_token_id), tokens], axis=1)
    return torch.from_numpy(tokens.astype(np.int64))


def induction_targets(seq_len: int, repeats: int, offset: int) -> Bool[Tensor, "pos pos"]:
    """mask[i, j] = True where j is the position right after an earlier copy of token i.

    For query i in repeat r >= 1 at place p, the targets are offset + r'*seq_len + p + 1 for
    every earlier repeat r' < r. Rows of the first repeat (and the BOS) have no target.
    """
    n = offset + seq_len * repeats
    mask = torch.zeros(n, n, dtype=torch.bool)
    for r in range(1, repeats):
        for p in range(seq_len):
            for earlier in range(r):
                mask[offset + r * seq_len + p, offset + earlier * seq_len + p + 1] = True
    return mask


@torch.no_grad()
def attention_patterns(model, tokens: Int[Tensor, "batch pos"]
                       ) -> Float[Tensor, "layer batch head query key"]:
    """Attention patterns of every layer, returned in float32 (the forward pass stops after the
    last layer's pattern: :func:`interp.measures.activations.activations`)."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    cache = activations(model, tokens.to(_device(model)), names)
    return torch.stack([cache[name].float().cpu() for name in names])


def prefix_matching_score(patterns: Float[Tensor, "layer batch head query key"], seq_len: int,
                          repeats: int, offset: int) -> Float[Tensor, "layer head"]:
    """Mean over queries in repeats >= 1 of the attention summed over their induction targets.

    1.0 means every query of a later repeat attends fully to the tokens that followed its
    earlier copies (perfect induction attention); a uniform head scores about r/position.
    """
    mask = induction_targets(seq_len, repeats, offset)
    queries = mask.any(dim=1)
    on_target = (patterns * mask).sum(dim=-1)  # [layer, batch, head, query]
    return on_target[..., queries].mean(dim=(1, 3))


def prefix_matching_per_sequence(patterns: Float[Tensor, "layer batch head query key"], seq_len: int,
                                 repeats: int, offset: int) -> Float[Tensor, "layer head batch"]:
    """:func:`prefix_matching_score` of each sequence alone (its mean over the batch is the score:
    every sequence has the same queries). The spread over sequences gives the score's standard
    error over probe draws."""
    mask = induction_targets(seq_len, repeats, offset)
    queries = mask.any(dim=1)
    on_target = (patterns * mask).sum(dim=-1)  # [layer, batch, head, query]
    return on_target[..., queries].mean(dim=-1).transpose(1, 2)


def mean_and_stderr(per_sequence: Float[Tensor, "... batch"]
                    ) -> tuple[Float[Tensor, "..."], Float[Tensor, "..."]]:
    """Mean over the last axis and its standard error sd / sqrt(n) (sd with n - 1; NaN for n = 1)."""
    n = per_sequence.shape[-1]
    sd = per_sequence.std(dim=-1, correction=1) if n > 1 else torch.full_like(per_sequence[..., 0], float("nan"))
    return per_sequence.mean(dim=-1), sd / n ** 0.5


def duplicate_targets(seq_len: int, repeats: int, offset: int) -> Bool[Tensor, "pos pos"]:
    """mask[i, j] = True where j holds an earlier copy of token i (same place, earlier repeat)."""
    shifted = induction_targets(seq_len, repeats, offset)
    mask = torch.zeros_like(shifted)
    mask[:, :-1] = shifted[:, 1:]  # the position before each induction target is the copy
    return mask


def duplicate_token_score(patterns: Float[Tensor, "layer batch head query key"], seq_len: int,
                          repeats: int, offset: int) -> Float[Tensor, "layer head"]:
    """Mean over queries in repeats >= 1 of the attention summed over earlier copies of the token."""
    mask = duplicate_targets(seq_len, repeats, offset)
    queries = mask.any(dim=1)
    return (patterns * mask).sum(dim=-1)[..., queries].mean(dim=(1, 3))


def previous_token_score(patterns: Float[Tensor, "layer batch head query key"]
                         ) -> Float[Tensor, "layer head"]:
    """Mean attention from position i to i-1 over i >= 1 (use patterns on real text)."""
    return patterns.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(1, 3))


@dataclass(frozen=True)
class RepeatedTokens:
    """Repeated random tokens and the lengths actually used (recorded with every score)."""

    tokens: Int[Tensor, "batch pos"]
    seq_len: int
    repeats: int
    offset: int  # 1 when a BOS token leads each sequence, else 0


def repeated_token_probe(pool: np.ndarray, n_ctx: int, bos_token_id: int | None,
                         n_sequences: int = 32, seq_len: int = 25, repeats: int = 4, seed: int = 0
                         ) -> RepeatedTokens:
    """The paper's probe (25 tokens x 4 repeats after BOS), cut to fit the pool and context.

    ``seq_len`` is cut to the pool size (tokens are distinct within a repeat) and to half the
    context; ``repeats`` to what fits, but never below 2.
    """
    offset = int(bos_token_id is not None)
    seq_len = min(seq_len, len(pool), (n_ctx - offset) // 2)
    repeats = max(2, min(repeats, (n_ctx - offset) // seq_len))
    tokens = repeated_random_tokens(pool, n_sequences, seq_len, repeats, bos_token_id, seed)
    return RepeatedTokens(tokens, seq_len, repeats, offset)


# Seed stream of the null probe, apart from the repeated probe's (same seed, other numbers).
NULL_STREAM = 1


def unrepeated_token_probe(pool: np.ndarray, probe: RepeatedTokens, seed: int = 0) -> RepeatedTokens:
    """The null of the prefix-matching score: ``probe``'s layout with nothing repeated.

    Each sequence is ``probe``'s BOS (when it has one) + ``repeats`` blocks of ``seq_len`` distinct
    pool tokens, every block drawn independently: the same length, the same pool and the same
    distribution of tokens at every position as the repeated probe (whose later blocks copy
    the first), but a token's earlier occurrences, if any, are unrelated to where the induction
    targets lie. A head whose pattern does not depend on token identity (previous-token,
    positional, uniform, resting on BOS) scores the same on both probes in expectation; only
    attention that follows repeated tokens scores higher on the repeated one. A token recurs at
    the same place of an earlier block by chance (probability about 1/len(pool) per block), so
    a head that does match tokens scores a little above a position-only one here: the null
    errs towards "not an induction head". Scored with the repeated probe's target mask.
    """
    rng = np.random.default_rng([seed, len(probe.tokens), probe.seq_len, probe.repeats, NULL_STREAM])
    n = len(probe.tokens)
    blocks = np.stack([rng.choice(pool, size=probe.seq_len, replace=False) for _ in range(n * probe.repeats)])
    body = torch.from_numpy(blocks.reshape(n, probe.repeats * probe.seq_len).astype(np.int64))
    tokens = torch.cat([probe.tokens[:, :probe.offset], body], dim=1)  # the same BOS, if any
    return RepeatedTokens(tokens, probe.seq_len, probe.repeats, probe.offset)


def prefix_matching(model, probe: RepeatedTokens) -> Float[Tensor, "layer head"]:
    """Prefix-matching score of every head on a :func:`repeated_token_probe`."""
    patterns = attention_patterns(model, probe.tokens)
    return prefix_matching_score(patterns, probe.seq_len, probe.repeats, probe.offset)


@torch.no_grad()
def repeat_losses(model, probe: RepeatedTokens) -> Float[Tensor, "repeats"]:
    """Mean loss on each repeat of a :func:`repeated_token_probe` (Olsson et al. 2022, argument 4).

    loss[r] = mean over sequences and over the positions 1 .. seq_len-1 of repeat r of the
    cross-entropy of that token. The first token of each repeat is left out: it follows the
    previous repeat's last token, which it has followed at most once before. On random tokens
    the first repeat is unpredictable (about log of the pool size); an induction head
    predicts every later repeat from the first.
    """
    from interp.measures.icl import per_token_losses

    losses = per_token_losses(model, probe.tokens)  # [batch, pos]; index t predicts token t
    body = losses[:, probe.offset:probe.offset + probe.seq_len * probe.repeats]
    body = body.reshape(len(body), probe.repeats, probe.seq_len)[:, :, 1:]
    return body.mean(dim=(0, 2))
