"""The ``interp`` command: train, resume, list presets and runs, summarise, quickstart, app.

Bad input of any kind ends with one line on stderr (``interp: error: ...``) and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from interp.errors import InterpError

DEFAULT_ROOT = Path("checkpoints")


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (argparse prints the usage first), exit 2."""

    def error(self, message: str):
        self.exit(2, f"interp: error: {message}; see '{self.prog} --help'\n")


def _parser() -> argparse.ArgumentParser:
    from interp.config import PRESETS

    parser = _Parser(prog="interp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a preset (with overrides) or resume a run")
    train.add_argument("preset", nargs="?", help=f"one of: {', '.join(PRESETS)} (default: default)")
    train.add_argument("overrides", nargs="*", metavar="key=value",
                       help="config overrides such as model.n_layers=3 or lr=1e-3; with --resume only "
                            "train.until and train.max_tokens (train.until=phase: train on until the "
                            "phase change is complete)")
    train.add_argument("--config", help="a .toml/.json/.yaml file of config values")
    train.add_argument("--out", type=Path, default=DEFAULT_ROOT, help="where run directories go")
    train.add_argument("--name", help="run directory name (default: preset and time)")
    train.add_argument("--resume", type=Path, metavar="RUN", help="continue RUN from its last checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    sub.add_parser("presets", help="list the presets and what each shows")
    runs = sub.add_parser("runs", help="list runs and their status")
    runs.add_argument("root", nargs="?", type=Path, default=DEFAULT_ROOT)
    summary = sub.add_parser("summary", help="print a run's summary")
    summary.add_argument("run", type=Path)
    analyze = sub.add_parser("analyze", help="measure every checkpoint not analysed yet (incremental)")
    analyze.add_argument("run", type=Path)
    analyze.add_argument("--no-ablation", action="store_true", help="skip the per-head ablations")
    analyze.add_argument("--icl-examples", type=int, default=256, help="held-out sequences for the ICL score")
    analyze.add_argument("--redo", action="store_true", help="drop stored analysis and measure everything again")
    analyze.add_argument("--no-progress", action="store_true")
    report = sub.add_parser("report", help="print the phase-change summary and write the figures")
    report.add_argument("runs", type=Path, nargs="+")
    report.add_argument("--out", type=Path, help="folder for the PNG files (default: RUN/figures)")
    quick = sub.add_parser("quickstart", help="train the default preset (or resume it), analyse, report")
    quick.add_argument("preset", nargs="?", default="default")
    quick.add_argument("--out", type=Path, default=DEFAULT_ROOT)
    sweep = sub.add_parser("sweep", help="run every run of a sweep file (grid x seeds), then analyse each")
    sweep.add_argument("file", type=Path, help="a .yaml/.toml sweep file (see docs/SWEEPS.md)")
    sweep.add_argument("--out", type=Path, default=DEFAULT_ROOT, help="runs go to OUT/<sweep name>/<run>")
    sweep.add_argument("--backend", choices=["local", "ray", "slurm"], default="local")
    sweep.add_argument("--jobs", type=int, help="local: runs at once, each pinned to its share of the cores "
                                                "(default 1); slurm: jobs in flight (default: all)")
    sweep.add_argument("--address", help="ray: cluster address ('auto', 'ray://head:10001'); default: a local instance")
    sweep.add_argument("--cpus-per-run", type=float, default=1, help="ray, slurm: CPUs each run asks for")
    sweep.add_argument("--gpus-per-run", type=float, default=0, help="ray, slurm: GPUs each run asks for")
    sweep.add_argument("--slurm-partition", help="slurm: the partition to submit to (default: the cluster's)")
    sweep.add_argument("--slurm-time", type=int, default=24 * 60, metavar="MINUTES", help="slurm: each job's time limit")
    sweep.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE",
                       help="slurm: one more #SBATCH option, such as mem=32G or account=lab (repeatable)")
    sweep.add_argument("--slurm-cluster", choices=["slurm", "local"], default="slurm",
                       help="slurm: 'local' runs the same jobs as processes here (submitit's LocalExecutor)")
    sweep.add_argument("--dry-run", action="store_true", help="check the file and list the runs; start nothing")
    app = sub.add_parser("app", help="open the interactive workbench (Streamlit) on the runs in DIR")
    app.add_argument("root", nargs="?", type=Path, default=DEFAULT_ROOT, metavar="DIR")
    app.add_argument("--port", type=int, default=8501)
    return parser


