"""The metrics store: appends go to a journal (metrics.h5 is not copied), readers see only whole
updates, a kill -9 loses at most the update being written, a damaged entry is skipped with one
warning, and the journal, replayed or folded in by a compaction, reads as real HDF5 would."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from interp import store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def journal_only(monkeypatch):
    """No compaction unless asked for: every update after the first becomes an entry."""
    monkeypatch.setattr(store, "COMPACT_RATIO", 1e12)


def add_row(run: Path, step: int, size: int = 8) -> None:
    """One checkpoint's records: an analysis row whose values are its step, a train row, and
    an attribute naming the newest step, all in one update."""
    with store.update(run) as handle:
        store.append(handle, "analysis", {"step": [step], "x": np.full((1, size, size), step, np.float32)})
        store.append(handle, "train", {"step": [step], "loss": [float(step)]})
        handle["analysis"].attrs.update(newest=step)


def entries(run: Path) -> list[Path]:
    folder = run / store.JOURNAL
    return sorted(p for p in folder.iterdir() if p.name.endswith(".h5")) if folder.is_dir() else []


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- the cost of an append

def test_append__writes_a_small_journal_entry_and_leaves_metrics_h5_untouched(tmp_path, journal_only):
    # Catches: an append that copies or rewrites metrics.h5 (the cost that grew with the run).
    for step in range(1, 40):
        add_row(tmp_path, step, size=64)
    store.compact(tmp_path)
    main = tmp_path / store.FILENAME
    before = (main.stat().st_ino, digest(main), main.stat().st_size)
    add_row(tmp_path, 40, size=64)
    assert (main.stat().st_ino, digest(main), main.stat().st_size) == before
    (entry,) = entries(tmp_path)
    assert entry.stat().st_size < 64 * 64 * 4 + 40_000 < main.stat().st_size / 5
    assert store.steps(tmp_path, "analysis").tolist() == list(range(1, 41))


def test_update__touches_the_mtime_so_caches_keyed_on_it_see_new_rows(tmp_path, journal_only):
    # Catches: the app's cache (keyed on metrics.h5's mtime) missing rows that sit in the journal.
    add_row(tmp_path, 1)
    main = tmp_path / store.FILENAME
    os.utime(main, ns=(0, 0))
    add_row(tmp_path, 2)
    assert main.stat().st_mtime_ns > 0 and entries(tmp_path)


# --------------------------------------------------------------------------- what readers see

def random_session(seed: int, run: Path) -> list:
    """Random updates through the public API, each a list of calls on the update handle."""
    rng = random.Random(seed)
    actions = []
    step = 0
    for _ in range(40):
        kind = rng.choice(["append"] * 5 + ["attrs", "phase", "probes", "delete", "truncate", "repeat"])
        if kind == "append":
            n = rng.randint(1, 3)
            rows = list(range(step + 1, step + 1 + n))
            step += n
            actions.append(("append", rng.choice(["analysis", "train"]), rows))
        elif kind == "repeat" and step:
            actions.append(("append", "analysis", [rng.randint(1, step), step + 1]))
            step += 1
        elif kind == "truncate" and step > 4:
            step = rng.randint(step // 2, step)
            actions.append(("truncate", step))
        elif kind in ("attrs", "phase", "probes", "delete"):
            actions.append((kind, rng.randint(0, 1000)))
    return actions


def act(handle, action) -> None:
    kind = action[0]
    if kind == "append":
        _, group, rows = action
        rows = np.array(rows)
        store.append(handle, group, {"step": rows, "v": rows * 1.5, "m": np.outer(rows, [1, 2, 3]).astype(np.float32)})
    elif kind == "attrs":
        handle.require_group("analysis").attrs.update(a=action[1], s=f"x{action[1]}", f=np.nan)
    elif kind == "phase":  # what update_phase does
        if "phase" in handle:
            del handle["phase"]
        group = handle.create_group("phase")
        group.attrs.update(has_window=action[1] % 2)
        group.create_dataset("step", data=np.arange(action[1] % 5))
        group.create_dataset("projection", data=np.ones((action[1] % 5, 2, 2)))
    elif kind == "probes":  # what _record_copying_tokens does
        group = handle.require_group("probes")
        if "tokens" in group:
            del group["tokens"]
        group.create_dataset("tokens", data=np.arange(action[1] % 7, dtype=np.int64))
    elif kind == "delete":
        if "train" in handle and action[1] % 3 == 0:
            del handle["train"]
    elif kind == "truncate":
        store.truncate_after(handle, action[1])


def snapshot(run: Path) -> dict:
    """Every group's datasets and attributes, as plain values."""
    out = {}
    with store.read(run) as root:
        for name in sorted(root):
            group = root[name]
            out[name] = ({k: np.asarray(group[k][()]).tolist() for k in sorted(group)},
                         {k: str(v) for k, v in sorted(dict(group.attrs).items())})
    return out


