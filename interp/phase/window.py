"""The phase-change window: where the ICL score drops abruptly (rule in :func:`phase_change_window`)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from interp.phase.edges import refine_edges
from interp.phase.noise import IncrementNoise, increment_noise
from interp.phase.smoothing import BANDWIDTH, local_linear, log_tokens_and, vertex

# The run's first and last ICL levels are means of this many checkpoints (see the window).
END_CHECKPOINTS = 5
# Evidence thresholds (z under the white-plus-walk noise model), set on the tuning draws of
# benchmarks/calibrate_phase.py: the round pair whose worst false-positive rate over the nulls
# there is <= 1% with the most power for 0.2-nat drops at the default run's noise (0.02 nats);
# docs/PHASE.md has the held-aside table.
MIN_Z = 5.0
MIN_STEP_Z = 4.0
# The noise is estimated on every checkpoint except a candidate window and SKIP_MARGIN
# checkpoints on each side of it (see _noise_checkpoints).
SKIP_MARGIN = 2
# Bandwidths tried, as multiples of ``bandwidth``, finest first (see phase_change_window).
SCALES = (1, 2, 4)


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
    noise_white: float = float("nan")  # sd of the series' jitter outside the window
    noise_walk: float = 0.0  # sd of its random-walk step per checkpoint outside the window
    bandwidth: float = float("nan")  # the smoother's bandwidth (decades) that found the window
    break_start_tokens: float = float("nan")  # the broken-stick fit's breakpoints, between
    break_end_tokens: float = float("nan")  # checkpoints (NaN: no fit, edges from the smoother)


def phase_change_window(tokens: np.ndarray, icl: np.ndarray, bandwidth: float = BANDWIDTH,
                        fraction: float = 0.3, min_drop: float = 0.1, min_z: float = MIN_Z,
                        min_step_z: float = MIN_STEP_Z, min_share: float = 0.25,
                        max_width_fraction: float = 0.35, scales: tuple[float, ...] = SCALES
                        ) -> PhaseWindow | None:
    """The phase-change window of an ICL-score series over checkpoints, or None.

    x = log10 tokens (tokens > 0); s = the smoothed score and s' = ds/dx, both from
    :func:`local_linear`. Noise: white jitter plus a random walk in checkpoint order
    (:class:`interp.phase.noise.IncrementNoise`), estimated for each candidate from the
    series' second differences outside it (:func:`interp.phase.noise.increment_noise`); every
    z below is a contrast of the raw scores divided by its sd under that model, so training
    noise that wanders from checkpoint to checkpoint is not taken for a drop.

    0. Scales: the search below runs with bandwidth ``bandwidth`` x each of ``scales`` (1, 2,
       4: 0.03, 0.06, 0.12 decades), finest first, and the first window that passes is
       returned (its ``bandwidth`` says which). A fine smoother locates a sharp drop; on a drop
       spread over half a decade its slope is mostly noise and splits the drop into pieces
       that each fail, which the coarser ones see whole (on the tuning draws: power for a
       0.2-nat drop over 0.5 decades at 0.02 nats of noise from 78% to 91%, 200 draws).
    1. Candidates: every local minimum of s' below 0, including one at the last checkpoint
       (a drop still under way when the run ends), refined between checkpoints by a parabola
       through the slopes. Candidates are tried from the steepest down and the first that
       passes the gates (3) is returned: a steeper candidate that fails them (a transient, or
       the steady per-token decline that is steepest at the end of a log axis and that the
       step test refuses) does not hide a real drop, as it did before issue 9. (Taking the
       passing candidate with the largest z instead favours wide windows that take in the slow
       decline after a drop when the noise is small.)
    2. Window: the maximal run of consecutive checkpoints around the peak with
       s' <= ``fraction`` * peak slope (0.3: on a smoothed sigmoid this keeps ~90% of the drop
       inside; the half-maximum 0.5 keeps ~75-80%), widened by one checkpoint on each side
       (a slope at a checkpoint is a centred estimate, so the change happened between the two
       flatter checkpoints that bracket the stretch). A stretch that reaches the last
       checkpoint ends there, with ``open_end`` True: the score was still falling when the run
       ended, so its drop and share are lower bounds; one that reaches the first is skipped.
       Then the edges move to the checkpoints that bracket the breakpoints of a three-segment
       fit to the raw scores near the stretch (:func:`interp.phase.edges.refine_edges`,
       stored as ``break_start_tokens`` / ``break_end_tokens``): edges read off a smoothed
       slope move with the bandwidth and with the checkpoint spacing (on the default run, two
       spacings between bandwidths 0.03 and 0.06, and no window at all on one of its every-3rd
       thinnings), the breakpoints do not depend on a bandwidth. Everything below is measured
       at the refined edges. A fit that reaches the last checkpoint keeps the smoother's
       stretch: with no "after" to fit, the start breakpoint of a drop that has just begun lies
       so close to the end that the step test (3) cannot tell the ramp from a smooth decline
       bending down (on a drop still falling at the end, step z 1.3 against 4.0).
    3. It is a phase change only if all of these hold (else None):
       - drop = s(start) - s(end) >= ``min_drop`` nats, and total_drop >= ``min_drop``
         (0.1, about twice the score noise of one checkpoint on 128 sequences);
       - z = drop / sd((L_start - L_end) y) >= ``min_z`` (``MIN_Z``: every candidate at every
         scale is tried, so the threshold has to allow for dozens of looks; set by
         calibration, docs/PHASE.md);
       - s(end) < the lowest s before the window: a fall that only undoes an earlier rise of
         the score is not a phase change;
       - step_z >= ``min_step_z`` (``MIN_STEP_Z``): near the window the score is fitted as a
         smooth decline (a line in linear tokens plus a line in log tokens) plus a ramp across
         the window, and the ramp's fall must be that many standard errors (:func:`_step_z`).
         A decline steady in tokens, or a power-law learning curve, looks like an
         accelerating drop somewhere on a log axis; this is what refuses them;
       - share = drop / total_drop >= ``min_share`` (0.25, not 0.5: in the default run ICL
         keeps improving after the drop, which is ~45% of the first-to-last change);
       - width <= ``max_width_fraction`` of the run's span in decades (0.35: a steady decline
         in log tokens has a near-constant slope, so its stretch spreads over the run; 0.25
         refused half the drops over 0.5 decades that were missed on the tuning draws, whose
         windows the sparse early checkpoints widen).

    The rates this gives (false positives on white, AR(1), random-walk and smooth-decline nulls;
    power on sigmoid drops at several noise levels) are measured by
    benchmarks/calibrate_phase.py and listed in docs/PHASE.md.
    """
    rule = dict(bandwidth=bandwidth, fraction=fraction, min_drop=min_drop, min_z=min_z, min_step_z=min_step_z,
                min_share=min_share, max_width_fraction=max_width_fraction, scales=scales)
    for window, failed in _tested(tokens, icl, **rule):
        if not failed:
            return window  # the steepest passing candidate at the finest scale that has one
    return None


def nearest_miss(tokens: np.ndarray, icl: np.ndarray, **rule: Any) -> tuple[PhaseWindow, list[str]] | None:
    """When :func:`phase_change_window` finds nothing, the candidate that came closest, with
    the gates it failed: the evidence behind "no window". Closest = fewest gates failed, then
    the largest z, over every candidate at every scale; None when there is no candidate at
    all (the smoothed score never falls, or falls only from the first checkpoint). ``rule``:
    :func:`phase_change_window`'s keyword arguments, its defaults where left out. It decides
    nothing: when a window passes, it is the closest candidate, with no failed gate."""
    tested = list(_tested(tokens, icl, **{**_RULE_DEFAULTS, **rule}))
    return min(tested, key=lambda pair: (len(pair[1]), -pair[0].z)) if tested else None


def _tested(tokens: np.ndarray, icl: np.ndarray, *, bandwidth: float, fraction: float, min_drop: float,
            min_z: float, min_step_z: float, min_share: float, max_width_fraction: float,
            scales: tuple[float, ...]) -> Iterator[tuple[PhaseWindow, list[str]]]:
    """Every candidate window of :func:`phase_change_window` in the order it tries them
    (finest scale first, then steepest first) with the gates each fails; nothing for fewer
    than 5 usable checkpoints."""
    x, y = log_tokens_and(tokens, icl)
    if x.size < 5:
        return
    gates = dict(min_drop=min_drop, min_z=min_z, min_step_z=min_step_z, min_share=min_share,
                 max_width=max_width_fraction * (x[-1] - x[0]))
    for scale in scales:
        for window in _ungated(x, y, bandwidth * scale, fraction):
            yield window, failed_gates(window, **gates)


def _ungated(x: np.ndarray, y: np.ndarray, bandwidth: float, fraction: float) -> Iterator[PhaseWindow]:
    """Step 1-2 of :func:`phase_change_window` at one bandwidth: every candidate's window,
    steepest first, without the gates (a stretch from the first checkpoint is skipped)."""
    level_map, slope_map = local_linear(x, bandwidth)
    level, slope = level_map @ y, slope_map @ y
    for peak in _candidates(slope):
        window = _window_at(x, y, level_map, level, slope, int(peak), fraction, bandwidth)
        if window is not None:
            yield window


def failed_gates(window: PhaseWindow, *, min_drop: float, min_z: float, min_step_z: float,
                 min_share: float, max_width: float) -> list[str]:
    """The gates of :func:`phase_change_window` (step 3) that ``window`` fails, each as a short
    phrase with its figure and threshold; [] when it is a phase change."""
    failed = []
    if not (window.drop >= min_drop and window.total_drop >= min_drop):
        failed.append(f"drop {window.drop:.3f} (run {window.total_drop:.3f}) < {min_drop:g} nats")
    if not window.z >= min_z:
        failed.append(f"z {window.z:.1f} < {min_z:g}")
    if not window.end_level < window.lowest_before:
        failed.append("ends no lower than the score was before it")
    if not window.step_z >= min_step_z:
        failed.append(f"step z {window.step_z:.1f} < {min_step_z:g}")
    if not window.share >= min_share:
        failed.append(f"share {window.share:.2f} < {min_share:g}")
    if not window.width_decades <= max_width:
        failed.append(f"width {window.width_decades:.2f} > {max_width:.2f} decades")
    return failed


def _candidates(slope: np.ndarray) -> np.ndarray:
    """Indices of the local minima of the slope below 0, steepest first (ties: earlier first).

    An interior checkpoint i is one if s'_i < 0, s'_i <= s'_{i-1} and s'_i <= s'_{i+1}; the last
    checkpoint is one if s'_{-1} < 0 and s'_{-1} <= s'_{-2} (a drop still under way when the run
    ends). The first checkpoint never is: a stretch from it has no "before".
    """
    inner = np.arange(1, slope.size - 1)
    minima = inner[(slope[inner] < 0) & (slope[inner] <= slope[inner - 1])
                   & (slope[inner] <= slope[inner + 1])]
    if slope[-1] < 0 and slope[-1] <= slope[-2]:
        minima = np.r_[minima, slope.size - 1]  # still falling at the end of the run
    return minima[np.argsort(slope[minima], kind="stable")]


def _window_at(x: np.ndarray, y: np.ndarray, level_map: np.ndarray, level: np.ndarray,
               slope: np.ndarray, peak: int, fraction: float, bandwidth: float = float("nan")
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
    peak_x = float(vertex(x, slope[None], np.array([peak]))[0]) if peak < x.size - 1 else float(x[peak])
    start, end = lo - 1, min(hi + 1, x.size - 1)
    refined_start, refined_end, breaks = refine_edges(x, y, start, end, peak_x)
    if refined_end < x.size - 1:
        start, end = refined_start, refined_end
    else:
        breaks = None  # an open end keeps the smoother's stretch: see step 2
    noise = increment_noise(y, _noise_checkpoints(x.size, start, end))
    # The run's ends are means of raw scores outside the window: a local-linear level at a
    # boundary has about twice the variance of an interior one.
    first, last = min(END_CHECKPOINTS, start + 1), min(END_CHECKPOINTS, x.size - end)
    drop, total = level[start] - level[end], y[:first].mean() - y[-last:].mean()
    sd = float(noise.sd_of(level_map[start] - level_map[end]))
    return PhaseWindow(start_tokens=float(10 ** x[start]), end_tokens=float(10 ** x[end]),
                       peak_tokens=10 ** peak_x, peak_slope=float(slope[peak]),
                       icl_before=float(y[:start + 1].mean()), icl_after=float(y[end:].mean()),
                       drop=float(drop), total_drop=float(total),
                       share=float(drop / total) if total > 0 else float("nan"),
                       width_decades=float(x[end] - x[start]),
                       z=float(drop / sd) if sd > 0 else float("inf"),
                       step_z=_step_z(10 ** x, y, 10 ** x[start], 10 ** x[end], noise),
                       end_level=float(level[end]), lowest_before=float(level[:start + 1].min()),
                       n_inside=end - start - 1, open_end=end == x.size - 1,
                       noise_white=noise.white, noise_walk=noise.walk, bandwidth=bandwidth,
                       break_start_tokens=float("nan") if breaks is None else 10 ** breaks.x0,
                       break_end_tokens=float("nan") if breaks is None else 10 ** breaks.x1)


def _noise_checkpoints(n: int, start: int, end: int) -> np.ndarray:
    """Where a candidate's noise is estimated: every checkpoint but the window and a margin.

    The window and ``SKIP_MARGIN`` checkpoints on each side are left out, because the drop is
    signal. The whole rest of the run, not only its neighbourhood: telling a slow walk from
    jitter needs second differences at lags up to 10 (``MAX_LAG``), and a transient elsewhere
    only raises the estimate (the error is on the side of "no phase change").
    """
    keep = np.ones(n, bool)
    keep[max(0, start - SKIP_MARGIN):min(n, end + SKIP_MARGIN + 1)] = False
    return keep


def _step_z(tokens: np.ndarray, y: np.ndarray, start: float, end: float, noise: IncrementNoise,
            flank: float = 2.0) -> float:
    """z of the window as a ramp on a smooth decline, near the window.

    On the checkpoints within ``flank`` window widths of it (tokens > 0), fit
    y = a + b t + c log(t / start) + d ramp(t) with t in window widths from the start and
    ramp = clip(t, 0, 1); z = -d / sd(d), with sd(d) the sd of the least-squares coefficient
    under ``noise`` (d = r' y for a row r of the pseudo-inverse; r sums to zero because the
    fit has an intercept). A decline steady in tokens (b) or in log tokens (c), a power-law
    learning curve in between, has d ~ 0 however steep it looks on a log axis; without the
    log term ~2.5% of noisy power-law learning curves passed on the tuning draws, with it 0%.
    """
    width = end - start
    near = (tokens >= start - flank * width) & (tokens <= end + flank * width) & (tokens > 0)
    t = (tokens[near] - start) / width
    design = np.stack([np.ones_like(t), t, np.log(tokens[near] / start), np.clip(t, 0, 1)], axis=1)
    gram = design.T @ design
    if near.sum() < 5 or np.linalg.cond(gram) > 1e12 or not noise.positive:
        return 0.0
    row = np.linalg.solve(gram, design.T)[3]  # d = row @ y[near]
    # The near checkpoints are consecutive, so the noise model applies to them as it stands.
    return float(-(row @ y[near]) / noise.sd_of(row))


# phase_change_window's keyword defaults, the one place nearest_miss takes them from
_RULE_DEFAULTS: dict[str, Any] = {name: p.default for name, p in
                                  inspect.signature(phase_change_window).parameters.items()
                                  if p.default is not inspect.Parameter.empty}
