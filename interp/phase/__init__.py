"""The in-context-learning phase change, read from stored series only (Olsson et al. 2022).

Everything here takes numpy arrays (tokens, ICL score, training loss, per-head scores over
checkpoints) and never a model, so it can be recomputed at no cost whenever a checkpoint is
added. The paper gives no thresholds; the rules below define them, and every number is a
parameter with the default documented where it is used.

Conventions: time is x = log10(tokens) (checkpoints at 0 tokens are dropped: log10(0) is
undefined and the initialisation says nothing about when something changed); slopes are in
nats per decade of tokens; lags are in decades (log10 of a ratio of tokens).

Smoothing is one local-linear regression with a Gaussian kernel in x (:func:`local_linear`):
it gives the smoothed value and its derivative at each checkpoint as linear maps of the raw
series, so the noise of anything derived from them follows from the noise of the series, and
a bootstrap is a matrix product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Gaussian kernel sd in decades. The default run's ICL drop takes ~0.08 decades (2.8M -> 3.3M
# tokens) on checkpoints 0.02-0.03 decades apart whose scores differ by ~0.1 nats from
# neighbour to neighbour: 0.03 averages ~5 checkpoints there without washing the drop out
# (at 0.05 the later steady decline already looks as steep as the drop).
BANDWIDTH = 0.03
# Every kernel spans at least this many neighbours, so that sparse (log-spaced) early
# checkpoints are still smoothed instead of being fitted exactly.
MIN_NEIGHBOURS = 2
# The run's first and last ICL levels are means of this many checkpoints (see the window).
END_CHECKPOINTS = 5


# --------------------------------------------------------------------------- smoothing

def local_linear(x: np.ndarray, bandwidth: float = BANDWIDTH, min_neighbours: int = MIN_NEIGHBOURS
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Hat matrices (level [C, C], slope [C, C]) of a local-linear Gaussian-kernel smoother.

    At checkpoint i, with weights w_j = exp(-(x_j - x_i)^2 / 2 h_i^2), fit y ~ a + b (x - x_i)
    by weighted least squares: level_i = a, slope_i = b. Both are linear in y, so
    level = L @ y and slope = S @ y. The kernel width is h_i = max(bandwidth, distance from
    x_i to its ``min_neighbours``-th nearest checkpoint): local linear (rather than a moving
    average) keeps the level unbiased on a slope and at the ends of the run.
    """
    dist = x[None, :] - x[:, None]  # [i, j] = x_j - x_i
    k = min(min_neighbours, len(x) - 1)
    widths = np.maximum(bandwidth, np.sort(np.abs(dist), axis=1)[:, k])
    w = np.exp(-0.5 * (dist / widths[:, None]) ** 2)
    w /= w.sum(axis=1, keepdims=True)
    centred = dist - (w * dist).sum(axis=1, keepdims=True)  # x_j - weighted mean of x
    sxx = (w * centred ** 2).sum(axis=1, keepdims=True)
    slope = w * centred / sxx
    level = w + slope * (0 - (w * dist).sum(axis=1, keepdims=True))  # a = mean_y + b (x_i - mean_x)
    return level, slope


def noise_sd(level_map: np.ndarray, y: np.ndarray) -> float:
    """Noise sd of a series around its smooth: sqrt(RSS / (n - 2 tr L + tr L'L)).

    The usual variance estimate of a linear smoother y_hat = L y (the denominator is the
    residual degrees of freedom). It uses every checkpoint, so it is far steadier than a MAD
    of neighbour differences with ~70 checkpoints, and a jump the smoother cannot follow only
    inflates it, which errs on the side of "no phase change".
    """
    residuals = y - level_map @ y
    dof = y.size - 2 * np.trace(level_map) + np.sum(level_map ** 2)
    if dof <= 0:
        return float("nan")
    return float(np.sqrt(residuals @ residuals / dof))