def reference(run: Path) -> dict:
    """The same, read by h5py from a file built with real h5py calls."""
    out = {}
    with h5py.File(run / store.FILENAME, "r") as root:
        for name in sorted(root):
            group = root[name]
            out[name] = ({k: np.asarray(group[k][()]).tolist() for k in sorted(group)},
                         {k: str(v) for k, v in sorted(dict(group.attrs).items())})
    return out


@pytest.mark.parametrize("seed", range(6))
def test_journal_and_compaction__read_as_real_hdf5_would(tmp_path, journal_only, seed):
    # Catches: the view's replay of an operation and the compaction's disagreeing with each
    # other or with h5py (appends with repeated steps, attrs, delete and recreate, truncation).
    journalled, real = tmp_path / "journal", tmp_path / "real"
    journalled.mkdir()
    real.mkdir()
    for action in random_session(seed, journalled):
        with store.update(journalled) as handle:
            act(handle, action)
        with store.rewrite(real) as handle:  # a real h5py file, applied directly
            act(handle, action)
        assert snapshot(journalled) == reference(real)
    assert entries(journalled)
    store.compact(journalled)
    assert not entries(journalled) and reference(journalled) == reference(real)


def test_update_handle__reads_include_its_own_writes_and_an_error_stores_nothing(tmp_path, journal_only):
    add_row(tmp_path, 1)
    add_row(tmp_path, 2)
    with store.update(tmp_path) as handle:
        store.append(handle, "analysis", {"step": [2, 3], "x": np.full((2, 8, 8), 9, np.float32)})
        assert handle["analysis"]["step"][()].tolist() == [1, 2, 3] and len(handle["analysis"]["x"]) == 3
        del handle["train"]
        assert "train" not in handle and handle["analysis"].attrs["newest"] == 2
    with pytest.raises(RuntimeError), store.update(tmp_path) as handle:
        store.append(handle, "analysis", {"step": [4], "x": np.zeros((1, 8, 8), np.float32)})
        raise RuntimeError("disk full")
    rows = store.series(tmp_path, "analysis")
    assert rows["step"].tolist() == [1, 2, 3] and rows["x"][:, 0, 0].tolist() == [1, 2, 9]
    assert store.series(tmp_path, "train") == {}
    with pytest.raises(ValueError, match="shape"), store.update(tmp_path) as handle:
        store.append(handle, "analysis", {"step": [5], "x": np.zeros((1, 2), np.float32)})
    assert not [p for p in (tmp_path / store.JOURNAL).iterdir() if ".tmp" in p.name]


def test_compaction__when_the_journal_outweighs_the_file_and_not_before(tmp_path, monkeypatch):
    # Catches: compacting at every update (the old cost) or never (a journal that grows
    # without bound, which every reader replays).
    monkeypatch.setattr(store, "COMPACT_RATIO", 1e12)
    for step in range(1, 21):
        add_row(tmp_path, step, size=64)
    store.compact(tmp_path)
    main = tmp_path / store.FILENAME
    size, journal_id = main.stat().st_size, h5py.File(main, "r").attrs["journal_id"]
    monkeypatch.setattr(store, "COMPACT_RATIO", 1.0)
    monkeypatch.setattr(store, "ENTRY_FLOOR", 0)
    step, seen, entry_size = 20, [], 0
    while h5py.File(main, "r").attrs["journal_id"] == journal_id:
        step += 1
        add_row(tmp_path, step, size=64)
        seen.append(len(entries(tmp_path)))
        entry_size = max([entry_size, *(p.stat().st_size for p in entries(tmp_path))])
    piled, pending = len(seen) - 1, 64 * 64 * 4 + 8 + 8 + 8
    assert seen == [*range(1, piled + 1), 0] and piled >= 3
    assert (piled - 1) * entry_size + pending < size <= piled * entry_size + pending
    assert not (tmp_path / store.JOURNAL).exists()
    assert store.steps(tmp_path, "analysis").tolist() == list(range(1, step + 1))


