"""Measures: ICL index convention, agreement with TransformerLens's head detector, ablations."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from transformer_lens import head_detector

from interp.config import ModelConfig
from interp.measures import ablation, heads
from interp.measures.icl import (band_half_width, icl_band_score, icl_indices, icl_score, per_token_losses,
                                 rows_per_batch)
from interp.measures.pca import per_token_loss_pca
from interp.model import Transformer


def small_model(**overrides) -> Transformer:
    values = dict(n_layers=2, d_model=32, n_heads=2, d_head=16, n_ctx=128, d_vocab=50)
    return Transformer(ModelConfig(**{**values, **overrides}))


def trained_like(model: Transformer, seed: int = 0) -> Transformer:
    """Every parameter random, biases and norm weights included (the initialisation leaves
    biases 0 and norm weights 1, under which a bias or a norm applied twice goes unseen)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            param.copy_((1.0 if name.endswith(".w") else 0.0) + 0.3 * noise)
    return model


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


@pytest.mark.parametrize("shortcut", [True, False])
def test_ablation__frozen_patterns_keep_a_k_composition_head_harmless_and_unfrozen_do_not(monkeypatch, shortcut):
    # Both ablation paths: from the residual stream (attention-only models) and the hooked pass
    # (every other model).
    # Catches: ablated_losses or losses_without_heads zeroing the head without freezing the
    # patterns (or freezing them to the ablated run's patterns). On the hand-built circuit
    # (tests/handbuilt.py) head 0.0 writes only PREV, which nothing but the induction head's keys
    # read and which W_U does not read; the induction head's values read TOK. So with every
    # pattern frozen, zeroing 0.0 changes no loss at all, while letting the patterns move breaks
    # induction: the induction head loses its keys, rests on BOS and predicts BOS (~copy_gain nats).
    from tests.handbuilt import build_induction_model, repeated_sequence

    V, L = 12, 10
    model = build_induction_model(d_vocab=V, n_ctx=24)
    assert ablation._resumable(model)
    if not shortcut:
        monkeypatch.setattr(ablation, "_resumable", lambda model: False)
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


# --------------------------------------------------------------------------- found by mutation testing
# Each test below names the mutants of `scripts/mutation.py interp/measures` it kills (mutmut's
# names, e.g. icl.x_icl_score__mutmut_19: see docs/MUTATION.md). All check properties or
# analytic values, never the outcome of a training run.


class _OracleLosses(torch.nn.Module):
    """A stand-in model whose loss at token index t is exactly ``loss_at[t]`` (t >= 1).

    Its logits at column t - 1 give the actual token t the logit x and every other token 0, so
    p(token t) = e^x / (e^x + V - 1); x = log((V - 1) p / (1 - p)) with p = exp(-loss_at[t]).
    """

    def __init__(self, loss_at, d_vocab: int):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # the measures read the device from a parameter
        self.loss_at = torch.as_tensor(loss_at, dtype=torch.float64)
        self.d_vocab = d_vocab

    def forward(self, tokens):
        b, n = tokens.shape
        p = torch.exp(-self.loss_at[1:n])
        x = torch.log((self.d_vocab - 1) * p / (1 - p))
        logits = torch.zeros(b, n, self.d_vocab, dtype=torch.float64)
        logits[:, :-1].scatter_(-1, tokens[:, 1:, None], x[None, :, None].expand(b, -1, 1).clone())
        return logits


def test_oracle_losses__per_token_losses_reads_the_designed_loss_at_every_index():
    loss_at = 0.1 + 0.05 * torch.arange(12.0)
    tokens = torch.randint(0, 9, (3, 12))
    losses = per_token_losses(_OracleLosses(loss_at, 9), tokens)
    assert torch.isnan(losses[:, 0]).all()
    torch.testing.assert_close(losses[:, 1:], loss_at[1:].float().expand(3, -1), atol=1e-5, rtol=0)


