"""Whether the phase change is complete: a closed window with checkpoints after it, level heads.

The stop rule of ``train.until=phase`` and the summary's "still falling / still rising" line
(:mod:`interp.until`) both read :func:`assess`. The paper gives no rule for "complete"; this is:

    complete = closed window AND every head in scope is level

- closed window: :func:`interp.phase.window.phase_change_window` finds a window, its end is
  not open (the score was not still falling at the last checkpoint), and at least
  ``AFTER_CHECKPOINTS`` checkpoints lie after its end, so the level after the drop is seen and
  not only its last step;
- level head: :func:`head_trend` over the last ``LEVEL_CHECKPOINTS`` checkpoints is
  consistent with zero, or too small to matter (:func:`is_level`).

The heads in scope are those of layer >= 1 (layer 0 in a one-layer model), the layers that can
hold induction heads (:func:`heads_in_scope`). The head test is deliberately its own small
function of one score series, so a trend label from a head classification can replace it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from jaxtyping import Float

from interp.phase.window import END_CHECKPOINTS, PhaseWindow, phase_change_window

# Checkpoints after the window's end before it counts as closed: as many as the window rule
# averages for the run's last level (END_CHECKPOINTS = 5).
AFTER_CHECKPOINTS = END_CHECKPOINTS
# The last checkpoints a head's trend is fitted on: at the default preset's spacing (40 steps,
# 164k tokens) 8 checkpoints span 280 steps, 14% of the nominal run, about half a stretch.
LEVEL_CHECKPOINTS = 8
# A head moves when its fitted change over those checkpoints is at least MIN_CHANGE prefix
# matching AND at least MIN_TREND_Z standard errors from zero. 0.05 is a tenth of the 0.5 a
# formed induction head holds and about twice the checkpoint-to-checkpoint jitter of a formed
# head's score; the z guards against a change that noise alone would give (with 6 residual
# degrees of freedom, |t| >= 2 has a two-sided p of about 0.09 under no trend).
MIN_CHANGE = 0.05
MIN_TREND_Z = 2.0


@dataclass(frozen=True)
class HeadTrend:
    """One head's score trend over the last checkpoints (:func:`head_trend`)."""

    layer: int
    head: int
    change: float  # fitted change across the checkpoints, in score units (+ = rising)
    z: float  # change / its standard error (NaN with fewer than 3 checkpoints)
    level: bool

    @property
    def name(self) -> str:
        return f"{self.layer}.{self.head}"


@dataclass(frozen=True)
class Completion:
    """The verdict of :func:`assess` with its evidence."""

    window: PhaseWindow | None
    checkpoints_after: int  # checkpoints after the window's end (0 without a window)
    heads: list[HeadTrend] = field(default_factory=list)  # every head in scope
    last_checkpoints: int = LEVEL_CHECKPOINTS  # how many checkpoints the trends were fitted on

    @property
    def closed(self) -> bool:
        # An open end is the last checkpoint, so it has no checkpoint after it and fails here.
        return self.window is not None and self.checkpoints_after >= AFTER_CHECKPOINTS

    @property
    def rising(self) -> list[HeadTrend]:
        return [h for h in self.heads if not h.level and h.change > 0]

    @property
    def falling(self) -> list[HeadTrend]:
        return [h for h in self.heads if not h.level and h.change < 0]

    @property
    def complete(self) -> bool:
        return self.closed and not self.rising and not self.falling

    @property
    def mid_change(self) -> bool:
        """The run ended inside the change: a window that is open or closed only just, or heads
        still moving. (No window and level heads is not "mid-change": nothing has started.)"""
        return (self.window is not None and not self.closed) or bool(self.rising or self.falling)

    def describe(self) -> str:
        """One line: where ICL and the heads stand (``ICL still falling at the end; heads still
        rising (1.0 +0.12 over the last 8 checkpoints)``)."""
        w = self.window
        if w is None:
            icl = "no abrupt ICL drop yet"
        elif w.open_end:
            icl = "ICL still falling at the end"
        elif self.checkpoints_after < AFTER_CHECKPOINTS:
            icl = (f"the ICL drop ended only {self.checkpoints_after} checkpoint(s) before the end "
                   f"(closed needs {AFTER_CHECKPOINTS})")
        else:
            icl = f"ICL drop complete ({w.start_tokens / 1e6:.2f}M-{w.end_tokens / 1e6:.2f}M tokens)"
        parts = [icl]
        for word, heads in (("rising", self.rising), ("falling", self.falling)):
            if heads:
                each = ", ".join(f"{h.name} {h.change:+.2f}" for h in heads)
                parts.append(f"heads still {word} ({each} prefix matching over the last "
                             f"{self.last_checkpoints} checkpoints)")
        if not (self.rising or self.falling):
            parts.append("heads level")
        return "; ".join(parts)