def _positive(tokens: np.ndarray, *series: np.ndarray) -> tuple[np.ndarray, ...]:
    """log10(tokens) and the series at checkpoints with tokens > 0 and finite values, sorted."""
    tokens = np.asarray(tokens, dtype=np.float64)
    arrays = [np.asarray(s, dtype=np.float64) for s in series]
    keep = (tokens > 0) & np.all([np.isfinite(a) for a in arrays], axis=0)
    order = np.argsort(tokens[keep], kind="stable")
    return (np.log10(tokens[keep][order]), *(a[keep][order] for a in arrays))


def _vertex(x: np.ndarray, values: np.ndarray, i: np.ndarray) -> np.ndarray:
    """x of the vertex of the parabola through (x, values) at i-1, i, i+1 (i interior).

    Refines an argmin between checkpoints; clamped to [x_{i-1}, x_{i+1}]. Works row-wise for
    values [B, C] and i [B].
    """
    rows = np.arange(values.shape[0])
    x0, x1, x2 = x[i - 1], x[i], x[i + 1]
    y0, y1, y2 = values[rows, i - 1], values[rows, i], values[rows, i + 1]
    num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = x1 - 0.5 * num / den
    vertex = np.where(np.isfinite(vertex), vertex, x1)
    return np.clip(vertex, x0, x2)


# --------------------------------------------------------------------------- the ICL window

@dataclass(frozen=True)
class PhaseWindow:
    """The stretch of training in which the ICL score drops abruptly.

    Tokens are checkpoint token counts except ``peak_tokens`` (interpolated). ``icl_before``
    and ``icl_after`` are means of the raw scores of the checkpoints up to and including the
    start, and from the end on. Levels and drops use the smoothed score; a positive drop means
    ICL improved.
    """

    start_tokens: float
    end_tokens: float
    peak_tokens: float  # steepest descent
    peak_slope: float  # nats per decade, negative
    icl_before: float
    icl_after: float
    drop: float  # smoothed score at start minus at end
    total_drop: float  # mean of the first 5 raw scores minus mean of the last 5
    share: float  # drop / total_drop
    width_decades: float
    z: float  # drop / its noise sd
    step_z: float  # the window as a step on a line in tokens, in standard errors
    end_level: float  # smoothed score at the end of the window
    lowest_before: float  # lowest smoothed score up to the start
    n_inside: int  # checkpoints strictly inside the window


