"""Whether the phase change is complete: a closed window with checkpoints after it, level heads.

The stop rule of ``train.until=phase`` and the summary's "still falling / still rising" line
(:mod:`interp.until`) both read :func:`assess`. The paper gives no rule for "complete"; this is:

    complete = closed window AND every head in scope is level AND one of them has risen

- closed window: :func:`interp.phase.window.phase_change_window` finds a window, its end is
  not open (the score was not still falling at the last checkpoint), and at least
  ``AFTER_CHECKPOINTS`` checkpoints lie after its end, so the level after the drop is seen and
  not only its last step;
- level head: neither rising nor still falling by :func:`interp.phase.trend.movement`, the
  test behind the heads' trend labels, on the head's prefix-matching series (the last
  max(5, 20%) checkpoints, slope per decade of tokens against the jitter-plus-walk noise;
  rising also needs a quarter of the head's own steepest rise, so the slow sharpening after
  a formation counts as level; still falling also needs the tail 0.1 below the peak, so a
  head that settles by a few hundredths is level). Sharing it means the stop rule never
  calls a head "still rising" or "still falling" that the report labels "formed".

- risen: some head's score has at some checkpoint stood at least ``MIN_RISE`` (0.1, the
  effect the induction-head rule asks of a head above its null) above its score at the first
  checkpoint (an untrained head, which ignores token identity: the null's stand-in where the
  series has none). Without it, a run whose ICL score fell in a window while no head formed
  (the man-pages run of docs/PRESETS.md at 8.2M tokens: every layer-1 head flat at 0.03)
  would be "complete" with nothing to show.

The heads in scope are those of layer >= 1 (layer 0 in a one-layer model), the layers that can
hold induction heads, and every layer's with smeared keys, whose keys carry the previous token
themselves (:func:`heads_in_scope`). The series is the raw prefix-matching score:
``train.until`` reads training's own evaluation, which has no null series (the null is a
constant offset per checkpoint that moves little; the analysis's labels use it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from jaxtyping import Float

from interp.phase.heads import RULE
from interp.phase.smoothing import log_tokens_and
from interp.phase.trend import Movement, movement
from interp.phase.window import END_CHECKPOINTS, PhaseWindow, phase_change_window

# Checkpoints after the window's end before it counts as closed: as many as the window rule
# averages for the run's last level (END_CHECKPOINTS = 5).
AFTER_CHECKPOINTS = END_CHECKPOINTS
MIN_RISE = RULE.min_effect  # 0.1: what the induction-head rule asks of a head above its null


@dataclass(frozen=True)
class HeadMovement:
    """One head's movement at the end (:func:`interp.phase.trend.movement`) and its rise."""

    layer: int
    head: int
    move: Movement
    rise: float  # the highest score minus the score at the first checkpoint

    @property
    def name(self) -> str:
        return f"{self.layer}.{self.head}"

    @property
    def change(self) -> float:
        """The fitted slope over the last checkpoints, prefix matching per decade of tokens."""
        return self.move.slope

    @property
    def level(self) -> bool:
        return not (self.move.rising or self.move.still_falling)


@dataclass(frozen=True)
class Completion:
    """The verdict of :func:`assess` with its evidence."""

    window: PhaseWindow | None
    checkpoints_after: int  # checkpoints after the window's end (0 without a window)
    heads: list[HeadMovement] = field(default_factory=list)  # every head in scope
    last_checkpoints: int = 0  # how many checkpoints the trends were fitted on

    @property
    def closed(self) -> bool:
        # An open end is the last checkpoint, so it has no checkpoint after it and fails here.
        return self.window is not None and self.checkpoints_after >= AFTER_CHECKPOINTS

    @property
    def rising(self) -> list[HeadMovement]:
        return [h for h in self.heads if not h.level and h.change > 0]

    @property
    def falling(self) -> list[HeadMovement]:
        return [h for h in self.heads if not h.level and h.change < 0]

    @property
    def risen(self) -> list[HeadMovement]:
        return [h for h in self.heads if h.rise >= MIN_RISE]

    @property
    def complete(self) -> bool:
        return self.closed and not self.rising and not self.falling and bool(self.risen)

    @property
    def mid_change(self) -> bool:
        """The run ended inside the change: a window that is open or closed only just, heads
        still moving, or an ICL drop with no head risen yet. (No window and level heads is not
        "mid-change": nothing has started.)"""
        return (self.window is not None and (not self.closed or not self.risen)) or bool(self.rising or self.falling)

    def describe(self) -> str:
        """One line: where ICL and the heads stand (``ICL still falling at the end; heads still
        rising (1.0 +0.12 per decade of tokens over the last 15 checkpoints)``)."""
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
                parts.append(f"heads still {word} ({each} prefix matching per decade of tokens "
                             f"over the last {self.last_checkpoints} checkpoints)")
        if not (self.rising or self.falling):
            parts.append("heads level")
        if w is not None and self.heads and not self.risen:
            best = max(self.heads, key=lambda h: h.rise)
            parts.append(f"but no head has risen {MIN_RISE} above its start yet (best {best.name} "
                         f"{best.rise:+.2f})")
        return "; ".join(parts)


def heads_in_scope(n_layers: int, smeared_key: bool = False) -> range:
    """Layers whose heads the test follows: >= 1, since an induction head needs an earlier
    layer's previous-token head; layer 0 in a one-layer model, where it is all there is; every
    layer with smeared keys (k'_j mixes in k_{j-1}, so a layer-0 head can match the previous
    token by itself: on the man pages of docs/PRESETS.md the induction head forms in layer 0)."""
    return range(0, n_layers) if smeared_key or n_layers == 1 else range(1, n_layers)


def assess(tokens: Float[np.ndarray, "checkpoint"], icl: Float[np.ndarray, "checkpoint"],
           prefix_matching: Float[np.ndarray, "checkpoint layer head"],
           window: PhaseWindow | None | str = "find", smeared_key: bool = False) -> Completion:
    """Whether the phase change of these series is complete (module docstring), with evidence.

    Args:
        tokens: checkpoint token counts, ascending.
        icl: the ICL score at each checkpoint (the band score, as the window rule expects).
        prefix_matching: each head's prefix-matching score at each checkpoint.
        window: the window, when the caller has it; ``"find"`` runs
            :func:`~interp.phase.window.phase_change_window` on (tokens, icl).
        smeared_key: the model's keys are smeared, so layer 0 is in scope (:func:`heads_in_scope`).
    """
    tokens = np.asarray(tokens, np.float64)
    found = phase_change_window(tokens, np.asarray(icl, np.float64)) if isinstance(window, str) else window
    after = int((tokens > found.end_tokens).sum()) if found is not None else 0
    prefix = np.asarray(prefix_matching, np.float64)
    trends, tail = [], 0
    for layer in heads_in_scope(prefix.shape[1], smeared_key):
        for head in range(prefix.shape[2]):
            x, score = log_tokens_and(tokens, prefix[:, layer, head])
            if x.size == 0:
                continue
            move = movement(x, score)
            trends.append(HeadMovement(layer, head, move, float(np.nanmax(score) - prefix[0, layer, head])))
            tail = move.tail
    return Completion(found, after, trends, tail)
