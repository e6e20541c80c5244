"""A short text summary of a run, read from its run.json and metrics file only."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

from interp import checkpoints, store
from interp.fileio import refuse_links_out


def induction_threshold() -> float:
    """The prefix-matching threshold of the induction-head rule: the default ``prefix_threshold``
    of :func:`interp.phase.classify_induction_heads`, read from its signature so that the
    summary never quotes a number of its own."""
    from interp.phase import classify_induction_heads

    return float(inspect.signature(classify_induction_heads).parameters["prefix_threshold"].default)


def training_clock(train: dict) -> np.ndarray:
    """[N] seconds spent in training steps up to each ``train`` record (evaluation and
    checkpoints excluded): the cumulative sum of each record's new tokens over its
    ``tokens_per_second``, which is measured over exactly those steps. Unlike
    ``wall_seconds`` it neither counts evaluation and checkpoint writing nor restarts at 0
    when a run resumes (the first record after a resume is charged from the previous record,
    a few steps more than it ran)."""
    tokens = np.asarray(train["tokens"], dtype=np.float64)
    speed = np.asarray(train["tokens_per_second"], dtype=np.float64)
    new = np.diff(tokens, prepend=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        seconds = np.where(speed > 0, new / speed, 0.0)
    return np.cumsum(seconds)


def wall_clock(train: dict) -> float:
    """Wall-clock seconds of the run's training processes, evaluation and checkpoints included.
    ``wall_seconds`` restarts at 0 in each process of a resumed run, so the last record of
    every process is added up."""
    wall = np.asarray(train["wall_seconds"], dtype=np.float64)
    ends = np.flatnonzero(np.diff(wall) < 0)  # the last record of each earlier process
    return float(wall[ends].sum() + wall[-1])


def first_crossing(values: np.ndarray, threshold: float) -> int | None:
    """Index of the first value above ``threshold`` after which it never falls back below."""
    above = values > threshold
    if not above[-1]:
        return None
    below = np.flatnonzero(~above)
    return 0 if below.size == 0 else int(below[-1] + 1)


def summarize(run_dir: str | Path) -> str:
    """Lines a researcher wants after training: shape, budget, losses, ICL, induction heads."""
    run_dir = Path(run_dir)
    config = checkpoints.read_config(run_dir)
    refuse_links_out(run_dir)  # a run from elsewhere: nothing outside it is read
    info = checkpoints.read_run_info(run_dir)
    train = store.series(run_dir, "train")
    evals = store.series(run_dir, "eval")
    m = config.model
    lines = [f"run        {run_dir}  ({checkpoints.run_status(run_dir)})",
             f"model      {m.n_layers}-layer {'attention-only' if m.attn_only else 'MLP'}, d_model {m.d_model}, "
             f"{m.n_heads} heads x {m.d_head}, n_ctx {m.n_ctx}, vocab {m.d_vocab}, {m.positional} positions"
             f"{', smeared keys' if m.smeared_key else ''}",
             f"data       {info.get('data_description', config.data.source)}"]
    if len(train.get("step", [])):
        tokens, seconds = int(train["tokens"][-1]), float(training_clock(train)[-1])
        rate = f"{tokens / seconds:,.0f}" if seconds > 0 else "?"
        lines.append(f"trained    {tokens:,} tokens in {int(train['step'][-1]):,} steps, "
                     f"{seconds / 60:.1f} min of training ({rate} tokens/s; {wall_clock(train) / 60:.1f} "
                     f"min wall clock with evaluation and checkpoints) on {info.get('device', '?')} "
                     f"{info.get('precision', '')}")
        lines.append(f"loss       train {train['loss'][0]:.3f} -> {train['loss'][-1]:.3f}")
    if len(evals.get("step", [])):
        lines += _eval_lines(evals, train)
    lines.append(f"checkpoints {len(checkpoints.list_checkpoints(run_dir))} in {run_dir}/step_*; "
                 f"metrics in {run_dir / store.FILENAME}")
    return "\n".join(lines)


def _eval_lines(evals: dict, train: dict) -> list[str]:
    attrs = evals["attrs"]
    icl, stderr, tokens = evals["icl_score"], evals["icl_score_stderr"], evals["tokens"]
    lines = [f"val loss   {evals['val_loss'][0]:.3f} -> {evals['val_loss'][-1]:.3f}",
             f"ICL score  {icl[0]:+.3f} -> {icl[-1]:+.3f} (+-{stderr[-1]:.3f}; loss at token "
             f"{attrs.get('icl_late_index')} minus token {attrs.get('icl_early_index')}, "
             f"{attrs.get('n_examples')} held-out sequences)"]
    prefix = evals["prefix_matching"]  # [checkpoint, layer, head]
    for layer in range(prefix.shape[1]):
        best = int(np.argmax(prefix[-1, layer]))
        lines.append(f"layer {layer}    best prefix-matching head {layer}.{best}: "
                     f"{prefix[0, layer, best]:.2f} -> {prefix[-1, layer, best]:.2f}")
    # Induction heads need an earlier layer's previous-token head, so layer 0 is left out,
    # except in 1-layer models (smeared keys), where layer 0 is all there is.
    late = prefix[:, 1:].max(axis=(1, 2)) if prefix.shape[1] > 1 else prefix[:, 0].max(axis=1)
    heads = "layer >= 1" if prefix.shape[1] > 1 else "layer 0"
    threshold = induction_threshold()
    crossing = first_crossing(late, threshold)
    if crossing is None:
        lines.append(f"induction  no head of {heads} holds prefix matching above {threshold:g}")
    else:
        seconds = (np.interp(tokens[crossing], train["tokens"], training_clock(train))
                   if len(train.get("tokens", [])) else float("nan"))
        lines.append(f"induction  a head of {heads} passes {threshold:g} prefix matching from "
                     f"{int(tokens[crossing]):,} tokens ({seconds / 60:.1f} min of training) on; "
                     f"ICL score there {icl[crossing]:+.3f}")
    return lines
