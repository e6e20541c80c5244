"""The phase-change window: where the ICL score drops abruptly (rule in :func:`phase_change_window`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from interp.phase.noise import NoiseModel, SmootherNoise
from interp.phase.smoothing import BANDWIDTH, local_linear, log_tokens_and, vertex

# The run's first and last ICL levels are means of this many checkpoints (see the window).
END_CHECKPOINTS = 5
# Evidence thresholds (z under the AR(1) noise model), set on the tuning draws of
# benchmarks/calibrate_phase.py: the smallest round pair whose false-positive rate there is
# <= 1% for white noise, AR(1) rho <= 0.5 and smooth declines, keeping the power for a 0.2-nat
# drop at 0.015 nats of noise above 90% (docs/PHASE.md has the held-aside table).
MIN_Z = 6.0
MIN_STEP_Z = 4.0
# A candidate's noise is estimated on NOISE_SIDE checkpoints on each side of it, beyond
# SKIP_MARGIN checkpoints next to it (see _noise_checkpoints).
SKIP_MARGIN = 2
NOISE_SIDE = 16


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
    noise_sd: float = float("nan")  # AR(1) noise of the series outside the window
    noise_rho: float = 0.0


def phase_change_window(tokens: np.ndarray, icl: np.ndarray, bandwidth: float = BANDWIDTH,
                        fraction: float = 0.3, min_drop: float = 0.1, min_z: float = MIN_Z,
                        min_step_z: float = MIN_STEP_Z, min_share: float = 0.25,
                        max_width_fraction: float = 0.25) -> PhaseWindow | None:
    """The phase-change window of an ICL-score series over checkpoints, or None.

    x = log10 tokens (tokens > 0); s = the smoothed score and s' = ds/dx, both from
    :func:`local_linear` with ``bandwidth`` decades. Noise: AR(1) in checkpoint order,
    estimated for each candidate from the smoother's residuals near it but outside it, with
    the smoother's own bias removed (:class:`interp.phase.noise.SmootherNoise`); every z below
    is a linear statistic of the raw scores divided by its sd under that model, so training
    noise that wanders (correlated from checkpoint to checkpoint) is not taken for a drop.

    1. Candidates: every local minimum of s' below 0, including one at the last checkpoint
       (a drop still under way when the run ends), refined between checkpoints by a parabola
       through the slopes. Candidates are tried from the steepest down and the first that
       passes the gates (3) is returned: a steeper candidate that fails them (a transient, or
       the steady per-token decline that is steepest at the end of a log axis and that the
       step test refuses) no longer hides a real drop, as it did before issue 9. (Taking the
       passing candidate with the largest z instead favours wide windows that take in the slow
       decline after a drop when the noise is small.)
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
       - z = drop / sd((L_start - L_end) y) >= ``min_z`` (``MIN_Z``: every candidate is tried,
         so the threshold has to allow for dozens of looks; set by calibration, docs/PHASE.md);
       - s(end) < the lowest s before the window: a fall that only undoes an earlier rise of
         the score is not a phase change;
       - step_z >= ``min_step_z`` (``MIN_STEP_Z``): near the window (two widths on each side)
         the score is fitted as a line in *linear* tokens plus a ramp across the window, and
         the ramp's fall must be that many standard errors. A decline steady in tokens looks like an
         accelerating drop on a log axis; this is what refuses it (without it ~40% of noisy
         linear-in-tokens declines of 0.6 nats gave a window; with it ~1%);
       - share = drop / total_drop >= ``min_share`` (0.25, not 0.5: in the default run ICL
         keeps improving after the drop, which is ~45% of the first-to-last change);
       - width <= ``max_width_fraction`` of the run's span in decades (0.25: a steady decline
         in log tokens has a near-constant slope, so its stretch spreads over the run).

    The rates this gives (false positives on white, AR(1), random-walk and smooth-decline nulls;
    power on sigmoid drops at several noise levels) are measured by
    benchmarks/calibrate_phase.py and listed in docs/PHASE.md. A sharp transient within about
    NOISE_SIDE checkpoints of a drop inflates that drop's noise estimate (the error is on the
    side of "no phase change").
    """
    x, y = log_tokens_and(tokens, icl)
    if x.size < 5:
        return None
    level_map, slope_map = local_linear(x, bandwidth)
    level, slope = level_map @ y, slope_map @ y
    noise = SmootherNoise(level_map, y)
    inner = np.arange(1, x.size - 1)
    minima = inner[(slope[inner] < 0) & (slope[inner] <= slope[inner - 1])
                   & (slope[inner] <= slope[inner + 1])]
    if slope[-1] < 0 and slope[-1] <= slope[-2]:
        minima = np.r_[minima, x.size - 1]  # still falling at the end of the run
    for peak in minima[np.argsort(slope[minima], kind="stable")]:
        window = _window_at(x, y, level_map, level, slope, int(peak), fraction, noise)
        if window is None:
            continue  # the stretch reaches the first checkpoint: there is no "before"
        material = (window.drop >= min_drop and window.total_drop >= min_drop
                    and window.z >= min_z and window.end_level < window.lowest_before
                    and window.step_z >= min_step_z and window.share >= min_share
                    and window.width_decades <= max_width_fraction * (x[-1] - x[0]))
        if material:
            return window  # the steepest candidate that passes
    return None


def _window_at(x: np.ndarray, y: np.ndarray, level_map: np.ndarray, level: np.ndarray,
               slope: np.ndarray, peak: int, fraction: float, noise: SmootherNoise
               ) -> PhaseWindow | None:
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
    model = noise.model(_noise_checkpoints(x.size, start, end))
    # The run's ends are means of raw scores outside the window: a local-linear level at a
    # boundary has about twice the variance of an interior one.
    first, last = min(END_CHECKPOINTS, start + 1), min(END_CHECKPOINTS, x.size - end)
    drop, total = level[start] - level[end], y[:first].mean() - y[-last:].mean()
    sd = float(model.sd_of(level_map[start] - level_map[end]))
    peak_x = float(vertex(x, slope[None], np.array([peak]))[0]) if peak < x.size - 1 else float(x[peak])
    return PhaseWindow(start_tokens=float(10 ** x[start]), end_tokens=float(10 ** x[end]),
                       peak_tokens=10 ** peak_x, peak_slope=float(slope[peak]),
                       icl_before=float(y[:start + 1].mean()), icl_after=float(y[end:].mean()),
                       drop=float(drop), total_drop=float(total),
                       share=float(drop / total) if total > 0 else float("nan"),
                       width_decades=float(x[end] - x[start]),
                       z=float(drop / sd) if sd > 0 else float("inf"),
                       step_z=_step_z(10 ** x, y, 10 ** x[start], 10 ** x[end], model),
                       end_level=float(level[end]), lowest_before=float(level[:start + 1].min()),
                       n_inside=end - start - 1, open_end=end == x.size - 1,
                       noise_sd=model.sigma, noise_rho=model.rho)


def _noise_checkpoints(n: int, start: int, end: int) -> np.ndarray:
    """Where a candidate's noise is estimated: near it, but not in it.

    ``NOISE_SIDE`` checkpoints on each side of the window, beyond ``SKIP_MARGIN`` checkpoints
    next to it (more on one side where the other runs out). Local, because a sharp transient
    elsewhere in the run (which the smoother cannot follow) would otherwise pass for correlated
    noise; the window and its margin left out, because the drop is signal.
    """
    lo, hi = max(0, start - SKIP_MARGIN), min(n, end + SKIP_MARGIN + 1)
    before, after = min(NOISE_SIDE, lo), min(NOISE_SIDE, n - hi)
    before, after = min(lo, 2 * NOISE_SIDE - after), min(n - hi, 2 * NOISE_SIDE - before)
    keep = np.zeros(n, bool)
    keep[lo - before:lo] = True
    keep[hi:hi + after] = True
    return keep


def _step_z(tokens: np.ndarray, y: np.ndarray, start: float, end: float, noise: NoiseModel,
            flank: float = 2.0) -> float:
    """z of the window as a step on a straight line in (linear) tokens, near the window.

    On checkpoints within ``flank`` window widths of it, fit y = a + b t + c ramp(t) with
    ramp = clip((t - start) / (end - start), 0, 1); z = -c / sd(c), with sd(c) the sd of the
    least-squares coefficient under the AR(1) ``noise`` (a' Sigma a for c = a' y).
    A decline steady in tokens has c ~ 0, however steep it looks on a log axis.
    """
    width = end - start
    near = (tokens >= start - flank * width) & (tokens <= end + flank * width)
    t = (tokens[near] - start) / width
    design = np.stack([np.ones_like(t), t, np.clip(t, 0, 1)], axis=1)
    gram = design.T @ design
    if near.sum() < 4 or np.linalg.cond(gram) > 1e12 or not noise.sigma > 0:
        return 0.0
    row = np.linalg.solve(gram, design.T)[2]  # c = row @ y[near]
    # The near checkpoints are consecutive, so their AR(1) covariance is the model's own.
    return float(-(row @ y[near]) / noise.sd_of(row))
