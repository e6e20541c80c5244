"""Analysis speed: every measure for one checkpoint of the default model, and a whole run.

Times each measure on one checkpoint (targets on this CPU: < 2 s for everything except the
ablations, < 10 s for the ablations of every head), then, with ``--run``, ``analyze_run`` over
a whole run (60+ checkpoints) from scratch in a temporary copy.

    python benchmarks/bench_analysis.py [RUN] [--checkpoint STEP] [--run]

RUN defaults to checkpoints/default (train it with ``interp quickstart``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp import checkpoints, store  # noqa: E402
from interp.analysis import AnalysisConfig, analyze_checkpoint, analyze_run, build_probes  # noqa: E402
from interp.rundata import analysis_data  # noqa: E402
from interp.measures import ablation, circuits, heads  # noqa: E402
from interp.measures.icl import per_token_losses  # noqa: E402
from interp.device import autocast, pick_precision  # noqa: E402


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path, default=Path("checkpoints/default"))
    parser.add_argument("--checkpoint", type=int, help="step to time (default: the middle one)")
    parser.add_argument("--run", dest="whole", action="store_true", help="also time analyze_run on the whole run")
    args = parser.parse_args()

    config = checkpoints.read_config(args.run)
    found = checkpoints.list_checkpoints(args.run)
    chosen = next((c for c in found if c.step == args.checkpoint), found[len(found) // 2])
    model = checkpoints.load_model(chosen.path)
    analysis = AnalysisConfig()
    data = analysis_data(args.run, config, analysis.icl_examples, analysis.seed)  # the run's data/, not its corpus path
    probes = build_probes(data, config.model.n_ctx, analysis)
    fast = lambda: autocast(torch.device("cpu"), pick_precision(analysis.precision, torch.device("cpu")))

    def losses():
        with fast():
            per_token_losses(model, probes.heldout)

    def ablate():
        with fast():
            ablation.ablated_losses(model, probes.heldout[: analysis.ablation_examples])

    parts = {
        f"loss by token index + ICL ({analysis.icl_examples} sequences)": losses,
        "attention patterns (prefix matching, duplicate, previous token)": lambda: (
            heads.attention_patterns(model, probes.repeated.tokens),
            heads.attention_patterns(model, probes.heldout[: analysis.pattern_examples])),
        "copying, OV eigenvalues": lambda: circuits.ov_copying_score(model),
        "copying, empirical": lambda: circuits.empirical_copying_score(model, probes.repeated.tokens),
        "composition scores K/Q/V": lambda: circuits.composition_scores(model),
        "loading the checkpoint (verified)": lambda: checkpoints.load_model(chosen.path),
    }
    print(f"{args.run} step {chosen.step}: {config.model.n_layers} layers x {config.model.n_heads} heads, "
          f"threads {torch.get_num_threads()}")
    total = 0.0
    for name, fn in parts.items():
        seconds = best_of(fn)
        total += seconds
        print(f"  {name:66s} {seconds:6.2f} s")
    print(f"  {'everything except ablations':66s} {total:6.2f} s   (target < 2 s)")
    heads_n = config.model.n_layers * config.model.n_heads
    seconds = best_of(ablate, repeats=2)
    print(f"  {f'ablation of all {heads_n} heads ({analysis.ablation_examples} sequences, frozen patterns)':66s} "
          f"{seconds:6.2f} s   (target < 10 s)")
    print(f"  {'analyze_checkpoint, all of it':66s} {best_of(lambda: analyze_checkpoint(model, probes, analysis), 2):6.2f} s")

    if args.whole:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / args.run.name
            shutil.copytree(args.run, copy, ignore=shutil.ignore_patterns(store.FILENAME, "figures"))
            start = time.perf_counter()
            analyze_run(copy, analysis, progress=False)
            elapsed = time.perf_counter() - start
            print(f"analyze_run over {len(found)} checkpoints: {elapsed:.0f} s "
                  f"({elapsed / len(found):.2f} s per checkpoint)")


if __name__ == "__main__":
    main()
