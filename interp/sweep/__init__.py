"""Sweeps: every run of a grid of configs and seeds, trained, resumed or skipped, then analysed.

``run_sweep(load_sweep("sweep.yaml"), root)`` writes the plan to ``<root>/<name>/sweep.json``,
checks every existing run directory against its config before anything starts, runs what is
left on the chosen backend (local processes, Ray tasks, or SLURM jobs through submitit), prints
one line per event with overall progress, and writes ``sweep_results.json`` next to the plan.
Run directories are ``<root>/<name>/<run name>``; see :mod:`interp.sweep.spec` for the file format.

Where the sweep has 3 or more seeds of one config, it ends with an across-seed table
(:mod:`interp.seeds`: mean, 90% t interval of the mean and range of the seeds for the window,
the share inside it and the formation lag), also stored in ``sweep_results.json``
(``{"runs": [...], "across_seeds": [...]}``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from interp.checkpoints import write_json_atomic
from interp.errors import ConfigError
from interp.sweep.spec import Sweep, SweepRun, load_sweep, run_name

__all__ = ["BACKENDS", "Sweep", "SweepRun", "load_sweep", "run_name", "run_sweep", "seed_summary", "sweep_dirs"]

BACKENDS = ("local", "ray", "slurm")


def sweep_dirs(sweep: Sweep, root: str | Path) -> dict[str, Path]:
    """Run name -> run directory, for scripts that read a sweep's results."""
    return {run.name: Path(root) / sweep.name / run.name for run in sweep.runs}


def run_sweep(sweep: Sweep, root: str | Path = "checkpoints", backend: str = "local",
              jobs: int | None = 1, address: str | None = None, cpus_per_run: float = 1,
              gpus_per_run: float = 0, say: Callable[[str], None] = print,
              slurm: Any = None) -> list[dict[str, Any]]:
    """Run every run of ``sweep`` under ``root/<sweep name>``; returns one result per run.

    Each result is ``{"run", "action", "status", "seconds", "phase"}`` or, for a run that
    failed, ``{"run", "error"}``. Failures do not stop the other runs. ``jobs`` is how many
    runs at once (local: default 1; slurm: None for no limit); ``slurm`` an
    :class:`interp.sweep.slurm.SlurmOptions` (default: submit to SLURM).
    """
    from interp.sweep.worker import plan_action, run_result

    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend '{backend}'; choose {', '.join(BACKENDS)}")
    if backend == "slurm":
        from interp.sweep.slurm import SlurmOptions, check_ready

        check_ready(gpus_per_run, (slurm or SlurmOptions()).cluster)  # before anything is written
    directory = Path(root).resolve() / sweep.name
    directory.mkdir(parents=True, exist_ok=True)
    plan = _write_plan(sweep, directory)
    actions = {run.name: plan_action(directory / run.name, run.config) for run in sweep.runs}
    complete = [n for n, a in actions.items() if a == "skipped" and _complete(directory / n, sweep)]
    todo = [n for n, a in actions.items() if a != "busy" and n not in complete]
    counts = {a: sum(v == a for v in actions.values()) for a in ("skipped", "resumed", "trained", "busy")}
    say(f"sweep {sweep.name}: {len(sweep.runs)} runs in {directory} ({counts['skipped']} finished, "
        f"{counts['resumed']} to resume, {counts['trained']} new, {counts['busy']} busy elsewhere); "
        f"backend {backend}")
    progress = _Progress(len(todo) + len(complete), say)
    for name in complete:  # nothing left to do: no worker process needed
        progress.event("done", name, run_result(directory / name, "skipped", time.time()))
    if backend == "local":
        from interp.sweep.local import run_local

        run_local(plan, todo, jobs or 1, progress.event)
    elif backend == "slurm":
        from interp.sweep.slurm import SlurmOptions, run_slurm

        run_slurm(plan, todo, jobs, cpus_per_run, gpus_per_run, slurm or SlurmOptions(), progress.event)
    else:
        from interp.sweep.ray_backend import run_ray

        runs = [r for r in json.loads(plan.read_text())["runs"] if r["name"] in todo]
        run_ray(runs, str(directory), sweep.analyze, sweep.ablation, address, cpus_per_run,
                gpus_per_run, progress.event)
    groups = seed_summary(sweep, directory)
    write_json_atomic(directory / "sweep_results.json",
                      {"runs": progress.results, "across_seeds": [g.to_dict() for g in groups]})
    failed = [r for r in progress.results if "error" in r]
    say(f"sweep {sweep.name}: {len(progress.results) - len(failed)} done, {len(failed)} failed, "
        f"{progress.elapsed():.0f} s")
    if groups:
        from interp.seeds import text_table

        for line in text_table(groups):
            say(line)
        if not sweep.analyze and not all(g.has_interval for g in groups):
            say("this sweep does not analyse its runs: 'interp analyze RUN --no-ablation' on each finished "
                "run, then the same 'interp sweep' command again, gives the intervals")
    return progress.results


