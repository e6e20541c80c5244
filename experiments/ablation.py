"""Argument 3, direct ablation: after the window, the induction heads carry most of the ICL score.

Uses the attention-only runs with 2 and 3 layers of ``sweeps/cooccurrence.yaml`` (run or
reused). Two measures, both pattern-preserving (every layer's attention frozen to its clean
value, the ablated heads' outputs zeroed; :mod:`interp.measures.ablation`):
- per head, over training: the change in ICL score when that head alone is removed (stored by
  ``interp analyze``);
- the induction heads together, at every checkpoint: the share of the band ICL score they
  account for, share = (ICL(without them) - ICL(clean)) / (0 - ICL(clean)), on 256 held-out
  sequences. 1 means removing them removes all in-context learning; 0, none.
Writes ``per_head.png``, ``share.png`` and ``summary.md`` to docs/results/ablation/.

    python experiments/ablation.py [--scale] [--jobs 2]
"""

from __future__ import annotations

import time

import numpy as np
import torch

from common import fmt_tokens, mean_spread, parse_args, pyplot, save, shade, sweep_runs, table, write_summary

from interp.checkpoints import list_checkpoints, load_model
from interp.rundata import analysis_data
from interp.measures.ablation import losses_without_heads
from interp.measures.icl import icl_band_score, per_token_losses

EXAMPLES = 256


def induction_share(run, tokens: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per checkpoint: tokens, clean band ICL, and the share the induction heads account for."""
    xs, clean_icl, shares = [], [], []
    for ckpt in list_checkpoints(run.path):
        model = load_model(ckpt.path).eval()
        clean = icl_band_score(per_token_losses(model, tokens).numpy()).mean()
        ablated = icl_band_score(losses_without_heads(model, tokens, run.induction_heads).numpy()).mean()
        xs.append(ckpt.step * run.config.tokens_per_step)
        clean_icl.append(clean)
        shares.append((ablated - clean) / -clean if clean < -0.05 else np.nan)  # undefined without ICL
    return np.array(xs, float), np.array(clean_icl), np.array(shares)


def per_head_figure(runs, path):
    plt = pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.8), sharey=True, squeeze=False)
    for ax, run in zip(axes[0], runs):
        effect = np.asarray(run.rows["ablation_icl_change"], dtype=float)
        n_layers, n_heads = effect.shape[1:]
        for layer in range(n_layers):
            for head in range(n_heads):
                induction = (layer, head) in run.induction_heads
                ax.plot(run.tokens[1:], effect[1:, layer, head], lw=2 if induction else 0.8,
                        alpha=1 if induction else 0.5, label=f"{layer}.{head}" if induction else None)
        shade(ax, run)
        ax.set_xscale("log")
        ax.set_title(f"{run.label}, seed {run.seed}", fontsize=9)
        ax.set_xlabel("tokens")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="induction heads", title_fontsize=7)
    axes[0, 0].set_ylabel("ICL change when ablated (nats)")
    return save(fig, path)


def main() -> None:
    started = time.time()
    args = parse_args("ablation", __doc__.splitlines()[0])
    runs = [r for r in sweep_runs(args, "cooccurrence")["cooccurrence"]
            if r.config.model.attn_only and r.config.model.n_layers >= 2 and "ablation_icl_change" in r.rows]
    runs.sort(key=lambda r: (r.config.model.n_layers, r.seed))
    if not runs:
        raise SystemExit("ablation.py: no analysed attention-only run with 2+ layers and stored ablations "
                         "(the sweep needs 'ablation: true')")
    per_head_figure(runs, args.results / "per_head.png")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    rows, after_shares = [], []
    for run in runs:
        if not run.induction_heads:
            rows.append([run.label, run.seed, "none", "-", "-", "-"])
            continue
        # the run's own data folder, never the corpus path in its config (issue 12)
        tokens = analysis_data(run.path, run.config, EXAMPLES, 0).heldout_batch(EXAMPLES, seed=0)
        xs, clean, share = induction_share(run, tokens)
        ax.plot(xs[xs > 0], share[xs > 0], marker=".", ms=3, label=f"{run.label} seed {run.seed}")
        after = xs > run.window[1] if run.window else np.zeros_like(xs, bool)
        effect = np.asarray(run.rows["ablation_icl_change"], dtype=float)[-1]
        single = sum(effect[l, h] for l, h in run.induction_heads)
        mean_after = float(np.nanmean(share[after])) if after.any() else float("nan")
        after_shares.append(mean_after)
        rows.append([run.label, run.seed, ", ".join(f"{l}.{h}" for l, h in run.induction_heads),
                     f"{clean[-1]:+.3f}", f"{share[-1]:.0%} (mean after the window {mean_after:.0%})",
                     f"{single:+.3f}"])
        print(f"{run.path.name}: share at the end {share[-1]:.0%}")
    ax.axhline(1, color="k", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("tokens")
    ax.set_ylabel("share of band ICL removed")
    ax.set_title("Induction heads ablated together (patterns frozen)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, args.results / "share.png")
    lines = [f"Share of the ICL score the induction heads account for after the window, averaged over the "
             f"checkpoints after it: {mean_spread(after_shares, sign='')} (1 = all of it). Band ICL on {EXAMPLES} held-out sequences; "
             f"the share is left undefined while the clean ICL score is above -0.05 nats.", ""]
    lines += table(["model", "seed", "induction heads", "final band ICL", "share removed (end)",
                    "sum of their single-head ablation effects (end, 64 seq., single index)"], rows)
    lines += ["", "Figures: per_head.png (single-head ablations over training, induction heads bold), "
              "share.png (joint ablation over training).", "",
              "Windows: " + "; ".join(f"{r.label} seed {r.seed} {fmt_tokens(r.window[0])}-{fmt_tokens(r.window[1])}"
                                      for r in runs if r.window)]
    write_summary(args, "Direct ablation: how much ICL the induction heads carry", lines, started)


if __name__ == "__main__":
    main()