def test_stale_entries__of_a_compaction_killed_after_its_rename__are_ignored_then_deleted(tmp_path, journal_only):
    for step in (1, 2, 3):
        add_row(tmp_path, step)
    kept = {p.name: p.read_bytes() for p in entries(tmp_path)}
    store.compact(tmp_path)
    for name, data in kept.items():  # as if the compaction died before deleting them
        (tmp_path / store.JOURNAL).mkdir(exist_ok=True)
        (tmp_path / store.JOURNAL / name).write_bytes(data)
    assert store.steps(tmp_path, "analysis").tolist() == [1, 2, 3]  # not applied twice
    add_row(tmp_path, 4)
    assert [p.name for p in entries(tmp_path)] != sorted(kept) and len(entries(tmp_path)) == 1
    assert store.series(tmp_path, "train")["step"].tolist() == [1, 2, 3, 4]


def test_file_without_a_journal_id__gets_one_on_its_first_update(tmp_path, journal_only):
    # A metrics.h5 written before the journal existed: read as it is, compacted when written.
    with h5py.File(tmp_path / store.FILENAME, "w") as handle:
        handle.attrs.update(layout_version=store.LAYOUT_VERSION, run_name="old")
        handle.create_dataset("train/step", data=[1, 2], maxshape=(None,), chunks=True)
    assert store.steps(tmp_path, "train").tolist() == [1, 2]
    with store.update(tmp_path) as handle:
        store.append(handle, "train", {"step": [2, 3]})
    assert "journal_id" in h5py.File(tmp_path / store.FILENAME, "r").attrs
    assert store.steps(tmp_path, "train").tolist() == [1, 2, 3]


def test_damaged_metrics_file__its_journal_is_moved_aside_with_it(tmp_path, journal_only):
    add_row(tmp_path, 1)
    add_row(tmp_path, 2)
    main = tmp_path / store.FILENAME
    main.write_bytes(b"\0" * 512 + main.read_bytes()[512:])
    aside = store.replace_damaged(tmp_path, lambda handle, _aside: None)
    assert aside is not None and aside.is_file()
    (kept,) = tmp_path.glob(f"{store.JOURNAL}.damaged-*")
    assert len(list(kept.iterdir())) == 1 and not (tmp_path / store.JOURNAL).exists()
    assert store.series(tmp_path, "analysis") == {}


def test_rewrite__a_real_h5py_file_with_the_journal_folded_in(tmp_path, journal_only):
    add_row(tmp_path, 1)
    add_row(tmp_path, 2)
    with store.rewrite(tmp_path) as handle:
        assert isinstance(handle, h5py.File) and handle["analysis/step"][()].tolist() == [1, 2]
        handle["analysis/x"][0] = 7
    assert not entries(tmp_path)
    assert store.series(tmp_path, "analysis")["x"][:, 0, 0].tolist() == [7, 2]


# --------------------------------------------------------------------------- damaged entries

def truncate_it(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def zero_its_header(path: Path) -> None:
    path.write_bytes(b"\0" * 256 + path.read_bytes()[256:])


def flip_a_data_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    marker = np.full(1, 3, np.float32).tobytes() * 4  # the rows of step 3
    at = data.index(marker) + 8
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate_it, zero_its_header, flip_a_data_byte])
def test_damaged_entry__skipped_with_one_line_warning(tmp_path, journal_only, caplog, damage):
    # Catches: a reader crashing on a damaged entry, reading garbage from it without noticing,
    # a warning per read, and a compaction that deletes the damaged file.
    for step in range(1, 6):
        add_row(tmp_path, step)
    damage(entries(tmp_path)[1])  # the update of step 3 (step 1 created the file)
    with caplog.at_level(logging.WARNING, logger="interp.store"):
        first = store.series(tmp_path, "analysis")
        again = store.series(tmp_path, "analysis")
        with store.read(tmp_path) as root:
            read = root["analysis"]["step"][()].tolist()
    assert first["step"].tolist() == again["step"].tolist() == read == [1, 2, 4, 5]
    assert first["x"][:, 0, 0].tolist() == [1, 2, 4, 5]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "damaged" in messages[0] and "\n" not in messages[0], messages
    add_row(tmp_path, 6)  # a writer goes on past it
    store.compact(tmp_path)
    assert store.steps(tmp_path, "train").tolist() == [1, 2, 4, 5, 6]
    assert len(list((tmp_path / store.JOURNAL).glob("*.damaged"))) == 1


