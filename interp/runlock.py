"""One writer per run at a time, enforced with OS file locks in the run folder.

Policy:

- **Training** (a new run or ``--resume``) holds ``.train.lock`` for as long as its process
  trains. A second trainer of the same run (``interp train --resume`` while the first is
  alive, even stopped with SIGSTOP; two ``interp train --name X`` at once) is refused with one
  line naming the holder's pid and host.
- **Analysis** (``interp analyze``, ``--redo``, a sweep's analysis, ``train.analyze``) holds
  ``.analyze.lock``. A second ``interp analyze`` of the same run is refused with one line. The
  analysis that a trainer or a sweep worker runs itself *waits* for the lock instead, so a
  user's ``interp analyze`` never makes a training run or a sweep fail.
- Training and analysis may run at the same time (analysis is incremental and follows
  training): they write different groups of ``metrics.h5``, and every update of that file is
  serialised by ``.metrics.lock`` (:mod:`interp.store`), which also drops a row whose step is
  already stored, so no interleaving can write a duplicate row.

The lock file exists only while a process holds it, and names that process; a file left by a
process that was killed is harmless (nobody holds its lock).

Why ``flock`` and not the pid in run.json: the kernel releases the lock when its holder dies
(``kill -9`` included), so a crashed trainer never blocks a resume, while a live one (running
or stopped) always holds it; a pid can be reused, and says nothing about another host. The
lock file holds the holder's pid and host only to name them in the refusal. ``flock`` is
arbitrated by the kernel between processes of one host; on NFSv4 Linux maps it to a
byte-range lock that the server arbitrates, so hosts sharing a run folder there exclude each
other too (older NFS and some network filesystems do not: do not run two hosts on one run).

A lock is re-entrant within one process (the analysis a trainer runs after each checkpoint,
``interp analyze --redo`` which drops and then analyses): flock locks belong to an open file,
so a second ``open`` + ``flock`` in the same process would block on itself.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from interp.errors import InterpError
from interp.fileio import open_lock_file

ROLES = {"train": ".train.lock", "analyze": ".analyze.lock"}
PROBE_RETRIES = 5  # x 50 ms: longer than any probe holds its shared lock
_HELD: dict[tuple[str, str], int] = {}  # (run folder, role) -> depth, for re-entrancy


class RunBusy(InterpError):
    """Another live process holds the run for the same kind of writing."""


def lock_path(run_dir: Path, role: str) -> Path:
    return Path(run_dir) / ROLES[role]


@contextmanager
def hold(run_dir: str | Path, role: str, wait: bool = False) -> Iterator[None]:
    """Hold ``role``'s lock of ``run_dir`` (which must exist) for the duration of the block.

    ``wait=False`` raises :class:`RunBusy` at once when another process holds it; ``wait=True``
    blocks until it is free (for the analysis a trainer runs: see the module's policy).
    """
    key = (str(Path(run_dir).resolve()), role)
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    path = lock_path(run_dir, role)
    handle = _open_locked(path, role, wait)
    _HELD[key] = 1
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {socket.gethostname()}\n")
        handle.flush()
        yield
    finally:
        del _HELD[key]
        if _same_file(path, handle):  # never another holder's newer file
            path.unlink()  # while still held: see _open_locked
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _same_file(path: Path, handle) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def _open_locked(path: Path, role: str, wait: bool):
    """Open and lock ``path``. A holder removes the file before it unlocks (so a run folder
    keeps no lock file when nobody writes it), so a lock won on a file that was removed
    meanwhile is worthless: then try again on the file now at ``path``."""
    while True:
        handle = open_lock_file(path)  # never a link: a link to config.json would be emptied
        try:
            _acquire(handle, path, role, wait)
            same = _same_file(path, handle)
        except BaseException:
            handle.close()
            raise
        if same:
            return handle
        handle.close()


def _acquire(handle, path: Path, role: str, wait: bool) -> None:
    """Take the lock; without ``wait``, retry for a moment first: :func:`holder` probes with a
    brief shared lock, which must not make a start fail as if a writer were alive."""
    if wait:
        fcntl.flock(handle, fcntl.LOCK_EX)
        return
    for attempt in range(PROBE_RETRIES):
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            time.sleep(0.05)
    raise RunBusy(_busy_message(path.parent, role))


def _busy_message(run_dir: Path, role: str) -> str:
    pid, host = holder(run_dir, role) or ("?", "?")
    if role == "train":
        return (f"'{run_dir}' is being trained by pid {pid} on host {host} (alive, perhaps stopped); "
                f"let it finish or stop it (kill {pid}), then resume")
    return (f"'{run_dir}' is being analysed by pid {pid} on host {host}; wait for it to finish, "
            f"then run 'interp analyze' again for anything newer")


def holder(run_dir: str | Path, role: str) -> tuple[str, str] | None:
    """(pid, host) of the live process holding ``role``'s lock, or None if nobody holds it
    (or the run folder has no such lock file: a run made before these locks existed).

    Probes with a non-blocking shared lock on a read-only handle, so it works on a run folder
    the caller may not write to, and never waits.
    """
    path = lock_path(run_dir, role)
    try:
        handle = open_lock_file(path, "r")
    except (OSError, InterpError):  # none, unreadable, or a link (whose target is not read)
        return None
    with handle:
        key = (str(Path(run_dir).resolve()), role)
        if not _HELD.get(key):
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                pass  # held by another process: read who
            else:
                fcntl.flock(handle, fcntl.LOCK_UN)
                return None
        pid, _, host = handle.read().strip().partition(" ")
        return (pid or "?", host or "?")