def test_repeat_losses__average_each_repeat_without_its_first_token():
    # Kills heads.x_repeat_losses__mutmut_16 (the first two tokens of each repeat dropped instead
    # of one): the hand-built induction head's losses are ~0 on all but the first token of a
    # later repeat, so only losses that vary along the repeat can see which tokens are averaged.
    # loss at index t = 0.1 t; BOS + 3 repeats of 5 tokens: repeat r covers indices 1 + 5r .. 5 + 5r,
    # and without its first token it averages 0.1 * (3.5 + 5r).
    pool = np.arange(1, 9)
    tokens = heads.repeated_random_tokens(pool, n_sequences=2, seq_len=5, repeats=3, bos_token_id=0)
    probe = heads.RepeatedTokens(tokens, seq_len=5, repeats=3, offset=1)
    got = heads.repeat_losses(_OracleLosses(0.1 * torch.arange(16.0), 9), probe)
    torch.testing.assert_close(got.double(), torch.tensor([0.35, 0.85, 1.35], dtype=torch.float64),
                               atol=1e-5, rtol=0)


def test_icl_indices__clamp_the_late_index_floor_the_early_one_and_refuse_short_contexts():
    # Kills icl.x_icl_indices__mutmut_8 (late not clamped to n_ctx - 1), _19 (early floored at 2),
    # _24 and _25 (early == late accepted; the refusal without its message).
    assert icl_indices(20) == (19, 2)  # 500 * 20/512 rounds to 20: clamped to the last index, 19
    assert icl_indices(12) == (11, 1)  # 50 * 12/512 rounds to 1
    assert icl_indices(3) == (2, 1)
    with pytest.raises(ValueError, match="too short for an ICL score"):
        icl_indices(2)  # late and early would both be 1


def test_icl_score__explicit_indices_and_the_paired_standard_error():
    # Kills icl.x_icl_score__mutmut_6 and _10 (explicit late / early ignored), _16, _19, _20, _21
    # (standard error: std/sqrt(n) of the paired differences), _23 (no error for n = 2), _24 and
    # _25 (n = 1 crashes), _17 and _22 (n = 1 takes the std of one value: NaN all the same, but
    # with a degrees-of-freedom warning), _31 (n_examples).
    # loss[e, t] = 0.01 a_e t, so the difference at (40, 10) is 0.3 a_e.
    a = torch.tensor([1.0, 2.0, 4.0, 5.0])
    losses = 0.01 * a[:, None] * torch.arange(64.0)[None]
    score = icl_score(losses, late=40, early=10)
    assert (score.late, score.early, score.n_examples) == (40, 10, 4)
    assert score.score == pytest.approx(0.9)  # 0.3 * mean(a)
    assert score.stderr == pytest.approx(0.3 * math.sqrt(10 / 3) / 2)  # sample sd of a: sqrt(10/3)
    two = icl_score(losses[:2], late=40, early=10)
    assert two.stderr == pytest.approx(0.15)  # diffs 0.3, 0.6: sd 0.3/sqrt(2), over sqrt(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = icl_score(losses[:1], late=40, early=10)
    assert one.score == pytest.approx(0.3) and math.isnan(one.stderr) and one.n_examples == 1


@pytest.mark.parametrize("n_ctx, w", [(256, 5), (512, 10), (128, 3), (1024, 20), (32, 1), (16, 1)])
def test_band_half_width__two_percent_of_the_context_rounded_at_least_one(n_ctx, w):
    # Kills icl.x_band_half_width__mutmut_5, _7, _8, _9, _10 (the floor, the rounding, the 2%).
    assert band_half_width(n_ctx) == w


def _band_reference(curve: np.ndarray, w: int) -> float:
    """The docstring's definition with explicit index lists: mean over late +- w minus mean over
    early +- w, both clipped to the context's real indices 1 .. n_ctx - 1."""
    n = len(curve)
    late, early = icl_indices(n)
    late_idx = [t for t in range(late - w, late + w + 1) if 1 <= t < n]
    early_idx = [t for t in range(early - w, early + w + 1) if 1 <= t < n]
    return float(np.mean(curve[late_idx]) - np.mean(curve[early_idx]))


