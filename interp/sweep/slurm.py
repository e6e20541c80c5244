"""SLURM backend through submitit: each run one SLURM job, submitted and watched from Python.

``interp sweep FILE --backend slurm`` submits one job per run (``sbatch`` through submitit),
at most ``--jobs`` at a time if given, and reports each as it ends, like the other backends.
A job calls :func:`interp.sweep.worker.run_planned` with the sweep plan's path and the run's
name, so it needs ``interp`` at the same Python path on every node (submitit starts the
driver's ``sys.executable``) and the sweep folder on a filesystem every node sees.

``cluster="local"`` sends the same jobs to submitit's LocalExecutor, as processes on this
machine: a SLURM sweep can be tried, and is tested, without SLURM.

submitit moves the call and its result through pickle files in ``<sweep>/logs/submitit``; they
are written and read only by this sweep's own processes (the job gets two strings and returns a
JSON-able dict). The run itself is stored as everywhere else: safetensors, JSON, HDF5.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from interp.errors import ConfigError, InterpError

POLL_S = 1.0  # how often job states are asked for (submitit rate-limits its sacct calls)


@dataclass(frozen=True)
class SlurmOptions:
    """Where and how the jobs run: ``cluster`` "slurm" (or "local": submitit's LocalExecutor),
    a partition, each job's time limit in minutes, and further ``#SBATCH`` options
    (``{"mem": "32G", "account": "lab"}``)."""

    cluster: str = "slurm"
    partition: str | None = None
    time_min: int = 24 * 60
    options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.cluster not in ("slurm", "local"):
            raise ConfigError(f"unknown submitit cluster '{self.cluster}'; choose slurm or local")
        if not 1 <= self.time_min <= 525_600:
            raise ConfigError(f"--slurm-time must be between 1 and 525600 minutes, not {self.time_min}")


def check_ready(gpus: float, cluster: str = "slurm") -> None:
    """Refuse, before the sweep writes anything, when submitit is not installed, SLURM's
    ``sbatch`` is not here, or the GPU request is not whole GPUs (SLURM allocates devices)."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("submitit") is None:
        raise InterpError("the slurm backend needs submitit; install it with "
                          "'pip install -e .[slurm]' (or 'pip install submitit')")
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise InterpError("the slurm backend submits with sbatch, which is not on this machine's PATH; "
                          "run it on a SLURM login node, or try the jobs here with --slurm-cluster local")
    if gpus != int(gpus):
        raise ConfigError(f"--gpus-per-run must be a whole number of GPUs for slurm, not {gpus}")


def parse_options(pairs: list[str]) -> dict[str, str]:
    """``["mem=32G", "account=lab"]`` -> ``{"mem": "32G", "account": "lab"}``; a pair without
    ``=`` or with an empty key is a ConfigError."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--slurm-option '{pair}' must be KEY=VALUE, such as mem=32G")
        options[key.strip()] = value
    return options


def _job(plan_path: str, name: str, threads: int) -> dict[str, Any]:
    """What each job runs: the run, with a refusal returned as ``{"error": ...}`` (one line)
    rather than raised, so the driver reports it as the local backend does."""
    from interp.sweep.worker import run_planned

    try:
        return run_planned(plan_path, name, threads)
    except InterpError as err:
        return {"error": f"interp: error: {err}"}


def _executor(folder: Path, options: SlurmOptions, cpus: float, gpus: float, name: str):
    """submitit's AutoExecutor for ``options.cluster``, one task on one node per job."""
    check_ready(gpus, options.cluster)
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster=options.cluster)
    params: dict[str, Any] = {"name": name, "timeout_min": options.time_min, "nodes": 1,
                              "tasks_per_node": 1, "cpus_per_task": max(1, int(cpus)),
                              "gpus_per_node": int(gpus)}
    if options.cluster == "slurm":
        params["slurm_partition"] = options.partition
        params["slurm_additional_parameters"] = dict(options.options)
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def run_slurm(plan_path: Path, names: list[str], jobs: int | None, cpus: float, gpus: float,
              options: SlurmOptions, on_event: Callable[[str, str, dict[str, Any]], None]) -> None:
    """Submit one job per named run, at most ``jobs`` in flight (None: all), and report each
    as it ends: ``on_event`` kind ``start`` (info: cpus, gpus, job id), ``done`` or ``error``."""
    folder = plan_path.parent / "logs" / "submitit"
    executor = _executor(folder, options, cpus, gpus, f"interp-{plan_path.parent.name}")
    queue, running = list(names), {}
    threads = max(1, int(cpus))
    try:
        while queue or running:
            while queue and (jobs is None or len(running) < jobs):
                name = queue.pop(0)
                job = _submit(executor, plan_path, name, threads, running)
                running[job] = name
                on_event("start", name, {"cpus": cpus, "gpus": gpus, "job": job.job_id})
            for job in [j for j in running if j.done()]:
                name = running.pop(job)
                kind, info = _outcome(job)
                on_event(kind, name, info)
            time.sleep(POLL_S if running else 0)
    except KeyboardInterrupt:
        for job in running:
            job.cancel(check=False)  # local: SIGINT, so the trainer marks its run "interrupted"
        raise


def _submit(executor, plan_path: Path, name: str, threads: int, running: dict):
    """One job for ``name``; a refused submission (sbatch's own message, such as an unknown
    partition) cancels the jobs already in flight and is one line."""
    try:
        return executor.submit(_job, str(plan_path), name, threads)
    except Exception as err:  # submitit's FailedSubmissionError, or sbatch failing to start
        for job in running:
            job.cancel(check=False)
        lines = [line for line in str(err).splitlines() if line.strip()]
        raise InterpError(f"could not submit the job for {name}: {lines[-1] if lines else type(err).__name__}; "
                          f"check --slurm-partition and --slurm-option") from None


def _outcome(job) -> tuple[str, dict[str, Any]]:
    """``("done", result)`` or ``("error", {"message"})`` for a finished job, in one line."""
    log = job.paths.stdout
    try:
        result = job.result()
    except Exception as err:  # submitit's FailedJobError / UncompletedJobError carry the job's traceback
        lines = [line for line in str(err).splitlines() if line.strip()]
        return "error", {"message": f"job {job.job_id}: {lines[-1] if lines else type(err).__name__} (log: {log})"}
    if "error" in result:
        return "error", {"message": f"{result['error']} (log: {log})"}
    return "done", result