def phase_change_window(tokens: np.ndarray, icl: np.ndarray, bandwidth: float = BANDWIDTH,
                        fraction: float = 0.3, min_drop: float = 0.1, min_z: float = 4.0,
                        min_step_z: float = 3.0, min_share: float = 0.25,
                        max_width_fraction: float = 0.25) -> PhaseWindow | None:
    """The phase-change window of an ICL-score series over checkpoints, or None.

    x = log10 tokens (tokens > 0); s = the smoothed score and s' = ds/dx, both from
    :func:`local_linear` with ``bandwidth`` decades; sigma = :func:`noise_sd`.

    1. Peak: the steepest local minimum of s' whose stretch (2) stays inside the run, refined
       between checkpoints by a parabola through the slopes. Skipping stretches that run into
       an end matters: ICL keeps improving at a steady rate per token late in training, which
       on a log axis is steepest at the very end and would otherwise hide the abrupt drop.
    2. Window: the maximal run of consecutive checkpoints around the peak with
       s' <= ``fraction`` * peak slope (0.3: on a smoothed sigmoid this keeps ~90% of the drop
       inside; the half-maximum 0.5 keeps ~75-80%), widened by one checkpoint on each side
       (a slope at a checkpoint is a centred estimate, so the change happened between the two
       flatter checkpoints that bracket the stretch).
    3. It is a phase change only if all of these hold (else None):
       - drop = s(start) - s(end) >= ``min_drop`` nats, and total_drop >= ``min_drop``
         (0.1, about twice the score noise of one checkpoint on 128 sequences);
       - z = drop / (sigma ||L_start - L_end||) >= ``min_z`` (4: the peak is the steepest of
         dozens of places, so 3-sigma drops turn up in pure noise);
       - s(end) < the lowest s before the window: a fall that only undoes an earlier rise of
         the score is not a phase change;
       - step_z >= ``min_step_z`` (3): near the window (two widths on each side) the score is
         fitted as a line in *linear* tokens plus a ramp across the window, and the ramp's
         fall must be 3 standard errors. A decline steady in tokens looks like an
         accelerating drop on a log axis; this is what refuses it (without it ~40% of noisy
         linear-in-tokens declines of 0.6 nats gave a window; with it ~1%);
       - share = drop / total_drop >= ``min_share`` (0.25, not 0.5: in the default run ICL
         keeps improving after the drop, which is ~45% of the first-to-last change);
       - width <= ``max_width_fraction`` of the run's span in decades (0.25: a steady decline
         in log tokens has a near-constant slope, so its stretch spreads over the run).

    On 70 checkpoints with ~0.05 nats of noise, this finds a 0.4-nat sigmoid drop in >99% of
    draws and returns None for flat or log-linear series in >99%. It needs dense checkpoints:
    with every second or third checkpoint of the default run, the step test fails.
    """
    x, y = _positive(tokens, icl)
    if x.size < 5:
        return None
    level_map, slope_map = local_linear(x, bandwidth)
    level, slope = level_map @ y, slope_map @ y
    sigma = noise_sd(level_map, y)
    inner = np.arange(1, x.size - 1)
    minima = inner[(slope[inner] < 0) & (slope[inner] <= slope[inner - 1])
                   & (slope[inner] <= slope[inner + 1])]
    for peak in minima[np.argsort(slope[minima], kind="stable")]:
        window = _window_at(x, y, level_map, level, slope, int(peak), fraction, sigma)
        if window is None:
            continue  # the stretch runs into an end of the run
        material = (window.drop >= min_drop and window.total_drop >= min_drop
                    and window.z >= min_z and window.end_level < window.lowest_before
                    and window.step_z >= min_step_z and window.share >= min_share
                    and window.width_decades <= max_width_fraction * (x[-1] - x[0]))
        return window if material else None
    return None


def _window_at(x: np.ndarray, y: np.ndarray, level_map: np.ndarray, level: np.ndarray,
               slope: np.ndarray, peak: int, fraction: float, sigma: float) -> PhaseWindow | None:
    """The ungated window around one slope minimum; None if its stretch reaches an end."""
    steep = slope <= fraction * slope[peak]
    lo, hi = peak, peak
    while lo > 0 and steep[lo - 1]:
        lo -= 1
    while hi < x.size - 1 and steep[hi + 1]:
        hi += 1
    if lo == 0 or hi == x.size - 1:
        return None
    start, end = lo - 1, hi + 1
    # The run's ends are means of raw scores outside the window: a local-linear level at a
    # boundary has about twice the variance of an interior one.
    first, last = min(END_CHECKPOINTS, start + 1), min(END_CHECKPOINTS, x.size - end)
    drop, total = level[start] - level[end], y[:first].mean() - y[-last:].mean()
    sd = sigma * float(np.linalg.norm(level_map[start] - level_map[end]))
    peak_x = float(_vertex(x, slope[None], np.array([peak]))[0])
    return PhaseWindow(start_tokens=float(10 ** x[start]), end_tokens=float(10 ** x[end]),
                       peak_tokens=10 ** peak_x, peak_slope=float(slope[peak]),
                       icl_before=float(y[:start + 1].mean()), icl_after=float(y[end:].mean()),
                       drop=float(drop), total_drop=float(total),
                       share=float(drop / total) if total > 0 else float("nan"),
                       width_decades=float(x[end] - x[start]),
                       z=float(drop / sd) if sd > 0 else float("inf"),
                       step_z=_step_z(10 ** x, y, 10 ** x[start], 10 ** x[end], sigma),
                       end_level=float(level[end]), lowest_before=float(level[:start + 1].min()),
                       n_inside=end - start - 1)


