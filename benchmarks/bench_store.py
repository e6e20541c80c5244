"""Metrics store: the cost of appending one checkpoint's records as a run grows.

Appends, one update per checkpoint as ``interp analyze`` does, the full per-head records of a
12-layer, 12-head model (the shapes of ``interp.analysis.analyze_checkpoint``: loss by token
index [n_ctx], per-token losses [pairs], six per-head scores [L, H], three composition
matrices [L, H, L, H], the ablation effect of every head on every PCA pair [L, H, pairs]),
to a new run through ``interp.store``, and prints at checkpoints 10, 50, 100 and 200:

- the typical append (median of the five updates ending there) and the amortised cost
  (all updates so far, compactions included, over their number);
- in the same run, what the scheme before the journal cost: copy metrics.h5, append, fsync,
  rename (timed on a file holding that many checkpoints, median of three updates);

then the ratio checkpoint 200 / checkpoint 10 of each (goal for the store: at most 1.5), and
what a reader pays (``store.steps``, ``store.series`` of the analysis group, with the journal
and after a final compaction).

    python benchmarks/bench_store.py [--checkpoints 200] [--layers 12] [--heads 12]
                                     [--n-ctx 1024] [--pairs 2048] [--dir DIR]

It writes about 2 x 300 MB under DIR (default: a temporary folder), deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp import journal, store

POINTS = (10, 50, 100, 200)


def records(step: int, layers: int, heads: int, n_ctx: int, pairs: int) -> dict[str, np.ndarray]:
    """One checkpoint's analysis row, each value with its leading row axis (as analyze stores it)."""
    rng = np.random.default_rng(step)

    def per_head(*tail: int) -> np.ndarray:
        return rng.random((1, layers, heads, *tail), dtype=np.float32)

    row = {"step": np.array([step]), "tokens": np.array([step * 65536]),
           "icl_score": rng.random(1), "icl_score_stderr": rng.random(1), "val_loss": rng.random(1),
           "loss_by_position": rng.random((1, n_ctx), dtype=np.float32),
           "per_token_loss": rng.random((1, pairs), dtype=np.float32)}
    for name in ("prefix_matching", "duplicate_token", "previous_token", "copying_ov",
                 "copying_empirical", "ablation_icl_change"):
        row[name] = per_head()
    for kind in "kqv":
        row[f"composition_{kind}"] = per_head(layers, heads)
    row["ablation_per_token_change"] = per_head(pairs)
    return row


ATTRS = {"icl_examples": 512, "pca_pairs": 2048, "icl_late_index": 500, "icl_early_index": 50}


def journal_append(run: Path, row: dict) -> None:
    """What interp.analysis does per checkpoint."""
    with store.update(run) as handle:
        store.append(handle, "analysis", row)
        handle["analysis"].attrs.update(ATTRS)