@pytest.mark.parametrize("n_ctx, half_width", [(256, None), (256, 0), (256, 3), (64, 6), (64, 62)])
def test_icl_band_score__mean_over_a_band_around_each_index(n_ctx, half_width):
    # Kills icl.x_icl_band_score__mutmut_2 and _3 (the context read from another axis: the input
    # has two leading axes), _8 (half_width ignored), _16, _17, _22, _23, _24 (late band edges;
    # (64, 62) clips it to 1 .. 63), _30 .. _34 (early band edges; (64, 6) clips it at 1), _35
    # (the bands added), _37, _39, _40, _43, _45, _46 (a mean over the wrong axes). Before these
    # tests nothing checked the value of the score that the phase-change window is found on.
    rng = np.random.default_rng(n_ctx + (half_width or 0))
    loss = rng.uniform(1.0, 5.0, size=(2, 3, n_ctx))
    loss[..., 0] = np.nan  # index 0 is predicted by nothing, as in the stored loss-by-index curves
    got = icl_band_score(loss, half_width)
    assert got.shape == (2, 3)
    w = band_half_width(n_ctx) if half_width is None else half_width
    expected = np.array([[_band_reference(loss[i, j], w) for j in range(3)] for i in range(2)])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_icl_band_score__with_no_band_is_the_single_index_score():
    losses = torch.rand(5, 128, dtype=torch.float64) + 1
    losses[:, 0] = float("nan")
    band = icl_band_score(losses.mean(0).numpy(), half_width=0)
    assert band == pytest.approx(icl_score(losses).score, abs=1e-12)


def test_pca__splits_three_runs_back_in_order_and_ratios_do_not_depend_on_scale():
    # Kills pca.x_per_token_loss_pca__mutmut_34 (with three runs the split points are cut to
    # the first), _31 (a floor of 1 instead of 1e-12 on the total variance shrinks the ratios of
    # data whose variance is below 1), _4, _5, _6 (the refusal without its message).
    rng = np.random.default_rng(3)
    runs = [rng.normal(size=(n, 10)) * 1e-3 for n in (4, 5, 6)]
    projections, explained = per_token_loss_pca(runs)
    assert [p.shape for p in projections] == [(4, 2), (5, 2), (6, 2)]
    big_projections, big_explained = per_token_loss_pca([r * 1e3 for r in runs])
    np.testing.assert_allclose(explained, big_explained, rtol=1e-9)
    for small, big in zip(projections, big_projections):  # the same points, up to each axis's sign
        np.testing.assert_allclose(np.abs(small * 1e3), np.abs(big), rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match=r"^runs must be measured on the same \(example, position\) pairs to compare them$"):
        per_token_loss_pca([np.zeros((3, 4)), np.zeros((3, 5))])


def test_ablation__zeroing_a_last_layer_head_equals_zeroing_its_output_weights():
    # Kills ablation.x__zero_head__mutmut_3 and x__zero_heads__mutmut_3 (the head's z set to 1,
    # not 0; on the hand-built model that adds the same amount to every logit and changes no
    # loss). In the last layer nothing reads the head's pattern afterwards, so zeroing its z
    # (output b_O alone) is the same as zeroing its W_O: a reference with no hooks.
    model = small_model(n_ctx=16)
    tokens = torch.randint(0, 50, (3, 16))
    ablated = ablation.ablated_losses(model, tokens)
    both = copy.deepcopy(model)
    for head in range(2):
        single = copy.deepcopy(model)
        with torch.no_grad():
            single.blocks[1].attn.W_O[head].zero_()
            both.blocks[1].attn.W_O[head].zero_()
        torch.testing.assert_close(ablated[1, head], per_token_losses(single, tokens), atol=1e-5, rtol=0,
                                   equal_nan=True)
    torch.testing.assert_close(ablation.losses_without_heads(model, tokens, [(1, 0), (1, 1)]),
                               per_token_losses(both, tokens), atol=1e-5, rtol=0, equal_nan=True)


def test_loss_batches__a_token_budget_of_rows_and_no_effect_on_the_losses():
    # Catches a budget read as rows (64 rows of 256 tokens: slower, the reason for the budget),
    # a zero-row batch for contexts longer than the budget (an endless loop), and chunking that
    # mixes or drops rows (every row must come out as it does on its own).
    assert rows_per_batch(256) == 16 and rows_per_batch(4096) == 1 and rows_per_batch(8192) == 1
    assert rows_per_batch(100, tokens=1000) == 10
    model = small_model(n_ctx=8)
    tokens = torch.randint(0, 50, (5, 8))
    alone = torch.cat([per_token_losses(model, tokens[i:i + 1]) for i in range(5)])
    for batch_size in (None, 2, 5):
        torch.testing.assert_close(per_token_losses(model, tokens, batch_size=batch_size), alone,
                                   atol=1e-6, rtol=0, equal_nan=True)