def _step_z(tokens: np.ndarray, y: np.ndarray, start: float, end: float, sigma: float,
            flank: float = 2.0) -> float:
    """z of the window as a step on a straight line in (linear) tokens, near the window.

    On checkpoints within ``flank`` window widths of it, fit y = a + b t + c ramp(t) with
    ramp = clip((t - start) / (end - start), 0, 1); z = -c / (sigma sqrt((X'X)^-1_cc)).
    A decline steady in tokens has c ~ 0, however steep it looks on a log axis.
    """
    width = end - start
    near = (tokens >= start - flank * width) & (tokens <= end + flank * width)
    t = (tokens[near] - start) / width
    design = np.stack([np.ones_like(t), t, np.clip(t, 0, 1)], axis=1)
    gram = design.T @ design
    if near.sum() < 4 or np.linalg.cond(gram) > 1e12 or not sigma > 0:
        return 0.0
    inverse = np.linalg.inv(gram)
    c = (inverse @ design.T @ y[near])[2]
    return float(-c / (sigma * np.sqrt(inverse[2, 2])))


# --------------------------------------------------------------------------- the loss bump

@dataclass(frozen=True)
class LossBump:
    """Where the smoothed loss over log tokens rises above its lower convex hull."""

    start_tokens: float
    end_tokens: float
    peak_tokens: float
    height: float  # nats above the hull at the peak
    tolerance: float  # nats; the deviation had to exceed this at the peak


