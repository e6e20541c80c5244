"""In-context learning: loss by token index and the ICL score (Olsson et al. 2022).

The loss "at token index t" is the cross-entropy of predicting token t from tokens < t, so it
is defined for t = 1 .. n_ctx-1; index 0 (the BOS token) is predicted by nothing and holds NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Float, Int

if TYPE_CHECKING:  # torch is imported where losses are computed, so the index helpers and
    from torch import Tensor  # the band score load without it (the workbench's curves view)

PAPER_CONTEXT, PAPER_LATE, PAPER_EARLY = 512, 500, 50
# Tokens per forward pass of the loss measures (rows = BATCH_TOKENS // n_ctx, at least 1): the
# size of one training step of the default preset (16 x 256). Larger batches are slower on the
# CPU, not faster: the [rows, n_ctx, vocab] logits stop fitting in cache (default run, 256
# held-out rows, 2 cores: 0.83 s at 16 rows per pass, 0.92 s at 32, 1.30 s at 64, 2.35 s at 256).
BATCH_TOKENS = 4096


def rows_per_batch(n_ctx: int, tokens: int = BATCH_TOKENS) -> int:
    """Rows of ``n_ctx`` tokens per forward pass of a loss measure: ``tokens // n_ctx``, >= 1."""
    return max(1, tokens // max(1, n_ctx))


def icl_indices(n_ctx: int) -> tuple[int, int]:
    """(late, early) token indices of the ICL score for a context of ``n_ctx`` tokens.

    The paper uses 500 and 50 for 512-token contexts; other contexts scale both by
    n_ctx / 512 and round half up (256 -> (250, 25), 128 -> (125, 13), 1024 -> (1000, 100)).
    The late index is clamped to n_ctx - 1 and the early one to at least 1.
    """
    scale = n_ctx / PAPER_CONTEXT
    late = min(n_ctx - 1, int(PAPER_LATE * scale + 0.5))
    early = max(1, int(PAPER_EARLY * scale + 0.5))
    if early >= late:
        raise ValueError(f"n_ctx={n_ctx} is too short for an ICL score (early index {early} >= late {late})")
    return late, early


def per_token_losses(model, tokens: Int[Tensor, "batch pos"], batch_size: int | None = None,
                     band: slice | None = None) -> Float[Tensor, "batch pos"]:
    """Loss at every token index [batch, pos]; column 0 is NaN (nothing predicts the first token).

    ``batch_size`` rows per forward pass; None: :func:`rows_per_batch` (each row is
    independent, so this changes only the speed). ``band``: only the token indices in it
    (a slice of indices >= 1), NaN elsewhere; see :func:`_band_losses` for what that saves.
    """
    import torch

    batch_size = batch_size or rows_per_batch(tokens.shape[-1])
    with torch.no_grad():
        if band is None:
            return _per_token_losses(model, tokens, batch_size)
        return _band_losses(model, tokens, batch_size, band)


def _per_token_losses(model, tokens, batch_size: int):
    import torch

    chunks = []
    for start in range(0, tokens.shape[0], batch_size):
        chunk = tokens[start:start + batch_size].to(_device(model))
        chunks.append(losses_from_logits(model(chunk), chunk))
    return torch.cat(chunks)


def losses_from_logits(logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]
                       ) -> Float[Tensor, "batch pos"]:
    """Per-token losses (on the CPU, float32) of ``logits`` on ``tokens``: column t is the loss
    of token t given the logits at t-1; column 0 is NaN."""
    import torch

    log_probs = logits[:, :-1].float().log_softmax(-1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
    nan = torch.full((tokens.shape[0], 1), float("nan"), device=logits.device)
    return torch.cat([nan, -log_probs], dim=1).cpu()


def _band_losses(model, tokens, batch_size: int, band: slice):
    """Losses at the indices of ``band`` only. The blocks run on every position (attention
    needs them all), but the final norm, the unembedding and the log-softmax, about a third of
    the default model's pass, only on the positions that predict the band: the pass stops at
    the last block's output (:func:`interp.measures.activations.activations`) and
    ``model.unembed(model.ln_final(.))`` is applied to that slice. Models whose logits are
    anything else than those two position-wise modules on the last block's output are not
    for this function."""
    import torch

    from interp.measures.activations import activations

    start, stop, step = band.indices(tokens.shape[-1])
    if start < 1 or step != 1 or stop <= start:
        raise ValueError(f"a loss band needs consecutive token indices >= 1, not {band}")
    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    out = torch.full(tokens.shape, float("nan"))
    for first in range(0, tokens.shape[0], batch_size):
        chunk = tokens[first:first + batch_size].to(_device(model))
        # Positions start-1 .. stop-1: the first predicts `start`, the last one's logits go unused
        # (losses_from_logits drops them, as it does for a whole row).
        resid = activations(model, chunk, [last])[last][:, start - 1:stop]
        losses = losses_from_logits(model.unembed(model.ln_final(resid)), chunk[:, start - 1:stop])
        out[first:first + chunk.shape[0], start:stop] = losses[:, 1:]
    return out


@dataclass(frozen=True)
class ICLScore:
    """ICL score = mean loss at ``late`` minus mean loss at ``early`` (more negative = more ICL)."""

    score: float
    stderr: float  # standard error of the mean of the per-example differences
    late: int
    early: int
    n_examples: int


def icl_score(losses: Float[Tensor, "batch pos"], late: int | None = None,
              early: int | None = None) -> ICLScore:
    """ICL score from per-token losses indexed by token index (see :func:`per_token_losses`).

    score = mean_e loss[e, late] - mean_e loss[e, early], the same examples at both indices,
    with its standard error std_e(diff) / sqrt(n) from the paired differences.
    """
    default_late, default_early = icl_indices(losses.shape[1])
    late = default_late if late is None else late
    early = default_early if early is None else early
    diff = (losses[:, late] - losses[:, early]).double()
    n = diff.numel()
    stderr = float(diff.std() / n ** 0.5) if n > 1 else float("nan")
    return ICLScore(float(diff.mean()), stderr, late, early, n)


def band_half_width(n_ctx: int) -> int:
    """Half-width of the ICL band: 2% of the context, at least 1 (5 tokens for n_ctx=256)."""
    return max(1, int(0.02 * n_ctx + 0.5))


def icl_band_score(loss_by_position: Float[np.ndarray, "... pos"], half_width: int | None = None
                   ) -> Float[np.ndarray, "..."]:
    """The ICL score averaged over a band of token indices around each of the paper's indices.

    band = mean loss over indices late +- w (clipped to the context) minus mean loss over
    early +- w, with w = :func:`band_half_width`. It estimates the same quantity as
    :func:`icl_score` with 2w+1 times as many (example, position) pairs. On the default run
    the single-index score jumps by up to 0.17 nats between neighbouring checkpoints on the
    same 256 sequences, while the band score moves smoothly; the phase-change window is found
    on the band score, and both are stored and reported.
    """
    late_band, early_band = band_slices(loss_by_position.shape[-1], half_width)
    return (np.nanmean(loss_by_position[..., late_band], axis=-1)
            - np.nanmean(loss_by_position[..., early_band], axis=-1))


def band_slices(n_ctx: int, half_width: int | None = None) -> tuple[slice, slice]:
    """(late, early) token-index bands: late +- w clipped to the context, early +- w from 1."""
    late, early = icl_indices(n_ctx)
    w = band_half_width(n_ctx) if half_width is None else half_width
    return slice(max(1, late - w), min(n_ctx, late + w + 1)), slice(max(1, early - w), early + w + 1)


def context_cut(n_ctx: int, half_width: int | None = None) -> int:
    """First position kept in :func:`foreign_context`: late - w - (early + w).

    Each token of the late band then keeps at least early + w tokens of its own window before
    it (as many as the early band's last token has), so the two conditions differ in the far
    context only, never in the near one.
    """
    late_band, early_band = band_slices(n_ctx, half_width)
    cut = late_band.start - (early_band.stop - 1)
    if cut < 2:
        raise ValueError(f"n_ctx={n_ctx} is too short for a context ICL score (nothing before "
                         f"the late band is far from it)")
    return cut


def foreign_context(tokens: Int[Tensor, "batch pos"], cut: int) -> Int[Tensor, "batch pos"]:
    """Rows whose far context comes from another row: positions 1 .. cut-1 of row e are those
    of row (e - batch // 2) mod batch; position 0 (BOS) and positions >= cut are row e's own.

    Held-out rows come in a random order, so any donor row is as likely as another to share
    the row's document (then the "foreign" context is its own, which biases ``context``
    towards zero by about the share of such pairs); a fixed offset keeps the pairing the same
    at every checkpoint of every run on the data.
    """
    n = tokens.shape[0]
    if n < 2:
        raise ValueError("a foreign context needs at least two rows")
    out = tokens.clone()
    out[:, 1:cut] = tokens.roll(n // 2, dims=0)[:, 1:cut]
    return out


@dataclass(frozen=True)
class ContextICL:
    """The ICL score split into what the far context is worth and what the position costs.

    band = context + position, on the same rows (exactly, up to rounding):
      context  = mean over rows and late-band tokens of loss(own far context) - loss(foreign)
      position = mean late-band loss with a foreign far context - mean early-band loss
    """

    context: float  # < 0: the window's own far context helps (in-context learning)
    context_stderr: float  # over rows, paired
    position: float  # the late band's loss beyond the early band's with no useful far context
    band: float  # the band ICL score of the same rows, for the identity above
    n_examples: int


def context_icl_score(own: Float[Tensor, "batch pos"], foreign: Float[Tensor, "batch pos"],
                      half_width: int | None = None) -> ContextICL:
    """:class:`ContextICL` from per-token losses of rows and of their :func:`foreign_context` rows.

    The paper's score (late minus early loss) assumes that the late and early tokens differ only
    in how much context they have. They also differ in position: a model whose attention is
    still diffuse averages over ten times as many tokens at the late index, which can cost more
    than the extra context gives (on English prose the band score rose to +0.1-0.2 before the
    phase change; docs/PRESETS.md). ``context`` compares each late-band token with itself at the
    same position and with the same near context, changing only whether the far context
    belongs to its window, so position effects cancel. ``position`` is what is left of the
    band score: the late band with a context that cannot help, against the early band; it
    holds everything that depends on the index alone (the distance from the BOS attention sink
    included, which this split does not tell apart from dilution).

    The standard error treats rows as independent; rows drawn from the same held-out document
    are not, so on a corpus with few held-out documents it understates the uncertainty.
    """
    late_band, early_band = band_slices(own.shape[1], half_width)
    own, foreign = own.double(), foreign.double()
    per_row = own[:, late_band].mean(1) - foreign[:, late_band].mean(1)  # [batch]
    n = per_row.numel()
    stderr = float(per_row.std() / n ** 0.5) if n > 1 else float("nan")
    own_late, own_early = float(own[:, late_band].mean()), float(own[:, early_band].mean())
    foreign_late = float(foreign[:, late_band].mean())
    return ContextICL(float(per_row.mean()), stderr, foreign_late - own_early, own_late - own_early, n)


def _device(model) -> torch.device:
    return next(model.parameters()).device
