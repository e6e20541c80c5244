"""The training loop: AdamW, warm-up and decay, clipping, mixed precision, dense checkpoints.

    for step in steps:
        if step is scheduled: evaluate, flush metrics, save a checkpoint
        if step is the planned end: stop, unless train.until=phase finds the change
                                    incomplete (then plan the next stretch)
        loss = cross_entropy(model(batch(seed, step)))
        clip, AdamW step at lr(step)

Batches are a pure function of (seed, step), the learning rate of step, and every other random
state is in the checkpoint, so ``--resume`` continues exactly where the last checkpoint left
off: on a CPU the resumed run ends with the same weights as an uninterrupted one (tested, also
after SIGKILL). The same code runs on CUDA with bf16 (or fp16 with a gradient scaler).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from interp import checkpoints, runlock, rundata, store
from interp.config import RunConfig, TrainConfig, continue_config
from interp.data import load_dataset
from interp.device import autocast, pick_device, pick_precision
from interp.errors import CheckpointError, ConfigError, InterpError, TrainingDiverged
from interp.fileio import refuse_links_out
from interp.measures.heads import (RepeatedTokens, middle_frequency_pool, prefix_matching,
                                   repeated_token_probe)
from interp.measures.icl import icl_indices, icl_score, per_token_losses
from interp.model import Transformer
from interp.recovery import recover_metrics

log = logging.getLogger("interp")


# --------------------------------------------------------------------------- optimisation

def learning_rate(step: int, train: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then constant, cosine or linear decay to ``min_lr_ratio * lr``."""
    if step < train.warmup_steps:
        return train.lr * (step + 1) / train.warmup_steps
    if train.schedule == "constant":
        return train.lr
    progress = (step - train.warmup_steps) / max(1, train.steps - train.warmup_steps)
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if train.schedule == "cosine" else 1 - progress
    return train.lr * (train.min_lr_ratio + (1 - train.min_lr_ratio) * shape)


FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # where torch has a fused (one kernel per step) AdamW


