"""The mechanism over training: K-composition of a head with every earlier head, against the
random baseline, and whether it rises inside the phase-change window (Olsson et al. 2022,
argument 5: the induction head is formed by K-composition with a previous-token head, and that
composition appears when in-context learning does).

Everything here works from stored series only (the ``analysis`` rows of metrics.h5 and the
window of the ``phase`` group); nothing loads a model. numpy only: torch is imported lazily,
and only by :func:`random_baseline`, so the app's torch-free views may import this module.

Conventions (those of ``interp.phase``): time is log10(tokens), and checkpoints at 0 tokens
(the initialisation) are left out of the series and of every statistic, as they are out of the
window search: log10(0) is undefined, and a log axis has no place for them. Scores are the
stored ``composition_<kind>`` [A, L, H, L, H] indexed [l1, h1, l2, h2].

The rise statistic of one series s over the checkpoints c_1..c_n (tokens > 0) and the window
[start, end] (tokens) is

- ``first = s(c_1)``, ``last = s(c_n)``, ``total = last - first`` (single checkpoints: a
  composition score is a deterministic function of the weights, with no probe noise to average
  out; the first positive checkpoint is one optimiser step after the initialisation);
- ``before`` = mean of s over the checkpoints with tokens <= start (up to and including the
  start, as ``PhaseWindow.icl_before``); ``after`` = mean over tokens >= end;
- ``at_start``, ``at_end`` = s linearly interpolated in log10(tokens) at start and end (equal to
  the stored values when, as now, the window's ends are checkpoints; clamped to the first and
  last checkpoint outside the run); ``inside = at_end - at_start``;
- ``share = inside / total``: the share of the first-to-last change that happens inside the
  window. Not clipped: above 1 when the series rises inside the window and falls back outside,
  negative when it moves against its overall direction inside. Computed for a fall too (then
  it is the share of the fall); ``rises`` says which way the series went.
- ``|total| < min_change`` (default 0.01, in score units; scores lie in [0, 1]): the series did
  not change, so there is no change to apportion: ``share`` is NaN and ``rises`` False. 0.01 is
  about the spread (sd) of single random head pairs at the smallest widths used here (d_model
  32, d_head 16: 0.013; d_model 64, d_head 32: 0.004; d_model 256, d_head 64: 0.001), so a
  smaller change is within what re-drawing random weights would give.
- No window (``window`` None, or NaN ends): ``before``, ``after``, ``at_start``, ``at_end``,
  ``inside`` and ``share`` are NaN, ``has_window`` is False and ``note`` says so; ``first``,
  ``last``, ``total`` and ``rises`` are still given, because they do not need a window.

The previous-token head of a head in layer l2 is the head of an earlier layer (l1 < l2) with
the highest stored ``previous_token`` score at the last analysed checkpoint (the formed
circuit; early checkpoints have no previous-token head to find). None for a layer-0 head or
when the rows have no ``previous_token`` scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

#: A first-to-last change smaller than this (score units) is no change (see the module docstring).
MIN_CHANGE = 0.01
#: Random head pairs drawn for the baseline's mean and sd.
BASELINE_SAMPLES = 64


@dataclass(frozen=True)
class Baseline:
    """Composition score of random Gaussian heads: mean and sd over ``n_samples`` single pairs."""

    kind: str
    mean: float
    sd: float
    n_samples: int
    d_model: int
    d_head: int


@dataclass(frozen=True)
class Rise:
    """The rise statistic of one series (module docstring: formula and choices)."""

    first: float
    last: float
    total: float
    before: float
    after: float
    at_start: float
    at_end: float
    inside: float
    share: float
    rises: bool
    has_window: bool
    note: str


@dataclass(frozen=True)
class EarlierHead:
    """One earlier head (l1, h1): its composition series with the head, over ``tokens``."""

    layer: int
    head: int
    series: np.ndarray  # [checkpoints with tokens > 0]
    rise: Rise
    previous_token: float  # its previous-token score at the last checkpoint (NaN if not stored)

    @property
    def name(self) -> str:
        return f"{self.layer}.{self.head}"


@dataclass(frozen=True)
class CompositionTrend:
    """Composition of head (layer, head) with every earlier head over training."""

    layer: int
    head: int
    kind: str
    tokens: np.ndarray  # [checkpoints with tokens > 0]
    window: tuple[float, float] | None
    baseline: Baseline | None
    earlier: list[EarlierHead]
    previous_token_head: tuple[int, int] | None

    @property
    def name(self) -> str:
        return f"{self.layer}.{self.head}"

    def of(self, layer: int, head: int) -> EarlierHead:
        for e in self.earlier:
            if (e.layer, e.head) == (layer, head):
                return e
        raise KeyError(f"head {layer}.{head} is not earlier than head {self.name}")

    @property
    def previous(self) -> EarlierHead | None:
        """The earlier head that is the previous-token head, or None."""
        return self.of(*self.previous_token_head) if self.previous_token_head else None


def window_from_phase(attrs: dict[str, Any]) -> tuple[float, float] | None:
    """(start, end) tokens from the ``phase`` group's attributes, or None without a window."""
    try:
        start, end = float(attrs.get("window_start_tokens")), float(attrs.get("window_end_tokens"))
    except (TypeError, ValueError):
        return None
    return (start, end) if np.isfinite(start) and np.isfinite(end) else None


