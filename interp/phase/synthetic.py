"""Synthetic ICL-score series with known answers: the nulls and drops the phase rule is calibrated on.

Every series lives on the ``default`` preset's checkpoint schedule (76 checkpoints, 0 to 8.19M
tokens: 30 log-spaced, then evenly spaced), and its noise level is that of the default run's
band ICL score: ``NOISE_SD`` nats, the residual sd of the stored run around its smooth.
A draw is a pure function of (kind, parameters, seed), so a calibration table is reproducible
and tuning draws (seeds below ``HELD_ASIDE_SEED``) never overlap the held-aside ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from jaxtyping import Float

from interp.phase.noise import NoiseModel

# The default preset's checkpoint tokens (2000 steps x 16 x 256; checkpoint_schedule).
DEFAULT_RUN_TOKENS = np.array([
    0, 4096, 8192, 12288, 16384, 20480, 24576, 28672, 36864, 45056, 57344, 73728, 90112, 110592,
    139264, 163840, 176128, 217088, 270336, 327680, 335872, 421888, 491520, 524288, 655360, 815104,
    819200, 983040, 1015808, 1146880, 1269760, 1310720, 1474560, 1581056, 1638400, 1802240, 1966080,
    1970176, 2129920, 2293760, 2457600, 2621440, 2785280, 2949120, 3112960, 3276800, 3440640,
    3604480, 3768320, 3932160, 4096000, 4259840, 4423680, 4587520, 4751360, 4915200, 5079040,
    5242880, 5406720, 5570560, 5734400, 5898240, 6062080, 6225920, 6389760, 6553600, 6717440,
    6881280, 7045120, 7208960, 7372800, 7536640, 7700480, 7864320, 8028160, 8192000], dtype=float)
NOISE_SD = 0.07  # nats: the default run's ICL residual sd (0.068, interp.phase.noise on its fit)
HELD_ASIDE_SEED = 1_000_000  # calibration reports draws from here on; tuning uses seeds below

Series = Float[np.ndarray, "checkpoint"]


def _x(tokens: np.ndarray) -> np.ndarray:
    return np.log10(np.maximum(tokens, 1.0))


def white(rng: np.random.Generator, tokens: np.ndarray, sd: float = NOISE_SD) -> Series:
    return sd * rng.standard_normal(tokens.size)


def ar1(rng: np.random.Generator, tokens: np.ndarray, rho: float, sd: float = NOISE_SD) -> Series:
    """Stationary AR(1) noise in checkpoint order with marginal sd ``sd``."""
    return NoiseModel(sd, rho).draw(rng, (), tokens.size)


def random_walk(rng: np.random.Generator, tokens: np.ndarray, step_sd: float) -> Series:
    """Cumulative sum of N(0, step_sd^2) steps in checkpoint order, starting at 0."""
    return np.cumsum(np.r_[0.0, step_sd * rng.standard_normal(tokens.size - 1)])


def sigmoid_drop(tokens: np.ndarray, drop: float, centre_log10: float, spread_decades: float) -> Series:
    """-drop * sigmoid in log10 tokens whose 10%-90% rise takes ``spread_decades``."""
    scale = spread_decades / (2 * math.log(9))
    z = np.clip((_x(tokens) - centre_log10) / scale, -50, 50)
    return -drop / (1 + np.exp(-z))


def power_decline(tokens: np.ndarray, total: float, exponent: float) -> Series:
    """-total * (t / T)^exponent: a smooth decline, steady in tokens for exponent 1."""
    return -total * (tokens / tokens[-1]) ** exponent


def loss_like_decline(tokens: np.ndarray, total: float, alpha: float = 0.3) -> Series:
    """-total * (1 - (t / t_1)^-alpha) / (1 - (T / t_1)^-alpha): a power-law learning curve."""
    t1 = tokens[tokens > 0][0]
    t = np.maximum(tokens, t1)
    return -total * (1 - (t / t1) ** -alpha) / (1 - (tokens[-1] / t1) ** -alpha)


NullMaker = Callable[[np.random.Generator, np.ndarray], Series]

NULLS: dict[str, NullMaker] = {
    "white noise": lambda r, t: white(r, t),
    "AR(1) rho=0.5": lambda r, t: ar1(r, t, 0.5),
    "AR(1) rho=0.8": lambda r, t: ar1(r, t, 0.8),
    "AR(1) rho=0.95": lambda r, t: ar1(r, t, 0.95),
    "random walk (steps sd/4)": lambda r, t: random_walk(r, t, NOISE_SD / 4),
    "random walk (steps sd/4) + white": lambda r, t: random_walk(r, t, NOISE_SD / 4) + white(r, t),
    "random walk (steps sd/2)": lambda r, t: random_walk(r, t, NOISE_SD / 2),
    "power-law learning curve, 0.6 nats": lambda r, t: loss_like_decline(t, 0.6) + white(r, t),
    "decline steady in tokens, 0.6 nats": lambda r, t: power_decline(t, 0.6, 1.0) + white(r, t),
    "decline ~ sqrt(tokens), 0.6 nats": lambda r, t: power_decline(t, 0.6, 0.5) + white(r, t),
}


def null_series(kind: str, seed: int, tokens: np.ndarray = DEFAULT_RUN_TOKENS) -> Series:
    """One draw of the null ``kind`` (a key of ``NULLS``): no phase change in it."""
    return NULLS[kind](np.random.default_rng([seed, sorted(NULLS).index(kind)]), tokens)


def drop_series(drop: float, spread_decades: float, seed: int, tokens: np.ndarray = DEFAULT_RUN_TOKENS,
                noise_sd: float = NOISE_SD) -> tuple[Series, float]:
    """A sigmoid drop plus white noise, and its centre (log10 tokens).

    The centre is uniform over the stretch where the whole 10%-90% rise fits between 400k
    tokens (earlier, checkpoints are sparse) and 0.15 decades before the end of the run.
    """
    rng = np.random.default_rng([seed, int(1000 * drop), int(1000 * spread_decades)])
    low, high = math.log10(4e5) + spread_decades / 2, _x(tokens)[-1] - 0.15 - spread_decades / 2
    centre = float(rng.uniform(low, max(low, high)))
    return sigmoid_drop(tokens, drop, centre, spread_decades) + white(rng, tokens, noise_sd), centre
