"""A short text summary of a run, read from its run.json and metrics file only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from interp import checkpoints, store

INDUCTION_THRESHOLD = 0.5


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
        wall = float(train["wall_seconds"][-1])
        lines.append(f"trained    {int(train['tokens'][-1]):,} tokens in {int(train['step'][-1]):,} steps, "
                     f"{wall / 60:.1f} min of training ({np.median(train['tokens_per_second']):,.0f} tokens/s)"
                     f" on {info.get('device', '?')} {info.get('precision', '')}")
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
    late = prefix[:, 1:].max(axis=(1, 2)) if prefix.shape[1] > 1 else prefix[:, 0].max(axis=1)
    crossing = first_crossing(late, INDUCTION_THRESHOLD)
    if crossing is None:
        lines.append(f"induction  no head of layer >= 1 holds prefix matching above {INDUCTION_THRESHOLD}")
    else:
        seconds = np.interp(tokens[crossing], train["tokens"], train["wall_seconds"]) if len(train.get("tokens", [])) else float("nan")
        lines.append(f"induction  a head of layer >= 1 passes {INDUCTION_THRESHOLD} prefix matching from "
                     f"{int(tokens[crossing]):,} tokens ({seconds / 60:.1f} min of training) on; "
                     f"ICL score there {icl[crossing]:+.3f}")
    return lines