def test_ablation__batches_are_chunked_over_sequences():
    # Kills ablation.x_ablated_losses__mutmut_16 and x_losses_without_heads__mutmut_10 (chunks
    # walked over positions, not sequences: with more sequences than positions some are never
    # measured), x_ablated_losses__mutmut_43 (a chunk written to rows sized by its positions).
    model = small_model(n_ctx=4)
    tokens = torch.randint(0, 50, (7, 4))
    torch.testing.assert_close(ablation.ablated_losses(model, tokens, batch_size=2),
                               ablation.ablated_losses(model, tokens), atol=1e-6, rtol=0, equal_nan=True)
    torch.testing.assert_close(ablation.losses_without_heads(model, tokens, [(0, 1)], batch_size=2),
                               ablation.losses_without_heads(model, tokens, [(0, 1)]),
                               atol=1e-6, rtol=0, equal_nan=True)


def test_ablation__frozen_patterns_take_the_models_dtype():
    # Kills ablation.x__freeze_hooks__mutmut_2 and _4 (the recorded float32 patterns handed to a
    # float64 model unconverted: its attention then fails on mixed dtypes).
    model = small_model(n_ctx=8)
    tokens = torch.randint(0, 50, (2, 8))
    double = copy.deepcopy(model).double()
    torch.testing.assert_close(ablation.ablated_losses(double, tokens), ablation.ablated_losses(model, tokens),
                               atol=1e-4, rtol=0, equal_nan=True)
    torch.testing.assert_close(ablation.losses_without_heads(double, tokens, [(0, 0)]),
                               ablation.losses_without_heads(model, tokens, [(0, 0)]),
                               atol=1e-4, rtol=0, equal_nan=True)


def test_projection_on_direction__dot_product_with_the_unit_direction():
    # Kills ablation.x_projection_on_direction__mutmut_1 .. _4 (no test called it: the unit
    # vector, its division, and the 1e-12 floor, which a floor of 1 breaks for short directions).
    delta = torch.tensor([[0.6, 0.8], [0.8, -0.6], [3.0, 4.0]])
    for scale in (0.01, 1.0, 100.0):
        direction = scale * torch.tensor([3.0, 4.0])
        torch.testing.assert_close(ablation.projection_on_direction(delta, direction),
                                   torch.tensor([1.0, 0.0, 5.0]), atol=1e-6, rtol=0)
    assert ablation.projection_on_direction(delta, torch.zeros(2)).eq(0).all()  # no NaN


def test_middle_frequency_pool__drops_both_tails_unseen_and_excluded_tokens():
    # Kills heads.x_middle_frequency_pool__mutmut_8 (excluded ids given count 1), _11 (unseen
    # tokens kept), _14 .. _17 (the empty-pool refusal: a single seen token refused, the message),
    # _23 (| for &: neither tail dropped).
    counts = np.arange(1, 101)  # token i seen i + 1 times; quantiles 25.75 and 95.05
    assert heads.middle_frequency_pool(counts).tolist() == list(range(25, 95))
    assert heads.middle_frequency_pool(np.ones(10), exclude=(0, 9)).tolist() == list(range(1, 9))
    assert heads.middle_frequency_pool(np.array([0, 0, 0, 0, 0, 0, 3, 3])).tolist() == [6, 7]
    assert heads.middle_frequency_pool(np.array([0, 0, 4])).tolist() == [2]
    with pytest.raises(ValueError, match="^no token has a positive count; cannot build a prefix-matching pool$"):
        heads.middle_frequency_pool(np.ones(3), exclude=(0, 1, 2))