def _app(root: Path, port: int) -> int:
    """Run ``streamlit run apps/workbench.py -- DIR`` (through apps/launch.py) bound to
    127.0.0.1, stopping with us."""
    if not 1 <= port <= 65535:
        raise InterpError(f"--port must be between 1 and 65535, not {port}")
    if not root.is_dir():
        raise InterpError(f"'{root}' is not a folder of runs; give the folder that holds them (default checkpoints/)")
    from interp.appfiles import workbench_script  # finds the app's file; imports none of it

    script = workbench_script()
    import importlib.util

    if importlib.util.find_spec("streamlit") is None:  # find it without importing it: only apps/ imports it
        raise InterpError("the workbench needs streamlit; install it with 'pip install streamlit circuitsvis'")
    # launch.py is `streamlit run` with the app's modules imported while the server starts
    command = [sys.executable, str(script.parent / "launch.py"), "run", str(script), "--server.address", "127.0.0.1",
               "--browser.gatherUsageStats", "false",
               "--server.headless", "true", "--server.port", str(port), "--", str(root.resolve())]
    print(f"workbench on http://127.0.0.1:{port}/ (runs under {root}); Ctrl-C stops it")
    return _serve(command)


def _serve(command: list[str]) -> int:
    """Run the server as a child that never outlives ``interp app``: SIGTERM and SIGHUP are
    passed on to it (their default action would end this process and leave the server
    listening), Ctrl-C stops it, and on Linux the kernel sends it SIGTERM if this process dies
    any other way (even SIGKILL). Returns the exit status: 128 + N for a stop by signal N."""
    import signal
    import subprocess

    child = subprocess.Popen(command, preexec_fn=_die_with_parent if sys.platform == "linux" else None)

    def forward(signum, frame) -> None:
        child.send_signal(signal.SIGTERM)
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        code = child.wait()
    except KeyboardInterrupt:
        child.terminate()
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:  # an exception while waiting: never leave it serving
            child.kill()
            child.wait()
    return 128 - code if code < 0 else code


def _die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent dies (PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl: the signal forwarding above still holds
        pass


def _sweep(args: argparse.Namespace) -> int:
    from interp.sweep import load_sweep, run_sweep

    sweep = load_sweep(args.file)
    if args.jobs is not None and args.jobs < 1:
        raise InterpError("--jobs must be at least 1")
    if not (0 < args.cpus_per_run < float("inf") and 0 <= args.gpus_per_run < float("inf")):
        raise InterpError(f"--cpus-per-run must be > 0 and --gpus-per-run >= 0, not "
                          f"{args.cpus_per_run} and {args.gpus_per_run}")
    if args.dry_run:
        print(f"sweep {sweep.name}: {len(sweep.runs)} runs under {args.out / sweep.name}")
        for run in sweep.runs:
            print(f"  {run.name}")
        return 0
    slurm = None
    if args.backend == "slurm":
        from interp.sweep.slurm import SlurmOptions, parse_options

        slurm = SlurmOptions(args.slurm_cluster, args.slurm_partition, args.slurm_time,
                             parse_options(args.slurm_option))
    results = run_sweep(sweep, args.out, args.backend, args.jobs, args.address,
                        args.cpus_per_run, args.gpus_per_run, slurm=slurm)
    return 1 if any("error" in r for r in results) else 0


def analyse_each_checkpoint(run_dir: Path, step: int) -> None:
    """The ``on_checkpoint`` callback that :func:`interp.train.train` gets for a run with
    ``train.analyze``: analyse the checkpoint just written (``analyze_run`` is incremental, so
    it measures only what is new) and update the phase statistics."""
    from interp.analysis import analyze_run

    analyze_run(run_dir, progress=False, wait=True)  # never fail training over a user's analyze


def _on_checkpoint(config):
    """What training should call after each checkpoint of a run with ``config``."""
    return analyse_each_checkpoint if config.train.analyze else None


def _train(args: argparse.Namespace) -> Path:
    from interp.checkpoints import read_config
    from interp.config import build_config
    from interp.train import train

    if args.resume:
        return train(None, args.resume, resume=True, progress=not args.no_progress,
                     on_checkpoint=_on_checkpoint(read_config(args.resume)), changes=_resume_changes(args))
    # ``interp train --config FILE key=value``: argparse takes the first key=value for the preset.
    named = args.preset if args.preset and "=" not in args.preset else None
    overrides = list(args.overrides) if named or not args.preset else [args.preset, *args.overrides]
    config = build_config(named or "default", args.config, overrides)
    name = run_folder_name(args.name) if args.name else f"{config.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    return train(config, args.out / name, progress=not args.no_progress,
                 on_checkpoint=_on_checkpoint(config))


