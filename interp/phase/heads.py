"""Which heads are induction heads, and when each formed.

Both read stored per-checkpoint scores only: prefix matching and OV copying [C, L, H].
"""

from __future__ import annotations

import numpy as np

from interp.phase.smoothing import log_tokens_and


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


def formation_x(x: np.ndarray, scores: np.ndarray, threshold: np.ndarray) -> np.ndarray:
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
    x, s = log_tokens_and(tokens, scores)
    if x.size == 0:
        return None
    level = s[-1] / 2 if threshold is None else threshold
    if not level > 0 and threshold is None:
        return None
    value = formation_x(x, s[None], np.array([level], dtype=np.float64))[0]
    return None if np.isnan(value) else float(10 ** value)
