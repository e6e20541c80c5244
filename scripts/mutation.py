"""Mutation testing of the given source paths against the fast tests that exercise them.

    .venv/bin/python scripts/mutation.py interp/measures          # the measures (16-30 min on 2 cores)
    .venv/bin/python scripts/mutation.py interp/measures/pca.py   # one file
    .venv/bin/python scripts/mutation.py interp/measures --report out/mutation.md --keep
    .venv/bin/python scripts/mutation.py interp/phase/edges.py --work /tmp/mut-edges  # resumable
    .venv/bin/python scripts/mutation.py interp/measures/icl.py --only "interp.measures.icl.x_per_token_losses__*"

The tool is mutmut 3 (the ``dev`` extra). Nothing in the checkout is touched: the working tree
(tracked files and untracked ones git does not ignore) is copied into a work folder outside the
checkout, mutmut runs there (its own copy is ``mutants/`` inside that folder). By default the
folder is a new temporary one, deleted at the end unless ``--keep``; if the run is interrupted
(Ctrl-C, SIGTERM) it is kept and its path printed. ``--work DIR`` names the folder instead and
always keeps it; calling the script again with the same DIR resumes: the working tree is copied
over it again and mutmut keeps every result it already has (a stopped run loses at most the
mutants that were under test). ``--rerun-survivors`` re-tests the mutants not yet killed there,
against the tests as they are now (after adding tests). The script prints the score (killed /
total) per module and in total, and every mutant that was not killed with its diff; ``--report
FILE`` writes the same as Markdown.

Slow mutants: a mutant that makes the tests run far longer than they do on the original code
(a finer breakpoint grid, a loop that no longer ends) is stopped and counted as ``timeout``,
which counts as caught (the mutant changed behaviour observably; mutmut's convention). The
limit is CPU time, which does not grow with the machine's load: 2 * m * (t + 1) seconds, t the
time the mutant's tests took on the original code and m ``--timeout-multiplier`` (default 3;
mutmut's own 15 let two grid-enlarging mutants of interp/phase/edges.py run for many minutes
each). mutmut also stops a mutant after m * (t + 1) seconds of wall-clock time, which on a
machine shared with other jobs stopped mutants that were only waiting for a core, equivalent
ones included; the script stretches that limit ``--wall-factor`` times (default 8), so it only
catches a mutant that hangs without using the CPU. Changing m makes mutmut test the timed-out
mutants again. Timeouts are listed by name with their diffs.

Which tests run: TESTS below maps each source folder to the fast test files that exercise it
(tests marked ``slow`` or ``browser`` are left out); mutmut then runs, for each mutant, only the
tests that called the mutated function, stopping at the first failure. ``--tests`` overrides the
mapping. To cover a new folder, add one line to TESTS and pass the folder. In the copy, the
mutated module's own test file (``tests/test_<package>_<module>.py`` or ``test_<module>.py``)
runs first, so a mutant it catches stops within seconds rather than after the slower tests of
the whole package; the order changes the time, not the verdicts.

One rewrite, in the copy only: mutmut 3 skips every decorated function, and most measures are
``@torch.no_grad()`` functions. So in the copy each function whose only decorators are
``@torch.no_grad()`` / ``@torch.inference_mode()`` is rewritten as the undecorated function
followed by ``name = torch.no_grad()(name)``, which is what the decorator does; mutmut then
mutates it like any other. Functions with any other decorator stay unmutated and are listed.

Survivors are matched against docs/MUTATION.md: a survivor whose name does not appear there is
flagged as unexplained (mutant numbers change when a function changes, so re-check the list
after editing a mutated file).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Source folder -> the fast test files that exercise it. One line per folder.
TESTS = {
    "interp/measures": ["tests/test_measures.py", "tests/test_circuits.py", "tests/test_analysis.py",
                        "tests/test_composition_trend.py", "tests/test_icl_context.py", "tests/test_activations.py"],
    "interp/phase": ["tests/test_phase.py", "tests/test_phase_window.py", "tests/test_phase_lag.py",
                     "tests/test_phase_parts.py", "tests/test_phase_edges.py", "tests/test_phase_heads.py",
                     "tests/test_until.py"],
}
PYTEST_ARGS = ["-m", "not slow and not browser", "-p", "no:cacheprovider"]
NEUTRAL_DECORATORS = {"torch.no_grad()", "torch.inference_mode()"}
DETECTED = {"killed", "timeout", "segfault"}  # the tests failed, hung or crashed: the mutant was caught
INTERRUPTED = "check was interrupted by user"


def tests_for(targets: list[str]) -> list[str]:
    tests: list[str] = []
    for target in targets:
        matches = [folder for folder in TESTS if target == folder or target.startswith(folder + "/")]
        if not matches:
            sys.exit(f"no tests known for {target}: add it to TESTS in {Path(__file__).name} or pass --tests")
        for test in TESTS[matches[0]]:
            if test not in tests:
                tests.append(test)
    return tests


def copy_tree(dest: Path) -> None:
    """Copy the working tree (tracked + untracked-not-ignored files) to ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def undecorate(path: Path) -> tuple[list[str], list[str]]:
    """Rewrite neutral decorators as assignments after the function (see the module docstring).

    Returns (rewritten function names, names of functions left decorated, which mutmut skips).
    """
    import libcst as cst

    module = cst.parse_module(path.read_text())
    rewritten: list[str] = []
    skipped: list[str] = []

    class Rewrite(cst.CSTTransformer):
        def __init__(self):
            self.depth = 0

        def visit_FunctionDef(self, node):
            self.depth += 1
            if node.decorators and not (self.depth == 1 and self._neutral(node)):
                skipped.append(node.name.value)
            return True

        def leave_FunctionDef(self, original, updated):
            self.depth -= 1
            if self.depth or not updated.decorators or not self._neutral(updated):
                return updated
            name = updated.name.value
            rewritten.append(name)
            wraps = [cst.parse_statement(f"{name} = {module.code_for_node(d.decorator)}({name})")
                     for d in reversed(updated.decorators)]
            return cst.FlattenSentinel([updated.with_changes(decorators=[]), *wraps])

        def visit_ClassDef(self, node):
            self.depth += 1  # methods stay as they are
            return True

        def leave_ClassDef(self, original, updated):
            self.depth -= 1
            return updated

        @staticmethod
        def _neutral(node) -> bool:
            return all(module.code_for_node(d.decorator) in NEUTRAL_DECORATORS for d in node.decorators)

    path.write_text(module.visit(Rewrite()).code)
    return rewritten, skipped


