"""The induction-head rule with evidence (interp/phase/heads.py) and the trend labels
(interp/phase/trend.py): hand-built heads with known answers, numbers the rule must refuse,
synthetic series with known trends, and the stored default and Markov runs.

Each test says which wrong implementation it catches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from interp.measures import circuits, heads
from interp.phase import InductionRule, analyse_phase, classify_induction_heads, prefix_evidence
from interp.phase.heads import LEGACY, NULL_RULE, RULE
from interp.phase.trend import FADING, FORMED, FORMING, head_trend
from tests.handbuilt import add_positional_head, build_induction_model

DATA = Path(__file__).parent / "data"


# --------------------------------------------------------------------------- the measures

def _evidence(model, probe: heads.RepeatedTokens, null: heads.RepeatedTokens):
    def stats(p):
        patterns = heads.attention_patterns(model, p.tokens)
        return heads.mean_and_stderr(heads.prefix_matching_per_sequence(patterns, p.seq_len, p.repeats, p.offset))
    (score, se), (null_score, null_se) = stats(probe), stats(null)
    return score.numpy(), se.numpy(), null_score.numpy(), null_se.numpy()


@pytest.fixture(scope="module")
def handbuilt():
    """The hand-built circuit (0.0 previous-token, 1.0 induction, 0.1 uniform) with head 1.1
    made a fixed-offset positional copier, on a 32-sequence probe and its null."""
    model = build_induction_model(d_vocab=12, n_ctx=24)
    pool = np.arange(1, 12)
    probe = heads.repeated_token_probe(pool, 24, 0, n_sequences=32)
    add_positional_head(model, 1, 1, back=probe.seq_len - 1)
    null = heads.unrepeated_token_probe(pool, probe)
    return model, probe, null, _evidence(model, probe, null), circuits.ov_copying_score(model).numpy()


def test_per_sequence_scores__average_to_the_stored_score():
    # Catches a per-sequence score averaged over the wrong axis (heads or layers instead of
    # queries), whose mean over sequences would not be the stored prefix-matching score.
    patterns = torch.rand(2, 5, 3, 21, 21)
    patterns = torch.tril(patterns) / torch.tril(patterns).sum(-1, keepdim=True)
    per_sequence = heads.prefix_matching_per_sequence(patterns, 5, 4, 1)
    assert per_sequence.shape == (2, 3, 5)
    torch.testing.assert_close(per_sequence.mean(-1), heads.prefix_matching_score(patterns, 5, 4, 1))
    mean, stderr = heads.mean_and_stderr(per_sequence)
    torch.testing.assert_close(stderr, per_sequence.std(-1) / 5 ** 0.5)


def test_null_probe__same_layout_and_bos_with_nothing_repeated():
    # Catches a null that is the repeated probe itself (then score == null and no head could
    # ever pass), one that drops the BOS (every position shifts, so positional heads would
    # score differently on it), and blocks that repeat tokens within themselves.
    pool = np.arange(3, 200)
    probe = heads.repeated_token_probe(pool, 128, bos_token_id=1, n_sequences=32)
    null = heads.unrepeated_token_probe(pool, probe)
    assert null.tokens.shape == probe.tokens.shape and (null.seq_len, null.repeats, null.offset) == \
        (probe.seq_len, probe.repeats, probe.offset)
    assert (null.tokens[:, 0] == 1).all()
    blocks = null.tokens[:, 1:].reshape(32, probe.repeats, probe.seq_len)
    assert all(len(set(b.tolist())) == probe.seq_len for row in blocks for b in row)
    same_place = (blocks[:, 1:] == blocks[:, :1]).float().mean().item()
    assert same_place < 0.03  # chance is 1/197 per place; the repeated probe's is 1
    assert torch.equal(heads.unrepeated_token_probe(pool, probe).tokens, null.tokens)  # seeded


# --------------------------------------------------------------------------- the rule on hand-built heads

def test_handbuilt_induction_head__passes_with_a_large_z(handbuilt):
    # Catches a rule that cannot pass a perfect induction head (an SE or z computed wrongly,
    # the null taken from the repeated probe), and the hand-built circuit losing its head.
    _, _, _, (score, se, null, null_se), copying = handbuilt
    evidence = prefix_evidence(score, se, null, null_se)
    assert evidence.score[1, 0] > 0.95 and evidence.null[1, 0] < 0.15
    assert evidence.z[1, 0] > 20 and evidence.effect[1, 0] > 0.8
    assert (1, 0) in classify_induction_heads(score, copying, null, se, null_se)


def test_position_only_heads__do_not_pass_whatever_their_raw_score(handbuilt):
    # The negative controls. Head 1.1 attends seq_len - 1 tokens back whatever the tokens are
    # and copies: raw prefix matching 1.0 and OV copying +1, so the old rule (and any rule that
    # compares the raw score with a fixed threshold, or with uniform attention's ~0.06) calls it
    # an induction head; its own null is 1.0 too. The previous-token head 0.0 and the uniform
    # head 0.1 score what their nulls score. Catches judging the raw value alone and a null that
    # is not the head's own.
    _, _, _, (score, se, null, null_se), copying = handbuilt
    assert score[1, 1] > 0.95 and copying[1, 1] > 0.9
    assert classify_induction_heads(score, copying) == [(1, 0), (1, 1)]  # the old rule is fooled
    evidence = prefix_evidence(score, se, null, null_se)
    for head in ((1, 1), (0, 0), (0, 1)):
        assert abs(evidence.effect[head]) < 1e-6 and abs(evidence.z[head]) < 1, head
    assert classify_induction_heads(score, copying, null, se, null_se) == [(1, 0)]


# --------------------------------------------------------------------------- the rule's numbers

def test_rule__needs_z_effect_and_copying_each():
    # One column per way to fail: a significant but tiny effect (catches a rule without the
    # 0.1 minimum), a large effect within the noise (catches a rule without z), a raw 0.45
    # whose null is 0.40 (catches judging the raw value against 0.4), anti-copying and NaN
    # copying (catches dropping copying), and a clear head that passes.
    score = np.array([0.10, 0.45, 0.45, 0.60, 0.60, 0.60])
    null = np.array([0.05, 0.15, 0.40, 0.05, 0.05, 0.05])
    se = np.array([0.001, 0.08, 0.005, 0.01, 0.01, 0.01])
    copying = np.array([0.9, 0.9, 0.9, -0.3, np.nan, 0.9])
    evidence = prefix_evidence(score, se, null, np.full(6, 0.004))
    assert evidence.z[0] > 10 and evidence.effect[0] < RULE.min_effect
    assert evidence.effect[1] > 0.25 and evidence.z[1] < RULE.min_z
    got = classify_induction_heads(score[None], copying[None], null[None], se[None], np.full((1, 6), 0.004))
    assert got == [(0, 5)]


def test_rule__z_uses_both_standard_errors_and_is_finite_without_noise():
    # Catches an SE that ignores the null's spread (z 10 instead of 10 / sqrt 2) and a division
    # by a zero SE (a hand-built head scores the same on every sequence).
    evidence = prefix_evidence(np.array([0.5]), np.array([0.03]), np.array([0.2]), np.array([0.03]))
    assert evidence.z[0] == pytest.approx(0.3 / np.hypot(0.03, 0.03))
    exact = prefix_evidence(np.array([0.5, 0.2]), np.zeros(2), np.array([0.2, 0.2]), np.zeros(2))
    assert np.isfinite(exact.z).all() and exact.z[0] > 1e4 and exact.z[1] == 0
    assert np.isnan(prefix_evidence(np.array([0.5]), np.array([np.nan]), np.array([0.2]), np.array([0.01])).z[0])


# --------------------------------------------------------------------------- trend labels

CHECKPOINTS = np.r_[np.geomspace(2e4, 1.8e6, 36), np.arange(1.97e6, 8.2e6, 1.64e5)]  # like the default run
X = np.log10(CHECKPOINTS)


def sigmoid(centre: float, scale: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(X - np.log10(centre)) / scale))


def trend_of(effect: np.ndarray, seed: int, copying: float = 0.9, noise: float = 0.01):
    """head_trend of a head whose null is 0.03 and whose effect over it is ``effect`` plus white
    noise of sd ``noise`` and a walk of steps noise / 2 (score SE 0.01, null SE 0.003)."""
    rng = np.random.default_rng(seed)
    n = X.size
    wander = noise * rng.standard_normal(n) + np.cumsum(noise / 2 * rng.standard_normal(n)) * (effect > 0.05)
    return head_trend(CHECKPOINTS, 0.03 + effect + wander, np.full(n, copying), np.full(n, 0.03),
                      np.full(n, 0.01), np.full(n, 0.003))


SEEDS = range(6)


def test_trend__a_head_still_rising_at_the_end_is_forming():
    # Catches labelling by the end value alone ("formed" because it passes) and a slope not in
    # log tokens. The head rises 0.03 -> ~0.5 and is still at half its steepest slope at the end.
    labels = [trend_of(0.6 * sigmoid(5e6, 0.12), seed) for seed in SEEDS]
    assert all(t.label == FORMING and t.passes for t in labels), [(t.label, t.slope_z) for t in labels]


def test_trend__a_head_rising_but_not_yet_passing_is_forming_and_said_so():
    # Catches "forming" that demands the full rule (the prose head at 0.38 rising would
    # be dropped by a higher effect minimum) and one that needs no evidence above the null.
    t = trend_of(0.12 * sigmoid(7e6, 0.1), seed=0, noise=0.002)  # effect 0.08 at the end
    assert t.label == FORMING and not t.passes and t.z > RULE.min_z


def test_trend__a_plateau_is_formed_even_while_it_sharpens_slowly():
    # Catches a "rising" test without the steepest-slope share: like the stored default run the
    # head keeps gaining ~0.25 per decade after a rise of ~5 per decade, and has levelled off.
    for seed in SEEDS:
        t = trend_of(0.6 * sigmoid(2.9e6, 0.04) + 0.25 * np.clip(X - np.log10(3.5e6), 0, None), seed)
        assert t.label == FORMED and t.passes, (seed, t.slope, t.steepest, t.slope_z)


def test_trend__risen_then_fallen_is_fading():
    # Catches "fading" never given (a label from the end value alone: the end fails the rule, so
    # it would be none) and a fall judged without the noise.
    for seed in SEEDS:
        t = trend_of(0.7 * sigmoid(1e6, 0.03) - 0.68 * sigmoid(4e6, 0.05), seed)
        assert t.label == FADING and not t.passes and t.ever_passed, seed
        assert t.peak_effect > 0.6 and t.peak_tokens < 4e6


def test_trend__an_overshoot_that_settled_is_formed_and_a_flat_head_is_nothing():
    # Catches "fading" for any head below its peak (most formed heads overshoot a little) and a
    # label for a head that never left its null.
    for seed in SEEDS:
        settled = trend_of(0.8 * sigmoid(1e6, 0.03) - 0.2 * sigmoid(2e6, 0.03), seed)
        assert settled.label == FORMED, seed
        assert trend_of(np.zeros(X.size), seed).label == ""


def test_trend__anti_copying_heads_are_never_labelled():
    # Catches labels that look at attention only.
    assert trend_of(0.6 * sigmoid(5e6, 0.12), 0, copying=-0.4).label == ""
    assert trend_of(0.6 * sigmoid(1e6, 0.05), 0, copying=-0.4).label == ""


# --------------------------------------------------------------------------- stored runs

@pytest.mark.parametrize("name, label", [("default_phase", FORMED), ("markov_phase", FADING)])
def test_stored_runs__keep_their_heads(name, label):
    """The stored default and Markov runs (tests/data/*.npz) hold one induction head's prefix
    matching, without its null or standard errors (stored before either existed), so they
    exercise the old-rule path of the trend labels. Both keep their head: it passes at the end.
    The default head (0.60 at the window's end, 0.77 at the end, +0.36 per decade against a
    steepest 2.5) is formed; the Markov head peaked at 0.86 and is still falling at the end
    (0.63, -0.71 per decade, z -3.9): fading while it still passes. Catches a label that drops
    a head which passes, and a trend rule that reads the slow sharpening as forming."""
    data = np.load(DATA / f"{name}.npz", allow_pickle=False)
    t = head_trend(data["tokens"], data["head"], np.ones(data["head"].size))
    assert t.passes and t.label == label, t


# --------------------------------------------------------------------------- the report

def test_analyse_phase__uses_the_null_when_measured_and_the_old_rule_otherwise():
    # Catches analyse_phase ignoring the null (the positional head 1.1 would stay an induction
    # head), and a crash or a silent half-measured rule on analyses made before the null (NaN rows).
    tokens = np.r_[0.0, CHECKPOINTS]
    c = tokens.size
    prefix = np.full((c, 2, 2), 0.03)
    prefix[1:, 1, 0] = 0.03 + 0.7 * sigmoid(1e6, 0.03)
    prefix[:, 1, 1] = 0.95  # positional: as high on the null
    null = np.full_like(prefix, 0.03)
    null[:, 1, 1] = 0.95
    se, copying, icl = np.full_like(prefix, 0.01), np.full_like(prefix, 0.5), np.zeros(c)
    with_null = analyse_phase(tokens, icl, tokens, icl, prefix, copying, n_boot=10, null=null,
                              prefix_stderr=se, null_stderr=se)
    assert with_null.rule == NULL_RULE and with_null.induction_heads == [(1, 0)]
    assert with_null.labelled == [(1, 0)] and with_null.trends[(1, 0)].label == FORMED
    flat = with_null.to_flat_dict()
    assert flat["phase/head_labels"] == "1.0:formed" and flat["phase/induction_rule"] == "null"
    assert flat["phase/head_1.0_null"] == pytest.approx(0.03) and flat["phase/head_1.0_z"] > 20
    assert "phase/head_1.1_label" not in flat
    old = null.copy()
    old[:5] = np.nan  # the first checkpoints analysed before the null existed
    legacy = analyse_phase(tokens, icl, tokens, icl, prefix, copying, n_boot=10, null=old,
                           prefix_stderr=se, null_stderr=se)
    assert legacy.rule == LEGACY and legacy.induction_heads == [(1, 0), (1, 1)]
    assert analyse_phase(tokens, icl, tokens, icl, prefix, copying, n_boot=10).rule == LEGACY


def test_rule_numbers__are_the_documented_ones():
    # Catches a change of the rule's numbers without its docstring, docs/PHASE.md and README.
    assert (RULE.min_z, RULE.min_effect, RULE.min_copying, RULE.legacy_prefix) == (4.0, 0.1, 0.0, 0.4)
    assert InductionRule() == RULE