def _resume_changes(args: argparse.Namespace) -> dict | None:
    """The key=value pieces given with --resume (argparse puts the first one in ``preset``),
    parsed; a preset name or --config there is refused, since the run has its config."""
    from interp.config import parse_overrides

    pieces = ([args.preset] if args.preset else []) + list(args.overrides)
    if args.config or any("=" not in piece for piece in pieces):
        raise InterpError(f"--resume continues RUN with its own config.json; give no preset or --config, "
                          f"only key=value for train.until or train.max_tokens (got '{' '.join(pieces) or '--config'}')")
    return parse_overrides(pieces) or None


def run_folder_name(name: str) -> str:
    """``--name`` as one folder directly under ``--out``: no separator, not '.' or '..', not
    hidden (``interp runs`` lists no hidden folder), so a run is never written outside --out."""
    bad = (not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name
           or "\0" in name)
    if bad:
        raise InterpError(f"--name '{name}' must be a plain folder name (no '/', not '.' or '..', not "
                          f"starting with '.'); the run goes to --out/NAME")
    return name


def _quickstart(args: argparse.Namespace) -> Path:
    """Train ``preset`` into ``<out>/<preset>`` unless it finished already; resume it if it broke."""
    from interp.checkpoints import list_checkpoints, read_config, run_status
    from interp.config import preset
    from interp.train import train

    run_dir = args.out / args.preset
    status = run_status(run_dir) if run_dir.exists() else "new"
    if status == "finished":
        print(f"{run_dir} is already trained; showing its summary (delete it to train again)")
    elif status != "new" and list_checkpoints(run_dir):
        train(None, run_dir, resume=True, on_checkpoint=_on_checkpoint(read_config(run_dir)))
    else:
        config = preset(args.preset)
        train(config, run_dir, on_checkpoint=_on_checkpoint(config))
    return run_dir


def _time_line(clock: list[float]) -> str:
    """Where the quickstart's time went: [start, trained, analysed, reported] (perf_counter)."""
    start, trained, analysed, reported = clock
    return (f"time       {(reported - start) / 60:.1f} min: training {(trained - start) / 60:.1f} (wall clock, "
            f"with its checkpoints), analysis {(analysed - trained) / 60:.1f}, report and figures "
            f"{(reported - analysed) / 60:.1f}")


def _analyze(run_dir: Path, ablate: bool = True, icl_examples: int = 256, progress: bool = True,
             redo: bool = False) -> None:
    from interp import runlock
    from interp.analysis import AnalysisConfig, analyze_run, drop_analysis
    from interp.checkpoints import read_config, run_status
    from interp.fileio import refuse_links_out

    config = AnalysisConfig(ablate=ablate, icl_examples=icl_examples)
    read_config(run_dir)  # the clear error for a missing or foreign folder first
    refuse_links_out(run_dir)  # before the lock file is opened (untrusted runs: interp/fileio.py)
    with runlock.hold(run_dir, "analyze"):  # --redo and the analysis as one: nobody in between
        if redo:
            drop_analysis(run_dir)
        result = analyze_run(run_dir, config, progress)
    note = " (still training: run it again for newer checkpoints)" if run_status(run_dir) == "training" else ""
    print(f"analysed {len(result['analyzed'])} new checkpoint(s) of {run_dir}{note}")
    for step, reason in result["skipped"].items():
        print(f"skipped step {step}: {reason}")


