"""Measures: ICL index convention, agreement with TransformerLens's head detector, ablations."""

from __future__ import annotations

import math

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
    with torch.no_grad():  # at initialisation layer 1's pattern barely depends on head 0.0
        model.blocks[0].attn.W_O.mul_(10)  # (by ~1e-4): make the dependence plain
        model.blocks[1].attn.W_Q.mul_(3)
        model.blocks[1].attn.W_K.mul_(3)
    tokens = torch.randint(0, 50, (2, 32))
    frozen = ablation._freeze_hooks(heads.attention_patterns(model, tokens))
    seen = {}
    hooks = frozen + [("blocks.0.attn.hook_z", ablation._zero_head(0)),
                      ("blocks.1.attn.hook_pattern", lambda p, hook: seen.setdefault("p", p))]
    clean_pattern = heads.attention_patterns(model, tokens)[1]
    with model.hooks(fwd_hooks=hooks):
        model(tokens)
    torch.testing.assert_close(seen["p"].float(), clean_pattern)
    # Negative control (catches a freeze hook that passes the live pattern through): without the
    # frozen hooks the same zeroing does move layer 1's pattern, so the check above can fail.
    with model.hooks(fwd_hooks=[hooks[len(frozen)], ("blocks.1.attn.hook_pattern",
                                                     lambda p, hook: seen.__setitem__("free", p))]):
        model(tokens)
    assert (seen["free"].float() - clean_pattern).abs().max() > 1e-3


def test_pca__separates_two_trajectories_and_reports_variance():
    rng = np.random.default_rng(0)
    straight = np.outer(np.linspace(0, 1, 20), rng.normal(size=50))
    turning = np.concatenate([straight[:10], straight[9] + np.outer(np.linspace(0, 1, 10), rng.normal(size=50))])
    projections, explained = per_token_loss_pca([straight, turning])
    assert [p.shape for p in projections] == [(20, 2), (20, 2)]
    assert 0.99 < explained.sum() <= 1.0 + 1e-9


def test_pca__centres_on_the_common_mean_and_separates_two_groups_analytically():
    # Catches: PCA without centring (the first "component" is then the large common mean, every
    # point projects near |m| on it and the groups are not separated), centring each run on its
    # own mean (removes the very offset between the groups), centring along the wrong axis, and
    # explained-variance ratios taken over the uncentred or the kept components only.
    # Construction: 8 checkpoints per run, on 50 pairs; orthonormal directions u, w, z; a common
    # mean m of norm 100 in a random direction (not orthogonal to them: centring must remove it).
    #   run A: m + a u + b_k w + c_k z,   run B: m - a u + b_k w + c_k z
    # with a = 3, b = (-3.5 .. 3.5 step 1), c = (1,-1,-1,1,1,-1,-1,1): sum b = sum c = sum b c = 0,
    # so after centring the three columns are orthogonal with squared norms 16 a^2 = 144,
    # 2 sum b^2 = 84 and 16 c^2 = 16 (total 244). Hence PC1 = +-u with scores +-a (A vs B), PC2 =
    # +-w with scores +-b_k, and the explained ratios are 144/244 and 84/244.
    rng = np.random.default_rng(1)
    u, w, z = np.linalg.qr(rng.normal(size=(50, 3)))[0].T
    m = rng.normal(size=50)
    m *= 100 / np.linalg.norm(m)
    a, b, c = 3.0, np.arange(8) - 3.5, np.array([1, -1, -1, 1, 1, -1, -1, 1], float)
    shared = np.outer(b, w) + np.outer(c, z)
    run_a, run_b = m + a * u + shared, m - a * u + shared
    (proj_a, proj_b), explained = per_token_loss_pca([run_a, run_b])
    np.testing.assert_allclose(explained, [144 / 244, 84 / 244], atol=1e-9)
    sign = np.sign(proj_a[0, 0])
    np.testing.assert_allclose(proj_a[:, 0], sign * a, atol=1e-9)   # run A on one side ...
    np.testing.assert_allclose(proj_b[:, 0], -sign * a, atol=1e-9)  # ... run B on the other
    second = np.sign(proj_a[-1, 1])
    np.testing.assert_allclose(proj_a[:, 1], second * b, atol=1e-9)
    np.testing.assert_allclose(proj_b[:, 1], second * b, atol=1e-9)
    # Negative control: the same SVD on the uncentred data does not separate them.
    components = np.linalg.svd(np.concatenate([run_a, run_b]), full_matrices=False)[2]
    uncentred_pc1 = np.concatenate([run_a, run_b]) @ components[0]
    assert np.sign(uncentred_pc1).min() == np.sign(uncentred_pc1).max()  # all on one side


def test_ablation__frozen_patterns_keep_a_k_composition_head_harmless_and_unfrozen_do_not():
    # Catches: ablated_losses or losses_without_heads zeroing the head without freezing the
    # patterns (or freezing them to the ablated run's patterns). On the hand-built circuit
    # (tests/handbuilt.py) head 0.0 writes only PREV, which nothing but the induction head's keys
    # read and which W_U does not read; the induction head's values read TOK. So with every
    # pattern frozen, zeroing 0.0 changes no loss at all, while letting the patterns move breaks
    # induction: the induction head loses its keys, rests on BOS and predicts BOS (~copy_gain nats).
    from tests.handbuilt import build_induction_model, repeated_sequence

    V, L = 12, 10
    model = build_induction_model(d_vocab=V, n_ctx=24)
    tokens = repeated_sequence(V, L, batch=4)  # BOS, r_1..r_L, r_1..r_L
    second = slice(L + 2, 2 * L + 1)  # tokens r_2..r_L of the repeat: predictable by induction
    clean = per_token_losses(model, tokens)
    assert clean[:, second].max() < 0.1
    ablated = ablation.ablated_losses(model, tokens)
    torch.testing.assert_close(ablated[0, 0], clean, atol=1e-5, rtol=0, equal_nan=True)
    joint = ablation.losses_without_heads(model, tokens, [(0, 0)])
    torch.testing.assert_close(joint, clean, atol=1e-5, rtol=0, equal_nan=True)
    # Negative control: the same zeroing with patterns free to change.
    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_z", ablation._zero_head(0))]):
        unfrozen = per_token_losses(model, tokens)
    assert unfrozen[:, second].min() > 5
    # And the ablation is not a no-op: removing the induction head itself (its values are what
    # copy) leaves only the residual's own token, logit 1 for the current token and 0 for the
    # other V - 1, so every repeat token costs log(e + V - 1) nats.
    without_induction = math.log(math.e + V - 1)
    torch.testing.assert_close(ablated[1, 0][:, second], torch.full((4, L - 1), without_induction))
    torch.testing.assert_close(ablation.losses_without_heads(model, tokens, [(0, 0), (1, 0)])[:, second],
                               torch.full((4, L - 1), without_induction))
