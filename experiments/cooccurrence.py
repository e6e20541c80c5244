"""Argument 1, co-occurrence: induction heads form in the same window as the ICL phase change.

Runs (or reuses) ``sweeps/cooccurrence.yaml``: 1-, 2- and 3-layer models, attention-only and
with MLPs, same corpus and token budget, two seeds. Writes to docs/results/cooccurrence/:
- ``icl.png``: band ICL score over tokens per model, seeds as lines, windows shaded;
- ``loss.png``: training loss over tokens per model, windows shaded;
- ``prefix_matching.png``: the best head's prefix-matching score over training;
- ``pca.png``: the joint per-token-loss PCA of every seed-0 run;
- ``summary.md``: per run, the window, ICL before/after, induction heads and when they form,
  and the verdict the paper predicts (1-layer: no change, no induction heads; more layers:
  both, the heads forming inside the window).

``--seeds`` runs ``sweeps/cooccurrence-text-seeds.yaml`` (2- and 3-layer attention-only models on
natural text, three seeds each; the sweep only trains, so finished runs are analysed here without
ablations) and adds to the summary the across-seed intervals per model (:mod:`interp.seeds`:
window start and end, share inside, ICL before/after, the earliest induction head's formation and
lag), and ``seeds.png``: each seed's window and earliest head, with the mean window start's
90% t interval.

    python experiments/cooccurrence.py [--text | --seeds | --scale] [--jobs 2] [--backend ray --address auto]
"""

from __future__ import annotations

import math
import time

import numpy as np

from common import (fmt_tokens, model_label, parse_args, pyplot, save, shade, sweep_runs, table,
                    write_summary)

from interp import seeds
from interp.measures.pca import per_token_loss_pca
from interp.sweep import load_sweep, sweep_dirs


def by_model(runs):
    groups = {}
    for run in sorted(runs, key=lambda r: (not r.config.model.attn_only, r.config.model.n_layers, r.seed)):
        groups.setdefault(run.label, []).append(run)
    return groups


def curves_figure(groups, y, ylabel, path, train=False):
    plt = pyplot()
    cols = max(1, min(3, len(groups)))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.3 * rows), sharex=True, sharey=True,
                             squeeze=False)
    for ax, (label, runs) in zip(axes.ravel(), groups.items()):
        for run, colour in zip(runs, ["tab:blue", "tab:orange", "tab:green", "tab:red"]):
            x, values = (run.train["tokens"], run.train["loss"]) if train else (run.tokens, y(run))
            keep = np.asarray(x) > 0
            ax.plot(np.asarray(x)[keep], np.asarray(values)[keep], color=colour, lw=1.3,
                    label=f"seed {run.seed}")
            shade(ax, run, colour)
        ax.set_xscale("log")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in axes[-1]:
        ax.set_xlabel("tokens")
    axes[0, 0].legend()
    return save(fig, path)


def pca_figure(groups, path):
    plt = pyplot()
    runs = [rs[0] for rs in groups.values()]
    projected, explained = per_token_loss_pca(
        [np.nan_to_num(np.asarray(r.rows["per_token_loss"], dtype=float)) for r in runs])
    fig, ax = plt.subplots(figsize=(7, 6))
    for run, p in zip(runs, projected):
        line, = ax.plot(p[:, 0], p[:, 1], marker=".", ms=3, lw=1, label=run.label)
        if run.window:
            inside = (run.tokens >= run.window[0]) & (run.tokens <= run.window[1])
            ax.plot(p[inside, 0], p[inside, 1], lw=4, alpha=0.35, color=line.get_color())
    ax.set_xlabel(f"PC1 ({explained[0]:.0%})")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%})")
    ax.set_title("Per-token-loss PCA, seed 0 (thick: inside the window)")
    ax.legend(fontsize=8)
    return save(fig, path)


