"""Links out of a run folder (issue 12: untrusted runs are safe to open).

A run folder from elsewhere may hold symbolic links. For every kind of file the library opens
in a run, replaced by a link to a copy of it outside the run folder, ``interp analyze``,
``report``, ``summary``, ``runs`` and the app's run scan refuse the run in one line (exit 2, or
the run listed as damaged / unreadable), and nothing outside the run is opened, listed or
written. Reads are watched with Linux's inotify on the folder outside (it sees the opens of
HDF5 and safetensors, which Python's audit hooks do not); writes by the bytes and mtime of
every file there. Links that stay inside the run folder keep working (the negative control).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import struct
import sys
from pathlib import Path

import pytest

from interp import checkpoints, cli, store
from interp.analysis import drop_analysis
from interp.errors import LinkOutside
from interp.recovery import recover_metrics
from tests.conftest import make_analysed_run

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "apps" / "workbench.py"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


# --------------------------------------------------------------------------- watching outside

class Watch:
    """inotify on a folder and every folder under it: any open, read, write, attribute change,
    creation, deletion or rename of what lies there is an event."""

    ALL = 0xFFF  # IN_ACCESS .. IN_DELETE_SELF, IN_MOVE_SELF

    def __init__(self, folder: Path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        self.folders: dict[int, str] = {}
        for dirpath in [d for d, _, _ in os.walk(folder)]:  # listed before any watch starts
            wd = self.libc.inotify_add_watch(self.fd, os.fsencode(dirpath), self.ALL)
            assert wd >= 0, os.strerror(ctypes.get_errno())
            self.folders[wd] = dirpath

    def events(self) -> list[tuple[str, int]]:
        """(path, mask) of every event since the watch began."""
        found, data = [], b""
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        at = 0
        while at < len(data):
            wd, mask, _, length = struct.unpack_from("iIII", data, at)
            name = data[at + 16:at + 16 + length].rstrip(b"\0").decode()
            found.append((os.path.join(self.folders.get(wd, "?"), name), mask))
            at += 16 + length
        return found

    def close(self) -> None:
        os.close(self.fd)


_FLAGS = {0x1: "read", 0x2: "written", 0x4: "attributes", 0x20: "opened", 0x40: "moved out",
          0x80: "moved in", 0x100: "created", 0x200: "deleted"}


def _described(events: list[tuple[str, int]]) -> list[str]:
    """Each path touched, with what was done to it."""
    done: dict[str, set[str]] = {}
    for path, mask in events:
        done.setdefault(path, set()).update(word for bit, word in _FLAGS.items() if mask & bit)
    return [f"{path}: {', '.join(sorted(words))}" for path, words in sorted(done.items())]


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every file and folder under ``folder``: bytes and mtime (None for a folder)."""
    out: dict[str, tuple[bytes, int] | None] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        out[rel] = None if path.is_dir() else (path.read_bytes(), path.stat().st_mtime_ns)
    return out


@pytest.fixture
def outside(tmp_path):
    """(folder outside the runs, start watching it) -> after the test, asserts it was never
    touched: no inotify event once watching began, same files, bytes and mtimes."""
    folder = tmp_path / "outside"
    folder.mkdir()
    state: dict = {}

    def start() -> None:
        state["before"] = _snapshot(folder)
        state["watch"] = Watch(folder)
    yield folder, start
    if "watch" in state:
        events = state["watch"].events()
        state["watch"].close()
        assert events == [], f"files outside the run were touched: {_described(events)}"
        assert _snapshot(folder) == state["before"], "files outside the run changed"


# --------------------------------------------------------------------------- runs and links

@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> Path:
    """A tiny analysed Markov run (trained and analysed once for the module)."""
    return make_analysed_run(tmp_path_factory.mktemp("symlinks")) / "tiny"


def _copy(run: Path, where: Path, analysed: bool = True) -> Path:
    copy = where / "runs" / run.name
    shutil.copytree(run, copy, symlinks=True)
    store.compact(copy)  # one plain metrics.h5, as a finished command leaves it
    if not analysed:  # so that analyze loads every checkpoint: the last two, to keep it short
        for checkpoint in checkpoints.list_checkpoints(copy)[:-2]:
            shutil.rmtree(checkpoint.path)
        drop_analysis(copy)
        store.compact(copy)  # the drop's own journal entry (whether it compacted depends on sizes)
    return copy


