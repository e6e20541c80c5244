"""Measures: ICL index convention, agreement with TransformerLens's head detector, ablations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformer_lens import head_detector

from interp.config import ModelConfig
from interp.measures import ablation, heads
from interp.measures.icl import icl_indices, icl_score, per_token_losses
from interp.measures.pca import per_token_loss_pca
from interp.model import Transformer


def small_model(**overrides) -> Transformer:
    values = dict(n_layers=2, d_model=32, n_heads=2, d_head=16, n_ctx=128, d_vocab=50)
    return Transformer(ModelConfig(**{**values, **overrides}))


@pytest.mark.parametrize("n_ctx, expected", [(512, (500, 50)), (256, (250, 25)), (128, (125, 13)),
                                             (1024, (1000, 100))])
def test_icl_indices__scale_the_papers_500_and_50(n_ctx, expected):
    assert icl_indices(n_ctx) == expected


def test_icl_score__uses_the_loss_of_predicting_token_i_at_index_i():
    model = small_model(n_ctx=64)
    tokens = torch.randint(0, 50, (3, 64))
    losses = per_token_losses(model, tokens)
    direct = model(tokens, return_type="per_token_loss")  # column i = loss of token i+1
    torch.testing.assert_close(losses[:, 1:], direct, atol=1e-5, rtol=1e-4)
    assert torch.isnan(losses[:, 0]).all()
    constructed = torch.arange(64.0).repeat(5, 1) * 0.01  # loss at index t is 0.01 t
    score = icl_score(constructed)
    assert (score.late, score.early) == (63, 6) and score.score == pytest.approx(0.01 * (63 - 6))


class _TokensShim:
    """detect_head tokenises its input and reads a few config fields; we pass its cache."""

    def __init__(self, tokens, n_layers: int, n_heads: int, n_ctx: int):
        self._tokens = tokens
        self.cfg = type("Cfg", (), {"n_layers": n_layers, "n_heads": n_heads, "n_ctx": n_ctx,
                                    "device": "cpu", "dtype": torch.float32})()

    def to_tokens(self, seq):
        return self._tokens


@pytest.mark.parametrize("name", ["previous_token_head", "duplicate_token_head", "induction_head"])
def test_head_scores__agree_with_transformer_lens_detect_head(name):
    """Where the definitions coincide they differ only in the denominator: TransformerLens
    divides the attention on target positions by all rows, we average over rows that have a
    target. After that rescaling they agree to float precision (tolerance 1e-5)."""
    model = small_model()
    pool = np.arange(1, 50)
    tokens = heads.repeated_random_tokens(pool, n_sequences=1, seq_len=20, repeats=3, bos_token_id=0)
    patterns = heads.attention_patterns(model, tokens)
    n = tokens.shape[1]
    if name == "previous_token_head":
        ours, rows_with_target = heads.previous_token_score(patterns), n - 1
    elif name == "duplicate_token_head":
        ours, rows_with_target = heads.duplicate_token_score(patterns, 20, 3, 1), 40
    else:
        ours, rows_with_target = heads.prefix_matching_score(patterns, 20, 3, 1), 40
    _, cache = model.run_with_cache(tokens, remove_batch_dim=True)
    shim = _TokensShim(tokens, n_layers=2, n_heads=2, n_ctx=n + 1)  # it wants seq_len < n_ctx
    theirs = head_detector.detect_head(shim, "unused", name, cache=cache)
    torch.testing.assert_close(theirs * n / rows_with_target, ours, atol=1e-5, rtol=1e-5)


def test_ablating_a_head_whose_output_is_zero__changes_nothing():
    model = small_model(n_ctx=32)
    with torch.no_grad():
        model.blocks[1].attn.W_O[0].zero_()  # head 1.0 writes nothing
    tokens = torch.randint(0, 50, (4, 32))
    clean = per_token_losses(model, tokens)
    ablated = ablation.ablated_losses(model, tokens)
    torch.testing.assert_close(ablated[1, 0], clean, atol=1e-6, rtol=0, equal_nan=True)
    effects = ablation.ablation_effects(clean, ablated, late=30, early=3)
    assert effects[1, 0].abs() < 1e-6
    assert effects.abs().max() > 1e-4  # the other heads do matter


def test_ablation__freezes_patterns_of_later_layers():
    model = small_model(n_ctx=32)
    tokens = torch.randint(0, 50, (2, 32))
    frozen = ablation._freeze_hooks(heads.attention_patterns(model, tokens))
    seen = {}
    hooks = frozen + [("blocks.0.attn.hook_z", ablation._zero_head(0)),
                      ("blocks.1.attn.hook_pattern", lambda p, hook: seen.setdefault("p", p))]
    clean_pattern = heads.attention_patterns(model, tokens)[1]
    with model.hooks(fwd_hooks=hooks):
        model(tokens)
    torch.testing.assert_close(seen["p"].float(), clean_pattern)


def test_pca__separates_two_trajectories_and_reports_variance():
    rng = np.random.default_rng(0)
    straight = np.outer(np.linspace(0, 1, 20), rng.normal(size=50))
    turning = np.concatenate([straight[:10], straight[9] + np.outer(np.linspace(0, 1, 10), rng.normal(size=50))])
    projections, explained = per_token_loss_pca([straight, turning])
    assert [p.shape for p in projections] == [(20, 2), (20, 2)]
    assert 0.99 < explained.sum() <= 1.0 + 1e-9