def copy_append(run: Path, row: dict) -> None:
    """The scheme before the journal (interp/store.py until this benchmark was written): copy
    the file, append in the copy, fsync, rename over the original."""
    path, tmp = run / store.FILENAME, run / f".{store.FILENAME}.tmp{os.getpid()}"
    shutil.copyfile(path, tmp)
    with h5py.File(tmp, "a") as handle:
        group = handle.require_group("analysis")
        if int(row["step"][0]) not in set(group["step"][()].tolist()):
            for name, value in row.items():
                dataset = group[name]
                dataset.resize(dataset.shape[0] + 1, axis=0)
                dataset[-1:] = value
        group.attrs.update(ATTRS)
    fd = os.open(tmp, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    os.replace(tmp, path)


def copy_file_with(run: Path, rows: int, shape: tuple) -> None:
    """A metrics.h5 as the old scheme left it after ``rows`` checkpoints (written in one go)."""
    run.mkdir(parents=True, exist_ok=True)
    with h5py.File(run / store.FILENAME, "w") as handle:
        handle.attrs.update(layout_version=store.LAYOUT_VERSION, run_name=run.name)
        group = handle.create_group("analysis")
        for step in range(1, rows + 1):
            for name, value in records(step, *shape).items():
                if name not in group:
                    group.create_dataset(name, data=value, maxshape=(None, *value.shape[1:]), chunks=True)
                else:
                    group[name].resize(step, axis=0)
                    group[name][-1:] = value


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def journal_id(run: Path) -> str:
    with h5py.File(run / store.FILENAME, "r") as handle:
        return str(handle.attrs["journal_id"])


def run_journal(root: Path, shape: tuple, checkpoints: int) -> dict[int, dict]:
    run = root / "journal"
    run.mkdir()
    times, compactions, last_id, out = [], 0, None, {}
    for step in range(1, checkpoints + 1):
        row = records(step, *shape)
        times.append(timed(journal_append, run, row))
        now = journal_id(run)
        compactions += int(last_id is not None and now != last_id)
        last_id = now
        if step in POINTS:
            folder = run / store.JOURNAL
            out[step] = {"typical": statistics.median(times[-5:]), "amortised": sum(times) / step,
                         "compactions": compactions,
                         "mb": (run / store.FILENAME).stat().st_size / 1e6,
                         "entries": len(list(folder.glob("*.h5"))) if folder.is_dir() else 0,
                         "steps": timed(store.steps, run, "analysis"),
                         "series": timed(store.series, run, "analysis")}
    journal._cache.clear()  # a fresh reader process: every entry parsed once
    out["fresh_steps"] = timed(store.steps, run, "analysis")
    out["compact"] = timed(store.compact, run)
    out["compacted_series"] = timed(store.series, run, "analysis")
    shutil.rmtree(run)
    return out


def run_copy(root: Path, shape: tuple, points: list[int]) -> dict[int, float]:
    out = {}
    for point in points:
        run = root / f"copy{point}"
        copy_file_with(run, point - 1, shape)
        out[point] = statistics.median(timed(copy_append, run, records(point + k, *shape)) for k in range(3))
        shutil.rmtree(run)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=200)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--pairs", type=int, default=2048)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    shape = (args.layers, args.heads, args.n_ctx, args.pairs)
    points = [p for p in POINTS if p <= args.checkpoints]
    if not points:
        sys.exit(f"--checkpoints must be at least {POINTS[0]}")
    size = sum(v.nbytes for v in records(1, *shape).values()) / 1e6
    print(f"{args.layers} layers x {args.heads} heads, n_ctx {args.n_ctx}, {args.pairs} PCA pairs: "
          f"{size:.2f} MB of records per checkpoint; {args.checkpoints} checkpoints")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        new = run_journal(Path(tmp), shape, args.checkpoints)
        old = run_copy(Path(tmp), shape, points)
    print(f"{'checkpoint':>10} {'append ms':>10} {'amortised':>10} {'compactions':>11} "
          f"{'metrics.h5':>10} {'entries':>7} {'steps() ms':>10} {'series() s':>10} | {'copy-the-file ms':>16}")
    for point in points:
        row = new[point]
        print(f"{point:>10} {row['typical'] * 1e3:>10.1f} {row['amortised'] * 1e3:>10.1f} "
              f"{row['compactions']:>11} {row['mb']:>8.0f}MB {row['entries']:>7} "
              f"{row['steps'] * 1e3:>10.1f} {row['series']:>10.2f} | {old[point] * 1e3:>16.1f}")
    first, last = points[0], points[-1]
    print(f"ratio {last}/{first}: append {new[last]['typical'] / new[first]['typical']:.2f} (goal <= 1.5), "
          f"amortised {new[last]['amortised'] / new[first]['amortised']:.2f}, "
          f"copy-the-file {old[last] / old[first]:.2f}")
    print(f"at checkpoint {args.checkpoints}: a fresh reader's store.steps {new['fresh_steps'] * 1e3:.0f} ms "
          f"(it parses every journal entry once); store.compact {new['compact']:.2f} s, after which "
          f"store.series takes {new['compacted_series']:.2f} s")


if __name__ == "__main__":
    main()