@lru_cache(maxsize=32)
def random_baseline(d_model: int, d_head: int, kind: str = "k", n_samples: int = BASELINE_SAMPLES,
                    seed: int = 0) -> Baseline:
    """Mean and sd of the ``kind`` composition score of ``n_samples`` random head pairs.

    Sample i is ``interp.measures.circuits.composition_baseline(d_model, d_head, n_samples=1,
    seed=seed + i)``: one pair of i.i.d. standard Gaussian heads scored exactly as a model's
    heads are, so the mean estimates the same number as ``composition_baseline`` (its own mean
    of 32 pairs from seed 0 differs from this one in the third decimal) and the sd (ddof 1) is
    the spread of a single random pair: the scale on which a model pair is "above baseline".
    Deterministic, so cached per process (the result is immutable). Imports torch.
    """
    from interp.measures.circuits import composition_baseline

    if n_samples < 2:
        raise ValueError("the baseline's sd needs n_samples >= 2")
    scores = np.array([composition_baseline(d_model, d_head, n_samples=1, seed=seed + i)[kind]
                       for i in range(n_samples)])
    return Baseline(kind, float(scores.mean()), float(scores.std(ddof=1)), n_samples, d_model, d_head)


def rise_statistic(tokens: np.ndarray, series: np.ndarray, window: tuple[float, float] | None,
                   min_change: float = MIN_CHANGE) -> Rise:
    """The rise statistic of ``series`` over checkpoints at ``tokens`` (module docstring).

    Checkpoints at 0 tokens or with a NaN score are left out. Raises ValueError when fewer
    than two checkpoints remain (there is no first-to-last change).
    """
    tokens, series = np.asarray(tokens, dtype=float), np.asarray(series, dtype=float)
    keep = (tokens > 0) & np.isfinite(series)
    x, s = np.log10(tokens[keep]), series[keep]
    order = np.argsort(x, kind="stable")
    x, s = x[order], s[order]
    if len(s) < 2:
        raise ValueError("the rise statistic needs at least two checkpoints with tokens > 0")
    first, last = float(s[0]), float(s[-1])
    total = last - first
    changed = abs(total) >= min_change
    rises = total >= min_change
    direction = "rises" if rises else ("falls" if changed else f"no change (|last - first| < {min_change:g})")
    nan = float("nan")
    if window is None or not (np.isfinite(window[0]) and np.isfinite(window[1])):
        return Rise(first, last, total, nan, nan, nan, nan, nan, nan, rises, False,
                    f"{direction}; no phase-change window, so no before/after or share inside")
    start, end = np.log10(window[0]), np.log10(window[1])
    before = float(s[x <= start].mean()) if (x <= start).any() else nan
    after = float(s[x >= end].mean()) if (x >= end).any() else nan
    at_start, at_end = float(np.interp(start, x, s)), float(np.interp(end, x, s))
    inside = at_end - at_start
    share = inside / total if changed else nan
    note = direction if changed else f"{direction}: no change to apportion to the window"
    return Rise(first, last, total, before, after, at_start, at_end, inside, share, rises, True, note)


