"""Where each head stands at the end of training: formed, forming, fading, or none of these.

Reads stored series only. For head (l, h) at each checkpoint c with tokens > 0, with
x_c = log10(tokens_c), the rule's evidence (:mod:`interp.phase.heads`) gives the effect
d_c = s_c - s0_c (prefix matching above its null; the raw score s_c for analyses without the
null), its z_c and pass_c (the whole rule, copying included). Then, with C checkpoints:

- **tail** = the last k = max(5, ceil(0.2 C)) checkpoints (k = 15 of the default run's 75).
  slope b = the least-squares slope of d on x over the tail (per decade of tokens).
- **noise**: the effect's jitter-plus-walk noise between checkpoints
  (:func:`interp.phase.noise.increment_noise`, the model the window rule uses: neighbouring
  checkpoints share their history, so a score wanders as well as jitters) estimated on the
  tail alone: before a head forms its score is quiet (the default run's head moves by ~0.002
  between checkpoints, by ~0.015 once formed), and the formation itself is signal, so a longer
  stretch would understate or overstate it (on the stored Markov run, 13 tail checkpoints give
  a walk of 0.007-0.02 per checkpoint, 20-30 reach back into the formation and give 0.075-0.13).
  sd(b) = that noise's sd of the slope's weights w_c = (x_c - mean x) / sum (x - mean x)^2 on
  the tail. Where it cannot be estimated (a tail of fewer than 6 checkpoints), the tail fit's
  residual sd (white noise, k - 2 degrees of freedom). slope z = b / sd(b).
- **steepest** = the largest least-squares slope of d over any k consecutive checkpoints.
- **rising** <=> slope z >= 3 and b >= max(0.1 per decade, 0.25 x steepest): significant,
  material (0.1 more prefix matching per tenfold more tokens) and at least a quarter of the
  head's own fastest rise, so that the slow sharpening that follows a formation (the default
  run's head: +0.36 per decade at the end against 2.5 over its steepest 15 checkpoints)
  counts as levelled off.
- **falling** <=> slope z <= -3 and b <= -0.1 per decade.
- **fallen** <=> max_c d_c - mean of d over the tail >= 0.1 and that difference is at least 3
  times its noise sd (the same noise model, weights +1 at the peak and -1/k on the tail).

Labels, in this order:

- ``forming``: rising, the end's z above the rule's min_z (the head already attends above its
  null, if not yet by 0.1) and copying > 0 at the end: the head is still forming when the run
  stops (train on to see where it levels off).
- ``fading``: passed the rule at some checkpoint, fallen, and at the end either fails the rule
  or is still falling. A head that overshot and settled lower while still passing is formed.
- ``formed``: passes the rule at the end (and is neither of the above).
- none (``""``) otherwise.

Fewer than 3 checkpoints give no slope (NaN): a passing head is then ``formed`` on its end
value alone. A large rise that the noise cannot confirm is not ``rising``: the label errs
towards ``formed``, and the report shows the slope and its z beside it.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

import numpy as np

from interp.phase.heads import (RULE, SE_FLOOR, InductionRule, passes_legacy_rule, passes_rule,
                                 prefix_evidence)
from interp.phase.noise import increment_noise
from interp.phase.smoothing import log_tokens_and

FORMED, FORMING, FADING = "formed", "forming", "fading"


@dataclass(frozen=True)
class TrendRule:
    """The numbers of the trend labels (module docstring)."""

    tail_share: float = 0.2
    min_tail: int = 5
    slope_z: float = 3.0
    min_slope: float = 0.1  # effect per decade of tokens
    steepest_share: float = 0.25
    min_fall: float = 0.1
    fall_z: float = 3.0


TREND = TrendRule()


@dataclass(frozen=True, eq=False)
class HeadTrend:
    """One head's label and the evidence behind it (end values are at the last checkpoint).
    Equal when every field is, NaN equal to NaN (the old rule has no null and no z)."""

    label: str  # "formed", "forming", "fading" or ""
    passes: bool  # the rule at the last checkpoint
    prefix: float  # s
    null: float  # s0 (NaN without the null series)
    effect: float  # s - s0 (s without the null)
    z: float  # effect / SE (NaN without the null)
    copying: float
    slope: float  # effect per decade over the tail
    slope_z: float
    steepest: float  # steepest slope over any tail-length stretch
    tail: int  # checkpoints in the tail
    peak_effect: float
    peak_tokens: float
    ever_passed: bool


    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HeadTrend):
            return NotImplemented
        return all(x == y or (x != x and y != y) for x, y in zip(astuple(self), astuple(other)))

    __hash__ = None  # equality with NaN; never used as a key


def tail_length(n: int, rule: TrendRule = TREND) -> int:
    """k = max(min_tail, ceil(tail_share * n)), at most n."""
    return min(n, max(rule.min_tail, math.ceil(rule.tail_share * n)))


def slope_weights(x: np.ndarray) -> np.ndarray:
    """Weights w with w @ y = the least-squares slope of y on x (they sum to zero)."""
    centred = x - x.mean()
    return centred / float(centred @ centred)


def steepest_slope(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """The largest least-squares slope of y over any k consecutive points (NaN if k < 3)."""
    if k < 3 or x.size < k:
        return float("nan")
    return max(float(slope_weights(x[i:i + k]) @ y[i:i + k]) for i in range(x.size - k + 1))


def contrast_sd(x: np.ndarray, y: np.ndarray, weights: np.ndarray, k: int) -> float:
    """sd of weights @ y (weights sum to zero) under the noise of y near the end: the
    jitter-plus-walk model on the last k checkpoints, or, where it cannot be estimated, the
    residual sd of a straight line through them (white noise)."""
    near = np.zeros(x.size, dtype=bool)
    near[-k:] = True
    noise = increment_noise(y, near)
    if np.isfinite(noise.white):
        return float(noise.sd_of(weights))
    tail_x, tail_y = x[-k:], y[-k:]
    if k < 3:
        return float("nan")
    b = slope_weights(tail_x) @ tail_y
    residual = tail_y - tail_y.mean() - b * (tail_x - tail_x.mean())
    white = math.sqrt(float(residual @ residual) / (k - 2))
    return white * float(np.sqrt(weights @ weights))


@dataclass(frozen=True)
class Movement:
    """Whether a series still moves at the end (module docstring: slope, steepest, rising,
    falling), with its evidence. The labels and ``train.until=phase``'s stop rule
    (:mod:`interp.phase.complete`) both read it, so they cannot disagree."""

    slope: float  # per decade of tokens, over the tail (NaN with a tail under 3)
    slope_z: float
    steepest: float
    tail: int
    rising: bool
    falling: bool
    fallen: bool  # the tail's mean lies clearly below the series' peak

    @property
    def still_falling(self) -> bool:
        """Falling now, after a fall that matters: what a ``fading`` label needs of the trend."""
        return self.falling and self.fallen


def movement(x: np.ndarray, effect: np.ndarray, trend: TrendRule = TREND) -> Movement:
    """:class:`Movement` of ``effect`` [C] over x = log10(tokens) [C] (both without NaN)."""
    k = tail_length(x.size, trend)
    slope, slope_sd = float("nan"), float("nan")
    if k >= 3:
        weights = np.zeros(x.size)
        weights[-k:] = slope_weights(x[-k:])
        slope, slope_sd = float(weights @ effect), contrast_sd(x, effect, weights, k)
    slope_z = _ratio(slope, slope_sd)
    steepest = steepest_slope(x, effect, k)
    rising = slope_z >= trend.slope_z and slope >= max(trend.min_slope, trend.steepest_share * steepest)
    falling = slope_z <= -trend.slope_z and slope <= -trend.min_slope
    fall_weights = np.zeros(x.size)
    fall_weights[-k:] = -1.0 / k
    fall_weights[int(np.argmax(effect))] += 1.0
    fall = float(fall_weights @ effect)
    fall_z = _ratio(fall, contrast_sd(x, effect, fall_weights, k)) if k >= 3 else float("nan")
    fallen = fall >= trend.min_fall and fall_z >= trend.fall_z
    return Movement(slope, slope_z, steepest, k, bool(rising), bool(falling), bool(fallen))


def head_trend(tokens, prefix, copying, null=None, prefix_stderr=None, null_stderr=None,
               rule: InductionRule = RULE, trend: TrendRule = TREND) -> HeadTrend | None:
    """One head's :class:`HeadTrend` from its series over checkpoints ([C] each).

    Without ``null`` (or either standard error) the effect is the raw score and passing is the
    old rule. Checkpoints at 0 tokens or with a NaN input are left out; None if none is left.
    """
    with_null = null is not None and prefix_stderr is not None and null_stderr is not None
    c = np.size(tokens)
    series = [prefix, copying] + ([null, prefix_stderr, null_stderr] if with_null else [])
    x, *kept = log_tokens_and(tokens, *[np.broadcast_to(np.asarray(s, dtype=np.float64), (c,)) for s in series])
    if x.size == 0:
        return None
    if with_null:
        score, copy, s0, se, se0 = kept
        evidence = prefix_evidence(score, se, s0, se0)
        passing = passes_rule(evidence, copy, rule)
        effect, z, null_end = evidence.effect, evidence.z, float(s0[-1])
    else:
        score, copy = kept
        passing = passes_legacy_rule(score, copy, rule)
        effect, z, null_end = score, np.full(x.size, np.nan), float("nan")
    move = movement(x, effect, trend)
    k, slope, slope_z, steepest = move.tail, move.slope, move.slope_z, move.steepest
    peak = int(np.argmax(effect))

    passes, end_z = bool(passing[-1]), float(z[-1])
    rising, falling, fallen = move.rising, move.falling, move.fallen
    attends = end_z > rule.min_z if with_null else True  # the old rule has no z to ask for
    if rising and attends and copy[-1] > rule.min_copying:
        label = FORMING
    elif passing.any() and fallen and (not passes or falling):
        label = FADING
    elif passes:
        label = FORMED
    else:
        label = ""
    return HeadTrend(label, passes, float(score[-1]), null_end, float(effect[-1]), end_z, float(copy[-1]),
                     slope, slope_z, steepest, k, float(effect[peak]), float(10 ** x[peak]), bool(passing.any()))


def _ratio(value: float, sd: float) -> float:
    """value / max(sd, SE_FLOOR) (NaN for NaN): a noiseless series (synthetic, hand-built) gets a
    finite z, and a slope that is rounding error (1e-14) on a constant series a z of about 0."""
    if not (np.isfinite(value) and np.isfinite(sd)):
        return float("nan")
    return value / max(sd, SE_FLOOR)


def head_trends(tokens, prefix, copying, null=None, prefix_stderr=None, null_stderr=None,
                rule: InductionRule = RULE, trend: TrendRule = TREND) -> dict[tuple[int, int], HeadTrend]:
    """:func:`head_trend` of every head of [C, L, H] series (the null and both standard errors
    all given, or none); heads without a usable checkpoint are left out."""
    prefix = np.asarray(prefix, dtype=np.float64)
    if prefix.ndim != 3 or prefix.shape[0] == 0:
        return {}
    extra = [null, prefix_stderr, null_stderr]
    series = [prefix, copying] + (extra if all(a is not None for a in extra) else [])
    arrays = [np.asarray(a, dtype=np.float64) for a in series]
    out = {}
    for layer in range(prefix.shape[1]):
        for head in range(prefix.shape[2]):
            found = head_trend(tokens, *[a[:, layer, head] for a in arrays], rule=rule, trend=trend)
            if found is not None:
                out[(layer, head)] = found
    return out
