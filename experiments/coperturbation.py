"""Argument 2, co-perturbation: smeared keys make induction heads easy, and the ICL change moves with them.

Runs (or reuses) ``sweeps/coperturbation.yaml`` (1- and 2-layer attention-only models with
smeared keys, two seeds) and compares them with the plain attention-only runs of
``sweeps/cooccurrence.yaml`` (same base, budget and seeds). Writes to
docs/results/coperturbation/:
- ``icl.png``: band ICL score, smeared against plain, for 1 and 2 layers, windows shaded;
- ``prefix_matching.png``: the best head's prefix matching, same layout;
- ``summary.md``: whether the 1-layer smeared model gains induction heads and ICL, and by how
  many tokens the 2-layer smeared model's phase change comes earlier (per seed, with the spread).

    python experiments/coperturbation.py [--scale] [--jobs 2]
"""

from __future__ import annotations

import time

import numpy as np

from common import (fmt_tokens, mean_spread, parse_args, pyplot, save, shade, sweep_runs, table,
                    write_summary)

COLOURS = {False: "tab:blue", True: "tab:red"}


def figure(pairs, y, ylabel, path):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, layers in zip(axes, (1, 2)):
        for (n, smeared, seed), run in sorted(pairs.items()):
            if n != layers:
                continue
            keep = run.tokens > 0
            ax.plot(run.tokens[keep], y(run)[keep], color=COLOURS[smeared], lw=1.3,
                    ls="-" if seed == 0 else "--", label=f"{'smeared' if smeared else 'plain'} seed {seed}")
            shade(ax, run, COLOURS[smeared])
        ax.set_xscale("log")
        ax.set_title(f"{layers}-layer attention-only")
        ax.set_xlabel("tokens")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel(ylabel)
    return save(fig, path)


def best_head(run) -> tuple[int, int]:
    """The head with the highest prefix matching at the end of training."""
    final = np.asarray(run.rows["prefix_matching"], dtype=float)[-1]
    return tuple(int(i) for i in np.unravel_index(np.argmax(final), final.shape))


def main() -> None:
    started = time.time()
    args = parse_args("coperturbation", __doc__.splitlines()[0])
    runs = sweep_runs(args, "cooccurrence", "coperturbation")
    pairs = {(r.config.model.n_layers, r.config.model.smeared_key, r.seed): r
             for r in runs["cooccurrence"] + runs["coperturbation"]
             if r.config.model.attn_only and r.config.model.n_layers <= 2}
    figure(pairs, lambda r: r.icl, "band ICL score (nats)", args.results / "icl.png")
    figure(pairs, lambda r: r.best_prefix_matching(), "best head's prefix matching",
           args.results / "prefix_matching.png")

    rows = []
    for (n, smeared, seed), run in sorted(pairs.items()):
        best = best_head(run)
        rows.append([f"{n}L {'smeared' if smeared else 'plain'}", seed,
                     f"{fmt_tokens(run.window[0])}-{fmt_tokens(run.window[1])}" if run.window else "none",
                     fmt_tokens(run.phase.get("window_peak_tokens")) if run.window else "-",
                     f"{run.icl[-1]:+.3f}", f"{best[0]}.{best[1]}",
                     *(f"{float(np.asarray(run.rows[k])[-1][best]):+.2f}"
                       for k in ("prefix_matching", "copying_ov", "copying_empirical")),
                     ", ".join(f"{l}.{h}" for l, h in run.induction_heads) or "none"])
    seeds = sorted({seed for (_, _, seed) in pairs})
    one = [(pairs.get((1, True, s)), pairs.get((1, False, s))) for s in seeds]
    gained = [s for s, (sm, pl) in zip(seeds, one) if sm and pl and sm.window and not pl.window
              and sm.best_prefix_matching()[-1] > 0.4 >= pl.best_prefix_matching()[-1]]
    by_rule = [s for s, (sm, _) in zip(seeds, one) if sm and sm.induction_heads]
    shifts, peak_shifts, ratios = [], [], []
    for s in seeds:
        sm, pl = pairs.get((2, True, s)), pairs.get((2, False, s))
        if sm and pl and sm.window and pl.window:
            shifts.append(pl.window[0] - sm.window[0])
            peak_shifts.append(pl.phase["window_peak_tokens"] - sm.phase["window_peak_tokens"])
            ratios.append(pl.phase["window_peak_tokens"] / sm.phase["window_peak_tokens"])
    lines = [
        f"1-layer: the smeared-key model gains a phase change and a head with prefix matching > 0.4 "
        f"(and the plain one has neither) for {len(gained)} of {len(seeds)} seeds; it passes the full "
        f"induction-head rule (interp.phase.heads: prefix matching against its null, positive OV copying) for "
        f"{len(by_rule)} of {len(seeds)}.",
        f"2-layer: the smeared-key phase change comes earlier by "
        f"{mean_spread([v / 1e6 for v in shifts])} M tokens at the window start and "
        f"{mean_spread([v / 1e6 for v in peak_shifts])} M tokens at the steepest ICL fall "
        f"(plain / smeared tokens at the steepest fall: {mean_spread(ratios, sign='')}x); positive = earlier with smeared keys.",
        "",
    ]
    lines += table(["model", "seed", "window (tokens)", "steepest fall at", "final band ICL",
                    "best head", "its prefix matching", "its OV copying", "its empirical copying",
                    "induction heads (rule)"], rows)
    lines += ["", "Figures: icl.png, prefix_matching.png."]
    write_summary(args, "Co-perturbation: smeared keys", lines, started)


if __name__ == "__main__":
    main()
