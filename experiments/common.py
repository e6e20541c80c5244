"""What the experiment scripts share: arguments, running their sweeps, reading runs, writing.

Every experiment runs (or reuses) its sweeps through :func:`interp.sweep.run_sweep`, so a
second invocation skips finished runs and only redraws the figures and the summary. The
small size is the default; ``--scale`` swaps in the paper-like sweep files (``*-scale.yaml``)
meant for a GPU or a Ray cluster.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from interp import store  # noqa: E402
from interp.analysis import analysis_series  # noqa: E402
from interp.config import RunConfig  # noqa: E402
from interp.measures.icl import icl_band_score  # noqa: E402
from interp.runs import read_config  # noqa: E402
from interp.sweep import load_sweep, run_sweep, sweep_dirs  # noqa: E402

SWEEPS = ROOT / "experiments" / "sweeps"


def parse_args(name: str, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--scale", action="store_true",
                      help="the paper-like size (sweeps/*-scale.yaml): for a GPU or a Ray cluster")
    size.add_argument("--text", action="store_true",
                      help="natural text instead of Markov chains (sweeps/*-text.yaml, where one exists)")
    size.add_argument("--seeds", action="store_true",
                      help="natural text, 3 seeds per model: across-seed intervals (sweeps/*-text-seeds.yaml)")
    parser.add_argument("--out", type=Path, default=ROOT / "checkpoints", help="where the sweeps' runs go")
    parser.add_argument("--results", type=Path, help=f"figures and summary (default docs/results/{name}[-scale])")
    parser.add_argument("--jobs", type=int, default=2, help="local backend: runs at once")
    parser.add_argument("--backend", choices=["local", "ray"], default="local")
    parser.add_argument("--address", help="ray: cluster address (default: a local instance)")
    parser.add_argument("--gpus-per-run", type=float, default=0)
    parser.add_argument("--no-run", action="store_true", help="only read finished runs; train nothing")
    parser.add_argument("--sweeps", type=Path, default=SWEEPS, help="folder of the sweep files")
    args = parser.parse_args()
    args.suffix = "-scale" if args.scale else "-text" if args.text else "-text-seeds" if args.seeds else ""
    args.results = args.results or ROOT / "docs" / "results" / (name + args.suffix)
    args.results.mkdir(parents=True, exist_ok=True)
    return args


def sweep_runs(args: argparse.Namespace, *names: str) -> dict[str, list["Run"]]:
    """Run (or reuse) each named sweep; return sweep name -> its runs that have an analysis."""
    out = {}
    for name in names:
        path = args.sweeps / f"{name}{args.suffix}.yaml"
        if not path.exists():
            raise SystemExit(f"{Path(sys.argv[0]).name}: no sweep file {path} for this size")
        sweep = load_sweep(path)
        if not args.no_run:
            run_sweep(sweep, args.out, args.backend, args.jobs, args.address, 1, args.gpus_per_run)
        if not sweep.analyze:  # a sweep that only trains: analyse its finished runs here (also with --no-run)
            analyse_finished(sweep_dirs(sweep, args.out).values(), ablate=sweep.ablation)
        runs = [load_run(path) for path in sweep_dirs(sweep, args.out).values()
                if (path / "metrics.h5").exists()]
        out[name] = [run for run in runs if len(run.rows.get("step", []))]
        if len(out[name]) < len(sweep.runs):
            print(f"{name}: {len(sweep.runs) - len(out[name])} of {len(sweep.runs)} runs have no analysis yet; "
                  f"they are left out")
    return out


def analyse_finished(paths, ablate: bool) -> None:
    """``analyze_run`` on each finished run with a checkpoint not analysed yet (runs still
    training are left for a later invocation)."""
    from interp.analysis import AnalysisConfig, analyze_run, analyzed_steps
    from interp.runs import list_checkpoints, run_status

    for path in paths:
        if not path.is_dir() or run_status(path) != "finished":
            continue
        if not {c.step for c in list_checkpoints(path)} <= analyzed_steps(path):
            print(f"analysing {path.name} (ablations {'on' if ablate else 'off'})", flush=True)
            analyze_run(path, AnalysisConfig(ablate=ablate), progress=False)


def model_label(config: RunConfig) -> str:
    """``2L attn-only``, ``3L MLP smeared``: a model's short name in tables and figures."""
    m = config.model
    return f"{m.n_layers}L {'attn-only' if m.attn_only else 'MLP'}{' smeared' if m.smeared_key else ''}"


@dataclass
class Run:
    """One analysed run: its config, stored series and phase statistics."""

    path: Path
    config: RunConfig
    rows: dict[str, Any]       # the analysis group, sorted by step
    train: dict[str, Any]      # training-loss records
    phase: dict[str, Any]      # phase attributes (window, induction heads, formation, lags)

    @property
    def seed(self) -> int:
        return self.config.train.seed

    @property
    def label(self) -> str:
        return model_label(self.config)

    @property
    def tokens(self) -> np.ndarray:
        return np.asarray(self.rows["tokens"], dtype=float)

    @property
    def icl(self) -> np.ndarray:
        """Band ICL score at every analysed checkpoint (nats; more negative = more ICL)."""
        return icl_band_score(np.asarray(self.rows["loss_by_position"], dtype=float))

    @property
    def window(self) -> tuple[float, float] | None:
        if not self.phase.get("has_window"):
            return None
        return float(self.phase["window_start_tokens"]), float(self.phase["window_end_tokens"])

    @property
    def induction_heads(self) -> list[tuple[int, int]]:
        text = str(self.phase.get("induction_heads", "") or "")
        return [tuple(int(x) for x in h.split(".")) for h in text.split(",") if h]

    def formation(self, head: tuple[int, int]) -> float | None:
        value = self.phase.get(f"head_{head[0]}.{head[1]}_formation_tokens")
        return None if value is None or not np.isfinite(value) else float(value)

    def best_prefix_matching(self) -> np.ndarray:
        """Highest prefix-matching score of any head, at each checkpoint."""
        return np.asarray(self.rows["prefix_matching"], dtype=float).reshape(len(self.tokens), -1).max(axis=1)


def load_run(path: Path) -> Run:
    return Run(path, read_config(path), analysis_series(path), store.series(path, "train"),
               store.attrs(path, "phase"))


def shade(ax, run: Run, colour: str = "tab:grey") -> None:
    if run.window:
        ax.axvspan(*run.window, color=colour, alpha=0.15, lw=0)


def fmt_tokens(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value / 1e6:.2f}M"


def mean_spread(values: list[float], sign: str = "+") -> str:
    """``mean (min..max, n=k)`` of what was measured; '-' when nothing was."""
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "-"
    f = f"{{:{sign}.3g}}".format
    return f"{f(np.mean(values))} (range {f(min(values))}..{f(max(values))}, n={len(values)})"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def write_summary(args: argparse.Namespace, title: str, lines: list[str], started: float) -> Path:
    path = args.results / "summary.md"
    size = {"-scale": "paper-like (--scale)", "-text": "natural text (--text)",
            "-text-seeds": "natural text, several seeds per model (--seeds)"}.get(
        args.suffix, "small (this machine's size)")
    head = [f"# {title}", "", f"Size: {size}. Written by `{Path(sys.argv[0]).name}` on "
            f"{time.strftime('%Y-%m-%d')}; this invocation took {time.time() - started:.0f} s "
            f"(sweep time included only for runs it trained).", ""]
    path.write_text("\n".join(head + lines) + "\n")
    print(path.read_text())
    return path


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(f"wrote {path}")
    return path
