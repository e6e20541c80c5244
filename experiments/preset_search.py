"""Search for the default preset: which config forms induction heads soonest on this CPU?

Each candidate is the default preset plus overrides. It trains in a subprocess with
``interp train`` while this script watches its metrics file; a candidate stops as soon as a
head of layer >= 1 holds prefix matching >= ``--target`` at two checkpoints in a row, or when
its time runs out. One JSON line per candidate goes to ``--log`` (wall time and tokens at
which the head formed, ICL score before and after, tokens/s).

    python experiments/preset_search.py --minutes 8 "model.d_model=128 model.n_heads=2" ...
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from interp import store
from interp.errors import InterpError


def watch(run_dir: Path, target: float) -> dict | None:
    """The first checkpoint index from which two in a row pass ``target``, with its numbers."""
    try:
        evals, train = store.series(run_dir, "eval"), store.series(run_dir, "train")
    except (InterpError, OSError, KeyError):
        return None
    if len(evals.get("step", [])) < 2:
        return None
    late = evals["prefix_matching"][:, 1:].max(axis=(1, 2))
    passed = np.flatnonzero((late[1:] >= target) & (late[:-1] >= target))
    if passed.size == 0:
        return None
    index = int(passed[0])
    return {"tokens": int(evals["tokens"][index]), "step": int(evals["step"][index]),
            "wall_seconds": float(np.interp(evals["tokens"][index], train["tokens"], train["wall_seconds"])),
            "prefix_matching": float(late[index]), "icl_start": float(evals["icl_score"][0]),
            "icl_at_formation": float(evals["icl_score"][index]),
            "tokens_per_second": float(np.median(train["tokens_per_second"]))}


def run_candidate(overrides: list[str], name: str, out: Path, minutes: float, target: float) -> dict:
    command = [sys.executable, "-m", "interp.cli", "train", "default", *overrides,
               "--out", str(out), "--name", name, "--no-progress"]
    started = time.time()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = None
    while process.poll() is None and time.time() - started < minutes * 60:
        time.sleep(5)
        result = watch(out / name, target)
        if result:
            break
    process.kill()
    process.wait()
    final = result or watch(out / name, target)
    evals = store.series(out / name, "eval") if (out / name / store.FILENAME).exists() else {}
    last = {"last_tokens": int(evals["tokens"][-1]),
            "last_prefix_matching": float(evals["prefix_matching"][-1, 1:].max()),
            "last_icl": float(evals["icl_score"][-1])} if len(evals.get("step", [])) else {}
    return {"overrides": overrides, "formed": final is not None, **(final or {}), **last,
            "elapsed_seconds": time.time() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="+", help="space-separated overrides, one string per candidate")
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=Path("checkpoints/search"))
    parser.add_argument("--log", type=Path, default=Path("docs/preset_search.jsonl"))
    args = parser.parse_args()
    for i, candidate in enumerate(args.candidates):
        name = f"cand-{time.strftime('%H%M%S')}-{i}"
        record = run_candidate(candidate.split(), name, args.out, args.minutes, args.target)
        record["name"] = name
        with open(args.log, "a") as log:
            log.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