def _journal_entry(run: Path) -> str:
    """Give the run one journal entry (an update that does not compact); its path in the run."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store, "COMPACT_RATIO", float("inf"))
        with store.update(run) as handle:
            handle.require_group("note").attrs.update({"written": 1})
    entries = sorted((run / store.JOURNAL).glob("*.h5"))
    assert len(entries) == 1
    return f"{store.JOURNAL}/{entries[0].name}"


def _last(run: Path) -> str:
    return checkpoints.list_checkpoints(run)[-1].path.name


# kind -> the path in the run that becomes a link (to the same file, moved out of the run)
KINDS = {
    "config.json": lambda run: "config.json",
    "run.json": lambda run: "run.json",
    "weights": lambda run: f"{_last(run)}/model.safetensors",
    "manifest": lambda run: f"{_last(run)}/manifest.json",
    "trainer state": lambda run: f"{_last(run)}/trainer.json",
    "metrics.h5": lambda run: "metrics.h5",
    "journal entry": _journal_entry,
    "journal folder": lambda run: (_journal_entry(run), store.JOURNAL)[1],
    "checkpoint folder": _last,
    "figures folder": lambda run: ((run / "figures").mkdir(), "figures")[1],
}


def _move_and_link(run: Path, rel: str, where: Path, relative: bool = False) -> Path:
    """Move ``run/rel`` to ``where`` and leave a link to it in its place; returns the target."""
    source, target = run / rel, where / Path(rel).name
    where.mkdir(parents=True, exist_ok=True)
    shutil.move(source, target)
    source.symlink_to(os.path.relpath(target, source.parent) if relative else target)
    return target


def _linked_out(kind: str, base: Path, outside: Path, analysed_run: Path, analysed: bool = True) -> Path:
    run = _copy(analysed_run, base, analysed)
    _move_and_link(run, KINDS[kind](run), outside)
    return run


def _one_line_refusal(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert "links outside the run folder" in err, err
    return err


# --------------------------------------------------------------------------- links out: refused

@pytest.mark.parametrize("kind", KINDS)
def test_analyze__refuses_a_run_with_a_link_out_and_touches_nothing_outside(
        kind, analysed, tmp_path, outside, capsys):
    folder, start = outside
    run = _linked_out(kind, tmp_path, folder, analysed, analysed=False)
    start()
    assert cli.main(["analyze", str(run), "--no-progress", "--no-ablation"]) == 2
    _one_line_refusal(capsys)


@pytest.mark.parametrize("kind", KINDS)
def test_report__refuses_a_run_with_a_link_out_and_touches_nothing_outside(
        kind, analysed, tmp_path, outside, capsys):
    folder, start = outside
    run = _linked_out(kind, tmp_path, folder, analysed)
    start()
    assert cli.main(["report", str(run)]) == 2  # figures into RUN/figures: the default
    _one_line_refusal(capsys)


@pytest.mark.parametrize("kind", KINDS)
def test_summary__refuses_a_run_with_a_link_out_and_touches_nothing_outside(
        kind, analysed, tmp_path, outside, capsys):
    folder, start = outside
    run = _linked_out(kind, tmp_path, folder, analysed)
    start()
    assert cli.main(["summary", str(run)]) == 2
    _one_line_refusal(capsys)


@pytest.mark.parametrize("kind", KINDS)
def test_runs__lists_a_run_with_a_link_out_as_damaged_and_the_others_as_usual(
        kind, analysed, tmp_path, outside, capsys):
    folder, start = outside
    run = _linked_out(kind, tmp_path, folder, analysed)
    shutil.copytree(analysed, run.parent / "sound")
    start()
    assert cli.main(["runs", str(run.parent)]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.strip().splitlines())
    assert lines["tiny"].startswith("damaged") and "links outside the run folder" in lines["tiny"], lines
    assert lines["sound"].startswith("finished"), lines


@pytest.mark.parametrize("kind", KINDS)
def test_the_apps_run_scan__lists_a_run_with_a_link_out_as_unreadable(kind, analysed, tmp_path, outside):
    pytest.importorskip("streamlit")
    sys.path.insert(0, str(ROOT / "apps"))
    import workbench_data as D

    folder, start = outside
    run = _linked_out(kind, tmp_path, folder, analysed)
    shutil.copytree(analysed, run.parent / "sound")
    start()
    runs, unreadable = D.scan_runs(run.parent)
    assert runs == [run.parent / "sound"]
    assert list(unreadable) == [run] and "links outside the run folder" in unreadable[run]


@pytest.mark.parametrize("kind", ["config.json", "metrics.h5", "checkpoint folder"])
def test_the_app__marks_a_run_with_a_link_out_unreadable_and_shows_the_others(
        kind, analysed, tmp_path, outside, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    folder, start = outside
    run = _linked_out(kind, tmp_path, folder, analysed)
    shutil.copytree(analysed, run.parent / "sound")
    monkeypatch.setenv("INTERP_APP_ROOT", str(run.parent))
    start()
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.sidebar.radio(key="view").set_value("Runs").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert dict(zip(table["run"], table["status"])) == {"tiny": "unreadable", "sound": "finished"}
    assert any("links outside the run folder" in w.value for w in at.main.warning)
    for view in ("Training curves", "Head atlas", "Head detail", "Tokens"):
        at.sidebar.radio(key="view").set_value(view).run()
        assert not at.exception, at.exception


def test_resume__refuses_a_run_whose_journal_links_out(analysed, tmp_path, outside, capsys):
    folder, start = outside
    run = _linked_out("journal folder", tmp_path, folder, analysed)
    start()
    assert cli.main(["train", "--resume", str(run), "--no-progress"]) == 2
    _one_line_refusal(capsys)


def _readers(run: Path, kind: str) -> list:
    """The library calls that open the file of ``kind`` (each is checked on its own, without
    the walk of the whole folder that the commands do first)."""
    last = checkpoints.list_checkpoints(run)[-1]
    def rebuild_metrics():  # from every checkpoint's manifest.json and trainer.json
        (run / store.FILENAME).unlink()
        return recover_metrics(run)
    loads = [lambda: checkpoints.verify_checkpoint(last.path),
             lambda: checkpoints.load_model(last.path, verify=False), rebuild_metrics]
    metrics = [lambda: store.series(run, "train"), lambda: store.compact(run)]
    return {"config.json": [lambda: checkpoints.read_config(run)],
            "run.json": [lambda: checkpoints.read_run_info(run), lambda: checkpoints.update_run_info(run, step=1)],
            "weights": loads[:2], "manifest": [loads[0], loads[2]], "trainer state": [loads[0], loads[2]],
            "checkpoint folder": loads, "metrics.h5": metrics,
            "journal entry": metrics, "journal folder": metrics}[kind]


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "figures folder"])
def test_each_reader_in_the_library__refuses_a_link_out_by_itself(kind, analysed, tmp_path, outside):
    """What guards library callers (experiments, a notebook, the app's views): every open of a
    run's file checks its own path, even where no command walked the folder first."""
    folder, start = outside
    run = _linked_out(kind, tmp_path, folder, analysed)
    readers = _readers(run, kind)
    start()
    for read in readers:
        with pytest.raises(LinkOutside, match="links outside the run folder"):
            read()


# --------------------------------------------------------------------------- lock files

@pytest.mark.parametrize("lock", [".analyze.lock", ".metrics.lock"])
def test_a_lock_file_linking_inside_the_run__is_refused_and_its_target_left_as_it_was(
        lock, analysed, tmp_path, capsys):
    """Lock files are opened for writing in place (the analysis lock is truncated and given
    the holder's pid), so a lock file that is a link is refused wherever it points: a link
    to config.json would otherwise be emptied."""
    run = _copy(analysed, tmp_path, analysed=False)
    before = (run / "config.json").read_bytes()
    (run / lock).unlink(missing_ok=True)  # .metrics.lock stays once made
    (run / lock).symlink_to("config.json")
    assert cli.main(["analyze", str(run), "--no-progress", "--no-ablation"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is a link" in err, err
    assert (run / "config.json").read_bytes() == before


def test_a_dangling_lock_link_out__creates_nothing_outside(analysed, tmp_path, outside, capsys):
    folder, start = outside
    run = _copy(analysed, tmp_path, analysed=False)
    (run / ".metrics.lock").unlink()
    (run / ".metrics.lock").symlink_to(folder / "made-by-interp")
    start()
    assert cli.main(["analyze", str(run), "--no-progress", "--no-ablation"]) == 2
    _one_line_refusal(capsys)
    assert not (folder / "made-by-interp").exists()


# --------------------------------------------------------------------------- links inside: allowed

INSIDE = ["config.json", "run.json", "weights", "manifest", "metrics.h5", "journal folder", "checkpoint folder"]


@pytest.mark.parametrize("kind", INSIDE)
def test_a_link_that_stays_inside_the_run__is_followed_by_every_command(kind, analysed, tmp_path, capsys):
    """The negative control: only links out of the run folder are refused (a relative link
    to a file moved into a subfolder of the run works as the file did)."""
    run = _copy(analysed, tmp_path, analysed=False)
    _move_and_link(run, KINDS[kind](run), run / "kept", relative=True)
    assert cli.main(["analyze", str(run), "--no-progress", "--no-ablation", "--icl-examples", "16"]) == 0, \
        capsys.readouterr().err
    assert cli.main(["report", str(run), "--out", str(tmp_path / "figures")]) == 0, capsys.readouterr().err
    assert cli.main(["summary", str(run)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert cli.main(["runs", str(run.parent)]) == 0
    assert "damaged" not in capsys.readouterr().out
