"""Whether a run's phase change is complete, and the command that continues one that is not.

Two readers: the training loop of a ``train.until=phase`` run asks :func:`run_completion` at
each planned end whether to go on (:func:`interp.checkpoints.next_end` says how far), and the
summary (so also ``interp report``) prints :func:`completion_line`.

The stop rule reads the series training itself stores at every checkpoint (group ``eval``:
the band ICL score of its held-out loss by token index, and every head's prefix matching),
never the analysis: so it works without ``train.analyze``, and a resumed run reads exactly
the rows an uninterrupted one read at the same step (they are restored bit for bit), so it
decides the same. The summary's line reads the analysis instead once it covers the run
(:func:`analysis_completion`: more held-out sequences, prefix matching above its null), the
series the report's window and trend labels come from, so the line and the report agree; on
a ``train.until=phase`` run it gives the stop's reason and, where the analysis reads the run
differently (training's 128 sequences can show a window that the analysis's 256 do not),
that too.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np

from interp import runs, store
from interp.config import RunConfig
from interp.measures.icl import icl_band_score
from interp.phase.complete import Completion, assess


def analysis_completion(run_dir: str | Path) -> Completion | None:
    """:func:`~interp.phase.complete.assess` on the analysis's series, when it covers the run's
    last evaluated checkpoint (None otherwise): more held-out sequences than training's quick
    evaluation, and each head's prefix matching above its null where the null was measured,
    so it reads the same series as the report's window and trend labels."""
    run_dir = Path(run_dir)
    try:
        rows = store.series_by_step(run_dir, "analysis")
        evals = store.series_by_step(run_dir, "eval")
    except store.StoreError:
        return None
    steps = np.asarray(rows.get("step", []))
    if (not steps.size or "loss_by_position" not in rows or "prefix_matching" not in rows
            or not len(evals.get("step", [])) or steps.max() < np.max(evals["step"])):
        return None
    prefix = np.asarray(rows["prefix_matching"], np.float64)
    null = np.asarray(rows.get("prefix_matching_null", np.full(prefix.shape, np.nan)), np.float64)
    return _assess_rows(run_dir, rows, prefix - null if np.isfinite(null).all() else prefix)


def _assess_rows(run_dir: Path, rows: dict[str, np.ndarray], prefix: np.ndarray) -> Completion:
    """:func:`~interp.phase.complete.assess` of stored rows: the band score of their loss by
    token index, and ``prefix`` [C, L, H] as the heads' series (layer 0's too where the run's
    model smears its keys)."""
    smeared = runs.read_config(run_dir).model.smeared_key
    return assess(rows["tokens"], icl_band_score(rows["loss_by_position"]), prefix, smeared_key=smeared)


def run_completion(run_dir: str | Path, upto_step: int | None = None) -> Completion | None:
    """:func:`interp.phase.complete.assess` on the run's ``eval`` series up to ``upto_step``
    (all when None); None when there is no evaluation yet."""
    try:
        evals = store.series_by_step(Path(run_dir), "eval")
    except store.StoreError:
        return None
    steps = np.asarray(evals.get("step", []))
    if not steps.size or "loss_by_position" not in evals or "prefix_matching" not in evals:
        return None
    keep = steps <= (steps.max() if upto_step is None else upto_step)
    rows = {name: np.asarray(evals[name])[keep] for name in ("tokens", "loss_by_position", "prefix_matching")}
    return _assess_rows(Path(run_dir), rows, rows["prefix_matching"])


def continue_command(run_dir: str | Path, config: RunConfig) -> str:
    """The command that takes a run on until its change is complete.

    - ``until=steps`` with a constant rate: ``interp train --resume RUN train.until=phase``
      (a resume may change ``until`` and ``max_tokens`` only, :func:`interp.config.continue_config`);
    - ``until=phase`` (it stopped at its cap): the same resume with twice the cap;
    - a decaying rate: there is no rate for steps past ``train.steps`` that the run would have
      had, so a new run from the same config with a constant rate, under a new name.
    """
    run_dir = Path(run_dir)
    train = config.train
    if train.schedule != "constant":
        return (f"interp train --config {shlex.quote(str(run_dir / 'config.json'))} train.schedule=constant "
                f"train.until=phase --out {shlex.quote(str(run_dir.parent))} "
                f"--name {shlex.quote(run_dir.name + '-until-phase')}")
    resume = f"interp train --resume {shlex.quote(str(run_dir))}"
    if train.until == "steps":
        return f"{resume} train.until=phase"
    return f"{resume} train.max_tokens={2 * config.max_steps * config.tokens_per_step}"


def completion_line(run_dir: str | Path) -> str | None:
    """The summary's line on where the change stands, or None when there is nothing to say.

    For a ``train.until=phase`` run: complete, going on, or stopped at the cap (then with the
    command that raises it). For any other run: only when it ended mid-change
    (:attr:`Completion.mid_change`), with the command that continues it. Never for a run that is
    still training.
    """
    run_dir = Path(run_dir)
    config = runs.read_config(run_dir)
    status = runs.run_status(run_dir)
    verdict = run_completion(run_dir)
    if verdict is None or status == "training":
        return None
    analysed = analysis_completion(run_dir)
    info = runs.read_run_info(run_dir)
    train = config.train
    if train.until == "phase":
        end = int(info.get("planned_steps", train.steps))
        went_on = f"; went on from {train.steps:,} to {end:,} steps" if end > train.steps else ""
        if verdict.complete:
            line = f"change     complete by training's evaluation: {verdict.describe()}{went_on}"
            if analysed is not None and not analysed.complete:
                # No command: going on would ask training's evaluation again, which says complete.
                line += (f"; but the analysis (more held-out sequences, heads against their null) "
                         f"reads {analysed.describe()}")
            return line
        if status == "finished" and end >= config.max_steps:
            return (f"change     stopped at the cap of {config.max_steps:,} steps (train.max_tokens) before "
                    f"the change was complete: {verdict.describe()}{went_on}; continue it with: "
                    f"{continue_command(run_dir, config)}")
        return (f"change     not complete yet: {verdict.describe()}{went_on}; continue it with: "
                f"interp train --resume {shlex.quote(str(run_dir))}")
    verdict = analysed or verdict
    if not verdict.mid_change:
        return None
    return f"change     {verdict.describe()}; continue it with: {continue_command(run_dir, config)}"