def make_optimizer(model: torch.nn.Module, train: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not biases, LayerNorm or smear alphas).

    The fused implementation (one kernel over all parameters instead of a loop of small ops)
    where torch has it for the parameters' device: the same update as the loop up to float
    rounding (tested), and the largest single saving in the CPU training step after attention
    (``benchmarks/bench_train.py``). It is deterministic, so a resume stays bit-exact.
    """
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": train.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    device = next(model.parameters()).device.type
    return torch.optim.AdamW(groups, lr=train.lr, betas=(train.beta1, train.beta2),
                             fused=device in FUSED_ADAMW_DEVICES)


# --------------------------------------------------------------------------- the run

@dataclass
class Run:
    """A training run in progress: its directory, data, model and the log of the current span."""

    directory: Path
    config: RunConfig
    data: Any
    model: Transformer
    optimizer: torch.optim.AdamW
    device: torch.device
    dtype: torch.dtype | None
    scaler: Any
    schedule: list[int]  # the checkpoint steps still to come
    end: int  # the step this run stops at unless train.until=phase takes it on (next_end)
    step: int = 0
    pending: list[dict[str, float]] = field(default_factory=list)
    # The training loss summed over the steps since the last train record, and their number.
    # Saved with each checkpoint, so the first record after a resume averages the same
    # log_every steps as an uninterrupted run (not only those run since the resume).
    window_loss: float = 0.0
    window_steps: int = 0
    eval_tokens: torch.Tensor | None = None
    probe: RepeatedTokens | None = None


CheckpointCallback = Callable[[Path, int], None]
"""``on_checkpoint(run_dir, step)``: called after each checkpoint is written and complete."""


def train(config: RunConfig | None, run_dir: str | Path, resume: bool = False,
          progress: bool = True, on_checkpoint: CheckpointCallback | None = None,
          changes: dict[str, dict[str, Any]] | None = None) -> Path:
    """Train ``config`` into ``run_dir``, or with ``resume`` (and ``config=None``: the run's
    own config.json is used) continue it from its last good checkpoint.

    ``changes`` (resume only; nested overrides as :func:`interp.config.parse_overrides` gives)
    may set ``train.until`` and ``train.max_tokens`` (:func:`interp.config.continue_config`):
    config.json is rewritten with them and run.json's ``continued`` list records the change
    and the step, so ``interp train --resume RUN train.until=phase`` takes a finished run on
    until its phase change is complete.

    With ``train.until=phase``, each time the run reaches its planned end (first
    ``train.steps``) it asks :func:`interp.until.run_completion` whether the change is complete
    and, if not, goes on to :func:`interp.checkpoints.next_end`, up to the cap. The planned end
    is saved in every checkpoint (``end_step``) and in run.json (``planned_steps``), and the
    question is asked again when a run resumes at an end, so a resumed run stops where an
    uninterrupted one does, with the same weights.

    ``on_checkpoint(run_dir, step)`` is called after every checkpoint this call writes (its
    metrics flushed, the checkpoint complete), before training goes on; its time is not
    counted in tokens/s. Training knows nothing of analysis: ``train.analyze`` ("analyse each
    checkpoint as it lands") is honoured by the callers that hand a callback for it (the CLI,
    the sweep worker); a direct call without one only logs that nothing is analysed.

    Returns the run directory. Raises InterpError subclasses for bad input.
    """
    run_dir = Path(run_dir)
    if resume:
        checkpoints.read_config(run_dir)  # the clear error for a missing or foreign folder first
        refuse_links_out(run_dir)  # nothing outside the run is read or written through a link
        with runlock.hold(run_dir, "train"):
            stored = checkpoints.read_config(run_dir)
            run = _prepare(continue_config(stored, changes) if changes else stored, run_dir)
            checkpoints.remove_stale_temporaries(run_dir)
            _restore(run)
            if changes:
                _record_changes(run, stored)
            rundata.save_run_data(run_dir, run.data)  # a run made before runs carried their data
            return _train_run(run, progress, on_checkpoint)
    if changes:
        raise ConfigError("changes apply to a resumed run only; put them in the config of a new run")
    _refuse_existing(run_dir)
    run = _prepare(config, run_dir)  # data, model, optimizer: nothing is written before this works
    with _new_run_folder(run_dir):
        _write_run_files(run)
        return _train_run(run, progress, on_checkpoint)


def _train_run(run: Run, progress: bool, on_checkpoint: CheckpointCallback | None) -> Path:
    """The loop, with the run's status kept in run.json (``diverged`` for a non-finite loss)."""
    if run.config.train.analyze and on_checkpoint is None:
        log.warning("train.analyze is set but no on_checkpoint callback was given: checkpoints are "
                    "not analysed as they land; run 'interp analyze %s' afterwards", run.directory)
    checkpoints.update_run_info(run.directory, status="training", pid=os.getpid(),
                                host=socket.gethostname(), planned_steps=run.end,
                                schedule=checkpoints.checkpoint_schedule(run.config.train, run.end))
    try:
        _loop(run, progress, on_checkpoint)
    except BaseException as err:
        _mark_stopped(run.directory, err)
        raise
    checkpoints.update_run_info(run.directory, status="finished", step=run.step)
    return run.directory


def _mark_stopped(run_dir: Path, err: BaseException) -> None:
    """Record why training stopped; best effort, since the cause may be a full or failing disk
    (then the trainer's lock, released with its process, tells that it is not training)."""
    status = ("interrupted" if isinstance(err, KeyboardInterrupt)
              else "diverged" if isinstance(err, TrainingDiverged) else "failed")
    try:
        checkpoints.update_run_info(run_dir, status=status, error=str(err)[:500] or repr(err)[:500])
    except (OSError, InterpError) as again:
        log.debug("could not record status %s in %s: %s", status, run_dir, again)


