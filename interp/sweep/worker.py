"""One run of a sweep, the same on every backend: train (or resume, or skip), then analyse.

``run_one`` is what a local worker process and a Ray task both call. It decides from the run
directory alone what is left to do, so a sweep started again after any interruption does
only the remaining work:

- no directory, or one without a complete checkpoint: train from scratch (a directory that
  holds files but no checkpoint is moved aside to ``NAME.stale-<time>``, never deleted);
- ``finished``: skip training;
- ``interrupted`` / ``failed`` (or ``training`` whose process is gone): resume from the last
  good checkpoint;
- ``training`` by a live process: left alone, reported as busy.

A directory holding a run with a different config is refused, never overwritten.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from interp.config import RunConfig
from interp.errors import CheckpointError

# A run marked "training" on another host whose run.json has not changed for this long is
# taken as interrupted (its host cannot be asked whether the process is alive).
STALE_AFTER_S = 15 * 60


def run_one(config: dict[str, Any], run_dir: str, analyze: bool = True, ablation: bool = True,
            threads: int = 0) -> dict[str, Any]:
    """Bring one sweep run to finished (and analysed); returns what was done and the outcome.

    Returns ``{"run", "action", "status", "seconds", "phase"}`` where action is one of
    ``trained``, ``resumed``, ``analysed`` (trained before, analysed now), ``skipped``, ``busy``.
    """
    import torch

    from interp import checkpoints
    from interp.train import train

    if threads:
        torch.set_num_threads(threads)
    started, path = time.time(), Path(run_dir)
    wanted = RunConfig.from_dict(config)
    action = plan_action(path, wanted)
    if action == "busy":
        return run_result(path, action, started)
    # train.analyze in the sweep's config: analyse each checkpoint as it lands (the saved
    # config of a resumed run equals ``wanted``: plan_action checked it).
    on_checkpoint = _analyse_each_checkpoint if wanted.train.analyze else None
    if action == "trained":
        _move_aside_if_empty(path)
        train(wanted, path, progress=False, on_checkpoint=on_checkpoint)
    elif action == "resumed":
        train(None, path, resume=True, progress=False, on_checkpoint=on_checkpoint)
    if analyze and checkpoints.run_status(path) == "finished":
        from interp.analysis import AnalysisConfig, analyze_run

        done = analyze_run(path, AnalysisConfig(ablate=ablation), progress=False, wait=True)
        if action == "skipped" and done["analyzed"]:
            action = "analysed"  # trained before, analysed now
    return run_result(path, action, started)


def _analyse_each_checkpoint(run_dir: Path, step: int) -> None:
    """``train(on_checkpoint=...)`` for a run with ``train.analyze``: analyse the checkpoint just
    written (incremental: only what is new), with the default AnalysisConfig as ``interp train``."""
    from interp.analysis import analyze_run

    analyze_run(run_dir, progress=False, wait=True)


def plan_action(path: Path, wanted: RunConfig) -> str:
    from interp import checkpoints

    if not path.exists() or checkpoints.last_good_checkpoint(path) is None:
        return "trained"
    _check_same_config(path, wanted)
    status = checkpoints.run_status(path)
    if status == "finished":
        return "skipped"
    if status == "training" and not _stale(path):
        return "busy"
    return "resumed"


def _stale(path: Path) -> bool:
    """Whether a run marked "training" has lost its trainer: never on this host (run_status has
    already found its pid alive), and elsewhere once run.json is older than STALE_AFTER_S."""
    import socket

    from interp import checkpoints

    info = checkpoints.read_run_info(path)
    if info.get("host") == socket.gethostname():
        return False  # run_status already checked the pid: it is alive
    return time.time() - (path / "run.json").stat().st_mtime > STALE_AFTER_S


def _check_same_config(path: Path, wanted: RunConfig) -> None:
    from interp import checkpoints

    saved = checkpoints.read_config(path).to_dict()
    want = wanted.to_dict()
    if want["model"]["d_vocab"] == 0:  # resolved from the data when the run was made
        want["model"]["d_vocab"] = saved["model"]["d_vocab"]
    diff = [f"{section}.{k}: {saved[section].get(k)!r} there, {v!r} in the sweep"
            for section in ("model", "data", "train") for k, v in want[section].items()
            if saved[section].get(k) != v]
    if diff:
        raise CheckpointError(f"'{path}' holds a run with another config ({'; '.join(diff[:3])}); "
                              f"move it away or give the sweep another name")


def _move_aside_if_empty(path: Path) -> None:
    if path.exists() and any(path.iterdir()):
        path.rename(path.with_name(f"{path.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}"))


def run_result(path: Path, action: str, started: float) -> dict[str, Any]:
    import numpy as np

    from interp import checkpoints, store

    phase: dict[str, Any] = {}
    if (path / "metrics.h5").exists():
        for key, value in store.attrs(path, "phase").items():
            value = value.item() if isinstance(value, np.generic) else value
            if isinstance(value, str) or (isinstance(value, (int, float)) and value == value):
                phase[key] = value  # NaN (not measured) is left out
    return {"run": path.name, "action": action, "status": checkpoints.run_status(path),
            "seconds": round(time.time() - started, 1), "phase": phase}


def run_planned(plan_path: str | Path, name: str, threads: int = 0) -> dict[str, Any]:
    """:func:`run_one` for the run ``name`` of the sweep plan (``sweep.json``) at ``plan_path``:
    what a worker process and a submitit job get, so that only two strings cross to them."""
    import json

    plan = json.loads(Path(plan_path).read_text())
    run = next(r for r in plan["runs"] if r["name"] == name)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "any"
    print(f"worker {os.getpid()}: {name} on cores {cores} with {threads or 'default'} torch thread(s)",
          flush=True)
    return run_one(run["config"], str(Path(plan["root"]) / name), plan["analyze"], plan["ablation"],
                   threads=threads)


def main(argv: list[str] | None = None) -> int:
    """``python -m interp.sweep.worker SWEEP_JSON RUN_NAME``: the local backend's worker process."""
    import json
    import sys

    from interp.errors import InterpError

    args = sys.argv[1:] if argv is None else argv
    try:
        result = run_planned(args[0], args[1], int(os.environ.get("INTERP_THREADS", "0")))
    except InterpError as err:
        print(f"interp: error: {err}", file=sys.stderr)
        return 2
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
