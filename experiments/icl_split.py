"""The ICL score split into far context and late position, on several held-out draws.

For each checkpoint step and each draw (``rows:seed``: that many held-out windows of the
run's corpus, drawn with that seed), prints the band ICL score and its split
(:func:`interp.measures.icl.context_icl_score`): how much the band score depends on which
windows were drawn, and how much the paired context part does. The figures of
docs/PRESETS.md ("The ICL score on prose") came from

    python experiments/icl_split.py RUN --steps 240 --draws 128:0,256:0,1024:7

on the pydoc run (``interp train default data.source=files
data.path=/usr/share/doc/python3.11/html/_sources``). It reads the corpus the run's config
names (other draws than the one the run carries), so the corpus must be on this machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from interp.checkpoints import load_model
from interp.data import load_dataset
from interp.measures.icl import context_cut, context_icl_score, foreign_context, per_token_losses
from interp.runs import read_config


def split(model, rows: torch.Tensor):
    """:class:`~interp.measures.icl.ContextICL` of ``model`` on held-out ``rows`` [n, n_ctx]."""
    own = per_token_losses(model, rows)
    return context_icl_score(own, per_token_losses(model, foreign_context(rows, context_cut(rows.shape[1]))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--steps", required=True, help="checkpoint steps, comma-separated")
    parser.add_argument("--draws", default="128:0,256:0", help="rows:seed, comma-separated")
    args = parser.parse_args()
    config = read_config(args.run)
    data = load_dataset(config.data, config.model.n_ctx)
    draws = [tuple(int(v) for v in d.split(":")) for d in args.draws.split(",")]
    print("| step | rows:seed | band | context (+- se) | position |")
    print("|---|---|---|---|---|")
    with torch.no_grad():
        for step in (int(s) for s in args.steps.split(",")):
            model = load_model(args.run / f"step_{step:06d}")
            for n, seed in draws:
                s = split(model, data.heldout_batch(n, seed=seed))
                print(f"| {step} | {n}:{seed} | {s.band:+.3f} | {s.context:+.3f} (+- {s.context_stderr:.3f}) "
                      f"| {s.position:+.3f} |")


if __name__ == "__main__":
    main()