def seed_summary(sweep: Sweep, directory: Path) -> list:
    """The sweep's configs with 3 or more seeds (:class:`interp.seeds.SeedGroup`, estimates from
    the runs that finished and were analysed); [] when no config has that many."""
    from interp.seeds import MIN_SEEDS, seed_groups

    return [g for g in seed_groups(directory / run.name for run in sweep.runs) if len(g.runs) >= MIN_SEEDS]


def _complete(run_dir: Path, sweep: Sweep) -> bool:
    """Finished, and analysed at every checkpoint if the sweep analyses."""
    from interp.analysis import analyzed_steps
    from interp.checkpoints import list_checkpoints

    if not sweep.analyze:
        return True
    return {c.step for c in list_checkpoints(run_dir)} <= analyzed_steps(run_dir)


def _write_plan(sweep: Sweep, directory: Path) -> Path:
    plan = directory / "sweep.json"
    write_json_atomic(plan, {
        "name": sweep.name, "file": str(sweep.source.resolve()), "root": str(directory),
        "preset": sweep.preset, "grid": sweep.grid, "seeds": sweep.seeds,
        "analyze": sweep.analyze, "ablation": sweep.ablation,
        "runs": [{"name": run.name, "config": run.config.to_dict()} for run in sweep.runs],
    })
    return plan


class _Progress:
    """Prints ``[done/total]`` lines as runs start and finish; keeps every result."""

    def __init__(self, total: int, say: Callable[[str], None]):
        self.total, self.say, self.results = total, say, []
        self.started = time.time()

    def elapsed(self) -> float:
        return time.time() - self.started

    def event(self, kind: str, name: str, info: dict[str, Any]) -> None:
        if kind == "start":
            where = f"cores {info['cores']}" if "cores" in info else f"{info['cpus']} cpu, {info['gpus']} gpu"
            where += f", job {info['job']}" if "job" in info else ""
            self.say(f"[{len(self.results)}/{self.total}] start  {name} ({where})")
            return
        self.results.append({"run": name, **info} if kind == "done" else {"run": name, "error": info["message"]})
        head = f"[{len(self.results)}/{self.total}] {'done ' if kind == 'done' else 'FAIL '} {name}"
        self.say(f"{head}: {_describe(info) if kind == 'done' else info['message']} "
                 f"({self.elapsed():.0f} s elapsed)")


def _describe(result: dict[str, Any]) -> str:
    phase = result.get("phase", {})
    if phase.get("has_window"):
        window = (f"window {phase['window_start_tokens'] / 1e6:.2f}M-"
                  f"{phase['window_end_tokens'] / 1e6:.2f}M tokens")
    else:
        window = "no phase change found" if phase else "not analysed"
    heads = phase.get("induction_heads", "")
    return f"{result['action']} in {result['seconds']:.0f} s, {window}" + (f", induction heads {heads}" if heads else "")
