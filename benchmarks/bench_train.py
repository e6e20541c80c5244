"""Training speed: interp's training step against a minimal plain-PyTorch reference.

Both train the default preset's shape on the same batches from the same data, with the same
precision, optimiser and clipping, in the same process, alternating in rounds so that load
from anything else on the machine hits both alike. Prints tokens/s of each and the ratio
(target: interp / reference >= 1.0 on the CPU). A second figure is what one checkpoint
(evaluation and save) costs, and what the default run's checkpoints add.

    python benchmarks/bench_train.py [--rounds 6] [--steps 15] [--precision auto]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reference import ReferenceModel  # noqa: E402
from interp.config import preset  # noqa: E402
from interp.device import autocast  # noqa: E402
from interp.train import _open_run, _train_step, learning_rate  # noqa: E402


def reference_step(model, optimizer, data, step: int, config, device, dtype) -> None:
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(step, config.train)
    batch = data.train_batch(step, config.train.batch_size, config.train.seed).to(device)
    with autocast(device, dtype):
        loss = model(batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    loss.item()  # the project's loop reads the loss every step too


def timed(fn, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=15, help="steps per round and side")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()

    config = preset("default")
    config = replace(config, train=replace(config.train, precision=args.precision))
    with tempfile.TemporaryDirectory() as tmp:
        run = _open_run(config, Path(tmp) / "bench", resume=False)
        reference = ReferenceModel(run.config.model).to(run.device)
        ref_opt = torch.optim.AdamW(reference.parameters(), lr=config.train.lr,
                                    betas=(config.train.beta1, config.train.beta2),
                                    weight_decay=config.train.weight_decay)
        counter = {"ours": 0, "ref": 0}

        def ours() -> None:
            _train_step(run, learning_rate(counter["ours"], config.train))
            run.step = counter["ours"] = counter["ours"] + 1

        def ref() -> None:
            reference_step(reference, ref_opt, run.data, counter["ref"], run.config, run.device, run.dtype)
            counter["ref"] += 1

        for fn in (ours, ref):  # warm-up: allocator, autocast caches, thread pools
            timed(fn, 3)
        tokens = args.steps * run.config.tokens_per_step
        rates = {"interp": [], "reference": []}
        for _ in range(args.rounds):
            rates["interp"].append(tokens / timed(ours, args.steps))
            rates["reference"].append(tokens / timed(ref, args.steps))

        ours_rate, ref_rate = statistics.median(rates["interp"]), statistics.median(rates["reference"])
        print(f"device {run.device}, autocast {run.dtype or 'off (fp32)'}, threads {torch.get_num_threads()}, "
              f"shape: {config.model.n_layers} layers, d_model {config.model.d_model}, "
              f"{config.model.n_heads}x{config.model.d_head} heads, n_ctx {config.model.n_ctx}, "
              f"batch {config.train.batch_size}")
        print(f"interp training step    {ours_rate:10,.0f} tokens/s  (rounds: "
              f"{', '.join(f'{r:,.0f}' for r in rates['interp'])})")
        print(f"plain PyTorch reference {ref_rate:10,.0f} tokens/s  (rounds: "
              f"{', '.join(f'{r:,.0f}' for r in rates['reference'])})")
        print(f"ratio interp / reference  {ours_rate / ref_rate:.3f}")

        # What checkpoints add: evaluation, metrics flush and the atomic save, per checkpoint.
        from interp.checkpoints import checkpoint_schedule
        from interp.train import _checkpoint

        seconds = statistics.median(timed(lambda: _checkpoint(run), 1) for _ in range(5))
        n_checkpoints = len(checkpoint_schedule(config.train))
        training = config.total_tokens / ours_rate
        print(f"one checkpoint (quick eval + metrics + save): {seconds:.2f} s; the default run's "
              f"{n_checkpoints} add {seconds * n_checkpoints:.0f} s to {training:.0f} s of training steps")


if __name__ == "__main__":
    main()