def head_trend(x: Float[np.ndarray, "checkpoint"], scores: Float[np.ndarray, "checkpoint"],
               last: int = LEVEL_CHECKPOINTS) -> tuple[float, float]:
    """(change, z) of a least-squares line through the last ``last`` points of a series.

    With b the slope of y = a + b x over those points (x = checkpoint tokens: the late
    checkpoints are evenly spaced, so a line in tokens is a line in checkpoints),
    change = b (x_last - x_first) and z = b / se(b), se(b) = sqrt(RSS / (n - 2) / Sxx), the
    ordinary standard error (the residuals of the line: jitter, and any curvature, such as a
    rise bending over, which only makes a trend harder to claim). z is NaN with fewer than 3
    points, +-inf when the points lie exactly on a sloped line, and 0 on a flat one.
    """
    x, y = np.asarray(x, np.float64)[-last:], np.asarray(scores, np.float64)[-last:]
    if x.size < 2:
        return 0.0, float("nan")
    dx = x - x.mean()
    sxx = float(dx @ dx)
    if sxx == 0:
        return 0.0, float("nan")
    slope = float(dx @ (y - y.mean())) / sxx
    change = slope * float(x[-1] - x[0])
    if x.size < 3:
        return change, float("nan")
    residual = y - y.mean() - slope * dx
    se = float(np.sqrt(residual @ residual / (x.size - 2) / sxx))
    if se == 0:
        return change, 0.0 if slope == 0 else float(np.copysign(np.inf, slope))
    return change, slope / se


def is_level(change: float, z: float, min_change: float = MIN_CHANGE, min_z: float = MIN_TREND_Z) -> bool:
    """A trend is level unless it is both material (|change| >= ``min_change``) and clear of
    the noise (|z| >= ``min_z``); a NaN z (too few points) counts as level."""
    return not (abs(change) >= min_change and abs(z) >= min_z)


def heads_in_scope(n_layers: int) -> range:
    """Layers whose heads the test follows: >= 1, since an induction head needs an earlier
    layer's previous-token head; layer 0 in a one-layer model, where it is all there is."""
    return range(1, n_layers) if n_layers > 1 else range(0, 1)


def assess(tokens: Float[np.ndarray, "checkpoint"], icl: Float[np.ndarray, "checkpoint"],
           prefix_matching: Float[np.ndarray, "checkpoint layer head"],
           window: PhaseWindow | None | str = "find", last: int = LEVEL_CHECKPOINTS) -> Completion:
    """Whether the phase change of these series is complete (module docstring), with evidence.

    Args:
        tokens: checkpoint token counts, ascending.
        icl: the ICL score at each checkpoint (the band score, as the window rule expects).
        prefix_matching: each head's prefix-matching score at each checkpoint.
        window: the window, when the caller has it; ``"find"`` runs
            :func:`~interp.phase.window.phase_change_window` on (tokens, icl).
        last: checkpoints the head trends are fitted on.
    """
    tokens = np.asarray(tokens, np.float64)
    found = phase_change_window(tokens, np.asarray(icl, np.float64)) if isinstance(window, str) else window
    after = int((tokens > found.end_tokens).sum()) if found is not None else 0
    prefix = np.asarray(prefix_matching, np.float64)
    trends = []
    for layer in heads_in_scope(prefix.shape[1]):
        for head in range(prefix.shape[2]):
            change, z = head_trend(tokens, prefix[:, layer, head], last)
            trends.append(HeadTrend(layer, head, change, z, is_level(change, z)))
    return Completion(found, after, trends, min(last, tokens.size))