def _binned(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Means of consecutive groups of equal size, at most ``max_points`` of them."""
    size = -(-x.size // max_points)
    if size <= 1:
        return x, y
    n = x.size // size * size  # the last incomplete group is dropped
    return x[:n].reshape(-1, size).mean(1), y[:n].reshape(-1, size).mean(1)


def lower_hull(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The lower convex hull of the points (x sorted ascending), evaluated at every x."""
    hull: list[int] = []
    for i in range(x.size):
        # Drop the last hull point while it lies on or above the chord to the new point.
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (y[b] - y[a]) * (x[i] - x[a]) >= (y[i] - y[a]) * (x[b] - x[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    return np.interp(x, x[hull], y[hull])


def loss_bump(tokens: np.ndarray, loss: np.ndarray, bandwidth: float = 0.05,
              min_height: float = 0.02, z: float = 4.0, start_tokens: float | None = None,
              end_tokens: float | None = None, max_points: int = 1000) -> LossBump | None:
    """The largest non-convex stretch of the training loss over log10 tokens, or None.

    A loss curve without a phase change, L = a + b t^-alpha, is convex in x = log10 t; the
    paper's "bump" is where it is not: the loss stalls, then falls faster as induction heads
    form. Rule: smooth the loss with :func:`local_linear` (``bandwidth`` decades, 0.05: the
    loss is logged every step, so this averages many points), take the lower convex hull of
    the smoothed points, and find maximal stretches where smoothed - hull > tolerance, with
    tolerance = max(``min_height`` nats, ``z`` * sd of a smoothed point) (the hull hugs the
    lowest noisy points, so pure noise rises ~2-3 sd above it). Report the stretch with the
    largest deviation: its first and last points, its peak and the height there.

    The search starts at ``start_tokens`` or, when None, at the steepest descent of the
    smoothed loss: before it the slope steepens, so the curve is concave there by necessity
    (the initial plateau), which says nothing about a phase change. ``end_tokens`` caps it.
    More than ``max_points`` logged steps are first averaged in groups of equal size (the
    smoother holds [N, N] matrices; equal groups keep the noise of every point the same).
    """
    x, y = _binned(*_positive(tokens, loss), max_points)
    if x.size < 5:
        return None
    level_map, slope_map = local_linear(x, bandwidth)
    level = level_map @ y
    if start_tokens is None:
        first = int(np.argmin(slope_map @ y))
    else:
        first = int(np.searchsorted(x, np.log10(start_tokens)))
    last = x.size if end_tokens is None else int(np.searchsorted(x, np.log10(end_tokens), "right"))
    if last - first < 3:
        return None
    xs, smooth = x[first:last], level[first:last]
    deviation = smooth - lower_hull(xs, smooth)
    # Each point's own noise: early points are sparse in log tokens and smoothed over fewer
    # steps, so they need a larger tolerance than the dense late ones.
    point_sd = noise_sd(level_map, y) * np.linalg.norm(level_map[first:last], axis=1)
    tolerance = np.maximum(min_height, z * np.nan_to_num(point_sd))
    above = deviation > tolerance
    if not above.any():
        return None
    peak = int(np.argmax(np.where(above, deviation, -np.inf)))
    lo, hi = peak, peak
    while lo > 0 and above[lo - 1]:
        lo -= 1
    while hi < xs.size - 1 and above[hi + 1]:
        hi += 1
    return LossBump(float(10 ** xs[lo]), float(10 ** xs[hi]), float(10 ** xs[peak]),
                    float(deviation[peak]), float(tolerance[peak]))


# --------------------------------------------------------------------------- induction heads

def classify_induction_heads(prefix_matching: np.ndarray, copying: np.ndarray,
                             prefix_threshold: float = 0.4, copying_threshold: float = 0.0
                             ) -> list[tuple[int, int]]:
    """(layer, head) pairs that are induction heads at one checkpoint, sorted.

    A head is an induction head when its prefix-matching score (attention from a repeated
    token to the token after its earlier copy) is above ``prefix_threshold`` AND its OV
    copying score sum(lambda) / sum(|lambda|) over the eigenvalues of W_U W_OV W_E is above
    ``copying_threshold``: it attends to the right place and copies what it sees. 0.4 is far
    above the ~0.03 of a head that attends uniformly and below the ~0.6-0.8 of formed heads;
    0 asks only that copying wins over anti-copying. Pass the final checkpoint's [L, H]
    scores to classify the run.
    """
    prefix = np.asarray(prefix_matching, dtype=np.float64)
    copy = np.asarray(copying, dtype=np.float64)
    chosen = (prefix > prefix_threshold) & (copy > copying_threshold)  # NaN compares False
    return [(int(layer), int(head)) for layer, head in np.argwhere(chosen)]


def _formation_x(x: np.ndarray, scores: np.ndarray, threshold: np.ndarray) -> np.ndarray:
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
    x, s = _positive(tokens, scores)
    if x.size == 0:
        return None
    level = s[-1] / 2 if threshold is None else threshold
    if not level > 0 and threshold is None:
        return None
    value = _formation_x(x, s[None], np.array([level], dtype=np.float64))[0]
    return None if np.isnan(value) else float(10 ** value)


# --------------------------------------------------------------------------- lag

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

    @property
    def resolved(self) -> bool:
        """The lag exceeds the checkpoint spacing AND its interval excludes 0."""
        return abs(self.lag_log10) > self.resolution_log10 and (self.low > 0 or self.high < 0)


def _spacing(x: np.ndarray, at: float) -> float:
    """Widest gap between consecutive checkpoints adjacent to position ``at`` (decades)."""
    i = int(np.clip(np.searchsorted(x, at), 1, x.size - 1))
    gaps = [x[i] - x[i - 1]] + ([x[i + 1] - x[i]] if x[i] == at and i + 1 < x.size else [])
    gaps += [x[i - 1] - x[i - 2]] if x[i - 1] == at and i >= 2 else []
    return float(max(gaps))


def _residual_bootstrap(level_map: np.ndarray, y: np.ndarray, n_boot: int,
                        rng: np.random.Generator) -> np.ndarray:
    """[n_boot + 1, C] series: row 0 is the smoothed series itself (the bootstrap world's
    truth), rows 1.. are the smoothed series plus residuals drawn with replacement."""
    level = level_map @ y
    residuals = y - level
    draws = rng.choice(residuals, size=(n_boot + 1, y.size), replace=True)
    draws[0] = 0.0
    return level + draws


def formation_lag(head_time: float, window: PhaseWindow, tokens: np.ndarray, icl: np.ndarray,
                  head_tokens: np.ndarray, head_scores: np.ndarray, n_boot: int = 1000,
                  seed: int = 0, threshold: float | None = None, bandwidth: float = BANDWIDTH
                  ) -> Lag:
    """Lag of a head's formation behind the ICL change, with two honest uncertainties.

    lag = log10(head_time) - log10(window.peak_tokens) decades; ratio = 10 ** lag.

    (a) Resolution: the widest checkpoint gap next to either event (decades). Neither event
        is located better than its checkpoints, so a smaller |lag| is indistinguishable from 0.
    (b) Noise: a residual bootstrap. Each series is smoothed (:func:`local_linear`,
        ``bandwidth``), its residuals are drawn with replacement onto the smoothed curve, and
        the events are located again: the ICL change as the steepest smoothed descent among
        the window's checkpoints (the window is held fixed: the question is where inside it the
        drop is, not whether there is one), refined by a parabola; the head by
        :func:`formation_time` with ``threshold`` (None: half of each resample's final score).
        The interval is the basic (reverse-percentile) bootstrap: with d = resampled lag minus
        the lag of the smoothed series itself, ``low, high = lag - q95(d), lag - q5(d)``, so
        it is centred on the estimate even when smoothing shifts the events (a plain
        percentile interval did not always contain its own estimate). Residuals of a smoother
        include some of the drop it cannot follow, so the interval errs wide.
    """
    rng = np.random.default_rng(seed)
    x, y = _positive(tokens, icl)
    hx, hs = _positive(head_tokens, head_scores)
    icl_x, head_x = math.log10(window.peak_tokens), math.log10(head_time)
    lag = float(head_x - icl_x)

    resolution = max(_spacing(x, icl_x), _spacing(hx, head_x)) if min(x.size, hx.size) > 1 else math.nan
    if min(x.size, hx.size) < 3 or n_boot < 1:
        return Lag(lag, 10 ** lag, head_time, window.peak_tokens, resolution, math.nan, math.nan, 0)
    level_map, slope_map = local_linear(x, bandwidth)
    slopes = _residual_bootstrap(level_map, y, n_boot, rng) @ slope_map.T
    inside = (x >= math.log10(window.start_tokens) - 1e-12) & (x <= math.log10(window.end_tokens) + 1e-12)
    masked = np.where(inside[None, :], slopes, np.inf)
    peaks = np.clip(np.argmin(masked, axis=1), 1, x.size - 2)
    icl_boot = _vertex(x, slopes, peaks)

    head_map, _ = local_linear(hx, bandwidth)
    heads = _residual_bootstrap(head_map, hs, n_boot, rng)
    levels = heads[:, -1] / 2 if threshold is None else np.full(n_boot, float(threshold))
    head_boot = _formation_x(hx, heads, np.where(levels > 0, levels, np.nan))
    lags = head_boot - icl_boot
    deviations = (lags[1:] - lags[0])[np.isfinite(lags[1:])] if np.isfinite(lags[0]) else np.zeros(0)
    low, high = ((lag - np.percentile(deviations, 95), lag - np.percentile(deviations, 5))
                 if deviations.size else (np.nan, np.nan))
    return Lag(lag, 10 ** lag, float(head_time), float(window.peak_tokens), resolution,
               float(low), float(high), n_boot)


# --------------------------------------------------------------------------- the report

@dataclass
class PhaseReport:
    """Run-level phase-change statistics; ``to_flat_dict`` gives HDF5-attribute scalars."""

    window: PhaseWindow | None
    bump: LossBump | None
    induction_heads: list[tuple[int, int]]
    formation_tokens: dict[tuple[int, int], float | None] = field(default_factory=dict)
    lags: dict[tuple[int, int], Lag | None] = field(default_factory=dict)

    def to_flat_dict(self) -> dict[str, float | str]:
        """Flat ``phase/...`` scalars: floats (NaN when missing) and the heads as "l.h,l.h"."""
        nan = float("nan")
        w, b = self.window, self.bump
        flat: dict[str, float | str] = {
            "phase/has_window": float(w is not None),
            "phase/window_start_tokens": w.start_tokens if w else nan,
            "phase/window_end_tokens": w.end_tokens if w else nan,
            "phase/window_peak_tokens": w.peak_tokens if w else nan,
            "phase/window_peak_slope": w.peak_slope if w else nan,
            "phase/window_width_log10": w.width_decades if w else nan,
            "phase/window_drop": w.drop if w else nan,
            "phase/window_total_drop": w.total_drop if w else nan,
            "phase/window_share": w.share if w else nan,
            "phase/window_z": w.z if w else nan,
            "phase/window_step_z": w.step_z if w else nan,
            "phase/icl_before": w.icl_before if w else nan,
            "phase/icl_after": w.icl_after if w else nan,
            "phase/bump_start_tokens": b.start_tokens if b else nan,
            "phase/bump_end_tokens": b.end_tokens if b else nan,
            "phase/bump_peak_tokens": b.peak_tokens if b else nan,
            "phase/bump_height": b.height if b else nan,
            "phase/induction_heads": ",".join(f"{layer}.{head}" for layer, head in self.induction_heads),
        }
        for layer, head in self.induction_heads:
            name = f"phase/head_{layer}.{head}"
            formed = self.formation_tokens.get((layer, head))
            lag = self.lags.get((layer, head))
            flat[f"{name}_formation_tokens"] = nan if formed is None else float(formed)
            flat[f"{name}_lag_log10"] = lag.lag_log10 if lag else nan
            flat[f"{name}_lag_ratio"] = lag.ratio if lag else nan
            flat[f"{name}_lag_low"] = lag.low if lag else nan
            flat[f"{name}_lag_high"] = lag.high if lag else nan
            flat[f"{name}_lag_resolution"] = lag.resolution_log10 if lag else nan
            flat[f"{name}_lag_resolved"] = float(lag.resolved) if lag else nan
        return flat


def analyse_phase(tokens_eval: np.ndarray, icl: np.ndarray, train_tokens: np.ndarray,
                  train_loss: np.ndarray, prefix_matching: np.ndarray, copying: np.ndarray,
                  n_boot: int = 1000, seed: int = 0, prefix_threshold: float = 0.4,
                  copying_threshold: float = 0.0) -> PhaseReport:
    """Window, loss bump, induction heads (at the final checkpoint), their formation and lag.

    ``prefix_matching`` and ``copying`` are [C, L, H] over the same checkpoints as ``icl``.
    Formation uses the default half-of-final rule; lags need a window and a formed head.
    """
    window = phase_change_window(tokens_eval, icl)
    bump = loss_bump(train_tokens, train_loss)
    prefix = np.asarray(prefix_matching, dtype=np.float64)
    heads = classify_induction_heads(prefix[-1], np.asarray(copying)[-1], prefix_threshold,
                                     copying_threshold) if len(prefix) else []
    formation, lags = {}, {}
    for layer, head in heads:
        formed = formation_time(tokens_eval, prefix[:, layer, head])
        formation[(layer, head)] = formed
        lags[(layer, head)] = (None if formed is None or window is None else
                               formation_lag(formed, window, tokens_eval, icl, tokens_eval,
                                             prefix[:, layer, head], n_boot, seed))
    return PhaseReport(window, bump, heads, formation, lags)