def previous_token_head(rows: dict[str, np.ndarray], layer: int) -> tuple[int, int] | None:
    """The earlier-layer head with the highest previous-token score at the last checkpoint."""
    scores = rows.get("previous_token")
    if scores is None or layer < 1 or not len(scores):
        return None
    last = np.asarray(scores, dtype=float)[np.argmax(np.asarray(rows["tokens"]))][:layer]  # [l1 < layer, H]
    if not np.isfinite(last).any():
        return None
    l1, h1 = np.unravel_index(np.nanargmax(last), last.shape)
    return int(l1), int(h1)


def composition_trend(rows: dict[str, np.ndarray], layer: int, head: int,
                      window: tuple[float, float] | None = None, baseline: Baseline | None = None,
                      kind: str = "k", min_change: float = MIN_CHANGE) -> CompositionTrend:
    """The ``kind`` composition of head (layer, head) with every earlier head over training.

    ``rows``: the analysis rows sorted by step (``interp.analysis.analysis_series``, or the
    app's ``series_by_step``) with ``tokens`` [A], ``composition_<kind>`` [A, L, H, L, H]
    and, optionally, ``previous_token`` [A, L, H]. ``window``: (start, end) tokens or None
    (:func:`window_from_phase`). ``baseline``: from :func:`random_baseline`, or None (the
    statistics do not use it; it is carried for display). Earlier heads are every (l1, h1)
    with l1 < layer, in order; none for a layer-0 head.
    """
    key = f"composition_{kind}"
    if key not in rows:
        raise KeyError(f"the analysis rows have no '{key}'; rerun 'interp analyze'")
    tokens = np.asarray(rows["tokens"], dtype=float)
    scores = np.asarray(rows[key], dtype=float)
    n_heads = scores.shape[2]
    keep = tokens > 0
    prev = rows.get("previous_token")
    final = (np.asarray(prev, dtype=float)[np.argmax(tokens)] if prev is not None and len(prev)
             else np.full(scores.shape[1:3], np.nan))
    earlier = []
    for l1 in range(layer):
        for h1 in range(n_heads):
            series = scores[:, l1, h1, layer, head]
            earlier.append(EarlierHead(l1, h1, series[keep], rise_statistic(tokens, series, window, min_change),
                                       float(final[l1, h1])))
    return CompositionTrend(layer, head, kind, tokens[keep], window, baseline, earlier,
                            previous_token_head(rows, layer))


def describe(trend: CompositionTrend) -> str:
    """One line on the head's composition with its previous-token head, e.g. ``K-composition
    with previous-token head 0.1: 0.12 -> 0.31 before/after the window (baseline 0.09 +- 0.004),
    78% of the rise (0.10 -> 0.33) inside the window``: means before/after the window, the
    baseline's mean +- sd, the share inside and the first -> last values it is a share of."""
    prev = trend.previous
    if prev is None:
        why = "no earlier-layer head" if not trend.earlier else "no previous-token scores stored"
        return f"{trend.kind.upper()}-composition: {why}"
    r, b = prev.rise, trend.baseline
    base = f" (baseline {b.mean:.2f} +- {b.sd:.3f})" if b else ""
    head = f"{trend.kind.upper()}-composition with previous-token head {prev.name}"
    if not r.has_window:
        return (f"{head}: {r.first:.2f} -> {r.last:.2f} first to last checkpoint{base}; "
                f"no phase-change window, so no share inside")
    if not np.isfinite(r.share):
        return f"{head}: {r.before:.2f} -> {r.after:.2f} before/after the window{base}; {r.note}"
    what = "rise" if r.rises else "fall"
    return (f"{head}: {r.before:.2f} -> {r.after:.2f} before/after the window{base}, "
            f"{100 * r.share:.0f}% of the {what} ({r.first:.2f} -> {r.last:.2f}) inside the window")