ORDER_HOOK = """

# Added by scripts/mutation.py in its copy only: the mutated modules' own test files run first,
# so that a mutant they catch stops at once (mutmut runs pytest -x) instead of after the others.
def pytest_collection_modifyitems(config, items):
    first = {first!r}
    items.sort(key=lambda item: item.nodeid.split("::")[0].rsplit("/", 1)[-1] not in first)
"""


def run_own_tests_first(work: Path, files: list[Path], tests: list[str]) -> list[str]:
    """In the copy, make pytest run ``tests/test_<package>_<module>.py`` (or ``test_<module>.py``)
    of each mutated module before the other test files; returns their names."""
    names = {Path(t).name for t in tests}
    first = sorted(n for f in files for n in (f"test_{f.parent.name}_{f.stem}.py", f"test_{f.stem}.py") if n in names)
    if first:
        conftest = work / "tests" / "conftest.py"
        conftest.parent.mkdir(exist_ok=True)
        with conftest.open("a") as out:
            out.write(ORDER_HOOK.format(first=first))
    return first


def target_files(work: Path, targets: list[str]) -> list[Path]:
    files = []
    for target in targets:
        p = work / target
        if not p.exists():
            sys.exit(f"{target} does not exist")
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return files


# What mutmut and this script write into the work folder: not part of the copied tree.
WORK_OWN = {"setup.cfg", "mutants", "mutmut.log"}


def write_config(work: Path, targets: list[str], tests: list[str], timeout_multiplier: float) -> None:
    if "[tool.mutmut]" in (work / "pyproject.toml").read_text():
        sys.exit("pyproject.toml has a [tool.mutmut] section; this script configures mutmut itself")
    only = [t if t.endswith(".py") else t.rstrip("/") + "/*" for t in targets]
    sources = sorted({t.split("/")[0] for t in targets})
    also = sorted(p.name for p in work.iterdir() if p.name not in sources and p.name not in WORK_OWN)

    def lines(values):
        return "".join(f"\n    {v}" for v in values)

    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        f"source_paths ={lines(sources)}\n"
        f"only_mutate ={lines(only)}\n"
        f"also_copy ={lines(also)}\n"
        f"pytest_add_cli_args_test_selection ={lines(tests)}\n"
        f"pytest_add_cli_args ={lines(PYTEST_ARGS)}\n"
        f"timeout_multiplier = {timeout_multiplier}\n"
        # torch is not fork-safe once it has run: fork workers from a clean server process.
        "process_isolation = forkserver\n")


