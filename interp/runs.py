"""The run directory's files that need no torch: config, run info, status, checkpoint list.

Split from :mod:`interp.checkpoints` so that what only reads a run (the workbench's runs
table and curves, ``interp runs``, the sweep planner) starts without importing torch or
TransformerLens. :mod:`interp.checkpoints` re-exports everything here.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp import runlock
from interp.config import RunConfig
from interp.errors import CheckpointError, InterpError
from interp.fileio import fsync_path, inside_run

CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


@dataclass(frozen=True)
class Checkpoint:
    """One complete checkpoint directory."""

    path: Path
    step: int


def list_checkpoints(run_dir: Path) -> list[Checkpoint]:
    """Complete checkpoints (those with a manifest), sorted by step."""
    found = []
    for child in Path(run_dir).iterdir() if Path(run_dir).is_dir() else []:
        match = CHECKPOINT_PATTERN.match(child.name)
        if match and (child / "manifest.json").is_file():
            found.append(Checkpoint(child, int(match.group(1))))
    return sorted(found, key=lambda c: c.step)


def read_config(run_dir: Path) -> RunConfig:
    """The run's config, with a one-line error for a missing or foreign directory."""
    path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run directory '{run_dir}' does not exist; "
                              f"list runs with 'interp runs' or pass a path under checkpoints/")
    if not inside_run(run_dir, path).is_file():
        raise CheckpointError(f"'{run_dir}' has no config.json, so it is not an interp run directory")
    try:
        return RunConfig.from_json(path.read_text())
    except (OSError, ValueError, InterpError) as err:  # unreadable, not UTF-8, not JSON, invalid
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
        raise CheckpointError(f"{path} cannot be read ({reason}); the run directory is damaged") from None


def write_json_atomic(path: Path, payload: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:  # a full disk leaves the old file and no temporary
        tmp.unlink(missing_ok=True)


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """run.json as a dict ({} when there is none); a damaged one is a CheckpointError."""
    path = inside_run(run_dir, Path(run_dir) / "run.json")
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} cannot be read ({type(err).__name__}); the run's status is "
                              f"unknown, its checkpoints are unaffected") from None
    if not isinstance(info, dict):
        raise CheckpointError(f"{path} is not a JSON object; the run's status is unknown, its "
                              f"checkpoints are unaffected")
    return info


def update_run_info(run_dir: Path, **fields: Any) -> None:
    """Merge ``fields`` into run.json. A damaged run.json is moved aside (``run.json.damaged-<time>``,
    never deleted) and a new one started, so a damaged status file never stops a run."""
    try:
        info = read_run_info(run_dir)
    except CheckpointError:
        path = Path(run_dir) / "run.json"
        os.replace(path, path.with_name(f"run.json.damaged-{time.strftime('%Y%m%d-%H%M%S')}"))
        info = {}
    info.update(fields, updated=time.time())
    write_json_atomic(Path(run_dir) / "run.json", info)


def run_status(run_dir: Path) -> str:
    """``training`` (its trainer is alive), ``finished``, ``failed``, ``diverged``,
    ``interrupted``, or ``damaged`` (run.json unreadable).

    Whether a run marked ``training`` is alive comes from its training lock
    (:mod:`interp.runlock`) where it has one: held means alive, even on another host sharing
    the folder over NFSv4. Runs made before the lock existed fall back to the pid in run.json
    (on this host only).
    """
    try:
        info = read_run_info(run_dir)
    except CheckpointError:
        return "damaged"
    status = info.get("status", "unknown")
    if status != "training":
        return status
    if runlock.lock_path(run_dir, "train").exists():
        return "training" if runlock.holder(run_dir, "train") else "interrupted"
    if info.get("host") == socket.gethostname() and not _pid_alive(info.get("pid", -1)):
        return "interrupted"
    return status


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


fsync_file = fsync_path  # the name callers use for a file
