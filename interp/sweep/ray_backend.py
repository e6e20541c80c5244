"""Ray backend: each run a Ray task with its own CPU/GPU request, on any node of a cluster.

Every node must have ``interp`` installed and see the sweep's output folder at the same path
(a shared filesystem), because a task writes its run directory there directly. With
``address=None`` a local Ray instance is started; ``"auto"`` joins the cluster this machine
belongs to; ``"HOST:PORT"`` a cluster's head; ``"ray://host:10001"`` connects through Ray Client.

Token authentication: ``ray start --head`` turns it on whenever a token is available (Ray 2.59
and later; from 2.61 always), but a driver given an explicit address sends its token only when
``RAY_AUTH_MODE=token`` is set, so ``interp sweep --address HEAD:PORT`` was refused. With
``--address`` and no ``RAY_AUTH_MODE`` of the user's, the driver turns token mode on when it
has a token (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``, Ray's own
order); a cluster without authentication accepts such a driver too.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from interp.errors import InterpError

AUTH_MODE = "RAY_AUTH_MODE"


def _task(config: dict[str, Any], run_dir: str, analyze: bool, ablation: bool,
          threads: int) -> dict[str, Any]:
    from interp.sweep.worker import run_one

    return run_one(config, run_dir, analyze, ablation, threads=threads)


def _runtime_env() -> dict[str, Any]:
    """Pass an explicitly set token cache folder on to the tasks (else each node uses its own)."""
    cache = os.environ.get("INTERP_CACHE")
    return {"env_vars": {"INTERP_CACHE": cache}} if cache else {}


def token_source() -> str | None:
    """Where this machine's Ray token is, in Ray's own order of precedence, or None."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return os.environ["RAY_AUTH_TOKEN_PATH"]
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


@contextlib.contextmanager
def token_auth(address: str | None) -> Iterator[None]:
    """Token mode for a driver joining the cluster at ``address``, when the user left
    ``RAY_AUTH_MODE`` unset and a token is here; the environment is restored afterwards, so a
    later local ``ray.init()`` in the same process is as Ray would make it."""
    if address is None or AUTH_MODE in os.environ or token_source() is None:
        yield
        return
    os.environ[AUTH_MODE] = "token"
    _reload_ray_config()
    try:
        yield
    finally:
        os.environ.pop(AUTH_MODE, None)
        _reload_ray_config()


def _reload_ray_config() -> None:
    """Ray reads RAY_AUTH_MODE into its config once; read it again (what Ray itself does when
    it turns token mode on for ``address="auto"``)."""
    try:
        from ray._raylet import Config
    except ImportError:
        return
    Config.initialize("")


def _connect_error(address: str | None, err: BaseException) -> InterpError:
    """Why ``ray.init`` failed, in one line; for a refused token, where the token is looked for."""
    reason = " ".join(str(err).split())[:300]
    auth = ""
    if any("authenticat" in str(e).lower() for e in _causes(err)):  # Ray chains the reason below
        found = token_source()
        auth = (f"; the cluster wants its token here: in ~/.ray/auth_token or RAY_AUTH_TOKEN "
                f"({'found ' + found if found else 'none found'}; {AUTH_MODE}={os.environ.get(AUTH_MODE, 'unset')})")
    return InterpError(f"could not reach a Ray cluster at {address!r}: {reason}{auth}; start one with "
                       f"'ray start --head' or leave out --address for a local one")


def _causes(err: BaseException | None) -> Iterator[BaseException]:
    """``err`` and the exceptions it was raised from, innermost last."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def run_ray(runs: list[dict[str, Any]], root: str, analyze: bool, ablation: bool,
            address: str | None, cpus: float, gpus: float,
            on_event: Callable[[str, str, dict[str, Any]], None]) -> None:
    """Submit one task per run and report each as it finishes (same events as run_local)."""
    try:
        import ray
    except ImportError:
        raise InterpError("the ray backend needs Ray; install it with "
                          "'pip install -e .[ray]' (or 'pip install ray')") from None
    with token_auth(address):
        started_here = not ray.is_initialized()
        if started_here:
            try:
                # "local": a new instance, never the last cluster 'ray start' left a note of in
                # /tmp/ray (Ray's default for None), which hung for minutes once that had stopped.
                ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                         configure_logging=False, runtime_env=_runtime_env())
            except (ConnectionError, ValueError, RuntimeError, ray.exceptions.RayError) as err:
                raise _connect_error(address, err) from None
        try:
            _submit_and_wait(ray, runs, root, analyze, ablation, cpus, gpus, on_event)
        finally:
            if started_here:
                ray.shutdown()


def _submit_and_wait(ray, runs: list[dict[str, Any]], root: str, analyze: bool, ablation: bool,
                     cpus: float, gpus: float, on_event: Callable[[str, str, dict[str, Any]], None]) -> None:
    """One task per run; ``on_event`` as each starts and as each finishes, in finishing order."""
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_task)
    pending = {}
    for run in runs:
        ref = remote.remote(run["config"], f"{root}/{run['name']}", analyze, ablation, max(1, int(cpus)))
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