def _refuse_existing(run_dir: Path) -> None:
    if checkpoints.list_checkpoints(run_dir) or (run_dir / "config.json").exists():
        raise CheckpointError(f"run directory '{run_dir}' already holds a run; resume it with "
                              f"'interp train --resume {run_dir}' or choose another --name")


@contextmanager
def _new_run_folder(run_dir: Path) -> Iterator[None]:
    """Create ``run_dir`` and hold its training lock for the block. If the block fails before
    the run has a complete checkpoint (a refused start, a failed allocation, a full disk,
    Ctrl-C in the first seconds), everything this start created is removed again: such a
    folder holds nothing to resume, and left behind it would block the same name."""
    before = set(run_dir.iterdir()) if run_dir.is_dir() else None
    created = _make_dirs(run_dir)
    with runlock.hold(run_dir, "train"):
        try:
            _refuse_existing(run_dir)  # again under the lock: two starts of one name at once
            yield
        except BaseException:
            if not checkpoints.list_checkpoints(run_dir):
                _discard(run_dir, created, before)
            raise


def _make_dirs(run_dir: Path) -> list[Path]:
    """``mkdir -p run_dir``; returns the directories it created, deepest first."""
    missing = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
    run_dir.mkdir(parents=True, exist_ok=True)
    return missing


def _discard(run_dir: Path, created: list[Path], before: set[Path] | None) -> None:
    """Remove what a failed start created: its files, then the directories it made if they
    are empty (another run may have been started in a parent meanwhile); never what was
    there before."""
    import shutil

    for child in set(run_dir.iterdir()) - (before or set()):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    for directory in created:
        try:
            directory.rmdir()
        except OSError:
            break  # not empty: someone else's now


def _loop(run: Run, progress: bool, on_checkpoint: CheckpointCallback | None = None) -> None:
    train_cfg = run.config.train
    # Redraw often on a terminal, rarely in a log file (CI, nohup).
    interval = 0.5 if sys.stderr.isatty() else 30.0
    bar = tqdm(total=run.end, initial=run.step, disable=not progress, unit="step",
               dynamic_ncols=True, desc=run.directory.name, mininterval=interval)
    scheduled = set(run.schedule)
    started, tokens_per_step = time.perf_counter(), run.config.tokens_per_step
    window_start, window_ran = time.perf_counter(), 0  # for the speed: steps of this process only
    while run.step <= run.end:
        if run.step in scheduled:
            paused = time.perf_counter()
            _checkpoint(run)
            if on_checkpoint is not None:
                on_checkpoint(run.directory, run.step)
            window_start += time.perf_counter() - paused  # tokens/s counts training only
        if run.step == run.end:
            paused = time.perf_counter()
            going_on = _go_on(run)
            window_start += time.perf_counter() - paused
            if not going_on:
                break
            scheduled, bar.total = set(run.schedule), run.end
        lr = learning_rate(run.step, train_cfg)
        loss, grad_norm = _train_step(run, lr)
        _check_finite(run, loss, grad_norm, lr)
        run.step += 1
        run.window_loss, run.window_steps, window_ran = run.window_loss + loss, run.window_steps + 1, window_ran + 1
        if run.step % train_cfg.log_every == 0 or run.step == run.end:
            elapsed = time.perf_counter() - window_start
            speed = window_ran * tokens_per_step / max(elapsed, 1e-9)
            mean_loss = run.window_loss / run.window_steps
            run.pending.append({"step": run.step, "tokens": run.step * tokens_per_step,
                                "loss": mean_loss, "lr": lr, "grad_norm": grad_norm,
                                "tokens_per_second": speed,
                                "wall_seconds": time.perf_counter() - started})
            bar.set_postfix(loss=f"{mean_loss:.3f}", tok_s=f"{speed:,.0f}", refresh=False)
            run.window_loss, run.window_steps = 0.0, 0
            window_start, window_ran = time.perf_counter(), 0
        bar.update(1)
    bar.close()


