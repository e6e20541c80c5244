"""The phase-change window: where the ICL score drops abruptly (rule in :func:`phase_change_window`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from interp.phase.smoothing import BANDWIDTH, local_linear, log_tokens_and, noise_sd, vertex

# The run's first and last ICL levels are means of this many checkpoints (see the window).
END_CHECKPOINTS = 5
MIN_Z = 5.0


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
    open_end: bool = False  # the stretch reaches the last checkpoint: still falling at the end


def phase_change_window(tokens: np.ndarray, icl: np.ndarray, bandwidth: float = BANDWIDTH,
                        fraction: float = 0.3, min_drop: float = 0.1, min_z: float = MIN_Z,
                        min_step_z: float = 3.0, min_share: float = 0.25,
                        max_width_fraction: float = 0.25) -> PhaseWindow | None:
    """The phase-change window of an ICL-score series over checkpoints, or None.

    x = log10 tokens (tokens > 0); s = the smoothed score and s' = ds/dx, both from
    :func:`local_linear` with ``bandwidth`` decades; sigma = :func:`noise_sd`.

    1. Candidates: every local minimum of s' below 0, including one at the last checkpoint
       (a drop still under way when the run ends), refined between checkpoints by a parabola
       through the slopes. Every candidate is tried and the one that passes the gates (3)
       with the largest z is returned: a steeper candidate that fails them (a transient, or
       the steady per-token decline that is steepest at the end of a log axis and that the
       step test refuses) no longer hides a real drop, as it did before issue 9.
    2. Window: the maximal run of consecutive checkpoints around the peak with
       s' <= ``fraction`` * peak slope (0.3: on a smoothed sigmoid this keeps ~90% of the drop
       inside; the half-maximum 0.5 keeps ~75-80%), widened by one checkpoint on each side
       (a slope at a checkpoint is a centred estimate, so the change happened between the two
       flatter checkpoints that bracket the stretch). A stretch that reaches the last
       checkpoint ends there, with ``open_end`` True: the score was still falling when the run
       ended, so its drop and share are lower bounds; one that reaches the first is skipped.
    3. It is a phase change only if all of these hold (else None):
       - drop = s(start) - s(end) >= ``min_drop`` nats, and total_drop >= ``min_drop``
         (0.1, about twice the score noise of one checkpoint on 128 sequences);
       - z = drop / (sigma ||L_start - L_end||) >= ``min_z`` (``MIN_Z`` = 5: every candidate
         is tried and the best kept, so the largest of dozens of z values is tested; at 4, as
         when only the steepest candidate was tried, a slow log-linear decline with 0.05 nats
         of noise gave a window; docs/PHASE.md has the measured rates);
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

    Noise model: sigma is the white-noise sd of :func:`noise_sd`. Correlated training noise is
    not modelled here yet, so z overstates the evidence on such series: the rates measured by
    benchmarks/calibrate_phase.py are in docs/PHASE.md, nulls with correlated noise included.
    """
    x, y = log_tokens_and(tokens, icl)
    if x.size < 5:
        return None
    level_map, slope_map = local_linear(x, bandwidth)
    level, slope = level_map @ y, slope_map @ y
    sigma = noise_sd(level_map, y)
    inner = np.arange(1, x.size - 1)
    minima = inner[(slope[inner] < 0) & (slope[inner] <= slope[inner - 1])
                   & (slope[inner] <= slope[inner + 1])]
    if slope[-1] < 0 and slope[-1] <= slope[-2]:
        minima = np.r_[minima, x.size - 1]  # still falling at the end of the run
    best = None
    for peak in minima[np.argsort(slope[minima], kind="stable")]:
        window = _window_at(x, y, level_map, level, slope, int(peak), fraction, sigma)
        if window is None:
            continue  # the stretch reaches the first checkpoint: there is no "before"
        material = (window.drop >= min_drop and window.total_drop >= min_drop
                    and window.z >= min_z and window.end_level < window.lowest_before
                    and window.step_z >= min_step_z and window.share >= min_share
                    and window.width_decades <= max_width_fraction * (x[-1] - x[0]))
        if material and (best is None or window.z > best.z):
            best = window
    return best


def _window_at(x: np.ndarray, y: np.ndarray, level_map: np.ndarray, level: np.ndarray,
               slope: np.ndarray, peak: int, fraction: float, sigma: float) -> PhaseWindow | None:
    """The ungated window around one slope minimum; None if its stretch reaches an end."""
    steep = slope <= fraction * slope[peak]
    lo, hi = peak, peak
    while lo > 0 and steep[lo - 1]:
        lo -= 1
    while hi < x.size - 1 and steep[hi + 1]:
        hi += 1
    if lo == 0:
        return None
    start, end = lo - 1, min(hi + 1, x.size - 1)
    # The run's ends are means of raw scores outside the window: a local-linear level at a
    # boundary has about twice the variance of an interior one.
    first, last = min(END_CHECKPOINTS, start + 1), min(END_CHECKPOINTS, x.size - end)
    drop, total = level[start] - level[end], y[:first].mean() - y[-last:].mean()
    sd = sigma * float(np.linalg.norm(level_map[start] - level_map[end]))
    peak_x = float(vertex(x, slope[None], np.array([peak]))[0]) if peak < x.size - 1 else float(x[peak])
    return PhaseWindow(start_tokens=float(10 ** x[start]), end_tokens=float(10 ** x[end]),
                       peak_tokens=10 ** peak_x, peak_slope=float(slope[peak]),
                       icl_before=float(y[:start + 1].mean()), icl_after=float(y[end:].mean()),
                       drop=float(drop), total_drop=float(total),
                       share=float(drop / total) if total > 0 else float("nan"),
                       width_decades=float(x[end] - x[start]),
                       z=float(drop / sd) if sd > 0 else float("inf"),
                       step_z=_step_z(10 ** x, y, 10 ** x[start], 10 ** x[end], sigma),
                       end_level=float(level[end]), lowest_before=float(level[:start + 1].min()),
                       n_inside=end - start - 1, open_end=end == x.size - 1)


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
