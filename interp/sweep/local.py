"""Local backend: each run in its own process, ``jobs`` at once, each pinned to its cores.

The cores this process may use are split into ``jobs`` contiguous shares; a worker process
is pinned to its share (``sched_setaffinity``) and told to use that many torch threads, so
two runs on a 2-core machine use one core each instead of fighting over both. Each worker
writes its output to ``<sweep>/logs/<run>.log``; the last line of a successful worker is
``RESULT {json}``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable


def core_shares(jobs: int) -> list[list[int]]:
    """Split the usable cores into ``jobs`` contiguous shares (cores repeat if jobs > cores)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        list(range(os.cpu_count() or 1))
    if jobs >= len(cores):
        return [[cores[i % len(cores)]] for i in range(jobs)]
    size = len(cores) // jobs
    return [cores[i * size:(i + 1) * size] for i in range(jobs)]


def run_local(plan_path: Path, names: list[str], jobs: int,
              on_event: Callable[[str, str, dict[str, Any]], None]) -> None:
    """Run the named runs of the plan in worker processes; ``on_event(kind, name, info)`` is
    called with kind ``start`` (info: cores) and ``done`` / ``error`` (info: result / message)."""
    shares = core_shares(max(1, jobs))
    logs = plan_path.parent / "logs"
    logs.mkdir(exist_ok=True)
    queue, running = list(names), {}  # slot -> (process, name, log path)
    try:
        while queue or running:
            for slot in range(len(shares)):
                if slot not in running and queue:
                    name = queue.pop(0)
                    running[slot] = _start(plan_path, name, shares[slot], logs / f"{name}.log")
                    on_event("start", name, {"cores": shares[slot]})
            for slot, (proc, name, log) in list(running.items()):
                if proc.poll() is not None:
                    del running[slot]
                    kind, info = _outcome(proc.returncode, log)
                    on_event(kind, name, info)
            time.sleep(0.2)
    except KeyboardInterrupt:
        for proc, _, _ in running.values():
            proc.send_signal(signal.SIGINT)  # the trainer marks its run "interrupted"
        for proc, _, _ in running.values():
            proc.wait()
        raise


def _start(plan_path: Path, name: str, cores: list[int], log: Path):
    env = dict(os.environ, INTERP_THREADS=str(len(cores)), OMP_NUM_THREADS=str(len(cores)))
    pin = (lambda: os.sched_setaffinity(0, cores)) if hasattr(os, "sched_setaffinity") else None
    handle = log.open("a")
    handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} cores {cores}\n")
    handle.flush()
    proc = subprocess.Popen([sys.executable, "-m", "interp.sweep.worker", str(plan_path), name],
                            stdout=handle, stderr=subprocess.STDOUT, env=env, preexec_fn=pin)
    handle.close()
    return proc, name, log


def _outcome(returncode: int, log: Path) -> tuple[str, dict[str, Any]]:
    lines = log.read_text(errors="replace").splitlines()
    for line in reversed(lines):
        if line.startswith("RESULT "):
            return "done", json.loads(line[len("RESULT "):])
    errors = [line for line in lines if line.startswith("interp: error:")]
    message = errors[-1] if errors else (lines[-1] if lines else "no output")
    return "error", {"message": f"exit {returncode}: {message} (log: {log})"}