def _go_on(run: Run) -> bool:
    """At the run's planned end: whether a ``train.until=phase`` run goes on, with its new end
    and checkpoints set and recorded in run.json (``planned_steps``, ``schedule``, and
    ``until``: the step, the outcome and the verdict's evidence in one line)."""
    if run.config.train.until != "phase":
        return False
    from interp.until import run_completion

    verdict = run_completion(run.directory, run.step)
    complete = verdict is not None and verdict.complete
    going_on = None if complete else checkpoints.next_end(run.config, run.end)
    said = verdict.describe() if verdict is not None else "no evaluation yet"
    outcome = "complete" if complete else "going on" if going_on is not None else "cap"
    if going_on is not None:
        log.info("step %d: %s; training on to step %d", run.step, said, going_on)
        run.end = going_on
        run.schedule = [s for s in checkpoints.checkpoint_schedule(run.config.train, run.end) if s > run.step]
    elif outcome == "cap":
        log.warning("step %d is the cap of train.until=phase (train.max_tokens) and the change is not "
                    "complete: %s", run.step, said)
    checkpoints.update_run_info(run.directory, planned_steps=run.end,
                                schedule=checkpoints.checkpoint_schedule(run.config.train, run.end),
                                until={"step": run.step, "outcome": outcome, "verdict": said})
    return going_on is not None


def _check_finite(run: Run, loss: float, grad_norm: float, lr: float) -> None:
    """Stop a run whose loss (or, without a gradient scaler, gradient norm) is NaN or infinite:
    its weights are lost from this step on, and every later checkpoint would hold NaN. (An fp16
    scaler skips steps with infinite gradients by design, so there only the loss counts.)"""
    bad_grad = not run.scaler.is_enabled() and not math.isfinite(grad_norm)
    if not math.isfinite(loss) or bad_grad:
        what = f"the loss is {loss}" if not math.isfinite(loss) else f"the gradient norm is {grad_norm}"
        raise TrainingDiverged(f"training diverged at step {run.step}: {what} (lr {lr:g}); lower "
                               f"train.lr or raise train.warmup_steps and start a new run "
                               f"(checkpoints up to step {run.step} are kept)")


def _train_step(run: Run, lr: float) -> tuple[float, float]:
    """One optimiser update on the batch of the current step; returns (loss, grad norm)."""
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    batch = run.data.train_batch(run.step, run.config.train.batch_size, run.config.train.seed)
    batch = batch.to(run.device, non_blocking=True)
    with autocast(run.device, run.dtype):
        loss = run.model(batch, return_type="loss")
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.optimizer)
    clip = run.config.train.grad_clip
    norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip if clip > 0 else float("inf"))
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    return loss.item(), norm.item()


def _checkpoint(run: Run) -> None:
    """Evaluate, flush the metrics up to this step, then save the checkpoint (in that order, so
    that metrics never lag behind the newest checkpoint a resume would start from).

    The checkpoint's trainer.json also carries the train records flushed here and this step's
    eval row (``records``), so the metrics file can be rebuilt from the checkpoints alone
    (:mod:`interp.recovery`), and the partial loss window, so a resume averages it whole.
    """
    evaluation, losses = quick_eval(run)
    if not math.isfinite(evaluation["val_loss"]):
        raise TrainingDiverged(f"training diverged before step {run.step}: the held-out loss is "
                               f"{evaluation['val_loss']}; lower train.lr or raise train.warmup_steps "
                               f"and start a new run")
    train_rows = {k: [r[k] for r in run.pending] for k in run.pending[0]} if run.pending else {}
    eval_row = {k: [v] for k, v in evaluation.items()}
    eval_attrs = _eval_attrs(run)
    with store.update(run.directory) as handle:
        if train_rows:
            store.append(handle, "train", train_rows)
        store.append(handle, "eval", eval_row)
        handle["eval"].attrs.update(eval_attrs)
    run.pending.clear()
    trainer = {"step": run.step, "tokens": run.step * run.config.tokens_per_step,
               "data_position": {"seed": run.config.train.seed, "next_step": run.step},
               "lr": learning_rate(min(run.step, run.config.train.steps - 1), run.config.train),
               "end_step": run.end,
               "scaler_scale": float(run.scaler.get_scale()) if run.scaler.is_enabled() else None,
               "loss_window": {"sum": run.window_loss, "steps": run.window_steps},
               "records": {**_records("train", train_rows), **_records("eval", eval_row),
                           "eval_attrs": {k: int(v) for k, v in eval_attrs.items()}},
               "saved_at": time.time()}
    # The evaluation's losses go into the checkpoint so that the analysis, which measures the
    # same held-out rows at the same precision by default, does not measure them again.
    shared = checkpoints.EvalLosses(losses, checkpoints.rows_fingerprint(run.eval_tokens), str(run.dtype))
    checkpoints.save_checkpoint(run.directory, run.model, run.optimizer, trainer, _rng_tensors(), shared)


