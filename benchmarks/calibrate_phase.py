"""Calibration of the phase-change rule: false-positive rate on nulls, power on known drops.

    python benchmarks/calibrate_phase.py [--n 500] [--tuning] [--min-z 5]

Draws ``--n`` series of each null in :data:`interp.phase.synthetic.NULLS` and of sigmoid drops
of 0.1/0.2/0.4 nats over 0.1/0.3/0.5/1.0 decades, on the default run's checkpoints and at its
noise level (interp.phase.synthetic), and runs :func:`interp.phase.phase_change_window` on
each. Prints, per null, the share of series given a window (the false-positive rate, with a
95% Wilson interval) and, per drop, the share given a window that contains the drop's centre
(the power). Held-aside draws by default; ``--tuning`` uses the draws the thresholds were set
on (seeds below HELD_ASIDE_SEED). Also prints the largest z per null (``--z-quantiles``) so a
threshold can be read off the tuning draws.
"""

from __future__ import annotations

import argparse
import math
import time

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="series per row")
    parser.add_argument("--tuning", action="store_true", help="the tuning draws instead of the held-aside ones")
    parser.add_argument("--min-z", type=float, help="override the rule's z threshold")
    parser.add_argument("--min-step-z", type=float, help="override the rule's step-z threshold")
    parser.add_argument("--z-quantiles", action="store_true", help="also print z quantiles of windows without the z gate")
    args = parser.parse_args()
    first = 0 if args.tuning else HELD_ASIDE_SEED
    seeds = range(first, first + args.n)
    kwargs = {key: value for key, value in (("min_z", args.min_z), ("min_step_z", args.min_step_z))
              if value is not None}
    tokens = DEFAULT_RUN_TOKENS
    started = time.time()
    print(f"{'tuning' if args.tuning else 'held-aside'} draws, {args.n} series per row, "
          f"{tokens.size} checkpoints, noise sd {NOISE_SD} nats\n")
    print("| null (no phase change) | windows found (95% interval) |" + (" z q99 / max (no z gate) |" if args.z_quantiles else ""))
    print("|---|---|" + ("---|" if args.z_quantiles else ""))
    for kind in NULLS:
        found, zs = 0, []
        for seed in seeds:
            y = null_series(kind, seed, tokens)
            found += phase_change_window(tokens, y, **kwargs) is not None
            if args.z_quantiles:
                w = phase_change_window(tokens, y, min_z=-np.inf)
                zs.append(w.z if w is not None else 0.0)
        extra = f" {np.quantile(zs, 0.99):.1f} / {max(zs):.1f} |" if args.z_quantiles else ""
        print(f"| {kind} | {rate(found, args.n)} |{extra}")
    print("\n| drop (nats) | noise sd | " + " | ".join(f"over {s} decades" for s in SPREADS) + " |")
    print("|---|---|" + "---|" * len(SPREADS))
    for noise in NOISE_LEVELS:
        for drop in DROPS:
            cells = []
            for spread in SPREADS:
                hit = 0
                for seed in seeds:
                    y, centre = drop_series(drop, spread, seed, tokens, noise_sd=noise)
                    w = phase_change_window(tokens, y, **kwargs)
                    hit += w is not None and w.start_tokens <= 10 ** centre <= w.end_tokens
                cells.append(rate(hit, args.n))
            print(f"| {drop} | {noise} | " + " | ".join(cells) + " |")
    print(f"\n{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
