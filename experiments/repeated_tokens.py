"""Argument 4, loss on repeated tokens: the second repeat of random tokens becomes cheap at the change.

For the attention-only runs of ``sweeps/cooccurrence.yaml`` (run or reused), every checkpoint
is run on the analysis' repeated-token probe (random mid-frequency tokens, repeated, after
BOS; the same inputs the prefix-matching score uses) and the loss on each repeat is recorded
(:func:`interp.measures.heads.repeat_losses`). Random tokens cannot be predicted the first
time; an induction head predicts every later repeat from the first. Writes ``repeats.png``
and ``summary.md`` to docs/results/repeated_tokens/.

    python experiments/repeated_tokens.py [--scale] [--jobs 2]
"""

from __future__ import annotations

import math
import time

import numpy as np

from common import fmt_tokens, parse_args, pyplot, save, shade, sweep_runs, table, write_summary

from interp.analysis import AnalysisConfig, build_probes
from interp.checkpoints import list_checkpoints, load_model
from interp.rundata import analysis_data
from interp.measures.heads import repeat_losses


def repeat_curves(run) -> tuple[np.ndarray, np.ndarray, int]:
    """tokens [checkpoints], loss per repeat [checkpoints, repeats], and the probe's pool size."""
    analysis = AnalysisConfig()  # probes from the run's own data folder, never its corpus path
    data = analysis_data(run.path, run.config, analysis.icl_examples, analysis.seed)
    probe = build_probes(data, run.config.model.n_ctx, analysis).repeated
    xs, losses = [], []
    for ckpt in list_checkpoints(run.path):
        xs.append(ckpt.step * run.config.tokens_per_step)
        losses.append(repeat_losses(load_model(ckpt.path).eval(), probe).numpy())
    return np.array(xs, float), np.array(losses), int(len(np.unique(probe.tokens[:, probe.offset:])))


def main() -> None:
    started = time.time()
    args = parse_args("repeated_tokens", __doc__.splitlines()[0])
    runs = [r for r in sweep_runs(args, "cooccurrence")["cooccurrence"] if r.config.model.attn_only]
    runs.sort(key=lambda r: (r.config.model.n_layers, r.seed))
    plt = pyplot()
    cols = min(3, len(runs))
    fig, axes = plt.subplots(-(-len(runs) // cols), cols, figsize=(4.2 * cols, 3.4 * -(-len(runs) // cols)),
                             sharey=True, squeeze=False)
    rows = []
    # one row per seed, one column per model
    ordered = sorted(runs, key=lambda r: (r.seed, r.config.model.n_layers))
    for ax, run in zip(axes.ravel(), ordered):
        xs, losses, pool = repeat_curves(run)
        keep = xs > 0
        for r in range(losses.shape[1]):
            ax.plot(xs[keep], losses[keep, r], lw=1.5 if r < 2 else 0.8,
                    label=["first repeat", "second repeat"][r] if r < 2 else f"repeat {r + 1}")
        shade(ax, run)
        ax.set_xscale("log")
        ax.set_title(f"{run.label}, seed {run.seed}", fontsize=9)
        ax.set_xlabel("tokens")
        ax.grid(alpha=0.3)
        before = xs <= run.window[0] if run.window else np.zeros_like(xs, bool)
        at_start = losses[before][-1] if before.any() else [np.nan, np.nan]
        rows.append([run.label, run.seed,
                     f"{fmt_tokens(run.window[0])}-{fmt_tokens(run.window[1])}" if run.window else "none",
                     f"{at_start[0]:.2f} / {at_start[1]:.2f}" if run.window else "-",
                     f"{losses[-1, 0]:.2f} / {losses[-1, 1]:.2f}", f"{losses[-1, 0] - losses[-1, 1]:+.2f}",
                     f"{math.log(pool):.2f}"])
        print(f"{run.path.name}: end first {losses[-1, 0]:.3f} second {losses[-1, 1]:.3f}")
    for ax in axes[:, 0]:
        ax.set_ylabel("loss (nats)")
    axes[0, 0].legend(fontsize=7)
    save(fig, args.results / "repeats.png")
    rows.sort(key=lambda row: (row[0], row[1]))
    lines = ["Loss on the first and second repeat of random token sequences (positions 2..L of each "
             "repeat; the probe is the analysis' repeated-token probe).", ""]
    lines += table(["model", "seed", "window", "first / second repeat at the window start",
                    "first / second repeat at the end", "first - second (end)",
                    "log(pool size): chance loss"], rows)
    lines += ["", "Figure: repeats.png."]
    write_summary(args, "Loss on repeated tokens", lines, started)


if __name__ == "__main__":
    main()
