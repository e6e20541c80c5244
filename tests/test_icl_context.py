"""The context ICL score: what the far context is worth at the late band, position held fixed.

Each test uses a model whose answer is known by construction: one that reads only the
position, one that copies from far back, one that copies from near back.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from interp.measures.icl import (band_half_width, context_cut, context_icl_score, foreign_context,
                                 icl_band_score, icl_indices, per_token_losses)

N_CTX, VOCAB = 256, 50


class Lookup(nn.Module):
    """logits[b, p] = strength * one_hot(tokens[b, p + 1 - lag]) (a copier of the token ``lag``
    back from the one predicted), or, with lag None, a bias towards token 0 that grows with
    the position (a model that reads the position only)."""

    def __init__(self, lag: int | None, strength: float = 8.0) -> None:
        super().__init__()
        self.lag, self.strength = lag, strength
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n = tokens.shape
        logits = torch.zeros(b, n, VOCAB)
        if self.lag is None:
            logits[:, :, 0] = torch.linspace(0, self.strength, n)
            return logits
        source = torch.arange(n) + 1 - self.lag  # the token copied for the prediction at p + 1
        ok = source >= 0
        logits[:, ok] = self.strength * nn.functional.one_hot(tokens[:, source[ok]], VOCAB).float()
        return logits


def rows(period: int | None, n: int = 32, seed: int = 0) -> torch.Tensor:
    """[n, N_CTX] rows after BOS (id VOCAB - 1); with a period, x[t] = x[t - period]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, VOCAB - 1, (n, N_CTX), generator=g)
    if period:
        for t in range(1 + period, N_CTX):
            x[:, t] = x[:, t - period]
    x[:, 0] = VOCAB - 1
    return x


def score(model: nn.Module, x: torch.Tensor):
    return context_icl_score(per_token_losses(model, x), per_token_losses(model, foreign_context(x, context_cut(N_CTX))))


def test_foreign_rows_change_the_far_context_only():
    x = rows(None, n=6)
    cut = context_cut(N_CTX)
    late, early = icl_indices(N_CTX)
    assert cut == late - band_half_width(N_CTX) - early - band_half_width(N_CTX) == 215
    f = foreign_context(x, cut)
    assert torch.equal(f[:, 0], x[:, 0]) and torch.equal(f[:, cut:], x[:, cut:])
    assert torch.equal(f[:, 1:cut], x[[3, 4, 5, 0, 1, 2], 1:cut])  # half the batch away
    with pytest.raises(ValueError):
        foreign_context(x[:1], cut)
    with pytest.raises(ValueError):
        context_cut(4)


def test_a_model_that_reads_the_position__no_context_all_position():
    # Catches: a "context" score that is the band score under another name (late minus early),
    # which is what the paper's score gives such a model: far from zero.
    result = score(Lookup(None), rows(None))
    assert result.context == pytest.approx(0.0, abs=1e-9)
    assert result.position == pytest.approx(result.band) and result.band > 0.05


def test_a_far_copier__the_far_context_is_worth_its_copies():
    # Rows repeat every 100 tokens and the model copies from 100 back: the late band's source
    # tokens (145-155) lie in the far context, so replacing it costs nearly the whole copy.
    # Catches: a cut that leaves the far context in place (context ~ 0).
    result = score(Lookup(100), rows(100))
    assert result.context < -5.0
    assert result.context_stderr < 0.5


def test_a_near_copier__keeps_its_near_context():
    # Rows repeat every 20 tokens, the model copies from 20 back: every late-band token's source
    # lies inside its kept near context (>= early + w = 30 tokens). Catches: a cut so late that
    # it replaces the near context too (context far below zero).
    result = score(Lookup(20), rows(20))
    assert result.context == pytest.approx(0.0, abs=1e-9)


def test_band_is_context_plus_position_and_matches_the_band_score():
    x = rows(100)
    own, foreign = per_token_losses(Lookup(100, 2.0), x), per_token_losses(Lookup(100, 2.0), foreign_context(x, context_cut(N_CTX)))
    result = context_icl_score(own, foreign)
    assert result.band == pytest.approx(result.context + result.position)
    assert result.band == pytest.approx(float(icl_band_score(own.nanmean(0).numpy())), abs=1e-5)
    assert result.n_examples == x.shape[0]


# Found by mutation testing (scripts/mutation.py, 2026-12-03): the edges of the split's inputs.

def test_context_cut__follows_its_half_width_and_accepts_a_cut_of_two():
    # Kills icl.x_context_cut__mutmut_3/_5 (half_width dropped), _10/_11 (the smallest valid cut
    # refused), _12 (the message lost).
    assert context_cut(256) == (250 - 5) - (25 + 5) == 215
    assert context_cut(256, half_width=3) == (250 - 3) - (25 + 3) == 219
    late, early = icl_indices(48)  # 47, 5: the cut (47 - w) - (5 + w) is 2 at w = 20
    assert context_cut(48, half_width=20) == 2
    with pytest.raises(ValueError, match="too short for a context ICL score"):
        context_cut(48, half_width=21)


def test_foreign_context__two_rows_swap_their_far_context_and_one_row_is_refused():
    # Kills icl.x_foreign_context__mutmut_3/_4 (two rows refused) and _5/_6/_7 (the message).
    x = torch.arange(20).reshape(2, 10)
    out = foreign_context(x, cut=6)
    assert out[0, 1:6].tolist() == x[1, 1:6].tolist() and out[1, 1:6].tolist() == x[0, 1:6].tolist()
    assert torch.equal(out[:, 0], x[:, 0]) and torch.equal(out[:, 6:], x[:, 6:])
    with pytest.raises(ValueError) as refused:
        foreign_context(x[:1], cut=6)
    assert str(refused.value) == "a foreign context needs at least two rows"


def test_context_icl_score__standard_error_of_the_paired_rows_and_its_band():
    # Kills icl.x_context_icl_score__mutmut_10/_12 (a mean over everything in place of each
    # row's), _17/_20/_21 (the standard error's formula), _22/_23 (its two-row edge), _24-_26
    # (its NaN for one row) and _3/_5 (half_width dropped).
    n = 32
    assert icl_indices(n) == (31, 3) and band_half_width(n) == 1  # the late band: 30..31 by default
    a = torch.tensor([1.0, 2.0, 4.0, 8.0])
    own, foreign = torch.zeros(4, n), torch.zeros(4, n)
    b = torch.tensor([0.5, 0.0, 1.0, 0.0])
    own[:, 30:] = a[:, None]  # row i: a_i with its own far context at 30..31, b_i with another's
    foreign[:, 30:] = b[:, None]
    per_row = (a - b).double()
    result = context_icl_score(own, foreign)
    assert result.context == pytest.approx(float(per_row.mean()))
    assert result.context_stderr == pytest.approx(float(per_row.std() / 2.0))
    wide = context_icl_score(own, foreign, half_width=3)  # 28..31: half of each row's band is 0
    assert wide.context == pytest.approx(float(per_row.mean()) / 2)
    two = context_icl_score(own[:2], foreign[:2])
    assert two.context_stderr == pytest.approx(float(per_row[:2].std() / 2 ** 0.5))
    one = context_icl_score(own[:1], foreign[:1])
    assert one.context == pytest.approx(0.5) and one.context_stderr != one.context_stderr  # NaN
