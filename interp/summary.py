"""A short text summary of a run, read from its run.json and metrics file only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from interp import checkpoints, store
from interp.phase.heads import LEGACY, RULE
from interp.phase.report import describe_head, labelled_heads
from interp.fileio import refuse_links_out


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
             f"{f' (layers < {m.position_layers} only)' if m.position_layers else ''}"
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
    lines += induction_lines(run_dir, train)
    lines += _change_lines(run_dir)
    lines.append(f"checkpoints {len(checkpoints.list_checkpoints(run_dir))} in {run_dir}/step_*; "
                 f"metrics in {run_dir / store.FILENAME}")
    return "\n".join(lines)


def _change_lines(run_dir: Path) -> list[str]:
    """Where the phase change stands when the run ended mid-change or trained with
    ``train.until=phase``, with the command that continues it (:func:`interp.until.completion_line`)."""
    from interp.until import completion_line

    line = completion_line(run_dir)
    return [line] if line else []


def _eval_lines(evals: dict, train: dict) -> list[str]:
    attrs = evals["attrs"]
    icl, stderr = evals["icl_score"], evals["icl_score_stderr"]
    lines = [f"val loss   {evals['val_loss'][0]:.3f} -> {evals['val_loss'][-1]:.3f}",
             f"ICL score  {icl[0]:+.3f} -> {icl[-1]:+.3f} (+-{stderr[-1]:.3f}; loss at token "
             f"{attrs.get('icl_late_index')} minus token {attrs.get('icl_early_index')}, "
             f"{attrs.get('n_examples')} held-out sequences)"]
    prefix = evals["prefix_matching"]  # [checkpoint, layer, head]
    for layer in range(prefix.shape[1]):
        best = int(np.argmax(prefix[-1, layer]))
        lines.append(f"layer {layer}    best prefix-matching head {layer}.{best}: "
                     f"{prefix[0, layer, best]:.2f} -> {prefix[-1, layer, best]:.2f}")
    return lines


def induction_lines(run_dir: Path, train: dict) -> list[str]:
    """The induction heads as the analysis classified and labelled them (``phase`` group), one
    line per labelled head with its evidence (:mod:`interp.phase.heads`, :mod:`interp.phase.trend`);
    or what to run to get them."""
    phase = store.attrs(run_dir, "phase")
    old = f"prefix matching > {RULE.legacy_prefix:g} and OV copying > {RULE.min_copying:g}"
    if "head_labels" not in phase:
        if "induction_heads" in phase:  # analysed by an interp without the null and the labels
            return [f"induction  heads {phase['induction_heads'] or 'none'} by the old rule ({old}); "
                    f"'interp analyze {run_dir}' judges them against their null and labels them"]
        return [f"induction  not classified yet: 'interp analyze {run_dir}' judges each head's prefix "
                f"matching against its null (a head that ignores which tokens repeat) and labels it"]
    labels = labelled_heads(phase)
    found = ", ".join(f"{name} {label}" for name, label in labels) or "no head formed, forming or fading"
    if phase.get("induction_rule") == LEGACY:
        lines = [f"induction  {found} (old rule: {old}; this analysis has no prefix-matching null: "
                 f"'interp analyze {run_dir} --redo' measures it)"]
    else:
        lines = [f"induction  {found} (rule: prefix matching above its null by z > {RULE.min_z:g} and by "
                 f"more than {RULE.min_effect:g}, OV copying > {RULE.min_copying:g}; docs/PHASE.md)"]
    return lines + [head_line(phase, name, train) for name, _ in labels]


def head_line(phase: dict, name: str, train: dict | None = None) -> str:
    """:func:`interp.phase.report.describe_head` plus, once formed, when (in minutes of training)."""
    text = describe_head(phase, name)
    formed = float(phase.get(f"head_{name}_formation_tokens", np.nan))
    if np.isfinite(formed):
        minutes = ""
        if train and len(train.get("tokens", [])):
            minutes = f" ({np.interp(formed, train['tokens'], training_clock(train)) / 60:.1f} min of training)"
        text += f"; half its final score at {formed / 1e6:.2f}M tokens{minutes}"
    return text
