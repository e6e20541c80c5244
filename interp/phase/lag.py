"""The lag of a head's formation behind the ICL change, with its uncertainty.

lag = log10(head formation tokens) - log10(the window's steepest point), in decades.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

from interp.phase.heads import formation_x
from interp.phase.noise import block_bootstrap, block_length
from interp.phase.smoothing import BANDWIDTH, local_linear, log_tokens_and, vertex
from interp.phase.window import PhaseWindow

Series = Float[np.ndarray, "checkpoint"]


@dataclass(frozen=True)
class Lag:
    """Head formation relative to the ICL change, in decades: log10(head) - log10(ICL)."""

    lag_log10: float  # > 0: the head forms after the ICL change
    ratio: float  # 10 ** lag_log10, head tokens / ICL tokens
    head_tokens: float
    icl_tokens: float
    resolution_log10: float  # checkpoint spacing around the events; smaller lags are unresolved
    low: float  # 90% bootstrap interval of the lag (decades)
    high: float
    n_boot: int
    block: int = 1  # residuals resampled in blocks of this many consecutive checkpoints

    @property
    def resolved(self) -> bool:
        """The lag exceeds the checkpoint spacing AND its interval excludes 0."""
        return abs(self.lag_log10) > self.resolution_log10 and (self.low > 0 or self.high < 0)


def _spacing(x: Series, at: float) -> float:
    """Widest gap between consecutive checkpoints adjacent to position ``at`` (decades)."""
    i = int(np.clip(np.searchsorted(x, at), 1, x.size - 1))
    gaps = [x[i] - x[i - 1]] + ([x[i + 1] - x[i]] if x[i] == at and i + 1 < x.size else [])
    gaps += [x[i - 1] - x[i - 2]] if x[i - 1] == at and i >= 2 else []
    return float(max(gaps))


def _bootstrap_series(level_map: np.ndarray, y: Series, n_boot: int, rng: np.random.Generator
                      ) -> Float[np.ndarray, "boot_plus_one checkpoint"]:
    """[n_boot + 1, C]: row 0 is the smoothed series itself (the bootstrap world's truth), rows
    1.. the smoothed series plus residuals resampled in moving blocks (:func:`block_bootstrap`)."""
    level = level_map @ y
    draws = np.zeros((n_boot + 1, y.size))
    draws[1:] = block_bootstrap(y - level, n_boot, rng)
    return level + draws


def formation_lag(head_time: float, window: PhaseWindow, tokens: Series, icl: Series,
                  head_tokens: Series, head_scores: Series, n_boot: int = 1000, seed: int = 0,
                  threshold: float | None = None, bandwidth: float = BANDWIDTH) -> Lag:
    """Lag of a head's formation behind the ICL change, with two honest uncertainties.

    lag = log10(head_time) - log10(window.peak_tokens) decades; ratio = 10 ** lag.

    (a) Resolution: the widest checkpoint gap next to either event (decades). Neither event
        is located better than its checkpoints, so a smaller |lag| is indistinguishable from 0.
    (b) Noise: a moving-block residual bootstrap. Each series is smoothed
        (:func:`interp.phase.smoothing.local_linear`, ``bandwidth``); its residuals are
        resampled in blocks of ceil(C^(1/3)) consecutive checkpoints
        (:func:`interp.phase.noise.block_bootstrap`: blocks keep correlated training noise
        correlated, where single draws made the interval too narrow) onto the smoothed curve,
        and the events are located again: the ICL change as the steepest smoothed descent
        among the window's checkpoints (the window is held fixed: the question is where inside
        it the drop is, not whether there is one), refined by a parabola; the head by
        :func:`interp.phase.heads.formation_time`'s rule with ``threshold`` (None: half of each
        resample's final score). The interval is the basic (reverse-percentile) bootstrap:
        with d = resampled lag minus the lag of the smoothed series itself,
        ``low, high = lag - q95(d), lag - q5(d)``, centred on the estimate even when smoothing
        shifts the events.

    What it leaves out: the variance between training seeds (see interp.seeds for intervals
    across seeds), and that of the probe set, which is fixed for every checkpoint of a run and
    so shifts the level of a score more than the time of its change.
    """
    rng = np.random.default_rng(seed)
    x, y = log_tokens_and(tokens, icl)
    hx, hs = log_tokens_and(head_tokens, head_scores)
    icl_x, head_x = math.log10(window.peak_tokens), math.log10(head_time)
    lag = float(head_x - icl_x)

    resolution = max(_spacing(x, icl_x), _spacing(hx, head_x)) if min(x.size, hx.size) > 1 else math.nan
    if min(x.size, hx.size) < 3 or n_boot < 1:
        return Lag(lag, 10 ** lag, head_time, window.peak_tokens, resolution, math.nan, math.nan, 0)
    level_map, slope_map = local_linear(x, bandwidth)
    slopes = _bootstrap_series(level_map, y, n_boot, rng) @ slope_map.T
    inside = (x >= math.log10(window.start_tokens) - 1e-12) & (x <= math.log10(window.end_tokens) + 1e-12)
    masked = np.where(inside[None, :], slopes, np.inf)
    peaks = np.clip(np.argmin(masked, axis=1), 1, x.size - 2)
    icl_boot = vertex(x, slopes, peaks)

    head_map, _ = local_linear(hx, bandwidth)
    heads = _bootstrap_series(head_map, hs, n_boot, rng)
    levels = heads[:, -1] / 2 if threshold is None else np.full(heads.shape[0], float(threshold))
    head_boot = formation_x(hx, heads, np.where(levels > 0, levels, np.nan))
    lags = head_boot - icl_boot
    deviations = (lags[1:] - lags[0])[np.isfinite(lags[1:])] if np.isfinite(lags[0]) else np.zeros(0)
    low, high = ((lag - np.percentile(deviations, 95), lag - np.percentile(deviations, 5))
                 if deviations.size else (np.nan, np.nan))
    return Lag(lag, 10 ** lag, float(head_time), float(window.peak_tokens), resolution,
               float(low), float(high), n_boot, block_length(x.size))