def test_repeated_random_tokens__the_papers_probe_by_default_seeded():
    # Kills heads.x_repeated_random_tokens__mutmut_1 .. _4 (the defaults: 32 sequences of 25
    # tokens x 4 repeats, the paper's probe, seed 0) and _6 (an unseeded generator).
    pool = np.arange(1, 200)
    tokens = heads.repeated_random_tokens(pool, bos_token_id=0)
    assert tokens.shape == (32, 1 + 25 * 4) and (tokens[:, 0] == 0).all()
    body = tokens[:, 1:].reshape(32, 4, 25)
    assert (body == body[:, :1]).all()
    assert all(len(set(row.tolist())) == 25 for row in body[:, 0])
    assert torch.equal(tokens, heads.repeated_random_tokens(pool, 32, 25, 4, bos_token_id=0, seed=0))
    assert not torch.equal(tokens, heads.repeated_random_tokens(pool, bos_token_id=0, seed=1))


def test_repeated_token_probe__cut_to_the_pool_and_the_context():
    # Kills heads.x_repeated_token_probe__mutmut_1 .. _4 (the defaults), _12, _14, _15, _16, _17
    # (seq_len: the caller's value, the context cut (n_ctx - offset) // 2), _41 (the seed passed as
    # the BOS id), _42 (the seed ignored).
    pool = np.arange(1, 200)
    probe = heads.repeated_token_probe(pool, n_ctx=512, bos_token_id=0)
    assert (probe.seq_len, probe.repeats, probe.offset) == (25, 4, 1)
    assert torch.equal(probe.tokens, heads.repeated_random_tokens(pool, 32, 25, 4, 0, seed=0))
    # seq_len = min(30, 199, (41 - 1) // 2 = 20); repeats = max(2, min(4, 40 // 20)) = 2
    short = heads.repeated_token_probe(pool, n_ctx=41, bos_token_id=7, n_sequences=2, seq_len=30, seed=3)
    assert (short.seq_len, short.repeats, short.offset) == (20, 2, 1) and type(short.seq_len) is int
    assert short.tokens.shape == (2, 41) and (short.tokens[:, 0] == 7).all()
    other_seed = heads.repeated_token_probe(pool, n_ctx=41, bos_token_id=7, n_sequences=2, seq_len=30, seed=4)
    assert not torch.equal(short.tokens, other_seed.tokens)
    mine = heads.repeated_token_probe(pool, n_ctx=512, bos_token_id=None, seq_len=10)
    assert (mine.seq_len, mine.repeats, mine.offset) == (10, 4, 0) and mine.tokens.shape == (32, 40)
    assert heads.repeated_token_probe(np.arange(1, 6), n_ctx=512, bos_token_id=0).seq_len == 5


def test_induction_targets__a_boolean_mask_of_the_tokens_after_earlier_copies():
    # Kills heads.x_induction_targets__mutmut_7 and _10 (a float mask).
    mask = heads.induction_targets(seq_len=2, repeats=3, offset=1)  # BOS a b a b a b
    assert mask.dtype == torch.bool
    expected = {(3, 2), (4, 3), (5, 2), (5, 4), (6, 3), (6, 5)}
    assert {tuple(ij) for ij in mask.nonzero().tolist()} == expected


@pytest.mark.parametrize("overrides", [dict(), dict(attn_only=False),
                                       dict(normalization="none")])
def test_band_losses__equal_the_full_pass_on_the_band_and_nan_elsewhere(overrides):
    """The band pass (the blocks, then the final norm and unembedding on the band's predicting
    positions only) against the full pass. Catches a slice off by one (the positions that
    predict index t are t-1) and a norm left out or applied twice."""
    model = trained_like(small_model(**overrides))
    tokens = torch.randint(0, 50, (5, 60), generator=torch.Generator().manual_seed(3))
    full = per_token_losses(model, tokens)
    band = per_token_losses(model, tokens, batch_size=2, band=slice(40, 52))
    torch.testing.assert_close(band[:, 40:52], full[:, 40:52], rtol=1e-5, atol=1e-5)
    assert torch.isnan(band[:, :40]).all() and torch.isnan(band[:, 52:]).all()
    tail = per_token_losses(model, tokens, band=slice(59, None))  # up to the last index
    torch.testing.assert_close(tail[:, 59], full[:, 59], rtol=1e-5, atol=1e-5)
    head = per_token_losses(model, tokens, band=slice(1, 4))  # from the first predicted index
    torch.testing.assert_close(head[:, 1:4], full[:, 1:4], rtol=1e-5, atol=1e-5)
    short = tokens[:, :6].repeat(2, 1)  # more rows (10) than positions (6), 3 rows per pass
    torch.testing.assert_close(per_token_losses(model, short, batch_size=3, band=slice(2, 6))[:, 2:],
                               per_token_losses(model, short)[:, 2:], rtol=1e-5, atol=1e-5)
    for bad in (slice(0, 5), slice(5, 5), slice(5, 3), slice(2, 8, 2)):  # index 0, empty, strided
        with pytest.raises(ValueError, match="indices >= 1"):
            per_token_losses(model, tokens, band=bad)


