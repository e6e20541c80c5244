"""Training speed: interp's training step against a minimal plain-PyTorch reference and
against the machine's own matmul ceiling.

Both steps train the default preset's shape on the same batches from the same data, with the
same precision and clipping, in the same process, alternating in rounds so that load from
anything else on the machine hits both alike. The reference is what a careful engineer writes
without interpretability machinery (benchmarks/reference.py: SDPA attention, torch's default
AdamW). Printed:
- tokens/s of each and their ratio, the median of each round's ratio (issue 11's goal on the
  CPU: >= 1.3);
- the step's FLOPs per token (torch's FlopCounterMode on one step) and so its achieved
  GFLOP/s, beside the bf16 and fp32 matmul ceilings measured in the same run (a 2048^3 matmul,
  the best of several) and the share of the bf16 ceiling (goal: >= 35% for the default preset);
- with --attention, the same step with each attention kernel and optimiser forced, the
  figures behind interp.model's kernel rule and interp.train's fused AdamW;
- with --parts, the step with the explicit kernel's and the loss's earlier formulations
  (a masked_fill on scaled-q scores; autograd's cross-entropy on a float copy of the logits)
  swapped back in, each alone and both, against the current ones, alternating in rounds;
- what one checkpoint (evaluation and save) costs, and what the default run's checkpoints add.

    python benchmarks/bench_train.py [--rounds 6] [--steps 15] [--precision auto] [--attention] [--parts]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reference import ReferenceModel  # noqa: E402
from interp.config import preset  # noqa: E402
from interp.device import autocast  # noqa: E402
from interp.train import _prepare, _train_step, learning_rate, make_optimizer  # noqa: E402


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


def matmul_ceiling(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the best of ``repeats`` n x n x n matmuls in ``dtype`` (2 n^3 FLOPs each)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up: thread pool, packing buffers
    best = min(timed(lambda: a @ b, 1) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def step_flops_per_token(run) -> float:
    """FLOPs of one training step (forward and backward) per token, by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        _train_step(run, learning_rate(0, run.config.train))
    return counter.get_total_flops() / run.config.tokens_per_step


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
    parser.add_argument("--attention", action="store_true",
                        help="also time each attention kernel with and without fused AdamW")
    parser.add_argument("--parts", action="store_true",
                        help="also time the step with the earlier score and loss formulations")
    args = parser.parse_args()

    config = preset("default")
    config = replace(config, train=replace(config.train, precision=args.precision))
    with tempfile.TemporaryDirectory() as tmp:
        run = _prepare(config, Path(tmp) / "bench")  # writes nothing until a checkpoint
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
        # Each round's ratio pairs two measurements a few seconds apart, so a slow spell of the
        # machine (other load, frequency) cancels in it; the median of those is the figure.
        paired = [a / b for a, b in zip(rates["interp"], rates["reference"])]
        print(f"ratio interp / reference  {statistics.median(paired):.3f} (median of the rounds' ratios: "
              f"{', '.join(f'{r:.2f}' for r in paired)}; ratio of the medians {ours_rate / ref_rate:.3f}) "
              f"(goal >= 1.3)")

        flops = step_flops_per_token(run)
        ceilings = {name: matmul_ceiling(dtype) for name, dtype in
                    (("bf16", torch.bfloat16), ("fp32", torch.float32))}
        achieved = ours_rate * flops / 1e9
        print(f"step: {flops / 1e6:.2f} MFLOP per token (FlopCounterMode), so {achieved:.0f} GFLOP/s "
              f"(reference {ref_rate * flops / 1e9:.0f}); 2048^3 matmul ceiling bf16 "
              f"{ceilings['bf16']:.0f} GFLOP/s, fp32 {ceilings['fp32']:.0f} GFLOP/s; interp at "
              f"{100 * achieved / ceilings['bf16']:.0f}% of bf16 (goal >= 35%), "
              f"{100 * achieved / ceilings['fp32']:.0f}% of fp32")
        if args.attention:
            compare_kernels(run, config, tokens, args)
        if args.parts:
            compare_parts(run, config, tokens, args)

        # What checkpoints add: evaluation, metrics flush and the atomic save, per checkpoint.
        from interp.checkpoints import checkpoint_schedule
        from interp.train import _checkpoint, _write_run_files

        run.directory.mkdir(parents=True, exist_ok=True)  # _prepare wrote nothing
        _write_run_files(run)

        seconds = statistics.median(timed(lambda: _checkpoint(run), 1) for _ in range(5))
        n_checkpoints = len(checkpoint_schedule(config.train))
        training = config.total_tokens / ours_rate
        print(f"one checkpoint (quick eval + metrics + save): {seconds:.2f} s; the default run's "
              f"{n_checkpoints} add {seconds * n_checkpoints:.0f} s to {training:.0f} s of training steps")