def _records(group: str, columns: dict[str, list]) -> dict[str, Any]:
    """``columns`` as JSON lists with their numpy dtypes, to rebuild ``group`` bit for bit."""
    if not columns:
        return {}
    arrays = {k: np.asarray(v) for k, v in columns.items()}
    return {group: {k: a.tolist() for k, a in arrays.items()},
            f"{group}_dtypes": {k: str(a.dtype) for k, a in arrays.items()}}


@torch.no_grad()
def quick_eval(run: Run) -> tuple[dict[str, Any], torch.Tensor]:
    """Held-out loss by token index, ICL score and prefix matching, stored at every checkpoint
    (the row), and the per-token losses [eval_examples, n_ctx] it came from."""
    run.model.eval()
    with autocast(run.device, run.dtype):
        losses = per_token_losses(run.model, run.eval_tokens)
        prefix = prefix_matching(run.model, run.probe)
    run.model.train()
    icl = icl_score(losses)
    return {"step": run.step, "tokens": run.step * run.config.tokens_per_step,
            "val_loss": float(np.nanmean(losses.numpy())), "icl_score": icl.score,
            "icl_score_stderr": icl.stderr, "loss_by_position": losses.nanmean(0).numpy(),
            "prefix_matching": prefix.numpy()}, losses


def _eval_attrs(run: Run) -> dict[str, int]:
    """What the quick evaluation measured on, recorded beside its series."""
    late, early = icl_indices(run.config.model.n_ctx)
    return {"icl_late_index": late, "icl_early_index": early, "n_examples": len(run.eval_tokens),
            "prefix_matching_seq_len": run.probe.seq_len, "prefix_matching_repeats": run.probe.repeats,
            "prefix_matching_sequences": len(run.probe.tokens)}


# --------------------------------------------------------------------------- setup and resume

