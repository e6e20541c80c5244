"""Analysis speed: every measure for one checkpoint of the default model, and a whole run.

Times each measure on one checkpoint (targets on this CPU: < 2 s for everything except the
ablations, < 10 s for the ablations of every head), then, with ``--run``, ``analyze_run`` over
a whole run (60+ checkpoints) from scratch in a temporary copy, and that time over the run's own
training time (issue 11's goal: <= 0.35), with the window it finds; ``--dense`` adds the same
with every checkpoint ablated (the behaviour before interp.costly) in the same process.

    python benchmarks/bench_analysis.py [RUN] [--checkpoint STEP] [--run [--dense]]

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
from interp.analysis import AnalysisConfig, analyze_checkpoint, analyze_run, build_probes, drop_analysis  # noqa: E402
from interp.rundata import analysis_data  # noqa: E402
from interp.measures import ablation, circuits, heads  # noqa: E402
from interp.measures.icl import band_slices, foreign_context, per_token_losses  # noqa: E402
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
    parser.add_argument("--dense", action="store_true", help="with --run: also time it with every checkpoint ablated")
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

    def context_pass():
        rows = foreign_context(probes.heldout[: analysis.context_examples], probes.cut)
        with fast():
            per_token_losses(model, rows, band=band_slices(config.model.n_ctx)[0])

    def ablate():
        with fast():
            ablation.ablated_losses(model, probes.heldout[: analysis.ablation_examples])

    parts = {
        f"loss by token index + ICL ({analysis.icl_examples} sequences)": losses,
        f"context split: foreign far context, late band ({analysis.context_examples} sequences)": context_pass,
        "attention patterns (prefix matching and its null, duplicate, previous token)": lambda: (
            heads.attention_patterns(model, probes.repeated.tokens),
            heads.attention_patterns(model, probes.null.tokens),
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
        from interp.summary import training_clock

        train_seconds = float(training_clock(store.series(args.run, "train"))[-1])
        configs = {"sparse ablations (default)": analysis}
        if args.dense:
            configs["every checkpoint ablated"] = AnalysisConfig(ablate_every=1)
        for name, chosen_config in configs.items():
            with tempfile.TemporaryDirectory() as tmp:
                copy = Path(tmp) / args.run.name
                shutil.copytree(args.run, copy, ignore=shutil.ignore_patterns(store.FILENAME, "metrics.journal",
                                                                             "figures"))
                shutil.copy2(args.run / store.FILENAME, copy / store.FILENAME)  # its train and eval series
                drop_analysis(copy)
                start = time.perf_counter()
                result = analyze_run(copy, chosen_config, progress=False)
                elapsed = time.perf_counter() - start
                phase = store.attrs(copy, "phase")
                print(f"analyze_run, {name}: {len(found)} checkpoints, {len(result.get('ablated', []))} ablated, "
                      f"{result.get('shared_losses', 0)} with training's held-out losses reused, "
                      f"{elapsed:.0f} s ({elapsed / len(found):.2f} s per checkpoint); training took "
                      f"{train_seconds:.0f} s: analysis / training = {elapsed / train_seconds:.2f} (goal <= 0.35); "
                      f"window {phase.get('window_start_tokens', float('nan')) / 1e6:.2f}M-"
                      f"{phase.get('window_end_tokens', float('nan')) / 1e6:.2f}M tokens")


if __name__ == "__main__":
    main()