def _report(run_dirs: list[Path], out: Path | None) -> None:
    from interp.report import text_report, write_figures

    for run_dir in run_dirs:
        print(text_report(run_dir))
    paths = write_figures(run_dirs, out)
    print(f"figures    {len(paths)} PNG files in {paths[0].parent}" if paths else "figures    none written")


def _runs(root: Path) -> None:
    """One line per run; a run whose files cannot be read, or that holds a link out of its
    folder, is listed as damaged, never stopping the listing of the others."""
    from interp.checkpoints import list_checkpoints, read_run_info, run_status
    from interp.fileio import refuse_links_out

    runs = sorted(p for p in root.glob("*") if (p / "config.json").is_file()) if root.is_dir() else []
    if not runs:
        print(f"no runs under {root}; start one with 'interp train'")
    for run in runs:
        try:
            refuse_links_out(run)
            info = read_run_info(run)
            print(f"{run.name:40s} {run_status(run):12s} {len(list_checkpoints(run)):4d} checkpoints  "
                  f"step {info.get('step', '-')}")
        except (InterpError, OSError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            print(f"{run.name:40s} {'damaged':12s} {reason}")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line; ``train``'s key=value overrides may also follow its options.

    argparse takes positionals only before the first option (``train markov --out X steps=5``
    left ``steps=5`` unrecognised), so what it leaves over is taken as more overrides when
    every piece is one; anything else is the usual one-line usage error.
    """
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if not extra:
        return args
    if getattr(args, "command", None) == "train" and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
        return args
    return parser.parse_args(argv)  # exits with argparse's message


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse(argv)
    except SystemExit as done:  # --help (0) or a usage error (2, one line already printed)
        return done.code if isinstance(done.code, int) else 2
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.command == "presets":
            from interp.config import PRESET_ADVICE, PRESET_HELP, PRESETS

            for name in PRESETS:
                print(f"{name:15s} {PRESET_HELP.get(name, '')}")
            print("\nwhich to use (measured on six corpora: docs/PRESETS.md):")
            for advice in PRESET_ADVICE:
                print(f"  {advice.data}:\n      {advice.command()}")
                if advice.why:
                    print(f"      ({advice.why})")
        elif args.command == "runs":
            _runs(args.root)
        elif args.command in ("train", "summary"):
            from interp.summary import summarize

            print(summarize(_train(args) if args.command == "train" else args.run))
        elif args.command == "analyze":
            _analyze(args.run, ablate=not args.no_ablation, icl_examples=args.icl_examples,
                     progress=not args.no_progress, redo=args.redo)
        elif args.command == "report":
            _report(args.runs, args.out)
        elif args.command == "sweep":
            return _sweep(args)
        elif args.command == "app":
            return _app(args.root, args.port)
        elif args.command == "quickstart":
            clock = [time.perf_counter()]
            run_dir = _quickstart(args)
            clock.append(time.perf_counter())
            _analyze(run_dir)
            clock.append(time.perf_counter())
            _report([run_dir], None)
            print(_time_line(clock + [time.perf_counter()]))
    except InterpError as err:
        print(f"interp: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a path that cannot be made, read or written; a full disk
        print(f"interp: error: {_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = ("run the same 'interp sweep' command again to resume it" if args.command == "sweep"
                 else "continue with 'interp train --resume RUN'")
        print(f"interp: interrupted; {again}", file=sys.stderr)
        return 130
    return 0


def _os_error(err: OSError) -> str:
    """An OSError in one line: what failed, on which path, and what to check."""
    where = f"{err.filename}: " if err.filename else ""
    also = f" -> {err.filename2}" if getattr(err, "filename2", None) else ""
    what = err.strerror or str(err).splitlines()[0]
    return f"{where[:-2]}{also}: {what}; check the path, its permissions and the free disk space" \
        if where else f"{what}; check the paths given, their permissions and the free disk space"


if __name__ == "__main__":
    sys.exit(main())
