"""Calibration of the phase-change rule: false-positive rate on nulls, power on known drops.

    python benchmarks/calibrate_phase.py [--n 500] [--tuning | --first-seed S] [--noise 0.02 ...]
                                         [--jobs N] [--min-z 5] [--min-step-z 4]

Draws ``--n`` series of each null in :data:`interp.phase.synthetic.NULLS` and of sigmoid drops
of 0.1/0.2/0.4 nats over 0.1/0.3/0.5/1.0 decades, on the default run's checkpoints and at its
noise level (interp.phase.synthetic), and runs :func:`interp.phase.phase_change_window` on
each. Prints, per null, the share of series given a window (the false-positive rate, with a
95% Wilson interval) and, per drop, the share given a window that contains the drop's centre
(the power). Held-aside draws by default; ``--tuning`` uses the draws the thresholds were set
on (seeds below HELD_ASIDE_SEED); ``--first-seed`` a fresh range (a new version of the rule
is checked on seeds it has never been run on). Rows run in ``--jobs`` processes. Also prints the largest z per null (``--z-quantiles``) so a
threshold can be read off the tuning draws.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from interp.phase import phase_change_window
from interp.phase.synthetic import DEFAULT_RUN_TOKENS, HELD_ASIDE_SEED, NOISE_SD, NULLS, drop_series, null_series

DROPS = (0.1, 0.2, 0.4)
SPREADS = (0.1, 0.3, 0.5, 1.0)
# Power at the default run's quick-eval noise (NOISE_SD) and lower: the band score on
# 256 sequences that the analysis uses has ~0.02 nats of noise on the default run (docs/PHASE.md).
NOISE_LEVELS = (NOISE_SD, 0.03, 0.02)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k / n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(k: int, n: int) -> str:
    low, high = wilson(k, n)
    return f"{100 * k / n:5.1f}% ({100 * low:.1f}-{100 * high:.1f})"


def null_row(kind: str, seeds: range, kwargs: dict, z_quantiles: bool) -> tuple[int, list[float]]:
    """Windows found on the null ``kind`` over ``seeds``, and each series' ungated z (optional)."""
    found, zs = 0, []
    for seed in seeds:
        y = null_series(kind, seed, DEFAULT_RUN_TOKENS)
        found += phase_change_window(DEFAULT_RUN_TOKENS, y, **kwargs) is not None
        if z_quantiles:
            w = phase_change_window(DEFAULT_RUN_TOKENS, y, min_z=-np.inf)
            zs.append(w.z if w is not None else 0.0)
    return found, zs


def drop_row(drop: float, spread: float, noise: float, seeds: range, kwargs: dict) -> int:
    """Drops found (a window that contains the drop's centre) over ``seeds``."""
    hit = 0
    for seed in seeds:
        y, centre = drop_series(drop, spread, seed, DEFAULT_RUN_TOKENS, noise_sd=noise)
        w = phase_change_window(DEFAULT_RUN_TOKENS, y, **kwargs)
        hit += w is not None and w.start_tokens <= 10 ** centre <= w.end_tokens
    return hit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="series per row")
    parser.add_argument("--tuning", action="store_true", help="the tuning draws instead of the held-aside ones")
    parser.add_argument("--first-seed", type=int, help="first seed of the draws (overrides --tuning)")
    parser.add_argument("--noise", type=float, nargs="+", default=list(NOISE_LEVELS),
                        help="noise levels of the power table")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--min-z", type=float, help="override the rule's z threshold")
    parser.add_argument("--min-step-z", type=float, help="override the rule's step-z threshold")
    parser.add_argument("--z-quantiles", action="store_true", help="also print z quantiles of windows without the z gate")
    args = parser.parse_args()
    first = args.first_seed if args.first_seed is not None else 0 if args.tuning else HELD_ASIDE_SEED
    seeds = range(first, first + args.n)
    kwargs = {key: value for key, value in (("min_z", args.min_z), ("min_step_z", args.min_step_z))
              if value is not None}
    started = time.time()
    label = "tuning" if first < HELD_ASIDE_SEED else "held-aside"
    print(f"{label} draws (seeds {first}-{first + args.n - 1}), {args.n} series per row, "
          f"{DEFAULT_RUN_TOKENS.size} checkpoints, noise sd {NOISE_SD} nats\n", flush=True)
    with ProcessPoolExecutor(args.jobs) as pool:
        nulls = [pool.submit(null_row, kind, seeds, kwargs, args.z_quantiles) for kind in NULLS]
        drops = {(noise, drop, spread): pool.submit(drop_row, drop, spread, noise, seeds, kwargs)
                 for noise in args.noise for drop in DROPS for spread in SPREADS}
        print("| null (no phase change) | windows found (95% interval) |" + (" z q99 / max (no z gate) |" if args.z_quantiles else ""))
        print("|---|---|" + ("---|" if args.z_quantiles else ""))
        for kind, future in zip(NULLS, nulls):
            found, zs = future.result()
            extra = f" {np.quantile(zs, 0.99):.1f} / {max(zs):.1f} |" if args.z_quantiles else ""
            print(f"| {kind} | {rate(found, args.n)} |{extra}", flush=True)
        print("\n| drop (nats) | noise sd | " + " | ".join(f"over {s} decades" for s in SPREADS) + " |")
        print("|---|---|" + "---|" * len(SPREADS))
        for noise in args.noise:
            for drop in DROPS:
                cells = [rate(drops[noise, drop, spread].result(), args.n) for spread in SPREADS]
                print(f"| {drop} | {noise} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