@pytest.mark.parametrize("positional", ["shortformer", "learned", "rotary"])
def test_model_start_at_layer__the_rest_of_the_pass_from_a_given_stream(positional):
    """Started at block k from the stream that entered block k, the model gives the full pass's
    logits; started from the stream after the last block, only the final norm and unembedding
    run. Catches a start that runs every block anyway, or that drops the positions."""
    model = trained_like(small_model(n_layers=3, positional=positional))
    tokens = torch.randint(0, 50, (2, 30), generator=torch.Generator().manual_seed(1))
    full, cache = model.run_with_cache(tokens)
    for layer in range(4):
        name = f"blocks.{layer}.hook_resid_pre" if layer < 3 else "blocks.2.hook_resid_post"
        logits = model(tokens, start_at_layer=layer, residual=cache[name])
        torch.testing.assert_close(logits, full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="go together"):
        model(tokens, start_at_layer=1)
    for bad in (-1, 4):
        with pytest.raises(ValueError, match="must be in 0..3"):
            model(tokens, start_at_layer=bad, residual=cache["blocks.0.hook_resid_pre"])


@pytest.mark.parametrize("n_layers, attn_only", [(1, True), (3, True), (2, False)])
def test_ablation_from_the_residual__equals_the_hooked_pass(monkeypatch, n_layers, attn_only):
    """The attention-only shortcut (the clean stream after block l minus z_h W_O[h], then the
    model from block l+1) against zeroing hook_z in a full pass with frozen patterns. Every
    weight and bias random, so every head matters; catches a wrong head's W_O, a subtraction at
    the wrong layer, b_O subtracted with the head, patterns left unfrozen after the start, and
    (the MLP model) the shortcut taken where an MLP reads the stream in between (3 nats off)."""
    model = trained_like(small_model(n_layers=n_layers, attn_only=attn_only))
    tokens = torch.randint(0, 50, (5, 40), generator=torch.Generator().manual_seed(2))
    fast = ablation.ablated_losses(model, tokens, batch_size=2)
    monkeypatch.setattr(ablation, "_resumable", lambda model: False)
    slow = ablation.ablated_losses(model, tokens, batch_size=2)
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-5, equal_nan=True)
    clean = per_token_losses(model, tokens)
    assert (fast[:, :, :, 1:] - clean[:, 1:]).abs().amax(dim=(2, 3)).min() > 1e-3  # every head counts


def test_ablation_from_the_residual__taken_for_attention_only_models_and_right_under_bf16(monkeypatch):
    # Kills ablation.x_ablated_losses__mutmut_13 (the shortcut never taken: the same numbers,
    # three times the time) and x__ablated_losses_from_residual__mutmut_36 (z left in bf16 under
    # autocast: the unrounded subtraction then mixes dtypes).
    model = trained_like(small_model())
    tokens = torch.randint(0, 50, (3, 40), generator=torch.Generator().manual_seed(4))
    exact = ablation.ablated_losses(model, tokens)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rounded = ablation.ablated_losses(model, tokens)
    assert (rounded - exact).abs().nanmean() < 0.05  # bf16 rounding, not another quantity
    taken = []
    monkeypatch.setattr(ablation, "_ablated_losses_from_residual", lambda *a: taken.append(1) or a[-1])
    ablation.ablated_losses(model, tokens)
    assert taken == [1]