def _prepare(config: RunConfig, run_dir: Path) -> Run:
    """Data, model, optimizer and probes of a run; writes nothing, so that a run whose data or
    model cannot be made (a missing corpus, a model too large for memory) leaves no folder."""
    train_cfg = config.train
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    device = pick_device(train_cfg.device)
    dtype = pick_precision(train_cfg.precision, device)
    data = load_dataset(config.data, config.model.n_ctx)
    config = checkpoints.resolved_config(config, data.vocab_size)
    torch.manual_seed(train_cfg.seed)
    try:
        model = Transformer(config.model).to(device)
    except (RuntimeError, MemoryError) as err:  # within the config limits, beyond this machine
        raise ConfigError(f"the model does not fit in memory on {device} ({str(err).splitlines()[0][:100]}); "
                          f"choose smaller model sizes") from None
    optimizer = make_optimizer(model, train_cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    run = Run(run_dir, config, data, model, optimizer, device, dtype, scaler,
              checkpoints.checkpoint_schedule(train_cfg), train_cfg.steps)
    run.eval_tokens = data.heldout_batch(train_cfg.eval_examples)
    special = () if data.bos_token_id is None else (data.bos_token_id,)
    pool = middle_frequency_pool(data.token_counts(), exclude=special)
    run.probe = repeated_token_probe(pool, config.model.n_ctx, data.bos_token_id)
    return run


def _write_run_files(run: Run) -> None:
    """config.json, the first run.json and the data the run carries (:mod:`interp.rundata`:
    tokenizer, held-out probes, token counts) of a new run."""
    checkpoints.write_json_atomic(run.directory / "config.json", run.config.to_dict())
    rundata.save_run_data(run.directory, run.data)
    checkpoints.update_run_info(run.directory, created=time.time(), data=run.data.fingerprint,
                                data_description=run.data.describe(), versions=_versions(),
                                device=str(run.device), precision=str(run.dtype or "float32"))


def _restore(run: Run) -> None:
    """Load the newest checkpoint that loads, falling back to older ones with one line each
    (a corrupt file, an invalid manifest, weights of another shape), then cut the metrics
    back to its step. A damaged metrics file is first moved aside and rebuilt."""
    state, refused = None, []
    for candidate in reversed(checkpoints.list_checkpoints(run.directory)):
        try:
            state = checkpoints.load_trainer_state(candidate, run.model, run.optimizer)
            break
        except CheckpointError as err:
            refused.append((candidate.step, str(err)))
    if state is None:
        why = f" (step {refused[0][0]}: {refused[0][1]})" if refused else ""
        raise CheckpointError(f"'{run.directory}' has no checkpoint that loads{why}; move the folder "
                              f"aside and start the run again without --resume")
    if refused:
        steps = ", ".join(str(step) for step, _ in refused)
        log.warning("resuming from step %d: newer checkpoint(s) at step %s cannot be loaded (%s)",
                    state.step, steps, refused[0][1])
    _set_rng(state.tensors)
    if state.trainer.get("scaler_scale") and run.scaler.is_enabled():
        run.scaler.update(state.trainer["scaler_scale"])
    run.step = state.step
    window = state.trainer.get("loss_window") or {}
    run.window_loss, run.window_steps = float(window.get("sum", 0.0)), int(window.get("steps", 0))
    note = recover_metrics(run.directory)
    if note:
        log.warning("%s", note)
    with store.update(run.directory) as handle:
        store.truncate_after(handle, run.step)
    # The end this checkpoint was written under (a train.until=phase run may have gone on past
    # train.steps); the checkpoints up to it, except this one, which exists already.
    run.end = max(int(state.trainer.get("end_step", run.config.train.steps)), run.step)
    run.schedule = [s for s in checkpoints.checkpoint_schedule(run.config.train, run.end) if s > run.step]
    log.info("resuming %s from step %d", run.directory, run.step)


def _record_changes(run: Run, before: RunConfig) -> None:
    """Write the changed config.json of a resumed run and note in run.json what changed, from
    what, at which step (``continued``: a list, one entry per resume with changes)."""
    old, new = before.train, run.config.train
    changed = {f"train.{name}": [getattr(old, name), getattr(new, name)]
               for name in ("until", "max_tokens") if getattr(old, name) != getattr(new, name)}
    checkpoints.write_json_atomic(run.directory / "config.json", run.config.to_dict())
    history = checkpoints.read_run_info(run.directory).get("continued", [])
    checkpoints.update_run_info(run.directory, continued=[*history, {"step": run.step, "changed": changed,
                                                                     "at": time.time()}])
    log.info("continuing %s from step %d with %s", run.directory, run.step,
             ", ".join(f"{k}={v[1]}" for k, v in changed.items()) or "no change")


def _rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"rng/torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda_{index}"] = state
    return tensors


def _set_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng/torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng/cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _versions() -> dict[str, str]:
    import transformer_lens

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformer_lens": getattr(transformer_lens, "__version__", "unknown"),
            "interp": "0.1.0"}
