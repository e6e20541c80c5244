"""The noise of a series over checkpoints: an AR(1) model that allows for correlated residuals.

Training noise is not independent from checkpoint to checkpoint: the weights at neighbouring
checkpoints share most of their history, so a score wanders rather than jitters. A test that
assumes independent residuals overstates the evidence for a drop (issue 9: 2% of AR(1)
rho = 0.8 series and 7.5% of random walks gave a "window"). Here the residual e_i at the
i-th checkpoint (in checkpoint order, whatever the spacing) follows

    e_i = rho e_{i-1} + u_i,   u_i ~ N(0, sigma^2 (1 - rho^2)),   so Var e_i = sigma^2,
    Cov(e_i, e_j) = sigma^2 rho^|i - j|.

rho and sigma are estimated from the residuals of the smoother that the window rule uses
(:class:`SmootherNoise`), with the smoother's own bias removed: a smoother follows slow noise
and hides it, which is why its raw residuals make correlated noise look white. White noise
gives rho ~ 0, a random walk rho near 1 (clipped to ``RHO_MAX``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

# A random walk has rho = 1 and no marginal variance; 0.98 makes the model one over the ~50
# checkpoints that any window and its flanks span (2 sigma^2 (1 - rho^k) ~ k Var d there).
RHO_MAX = 0.98


@dataclass(frozen=True)
class NoiseModel:
    """AR(1) noise: marginal sd ``sigma`` and lag-one correlation ``rho`` (checkpoint order)."""

    sigma: float
    rho: float

    def covariance(self, n: int) -> Float[np.ndarray, "n n"]:
        """sigma^2 rho^|i-j| for n consecutive checkpoints."""
        index = np.arange(n)
        return self.sigma ** 2 * self.rho ** np.abs(index[:, None] - index[None, :])

    def sd_of(self, weights: Float[np.ndarray, "... n"]) -> np.ndarray:
        """sd of weights @ e for each row of weights (a linear statistic of the series)."""
        return np.sqrt(np.einsum("...i,ij,...j->...", weights, self.covariance(weights.shape[-1]), weights))

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...], n: int) -> np.ndarray:
        """Stationary AR(1) noise paths [*shape, n]."""
        u = rng.standard_normal((*shape, n))
        out = np.empty_like(u)
        out[..., 0] = u[..., 0]
        scale = math.sqrt(1 - self.rho ** 2)
        for i in range(1, n):
            out[..., i] = self.rho * out[..., i - 1] + scale * u[..., i]
        return self.sigma * out


RHO_GRID = np.linspace(0.0, RHO_MAX, 50)


class SmootherNoise:
    """AR(1) noise of a series from its residuals around a linear smoother, bias-corrected.

    A smoother y_hat = L y follows slow noise, so the residuals r = (I - L) y look less
    correlated than the noise is. Under AR(1) noise with correlation matrix P(rho), the
    residuals have covariance sigma^2 C(rho) with C = (I - L) P (I - L)'. The estimate is by
    moments on the checkpoints kept (``keep``: a candidate window and its margin are left out,
    since a drop the smoother cannot follow is signal, not noise):

        rho:     mean_{i,i+1 kept} r_i r_{i+1} / mean_{i kept} r_i^2 = the same ratio of C(rho)
                 (solved on a grid of rho in [0, RHO_MAX]; below the rho = 0 value gives 0);
        sigma^2: sum_{kept} r_i^2 / sum_{kept} C_ii(rho).

    The C matrices are built once per series and shared by every candidate window.
    """

    def __init__(self, level_map: Float[np.ndarray, "n n"], y: Float[np.ndarray, "n"]):
        n = y.size
        self.residuals = y - level_map @ y
        resid_map = np.eye(n) - level_map
        lag = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
        self.covs = np.stack([resid_map @ (rho ** lag) @ resid_map.T for rho in RHO_GRID])

    def model(self, keep: np.ndarray) -> NoiseModel:
        """The AR(1) model from the residuals at the checkpoints where ``keep`` is True."""
        r = self.residuals
        pairs = keep[1:] & keep[:-1]
        if pairs.sum() < 3:
            return NoiseModel(float("nan"), 0.0)
        second = float(r[keep] @ r[keep]) / keep.sum()
        if second <= 0:
            return NoiseModel(0.0, 0.0)
        observed = float(r[1:][pairs] @ r[:-1][pairs]) / pairs.sum() / second
        diag = np.diagonal(self.covs, axis1=1, axis2=2)  # [grid, n]
        off = np.diagonal(self.covs, offset=1, axis1=1, axis2=2)  # [grid, n-1]
        expected = off[:, pairs].mean(1) / diag[:, keep].mean(1)
        rho = 0.0 if observed <= expected[0] else float(np.interp(observed, expected, RHO_GRID))
        k = int(np.argmin(np.abs(RHO_GRID - rho)))
        sigma = math.sqrt(float(r[keep] @ r[keep]) / float(diag[k, keep].sum()))
        return NoiseModel(sigma, rho)


def block_length(n: int) -> int:
    """Moving-block length for ``n`` residuals: ceil(n^(1/3)) (Kuensch 1989's rate; 5 for 75)."""
    return max(1, math.ceil(n ** (1 / 3)))


def block_bootstrap(residuals: Float[np.ndarray, "checkpoint"], n_boot: int, rng: np.random.Generator,
                    length: int | None = None) -> Float[np.ndarray, "boot checkpoint"]:
    """[n_boot, C] resampled residual paths: moving blocks of ``length`` consecutive residuals.

    Blocks start at uniformly drawn positions and are laid end to end, then cut to C; a block
    keeps the residuals' correlation within it, which resampling single residuals destroys
    (with independent draws, correlated noise gives intervals that are too narrow).
    """
    n = residuals.size
    length = min(block_length(n) if length is None else length, n)
    n_blocks = -(-n // length)
    starts = rng.integers(0, n - length + 1, size=(n_boot, n_blocks))
    index = (starts[..., None] + np.arange(length)).reshape(n_boot, -1)[:, :n]
    return residuals[index]