def seeds_figure(groups, path):
    """Per model: each seed's window (bar) and earliest induction head (dot) over log tokens,
    with the geometric mean window start and its 90% t interval across seeds."""
    plt = pyplot()
    fig, axes = plt.subplots(max(1, len(groups)), 1, figsize=(8, 1.2 + 1.0 * sum(len(g.runs) for g in groups)),
                             sharex=True, squeeze=False)
    for ax, group in zip(axes[:, 0], groups):
        for y, run in enumerate(group.used):
            start, end = run.value("window_start_tokens"), run.value("window_end_tokens")
            if run.has_window:
                ax.plot([start, end], [y, y], lw=6, color="tab:blue", alpha=0.6, solid_capstyle="butt")
            formed = run.value("earliest_head_formation_tokens")
            if np.isfinite(formed):
                ax.plot(formed, y, "o", color="tab:red", ms=6)
        start = group.quantities.get("window_start_tokens")
        if start is not None:
            ax.axvline(start.mean, color="tab:blue", lw=1)
            if start.has_interval:
                ax.axvspan(start.low, start.high, color="tab:blue", alpha=0.12, lw=0)
        ax.set_yticks(range(len(group.used)), [f"seed {s}" for s in group.seeds])
        ax.set_ylim(-0.7, max(len(group.used), 1) - 0.3)
        ax.set_xscale("log")
        ax.set_title(f"{group.label}: window (bar), earliest induction head (dot), "
                     f"mean start and its {seeds.LEVEL:.0%} t interval (shade)", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    axes[-1, 0].set_xlabel("tokens")
    return save(fig, path)


def first_formation(run):
    times = [t for t in (run.formation(h) for h in run.induction_heads) if t is not None]
    return min(times) if times else None


def in_window(run, tokens):
    """Inside the window, with one checkpoint of slack at each end (checkpoint resolution)."""
    if tokens is None or not run.window:
        return False
    grid = np.sort(run.tokens[run.tokens > 0])
    i0, i1 = np.searchsorted(grid, run.window[0]), np.searchsorted(grid, run.window[1])
    low, high = grid[max(i0 - 1, 0)], grid[min(i1 + 1, len(grid) - 1)]
    return bool(low <= tokens <= high)


def summary_rows(groups):
    rows, verdicts = [], []
    for label, runs in groups.items():
        for run in runs:
            formed = first_formation(run)
            ph = run.phase
            rows.append([
                label, run.seed,
                f"{fmt_tokens(run.window[0])}-{fmt_tokens(run.window[1])}" if run.window else "none",
                f"{ph.get('icl_before', float('nan')):+.3f} -> {ph.get('icl_after', float('nan')):+.3f}"
                if run.window else f"final {run.icl[-1]:+.3f}",
                f"{ph.get('window_share', float('nan')):.0%}" if run.window else "-",
                ", ".join(f"{l}.{h}" for l, h in run.induction_heads) or "none",
                f"{run.best_prefix_matching()[-1]:.2f}",
                fmt_tokens(formed), "yes" if in_window(run, formed) else "no",
            ])
            one_layer = run.config.model.n_layers == 1
            expected = (not run.window and not run.induction_heads) if one_layer else \
                (bool(run.window) and bool(run.induction_heads) and in_window(run, formed))
            verdicts.append((label, run.seed, expected))
    return rows, verdicts


def main() -> None:
    started = time.time()
    args = parse_args("cooccurrence", __doc__.splitlines()[0])
    runs = sweep_runs(args, "cooccurrence")["cooccurrence"]
    groups = by_model(runs)
    curves_figure(groups, lambda r: r.icl, "band ICL score (nats)", args.results / "icl.png")
    curves_figure(groups, None, "training loss (nats)", args.results / "loss.png", train=True)
    curves_figure(groups, lambda r: r.best_prefix_matching(), "best head's prefix matching",
                  args.results / "prefix_matching.png")
    pca_figure(groups, args.results / "pca.png")
    rows, verdicts = summary_rows(groups)
    held = sum(ok for *_, ok in verdicts)
    lines = [f"{len(runs)} runs of `experiments/sweeps/cooccurrence{args.suffix}.yaml`; "
             f"the paper's prediction holds for {held} of {len(verdicts)} "
             "(1-layer: no phase change and no induction heads; 2- and 3-layer: a window, induction "
             "heads, and the first one forming inside the window, one checkpoint of slack).", ""]
    lines += table(["model", "seed", "window (tokens)", "band ICL before -> after", "share in window",
                    "induction heads", "best prefix matching (end)", "first head forms", "inside window"], rows)
    misses = [f"{label} seed {seed}" for label, seed, ok in verdicts if not ok]
    lines += ["", "Runs that do not match the prediction: " + (", ".join(misses) if misses else "none") + ".",
              "", "Figures: icl.png, loss.png, prefix_matching.png, pca.png" + (", seeds.png." if args.seeds else ".")]
    if args.seeds:  # every run of the sweep, so a group says how many of its seeds are missing
        sweep = load_sweep(args.sweeps / f"cooccurrence{args.suffix}.yaml")
        across = seeds.seed_groups(sweep_dirs(sweep, args.out).values(), label=model_label)
        seeds_figure(across, args.results / "seeds.png")
        lines += ["", "## Across seeds", "", *seeds.markdown_table(across)]
    write_summary(args, "Co-occurrence: induction heads and the ICL phase change", lines, started)


if __name__ == "__main__":
    main()