# --------------------------------------------------------------------------- other processes

WRITER = textwrap.dedent("""
    import sys, numpy as np
    from pathlib import Path
    from interp import store
    run, last, ratio = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    store.ENTRY_FLOOR, store.COMPACT_RATIO = 0, ratio
    done = store.steps(run, "analysis") if (run / store.FILENAME).exists() else []
    for step in range(int(max(done, default=0)) + 1, last + 1):
        with store.update(run) as handle:
            store.append(handle, "analysis", {"step": [step], "x": np.full((1, 48, 48), step, np.float32)})
            store.append(handle, "train", {"step": [step], "loss": [float(step)]})
            handle["analysis"].attrs.update(newest=step)
        print(step, flush=True)
""")


def writer(run: Path, last: int, ratio: float = 0.5) -> subprocess.Popen:
    """A process appending updates 1..last (one per step; at ratio 0.5 it compacts often, so
    kills and reads land in compactions too), printing each step once it is stored."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(run), str(last), str(ratio)], env=env,
                            stdout=subprocess.PIPE, text=True)


def check_whole(run: Path) -> int:
    """Every update is there whole or not at all, once; returns how many there are. One read
    (a view of one state), as series() twice could straddle an update."""
    with store.read(run) as root:
        steps = root["analysis"]["step"][()].tolist()
        x, newest = root["analysis"]["x"][()], root["analysis"].attrs.get("newest", 0)
        train_steps, loss = root["train"]["step"][()].tolist(), root["train"]["loss"][()].tolist()
    assert steps == list(range(1, len(steps) + 1)), steps  # no gap, no duplicate
    assert train_steps == steps and loss == [float(s) for s in steps]
    assert (x == np.array(steps, np.float32)[:, None, None]).all()
    assert newest == len(steps)
    return len(steps)


def test_reader_in_another_process__sees_only_whole_updates(tmp_path):
    # Catches: a reader seeing an update in part (rows without their attribute, one group
    # without the other, a half-written entry) or failing while a compaction replaces the file.
    child = writer(tmp_path, 150)
    reads, counts = 0, []
    deadline = time.monotonic() + 18
    while child.poll() is None and time.monotonic() < deadline:
        if (tmp_path / store.FILENAME).exists():
            counts.append(check_whole(tmp_path))
            reads += 1
    assert child.wait(timeout=5) == 0
    assert check_whole(tmp_path) == 150
    assert reads >= 20 and counts == sorted(counts) and len(set(counts)) > 5


def test_kill_9_of_a_writer__loses_at_most_the_update_being_written(tmp_path):
    # Catches: a kill -9 mid-entry or mid-compaction leaving a damaged store, a lost earlier
    # update, a duplicate row, or a temporary that nobody removes.
    rng = random.Random(0)
    acknowledged = 0
    for _ in range(12):
        child = writer(tmp_path, 10_000)
        first = child.stdout.readline()  # it is writing
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(child.pid, signal.SIGKILL)
        output = [first, *child.communicate()[0].split()]
        acknowledged = max([acknowledged, *map(int, output)])
        stored = check_whole(tmp_path)
        assert acknowledged <= stored <= acknowledged + 1
    assert writer(tmp_path, stored + 1).wait() == 0  # the next writer clears what killed ones left
    assert check_whole(tmp_path) == stored + 1
    leftovers = [p.name for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert not leftovers


def test_a_writer_that_exits__folds_its_journal_into_metrics_h5(tmp_path):
    # Catches: a finished command leaving rows that only interp's readers see (a tool reading
    # metrics.h5 with h5py alone would miss them).
    child = writer(tmp_path, 5, ratio=1e12)
    assert child.communicate()[0].split() == ["1", "2", "3", "4", "5"] and child.returncode == 0
    assert not (tmp_path / store.JOURNAL).exists()
    with h5py.File(tmp_path / store.FILENAME, "r") as handle:
        assert handle["analysis/step"][()].tolist() == [1, 2, 3, 4, 5]
