"""Which checkpoints get the costly measures, and how their sparse series line up with the rest.

The per-head ablations cost more than every other measure of a checkpoint together (8 heads x
64 sequences of 256 tokens, each a forward pass from the ablated head's block on: on the default
run 1.1 s per checkpoint against 0.9 s for everything else; dense, they would be about half of
the analysis). Their series matter where something changes:
inside the phase-change window and while a head forms. So they are measured densely there
and coarsely elsewhere, and stored in their own group (``ablation``) with their own ``step``
and ``tokens`` axes. Any costlier per-checkpoint estimate added later (a local learning
coefficient, say) is meant to follow the same rule and group layout.

The rule (:func:`costly_steps`), over the run's analysed checkpoints in step order, indexed
k = 0..C-1:

1. coarse: every ``every``-th checkpoint, k % every == 0 (by index, so a checkpoint's place
   never changes as training appends more), and the run's last checkpoint once the run is
   finished;
2. the window: every checkpoint from ``margin`` checkpoints before the phase window's start to
   ``margin`` after its end (``margin`` = 2: the window's edges are uncertain by about one
   checkpoint spacing, and the ablation change before/after it is what argument 3 compares);
3. change: every checkpoint between two consecutive coarse ones (1) across which any head's
   prefix-matching or previous-token score moved by more than ``change`` (0.1; a head that
   forms moves by 0.3-0.9, noise between neighbouring checkpoints is about 0.01-0.03).

``every`` = 1 is the old dense behaviour. The choice is incremental: a later analysis (more
checkpoints, a window found or moved) only adds steps; nothing measured is dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

GROUP = "ablation"
SERIES = ("ablation_icl_change", "ablation_per_token_change")
MARGIN = 2
CHANGE = 0.1


def costly_steps(steps: np.ndarray, head_scores: list[np.ndarray], window: tuple[float, float] | None,
                 tokens: np.ndarray, every: int, finished: bool, margin: int = MARGIN,
                 change: float = CHANGE) -> np.ndarray:
    """The steps (a subset of ``steps``, sorted) that get the costly measures (module docstring).

    ``steps``/``tokens`` [C] in step order; ``head_scores``: per-head series [C, L, H] whose
    movement marks a change (prefix matching, previous token); ``window``: the phase window's
    (start, end) tokens, or None.
    """
    steps, tokens = np.asarray(steps), np.asarray(tokens, dtype=np.float64)
    n = steps.size
    if n == 0:
        return steps
    every = max(1, int(every))
    chosen = np.zeros(n, dtype=bool)
    coarse = np.arange(0, n, every)
    chosen[coarse] = True
    if finished:
        chosen[-1] = True
    if window is not None:
        inside = np.flatnonzero((tokens >= window[0]) & (tokens <= window[1]))
        if inside.size:
            chosen[max(0, inside[0] - margin):inside[-1] + margin + 1] = True
    for a, b in zip(coarse[:-1], coarse[1:]):
        moved = max((np.nanmax(np.abs(s[b] - s[a]), initial=0.0) for s in head_scores), default=0.0)
        if moved > change:
            chosen[a:b + 1] = True
    return steps[chosen]


def aligned(rows: dict[str, np.ndarray], sparse: dict[str, Any]) -> dict[str, np.ndarray]:
    """``rows`` (the analysis series, sorted by step) with each sparse series of ``sparse``
    (the ``ablation`` group, any order) added on the same step axis, NaN at the checkpoints it
    skipped. Rows that already hold the series (runs analysed densely by an older interp, which
    kept ablations in the analysis group) are returned as they are."""
    if not sparse or "step" not in sparse or "step" not in rows or any(k in rows for k in SERIES):
        return rows
    where = {int(s): i for i, s in enumerate(np.asarray(sparse["step"]))}
    index = np.array([where.get(int(s), -1) for s in rows["step"]])
    out = dict(rows)
    for key in SERIES:
        if key not in sparse:
            continue
        values = np.asarray(sparse[key], dtype=np.float64)
        full = np.full((index.size, *values.shape[1:]), np.nan)
        full[index >= 0] = values[index[index >= 0]]
        out[key] = full
    return out


def measured(series: np.ndarray) -> np.ndarray:
    """[A] True at the rows of an aligned sparse series that were measured (not all NaN)."""
    flat = np.asarray(series, dtype=np.float64).reshape(len(series), -1)
    return ~np.isnan(flat).all(axis=1)
