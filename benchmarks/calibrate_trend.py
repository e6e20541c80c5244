"""How often the trend labels (interp/phase/trend.py) name synthetic heads right.

    python benchmarks/calibrate_trend.py [--n 200] [--seed 0]

Each head is a prefix-matching effect over a null of 0.03 on the default run's 76 checkpoints
(DEFAULT_RUN_TOKENS), plus white noise of sd 0.01 and, once the effect exceeds 0.05, a random
walk of 0.008 per checkpoint (about the noise of the default run's head over its last
checkpoints); score SE 0.01, null SE 0.003. Prints the share of each label per shape, with the
shape's slope over the last 15 checkpoints and its steepest slope (per decade of tokens).
docs/PHASE.md quotes the output of the default command (about 10 s).
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from interp.phase.synthetic import DEFAULT_RUN_TOKENS
from interp.phase.trend import head_trend


def shapes(x: np.ndarray) -> dict[str, np.ndarray]:
    def sig(centre: float, scale: float) -> np.ndarray:
        return 1 / (1 + np.exp(-(x - np.log10(centre)) / scale))
    return {
        "plateau (formed at 2.9M, 10-90% in 0.18 decades)": 0.72 * sig(2.9e6, 0.04),
        "slow rise, at half its steepest at the end": 0.6 * sig(3e6, 0.2),
        "still rising, at 80% of its steepest at the end": 0.6 * sig(5e6, 0.15),
        "risen at 2M, fallen back at 6M": 0.8 * sig(2e6, 0.03) - 0.6 * sig(6e6, 0.05),
        "never leaves its null": 0 * x,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tokens = np.asarray(DEFAULT_RUN_TOKENS, dtype=np.float64)
    keep = tokens > 0
    tokens = tokens[keep]
    x = np.log10(tokens)
    n = x.size
    rng = np.random.default_rng(args.seed)
    for name, effect in shapes(x).items():
        labels = Counter()
        for _ in range(args.n):
            wander = rng.normal(0, 0.01, n) + np.cumsum(rng.normal(0, 0.008, n)) * (effect > 0.05)
            trend = head_trend(tokens, 0.03 + effect + wander, np.ones(n), np.full(n, 0.03),
                               np.full(n, 0.01), np.full(n, 0.003))
            labels[trend.label or "none"] += 1
        end = np.polyfit(x[-15:], effect[-15:], 1)[0]
        steepest = max(np.polyfit(x[i:i + 15], effect[i:i + 15], 1)[0] for i in range(n - 14))
        shares = ", ".join(f"{label} {100 * count / args.n:.0f}%" for label, count in labels.most_common())
        print(f"{name}: {shares}  (end slope {end:+.2f}, steepest {steepest:+.2f} per decade)")


if __name__ == "__main__":
    main()
