"""Per-token-loss PCA (Olsson et al. 2022): where each checkpoint sits in "loss space".

Each checkpoint is the vector of its losses on a fixed set of (example, position) pairs. The
vectors of all checkpoints of the runs being compared are stacked, centred on their mean, and
projected on the top principal components. Runs with >= 2 layers turn sharply at the phase
change; one-layer runs do not.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float


def per_token_loss_pca(vectors: list[Float[np.ndarray, "checkpoints pairs"]], n_components: int = 2
                       ) -> tuple[list[np.ndarray], np.ndarray]:
    """Project every run's checkpoints on the top components of all of them together.

    Args:
        vectors: one [checkpoints, pairs] array per run, all on the same pairs.

    Returns:
        (per-run [checkpoints, n_components] projections, explained variance ratios [n_components]).
    """
    if len({v.shape[1] for v in vectors}) != 1:
        raise ValueError("runs must be measured on the same (example, position) pairs to compare them")
    stacked = np.concatenate(vectors).astype(np.float64)
    centred = stacked - stacked.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ components[:n_components].T
    explained = singular[:n_components] ** 2 / max((singular ** 2).sum(), 1e-12)
    splits = np.cumsum([len(v) for v in vectors])[:-1]
    return np.split(projected, splits), explained