def results(work: Path, mutmut: str) -> dict[str, str]:
    out = subprocess.run([mutmut, "results", "--all", "true"], cwd=work, check=True,
                         capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s+(\S+): (.+)$", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


def module_of(mutant: str) -> str:
    return mutant.split(".x_")[0].split(".xǁ")[0]


def work_folder(given: Path | None) -> tuple[Path, bool]:
    """The work folder and whether it is a temporary one; refuses a folder inside the checkout."""
    if given is None:
        return Path(tempfile.mkdtemp(prefix="interp-mutation-")), True
    work = given.resolve()
    if work == ROOT or ROOT in work.parents:
        sys.exit(f"--work {given}: the work folder must be outside the checkout ({ROOT})")
    if work.exists() and any(work.iterdir()) and not (work / "mutants").is_dir():
        sys.exit(f"--work {given}: exists and holds no earlier mutation run; give a new or empty folder")
    work.mkdir(parents=True, exist_ok=True)
    return work, False


# mutmut, with its wall-clock limit per mutant stretched: mutmut stops a mutant after half its
# CPU-time limit in wall-clock time (meant for multi-threaded tests), which on a machine shared
# with other jobs stops mutants that are merely waiting for a core; one that is equivalent to the
# original then counts as caught. The CPU-time limit does not depend on the load, so it decides;
# the stretched wall-clock limit only catches a mutant that hangs without using the CPU.
LAUNCH = """
import sys
import mutmut.workers.isolation as isolation
from mutmut.__main__ import cli
factor = float(sys.argv.pop(1))
register = isolation.register_timeout
isolation.register_timeout = lambda pid, timeout_s: register(pid, timeout_s * factor)
sys.argv[0] = "mutmut"
sys.exit(cli())
"""


def run_mutmut(work: Path, env: dict, log: Path, run_args: list[str], wall_factor: float) -> int:
    """``mutmut run`` in ``work``, its output appended to ``log``; stopped cleanly on Ctrl-C/SIGTERM."""
    with log.open("a") as out:
        run = subprocess.Popen([sys.executable, "-c", LAUNCH, str(wall_factor), "run", *run_args], cwd=work,
                               env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return run.wait()
        except KeyboardInterrupt:
            # mutmut saves each result as it comes, so stopping loses only the mutants under test.
            os.killpg(run.pid, signal.SIGINT)
            try:
                run.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)  # its fork server and workers, which ignore SIGINT
                run.wait()
            raise


def on_sigterm(signum, frame):
    raise KeyboardInterrupt  # run the clean-up path (and keep the work folder) when stopped with kill


def selected(name: str, patterns: list[str]) -> bool:
    """Whether ``--only`` keeps this mutant (no patterns: every mutant)."""
    return not patterns or any(fnmatch.fnmatch(name, p) for p in patterns)


def main() -> None:
    signal.signal(signal.SIGTERM, on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="+", help="source files or folders, relative to the repository root")
    parser.add_argument("--tests", nargs="+", help="test files to run (default: TESTS for the targets)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--report", type=Path, help="also write the result as Markdown to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (for `mutmut show` there)")
    parser.add_argument("--work", type=Path, help="work folder outside the checkout, kept; an existing one is resumed")
    parser.add_argument("--rerun-survivors", action="store_true",
                        help="with --work: test the mutants not killed there again, against the current tests")
    parser.add_argument("--rerun", nargs="+", default=[], metavar="MUTANT",
                        help="with --work: test these mutants again (names as printed)")
    parser.add_argument("--only", nargs="+", default=[], metavar="PATTERN",
                        help="test and report only the mutants whose names match these fnmatch patterns, "
                             "e.g. 'interp.measures.icl.x_per_token_losses__mutmut_*' (the functions an edit changed); "
                             "with --work, matching mutants are tested again even where they have a result")
    parser.add_argument("--timeout-multiplier", type=float, default=3.0,
                        help="stop a mutant after 2 x this x (t + 1) seconds of CPU time, t its tests' time on "
                             "the original code; counted as a timeout (default 3; mutmut's own is 15)")
    parser.add_argument("--wall-factor", type=float, default=8.0,
                        help="the wall-clock limit, mutmut's (this multiplier x (t + 1)) times this (default 8)")
    parser.add_argument("--fail-under", type=float, default=0.0, help="exit 1 below this score (percent)")
    args = parser.parse_args()

    targets = [t.rstrip("/") for t in args.targets]
    tests = args.tests or tests_for(targets)
    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if not mutmut:
        sys.exit("mutmut is not installed: bash scripts/install.sh --dev")
    version = subprocess.run([sys.executable, "-c", "import importlib.metadata as m; print(m.version('mutmut'))"],
                             capture_output=True, text=True).stdout.strip()

    work, temporary = work_folder(args.work)
    start = time.time()
    finished = False
    try:
        copy_tree(work)
        rewritten, skipped = {}, {}
        files = target_files(work, targets)
        for path in files:
            rel = str(path.relative_to(work))
            rewritten[rel], skipped[rel] = undecorate(path)
        first = run_own_tests_first(work, files, tests)
        write_config(work, targets, tests, args.timeout_multiplier)
        print(f"mutmut {version} on {' '.join(targets)}; tests: {' '.join(tests)}"
              + (f" ({', '.join(first)} first)" if first else "") + f"; work folder {work}", flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # one core per worker
        log = work / "mutmut.log"  # mutmut's own progress output, for `tail -f` during a long run
        print(f"mutmut's output: {log}", flush=True)
        again = list(args.rerun)
        if (work / "mutants").is_dir():  # a resumed run
            earlier = results(work, mutmut)
            # A stop interrupts the mutants under test (pytest exits 2); mutmut keeps that as
            # their result, so they are named to be tested again.
            again += [n for n, s in earlier.items() if s == INTERRUPTED or (args.rerun_survivors and s not in DETECTED)]
        # Without names mutmut tests the mutants that have no result yet; with names (or
        # fnmatch patterns), only those.
        returncode = run_mutmut(work, env, log, ["--max-children", str(args.jobs), *args.only], args.wall_factor)
        again = [n for n in again if selected(n, args.only)]
        if returncode == 0 and again:
            returncode = run_mutmut(work, env, log, ["--max-children", str(args.jobs), *again], args.wall_factor)
        status = {n: s for n, s in results(work, mutmut).items() if selected(n, args.only)}
        if returncode != 0 or not status:
            print(log.read_text(errors="replace")[-6000:])
            sys.exit(f"mutmut run failed (exit {returncode}); work folder kept: {work}")
        diffs = {name: subprocess.run([mutmut, "show", name], cwd=work, capture_output=True, text=True).stdout
                 for name, s in status.items() if s != "killed"}
        finished = True
    finally:
        if temporary and finished and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif not finished:
            print(f"not finished; the work folder is kept: resume with --work {work}", file=sys.stderr)
    minutes = (time.time() - start) / 60

    explained = (ROOT / "docs" / "MUTATION.md").read_text() if (ROOT / "docs" / "MUTATION.md").exists() else ""
    by_module: dict[str, Counter] = defaultdict(Counter)
    for name, s in status.items():
        by_module[module_of(name)][s] += 1

    def score(counts: Counter) -> str:
        total = sum(counts.values())
        caught = sum(counts[s] for s in DETECTED)
        other = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s not in DETECTED and n)
        return f"{caught}/{total} killed ({100 * caught / total:.1f}%)" + (f"; not killed: {other}" if other else "")

    total = sum(by_module.values(), Counter())
    out = [f"# Mutation testing: {' '.join(targets)}", "",
           f"mutmut {version}, tests: {' '.join(tests)} ({' '.join(PYTEST_ARGS)}), "
           f"{args.jobs} workers, {minutes:.1f} min", ""]
    out += [f"- {module}: {score(counts)}" for module, counts in sorted(by_module.items())]
    out += [f"- total: {score(total)}", ""]
    left = {f: s for f, s in skipped.items() if s}
    if left:
        out += ["Decorated functions mutmut does not mutate: "
                + "; ".join(f"{f}: {', '.join(s)}" for f, s in left.items()), ""]
    survivors = sorted((n for n in status if status[n] not in DETECTED), key=lambda n: (module_of(n), n))
    unexplained = [n for n in survivors if not re.search(re.escape(n) + r"\b", explained)]
    timeouts = sorted(n for n in status if status[n] == "timeout")
    if timeouts:
        out += [f"## Stopped for time ({len(timeouts)}; counted as caught)", "",
                "Each ran longer than the timeout; check that the mutant itself is slow, not the machine "
                "(`--work DIR --rerun NAME`, with a larger `--timeout-multiplier`).", ""]
        for name in timeouts:
            out += [f"### {name}", "", "```diff", diffs[name].split("\n", 1)[-1].strip(), "```", ""]
    if survivors:
        out += [f"## Not killed ({len(survivors)}; {len(unexplained)} not listed in docs/MUTATION.md)", ""]
        for name in survivors:
            flag = "" if name not in unexplained else "  [not in docs/MUTATION.md]"
            out += [f"### {name}: {status[name]}{flag}", "", "```diff", diffs[name].split("\n", 1)[-1].strip(), "```", ""]
    text = "\n".join(out)
    print(text)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + "\n")
    caught = sum(total[s] for s in DETECTED)
    if 100 * caught / max(1, sum(total.values())) < args.fail_under:
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