def compare_kernels(run, config, tokens: int, args) -> None:
    """The step with each attention kernel and optimiser forced, alternating in rounds."""
    kinds = {}
    for kernel in ("sdpa", "explicit"):
        for fused in (False, True):
            optimizer = make_optimizer(run.model, config.train)
            if not fused:
                optimizer = torch.optim.AdamW(optimizer.param_groups, lr=config.train.lr,
                                              betas=(config.train.beta1, config.train.beta2))
            kinds[f"{kernel:8s} fused AdamW {'yes' if fused else 'no '}"] = (kernel, optimizer)
    rates = {name: [] for name in kinds}

    def step(name: str) -> None:
        kernel, run.optimizer = kinds[name]
        run.model.set_attention_kernel(kernel)
        _train_step(run, learning_rate(run.step, config.train))

    for name in kinds:
        timed(lambda: step(name), 2)
    for _ in range(args.rounds):
        for name in kinds:
            rates[name].append(tokens / timed(lambda: step(name), args.steps))
    best = max(statistics.median(r) for r in rates.values())
    for name, r in rates.items():
        print(f"  attention {name}: {statistics.median(r):10,.0f} tokens/s ({statistics.median(r) / best:.2f} of the best)")
    run.model.set_attention_kernel("auto")


def _earlier_attend(self, q, k, v):
    """The explicit kernel before 2026-12-03: q scaled, then a boolean mask filled in place."""
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
    n = q.shape[1]
    scores = (qh * (1.0 / math.sqrt(self.cfg.d_head))) @ kh.transpose(-1, -2)
    scores = scores.masked_fill_(torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return (scores.softmax(dim=-1).to(vh.dtype) @ vh).transpose(1, 2)


def _earlier_loss(logits, tokens):
    """The loss before 2026-12-03: autograd's cross-entropy on a float copy of the slice."""
    predicted = logits[:, :-1]
    return F.cross_entropy(predicted.flatten(0, 1).float(), tokens[:, 1:].flatten(),
                           reduction="none").view(predicted.shape[:2])


def compare_parts(run, config, tokens: int, args) -> None:
    """Speed of the step with each earlier formulation swapped back in, as the median over
    rounds of (time with it) / (time with the current code): > 1 means the change gained."""
    from interp import model as model_module

    current = (model_module.Attention._attend, model_module.next_token_loss)
    variants = {"current": current, "earlier scores": (_earlier_attend, current[1]),
                "earlier loss": (current[0], _earlier_loss), "both earlier": (_earlier_attend, _earlier_loss)}
    times = {name: [] for name in variants}
    try:
        for _ in range(args.rounds):
            for name, (attend, loss) in variants.items():
                model_module.Attention._attend, model_module.next_token_loss = attend, loss
                times[name].append(timed(lambda: _train_step(run, learning_rate(run.step, config.train)), args.steps))
    finally:
        model_module.Attention._attend, model_module.next_token_loss = current
    for name in variants:
        gain = statistics.median(t / c for t, c in zip(times[name], times["current"]))
        print(f"  {name:15s} {tokens / statistics.median(times[name]):10,.0f} tokens/s; "
              f"its time / the current one's, median of rounds: {gain:.3f}")


if __name__ == "__main__":
    main()
