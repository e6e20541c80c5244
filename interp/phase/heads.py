"""Which heads are induction heads, and when each formed.

All read stored per-checkpoint scores only ([C, L, H] or one checkpoint's [L, H]): prefix
matching with its standard error over the probe's sequences, the same score on the null
probe (nothing repeated) with its standard error, and OV copying.

The rule (:func:`classify_induction_heads`), at one checkpoint, for head (l, h):

    effect = s - s0,   SE = sqrt(SE_s^2 + SE_0^2),   z = effect / SE

    induction head  <=>  z > min_z (4)  and  effect > min_effect (0.1)  and  copying > 0

- s is the prefix-matching score on repeated random tokens (25 x 4 after BOS; the mean over
  the ``prefix_sequences`` = 32 sequences of each sequence's mean attention from a query in a
  later repeat onto the tokens that followed its earlier copies), SE_s its standard error
  (sd over the sequences / sqrt(32)).
- s0 is the null: the same head's score, with the same target mask, on the same layout with
  nothing repeated (:func:`interp.measures.heads.unrepeated_token_probe`: every block drawn
  independently), SE_0 its standard error over its own 32 sequences (drawn independently of
  the repeated ones, hence the sum of variances). A head whose attention does not follow token
  identity (previous-token, fixed offset, uniform, resting on BOS) scores the same on both in
  expectation, whatever its raw score: a head that attends ``seq_len - 1`` tokens back puts
  all its attention on the induction targets of the repeated probe (s = 1) and as much on the
  null (s0 = 1). Why this null rather than uniform causal attention (r / (i + 1) at query i of
  repeat r, about 0.03 here): uniform attention is one head's pattern, not this head's; a
  positional head is far from uniform, and only its own score on unrelated tokens says how
  much of its score the positions alone explain. It costs one more forward pass of 32
  sequences per checkpoint (:mod:`interp.analysis`).
- min_z = 4: one-sided p = 3e-5 for one head at one checkpoint, so that among every head of a
  12 x 12 model at the final checkpoint a head passes by chance with probability below 0.5%
  (Bonferroni). The 32 sequences give the SE roughly 31 degrees of freedom, whose t
  distribution puts z = 4 at p = 2e-4, still below 0.05 / 144.
- min_effect = 0.1: a significant but small effect is not an induction head. 0.1 of every
  later-repeat query's attention moved onto the targets beyond what positions explain; trained
  induction heads of the default run reach 0.6-0.8 above a null of about 0.03.
- copying > 0: the OV copying score Re(sum lambda) / sum |lambda| over the eigenvalues of the
  head's OV circuit on the copyable tokens, W_E[S] W_V W_O W_U[:, S], is positive: summed over
  its eigen-directions the head raises the logits of the tokens it attends to more than it
  lowers them (it copies rather than suppresses). A weight-based score without sampling noise,
  so it has no z. NaN (not measured) never passes.

Analyses made before the null series existed classify by the old rule (s > 0.4 and copying > 0)
and say so (:data:`LEGACY` in ``phase/induction_rule``). The trend label of each head over
training is :mod:`interp.phase.trend`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from interp.phase.smoothing import log_tokens_and

# ``phase/induction_rule`` values: which rule classified the run's heads.
NULL_RULE = "null"
LEGACY = "legacy"


@dataclass(frozen=True)
class InductionRule:
    """The numbers of the induction-head rule (module docstring)."""

    min_z: float = 4.0
    min_effect: float = 0.1
    min_copying: float = 0.0
    legacy_prefix: float = 0.4  # the old cliff, only for analyses without the null series


RULE = InductionRule()
# Standard errors below this count as this (prefix-matching units): see prefix_evidence.
SE_FLOOR = 1e-6


@dataclass(frozen=True)
class PrefixEvidence:
    """Prefix matching against its null, elementwise over any shape ([C, L, H] or [L, H])."""

    score: np.ndarray
    null: np.ndarray
    effect: np.ndarray  # score - null
    stderr: np.ndarray  # sqrt(SE_score^2 + SE_null^2)
    z: np.ndarray  # effect / stderr


def prefix_evidence(score, score_stderr, null, null_stderr) -> PrefixEvidence:
    """effect = score - null and z = effect / max(SE, SE_FLOOR), SE = sqrt(score_stderr^2 + null_stderr^2).

    The floor (1e-6, far below what 32 probe sequences resolve) gives a difference measured
    without noise (a hand-built head, whose score is the same on every sequence) a finite z:
    0 for no effect, huge otherwise; the effect minimum of the rule then decides. NaN anywhere
    gives NaN (never passes).
    """
    score, null = (np.asarray(a, dtype=np.float64) for a in (score, null))
    stderr = np.hypot(np.asarray(score_stderr, dtype=np.float64), np.asarray(null_stderr, dtype=np.float64))
    effect = score - null
    return PrefixEvidence(score, null, effect, stderr, effect / np.maximum(stderr, SE_FLOOR))


def passes_rule(evidence: PrefixEvidence, copying, rule: InductionRule = RULE) -> np.ndarray:
    """Boolean mask: z > rule.min_z and effect > rule.min_effect and copying > rule.min_copying
    (strict; NaN compares False)."""
    copy = np.asarray(copying, dtype=np.float64)
    return (evidence.z > rule.min_z) & (evidence.effect > rule.min_effect) & (copy > rule.min_copying)


def passes_legacy_rule(prefix_matching, copying, rule: InductionRule = RULE) -> np.ndarray:
    """The old rule, for analyses without the null: prefix matching > 0.4 and copying > 0."""
    prefix = np.asarray(prefix_matching, dtype=np.float64)
    copy = np.asarray(copying, dtype=np.float64)
    return (prefix > rule.legacy_prefix) & (copy > rule.min_copying)


def classify_induction_heads(prefix_matching, copying, null=None, prefix_stderr=None,
                             null_stderr=None, rule: InductionRule = RULE) -> list[tuple[int, int]]:
    """(layer, head) pairs that are induction heads at one checkpoint ([L, H] inputs), sorted.

    With ``null``, ``prefix_stderr`` and ``null_stderr`` the rule of the module docstring; with
    any of them None, the old rule (prefix matching > ``rule.legacy_prefix`` and copying > 0)
    that analyses without the null series fall back to. Pass the final checkpoint's scores to
    classify the run.
    """
    if null is None or prefix_stderr is None or null_stderr is None:
        chosen = passes_legacy_rule(prefix_matching, copying, rule)
    else:
        chosen = passes_rule(prefix_evidence(prefix_matching, prefix_stderr, null, null_stderr), copying, rule)
    return [(int(layer), int(head)) for layer, head in np.argwhere(chosen)]


def formation_x(x: np.ndarray, scores: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Row-wise log10 formation tokens of scores [B, C] for thresholds [B]; NaN if never."""
    above = scores > threshold[:, None]
    below_any = (~above).any(axis=1)
    last_below = np.where(below_any, x.size - 1 - np.argmax(~above[:, ::-1], axis=1), -1)
    k = last_below + 1  # first checkpoint from which the score stays above
    formed = above[:, -1] & np.isfinite(threshold)
    k_safe = np.clip(k, 1, x.size - 1)
    rows = np.arange(scores.shape[0])
    s0, s1 = scores[rows, k_safe - 1], scores[rows, k_safe]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.clip((threshold - s0) / (s1 - s0), 0.0, 1.0)
    crossing = x[k_safe - 1] + np.nan_to_num(t, nan=1.0) * (x[k_safe] - x[k_safe - 1])
    crossing = np.where(k == 0, x[0], crossing)  # above from the first checkpoint on
    return np.where(formed, crossing, np.nan)


def formation_time(tokens: np.ndarray, scores: np.ndarray, threshold: float | None = None
                   ) -> float | None:
    """Tokens at which one head's score series forms, or None if it never does.

    The threshold is ``threshold`` or, when None, half the final score (so "formed" means
    having reached half of where it ends; needs a positive final score). The head forms at the
    first checkpoint k from which the score stays above the threshold to the end; the time is
    interpolated linearly in log10 tokens between checkpoints k-1 and k, where the score
    crosses the threshold. A score above the threshold from the first checkpoint on forms
    there. Checkpoints at 0 tokens are ignored.
    """
    x, s = log_tokens_and(tokens, scores)
    if x.size == 0:
        return None
    level = s[-1] / 2 if threshold is None else threshold
    if not level > 0 and threshold is None:
        return None
    value = formation_x(x, s[None], np.array([level], dtype=np.float64))[0]
    return None if np.isnan(value) else float(10 ** value)
