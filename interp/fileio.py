"""Small file helpers shared by the run folder's readers and writers: fsync, content hashes,
and the refusal of links out of a run folder.

On the lowest floor of the package (imports only :mod:`interp.errors`), so the store, its
journal, the checkpoints, the locks and a run's data folder all use one copy.

**Links in a run folder** (the untrusted-run policy of :mod:`interp.rundata`). A run folder
from elsewhere may hold symbolic links. interp follows a link only when it stays inside the
run folder (``metrics.h5 -> archive/metrics.h5``): a file or folder of the run that is, or
lies under, a link resolving outside the run folder is refused with :class:`LinkOutside`
(one line, exit 2; the app lists the run as unreadable), before anything is opened through
it. The run folder itself may be a link (it is the path the user named). Lock files are
stricter: they are written in place, so one that is a link is refused wherever it points
(:func:`open_lock_file`). Every other write replaces a file by renaming a temporary onto its
name, which replaces a link itself, never its target. The checks look at names (``lstat``,
``readlink``), so a link's target outside is never opened or listed; a folder changed between
the check and the open (a race with a process writing the run folder) is not guarded against:
a shared run folder is a static copy.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import IO

from interp.errors import LinkOutside


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder's fsync makes a rename inside it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- links out of a run

def inside_run(run_dir: str | Path, path: str | Path) -> Path:
    """``path`` (named under ``run_dir``), unless it or a folder between ``run_dir`` and it is a
    link that resolves outside ``run_dir``: then :class:`LinkOutside` (policy above)."""
    run_dir, path = Path(run_dir), Path(path)
    parts = path.relative_to(run_dir).parts
    if ".." in parts:
        raise LinkOutside(f"{path} is not a path inside the run folder {run_dir}")
    current, root = run_dir, None
    for part in parts:
        current = current / part
        if current.is_symlink():
            root = root or run_dir.resolve()
            _refuse_if_outside(run_dir, root, current)
    return path


def refuse_links_out(run_dir: str | Path) -> None:
    """Raise :class:`LinkOutside` for the first link anywhere in the run folder (its
    checkpoints, journal, data, figures, lock files) that resolves outside it. Links are not
    followed, so this lists only the run's own folders; a folder that cannot be listed is
    left to the reader that needs it (which says so)."""
    run_dir = Path(run_dir)
    root = run_dir.resolve()
    folders = [run_dir]
    while folders:
        try:
            with os.scandir(folders.pop()) as entries:
                found = list(entries)
        except OSError:
            continue
        for entry in sorted(found, key=lambda e: e.name):
            if entry.is_symlink():
                _refuse_if_outside(run_dir, root, Path(entry.path))
            elif entry.is_dir(follow_symlinks=False):
                folders.append(Path(entry.path))


def _refuse_if_outside(run_dir: Path, root: Path, link: Path) -> None:
    try:
        target = link.resolve()
    except (OSError, RuntimeError):  # a loop of links
        raise LinkOutside(f"{link} is a link that cannot be resolved (a loop); a run folder from "
                          f"elsewhere may hold only its own files: remove the link") from None
    if target != root and not target.is_relative_to(root):
        raise LinkOutside(f"{link} links outside the run folder {run_dir} (to {target}); a run folder "
                          f"from elsewhere may hold only its own files: put the file itself there, or "
                          f"remove the link")


def open_lock_file(path: Path, mode: str = "a+") -> IO[str]:
    """``open(path, mode)`` ("a+": created if missing; or "r") that refuses a link wherever it
    points (``O_NOFOLLOW``): a lock file is written in place, and interp never makes it a link."""
    flags = {"a+": os.O_RDWR | os.O_CREAT | os.O_APPEND, "r": os.O_RDONLY}[mode]
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise LinkOutside(f"{path} is a link; interp makes its lock files itself and never writes "
                              f"through a link: remove it") from None
        raise
    return os.fdopen(fd, mode)
