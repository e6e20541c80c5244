"""Ray backend: each run a Ray task with its own CPU/GPU request, on any node of a cluster.

Every node must have ``interp`` installed and see the sweep's output folder at the same path
(a shared filesystem), because a task writes its run directory there directly. With
``address=None`` a local Ray instance is started (what the tests use); ``"auto"`` joins the
cluster this machine belongs to; ``"ray://host:10001"`` connects through Ray Client.
"""

from __future__ import annotations

from typing import Any, Callable

from interp.errors import InterpError


def _task(config: dict[str, Any], run_dir: str, analyze: bool, ablation: bool,
          threads: int) -> dict[str, Any]:
    from interp.sweep.worker import run_one

    return run_one(config, run_dir, analyze, ablation, threads=threads)


def _runtime_env() -> dict[str, Any]:
    """Pass an explicitly set token cache folder on to the tasks (else each node uses its own)."""
    import os

    cache = os.environ.get("INTERP_CACHE")
    return {"env_vars": {"INTERP_CACHE": cache}} if cache else {}


def run_ray(runs: list[dict[str, Any]], root: str, analyze: bool, ablation: bool,
            address: str | None, cpus: float, gpus: float,
            on_event: Callable[[str, str, dict[str, Any]], None]) -> None:
    """Submit one task per run and report each as it finishes (same events as run_local)."""
    try:
        import ray
    except ImportError:
        raise InterpError("the ray backend needs Ray; install it with "
                          "'pip install -e .[ray]' (or 'pip install ray')") from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, runtime_env=_runtime_env())
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise InterpError(f"could not reach a Ray cluster at {address!r}: {err}; start one with "
                              f"'ray start --head' or leave out --address for a local one") from None
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_task)
    try:
        pending = {}
        for run in runs:
            ref = remote.remote(run["config"], f"{root}/{run['name']}", analyze, ablation,
                                max(1, int(cpus)))
            pending[ref] = run["name"]
            on_event("start", run["name"], {"cpus": cpus, "gpus": gpus})
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            name = pending.pop(done[0])
            try:
                on_event("done", name, ray.get(done[0]))
            except ray.exceptions.RayTaskError as err:
                cause = getattr(err, "cause", None) or err
                on_event("error", name, {"message": str(cause).strip().splitlines()[-1]})
    finally:
        if started_here:
            ray.shutdown()
