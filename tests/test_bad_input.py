"""Bad input of every kind, as a hostile user or a failing machine would give it (issue 12).

A table of cases (configs, overrides, config files, sweep files, run folders, command-line
arguments) drives ``interp.cli.main`` in-process, and asserts for every case:

- exit status 0 or 2, never a traceback (on stdout, stderr or the log);
- on exit 2: exactly one line on stderr, ``interp: error: ...`` (plus nothing logged), and
  nothing left behind: every file and folder under the case's directory is as it was;
- on exit 0: no temporary file and no lock file left anywhere under it.

Cases that expect a refusal also name a phrase the line must hold, so a refusal for the
wrong reason fails too. Each case gets a fresh copy of one small trained and analysed run.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from interp import checkpoints, cli, store

TINY = ["model.d_model=32", "model.n_heads=2", "model.d_head=16", "model.n_ctx=32", "markov_states=8",
        "batch_size=8", "eval_examples=16", "precision=fp32", "log_checkpoints=3", "linear_checkpoints=2",
        "threads=1", "steps=10"]
ANALYZE = ["--no-progress", "--no-ablation", "--icl-examples", "16"]


@dataclass(frozen=True)
class Case:
    """``argv`` with ``{out}``, ``{run}``, ``{file}`` and ``{tmp}`` filled in; ``setup(ctx)``
    prepares files; ``refused`` is the phrase of the expected one-line error (None: exit 0)."""

    id: str
    argv: list[str]
    refused: str | None
    setup: Callable[["Ctx"], None] | None = None


@dataclass(frozen=True)
class Ctx:
    tmp: Path
    out: Path
    run: Path
    file: Path

    def write(self, data: str | bytes, name: str | None = None) -> None:
        path = self.file if name is None else self.file.with_name(name)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())


def train_case(id: str, overrides: list[str], refused: str | None) -> Case:
    return Case(id, ["train", "markov", *TINY, *overrides, "--out", "{out}", "--name", "new", "--no-progress"],
                refused)


def file_case(id: str, suffix: str, content: str | bytes, refused: str | None) -> Case:
    return Case(id, ["train", "markov", *TINY, "--config", "{file}" + suffix, "--out", "{out}", "--name", "new",
                     "--no-progress"], refused, lambda ctx: ctx.write(content, ctx.file.name + suffix))


def sweep_case(id: str, content: str | bytes, refused: str | None, suffix: str = ".yaml",
               extra: tuple[str, ...] = ("--dry-run",)) -> Case:
    return Case(id, ["sweep", "{file}" + suffix, "--out", "{out}", *extra], refused,
                lambda ctx: ctx.write(content, ctx.file.name + suffix))


def run_case(id: str, argv: list[str], refused: str | None, damage: Callable[[Path], None]) -> Case:
    return Case(id, argv, refused, lambda ctx: damage(ctx.run))


# ------------------------------------------------------------------ damage to a run folder

def write_to(name: str, data: str | bytes) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        (run / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    return damage


def each_checkpoint(name: str, data: str | bytes, only_last: bool = False) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        found = checkpoints.list_checkpoints(run)
        for checkpoint in found[-1:] if only_last else found:
            write_to(name, data)(checkpoint.path)
    return damage


def damage_metrics(run: Path) -> None:
    path = run / store.FILENAME
    path.write_bytes(b"\0" * 512 + path.read_bytes()[512:])


def truncate_last_weights(run: Path) -> None:
    file = checkpoints.list_checkpoints(run)[-1].path / "model.safetensors"
    file.write_bytes(file.read_bytes()[:100])


def drop_checkpoints(run: Path) -> None:
    for checkpoint in checkpoints.list_checkpoints(run):
        shutil.rmtree(checkpoint.path)


def drop_analysis(run: Path) -> None:
    with store.update(run) as handle:
        del handle["analysis"]


def mark_training(run: Path) -> None:
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "training", "pid": 999999999}))


def make_file(relative: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        path = ctx.tmp / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("a file, not a folder\n")
    return setup


SWEEP = ("preset: markov\nconfig:\n  model.d_model: 32\n  model.n_heads: 2\n  model.d_head: 16\n"
         "  model.n_ctx: 32\n  data.markov_states: 8\n  train.steps: 10\n")

CASES = [
    # ---------------------------------------------------------------- overrides
    train_case("lr-inf", ["lr=inf"], "train.lr must be a finite number"),
    train_case("lr-nan", ["lr=nan"], "train.lr must be a finite number"),
    train_case("lr-1e30", ["lr=1e30"], "train.lr must be in (0, 1]"),
    train_case("lr-negative", ["lr=-1"], "train.lr must be in (0, 1]"),
    train_case("lr-word", ["lr=fast"], "'lr' must be a number"),
    train_case("steps-1e12", ["steps=1e12"], "is beyond this workbench's limit"),
    train_case("steps-0", ["steps=0"], "train.steps and batch_size must be >= 1"),
    train_case("steps-fraction", ["steps=1.5"], "train.steps must be an integer"),
    train_case("seed-negative", ["seed=-1"], "train.seed must be in [0, 2**32)"),
    train_case("seed-huge", ["seed=1e20"], "train.seed must be in [0, 2**32)"),
    train_case("threads-negative", ["threads=-1"], "train.threads must be >= 0"),
    train_case("n_ctx-2", ["model.n_ctx=2"], "model.n_ctx must be >= 8"),
    train_case("n_ctx-0", ["model.n_ctx=0"], "must be >= 1"),
    train_case("d_model-1e9", ["model.d_model=1e9"], "model.d_model=1,000,000,000 is beyond"),
    train_case("n_heads-1e9", ["model.n_heads=1e9"], "model.n_heads=1,000,000,000 is beyond"),
    train_case("n_layers-0", ["model.n_layers=0"], "model.n_layers must be >= 1"),
    train_case("batch-1e9", ["batch_size=1e9"], "train.batch_size=1,000,000,000 is beyond"),
    train_case("vocab-1e9", ["data.vocab_size=1e9"], "data.vocab_size=1,000,000,000 is beyond"),
    train_case("states-1e9", ["markov_states=1e9"], "data.markov_states=1,000,000,000 is beyond"),
    train_case("states-1", ["markov_states=1"], "data.markov_states must be >= 2"),
    train_case("log-checkpoints-1e9", ["log_checkpoints=1e9"], "is beyond"),
    train_case("eval-examples-0", ["eval_examples=0"], "train.eval_examples must be >= 1"),
    train_case("log-every-0", ["log_every=0"], "train.log_every must be >= 1"),
    train_case("unknown-key", ["nosuch=1"], "is not a config key"),
    train_case("unknown-dotted-key", ["model.nosuch=1"], "unknown key 'nosuch' in section 'model'"),
    train_case("no-equals", ["lr"], "must look like key=value"),
    train_case("empty-key", ["=3"], "is not a config key"),
    train_case("empty-name", ["model.=3"], "unknown key '' in section 'model'"),
    train_case("empty-section", [".n_layers=2"], "starts with '.'"),
    train_case("three-parts", ["foo.bar.baz=1"], "unknown config section 'foo.bar'"),
    train_case("bool-word", ["attn_only=perhaps"], "must be true or false"),
    train_case("literal", ["positional=alibi"], "choose one of"),
    train_case("fp16-on-cpu", ["precision=fp16", "device=cpu"], "fp16 needs a CUDA device"),
    train_case("warmup-negative", ["warmup_steps=-1"], "train.warmup_steps must be >= 0"),
    train_case("beta-1", ["beta1=1"], "beta1, beta2 must be in [0, 1)"),
    train_case("min-lr-ratio-2", ["min_lr_ratio=2"], "min_lr_ratio must be in [0, 1]"),
    train_case("heldout-0.9", ["heldout_fraction=0.9"], "heldout_fraction must be in (0, 0.5)"),
    train_case("files-without-path", ["data.source=files"], "needs data.path"),
    train_case("missing-corpus", ["data.source=files", "data.path=/nonexistent/x.txt"], "/nonexistent/x.txt"),
    train_case("missing-jsonl", ["data.source=jsonl", "data.path=/nonexistent.jsonl"], "/nonexistent.jsonl"),
    train_case("missing-tokens", ["data.source=tokens", "data.path=/nonexistent.npy"], "/nonexistent.npy"),
    train_case("unknown-source", ["data.source=nosuch"], "choose one of"),
    train_case("markov-d_vocab", ["model.d_vocab=5"], "markov_states + 1"),
    train_case("rotary-odd-head", ["positional=rotary", "model.d_head=15"], "even d_head"),
    train_case("init-std-0", ["init_std=0"], "model.init_std must be > 0"),
    train_case("grad-clip-inf", ["grad_clip=inf"], "train.grad_clip must be a finite number"),
    Case("unknown-preset", ["train", "gpt5", "--out", "{out}"], "unknown preset 'gpt5'"),
    train_case("good-run", [], None),
    # ---------------------------------------------------------------- config files
    file_case("json-list", ".json", "[1, 2]", "must hold a mapping of sections"),
    file_case("json-scalar", ".json", "3", "must hold a mapping of sections"),
    file_case("json-section-scalar", ".json", '{"model": 3}', "config section 'model' must be a table"),
    file_case("json-syntax", ".json", '{"model": ', "is not valid json"),
    file_case("json-inf-string", ".json", '{"train": {"lr": "inf"}}', "train.lr must be a finite number"),
    file_case("yaml-syntax", ".yaml", "model: [\n", "is not valid yaml"),
    file_case("yaml-tab", ".yaml", "model:\n\tn_layers: 2\n", "is not valid yaml"),
    file_case("yaml-list", ".yaml", "- 1\n- 2\n", "must hold a mapping of sections"),
    file_case("yaml-section-list", ".yaml", "train: [1, 2]\n", "config section 'train' must be a table"),
    file_case("yaml-number-key", ".yaml", "model:\n  1: 2\n", "unknown key(s) [1] in [model]"),
    file_case("yaml-unknown-section", ".yaml", "optim:\n  lr: 1\n", "unknown config section 'optim'"),
    file_case("yaml-bad-value", ".yaml", "model:\n  n_layers: two\n", "model.n_layers must be an integer"),
    file_case("yaml-lr-without-dot", ".yaml", "train:\n  lr: 1e-3\n", None),
    file_case("toml-syntax", ".toml", "[model\n", "is not valid toml"),
    file_case("toml-unknown-key", ".toml", "[model]\nlayers = 2\n", "unknown key(s) ['layers'] in [model]"),
    file_case("yaml-not-utf8", ".yaml", b"train:\n  lr: \xff\xfe\n", "is not UTF-8 text"),
    file_case("toml-not-utf8", ".toml", b"\xff\xfe[model]\n", "is not UTF-8 text"),
    file_case("txt-suffix", ".txt", "model: {}\n", "must end in .toml, .json or .yaml"),
    Case("config-missing", ["train", "markov", "--config", "{tmp}/none.yaml", "--out", "{out}"], "not found"),
    Case("config-is-a-folder", ["train", "markov", "--config", "{tmp}", "--out", "{out}"], "not found"),
    # ---------------------------------------------------------------- where the run goes
    Case("out-under-a-file", ["train", "markov", *TINY, "--out", "{tmp}/afile/x", "--name", "new",
                              "--no-progress"], "Not a directory", make_file("afile")),
    Case("name-dotdot", ["train", "markov", *TINY, "--out", "{out}", "--name", ".."], "must be a plain folder name"),
    Case("name-slash", ["train", "markov", *TINY, "--out", "{out}", "--name", "a/b"], "must be a plain folder name"),
    Case("name-hidden", ["train", "markov", *TINY, "--out", "{out}", "--name", ".x"], "must be a plain folder name"),
    Case("name-taken", ["train", "markov", *TINY, "--out", "{tmp}", "--name", "run"], "already holds a run"),
    # ---------------------------------------------------------------- run folders
    Case("analyze-icl-0", ["analyze", "{run}", "--icl-examples", "0"], "--icl-examples must be at least 2"),
    Case("analyze-icl-negative", ["analyze", "{run}", "--icl-examples", "-5"], "--icl-examples must be at least 2"),
    Case("analyze-icl-word", ["analyze", "{run}", "--icl-examples", "many"], "invalid int value"),
    Case("analyze-missing-run", ["analyze", "{tmp}/nope"], "does not exist"),
    Case("analyze-not-a-run", ["analyze", "{out}"], "no config.json"),
    run_case("analyze-config-garbage", ["analyze", "{run}", *ANALYZE], "cannot be read",
             write_to("config.json", "{garbage")),
    run_case("analyze-config-not-utf8", ["analyze", "{run}", *ANALYZE], "cannot be read",
             write_to("config.json", b"\xff\xfe{}")),
    run_case("analyze-config-list", ["analyze", "{run}", *ANALYZE], "cannot be read", write_to("config.json", "[]")),
    run_case("analyze-config-section-scalar", ["analyze", "{run}", *ANALYZE], "cannot be read",
             write_to("config.json", '{"model": 3}')),
    run_case("analyze-damaged-metrics", ["analyze", "{run}", *ANALYZE], None, damage_metrics),
    run_case("analyze-redo-damaged-metrics", ["analyze", "{run}", "--redo", *ANALYZE], None, damage_metrics),
    run_case("analyze-manifest-list", ["analyze", "{run}", "--redo", *ANALYZE], None,
             each_checkpoint("manifest.json", "[]", only_last=True)),
    run_case("analyze-all-manifests-empty", ["analyze", "{run}", "--redo", *ANALYZE], None,
             each_checkpoint("manifest.json", "{}")),
    run_case("analyze-truncated-weights", ["analyze", "{run}", "--redo", *ANALYZE], None, truncate_last_weights),
    run_case("analyze-no-checkpoints", ["analyze", "{run}", *ANALYZE], "no complete checkpoint yet",
             drop_checkpoints),
    run_case("report-not-analysed", ["report", "{run}"], "has no analysis yet", drop_analysis),
    run_case("report-damaged-metrics", ["report", "{run}"], "is damaged", damage_metrics),
    Case("report-missing-run", ["report", "{tmp}/nope"], "does not exist"),
    Case("report-out-under-a-file", ["report", "{run}", "--out", "{tmp}/afile/figs"], "Not a directory",
         make_file("afile")),
    run_case("summary-run-json-garbage", ["summary", "{run}"], "run.json cannot be read", write_to("run.json", "{")),
    run_case("runs-one-run-json-garbage", ["runs", "{tmp}"], None, write_to("run.json", "{")),
    run_case("runs-run-json-list", ["runs", "{tmp}"], None, write_to("run.json", "[]")),
    Case("runs-missing-root", ["runs", "{tmp}/nope"], None),
    run_case("resume-config-garbage", ["train", "--resume", "{run}", "--no-progress"], "cannot be read",
             write_to("config.json", "{garbage")),
    run_case("resume-no-checkpoints", ["train", "--resume", "{run}", "--no-progress"],
             "has no checkpoint that loads", drop_checkpoints),
    run_case("resume-all-manifests-invalid", ["train", "--resume", "{run}", "--no-progress"],
             "has no checkpoint that loads", each_checkpoint("manifest.json", "[]")),
    run_case("resume-damaged-metrics", ["train", "--resume", "{run}", "--no-progress"], None, damage_metrics),
    run_case("resume-dead-trainer", ["train", "--resume", "{run}", "--no-progress"], None, mark_training),
    Case("resume-missing-run", ["train", "--resume", "{tmp}/nope"], "does not exist"),
    # ---------------------------------------------------------------- command line
    Case("app-port-99999", ["app", "{tmp}", "--port", "99999"], "--port must be between 1 and 65535"),
    Case("app-port-0", ["app", "{tmp}", "--port", "0"], "--port must be between 1 and 65535"),
    Case("app-missing-root", ["app", "{tmp}/nope"], "is not a folder of runs"),
    Case("unknown-command", ["fly"], "invalid choice: 'fly'"),
    Case("no-command", [], "the following arguments are required"),
    Case("unknown-option", ["runs", "--colour"], "unrecognized arguments: --colour"),
    # ---------------------------------------------------------------- sweep files
    sweep_case("sweep-good-dry-run", SWEEP + "grid:\n  model.n_layers: [1, 2]\n", None),
    sweep_case("sweep-yaml-syntax", "grid: [\n", "is not valid yaml"),
    sweep_case("sweep-not-utf8", b"grid:\n  lr: [\xff]\n", "is not UTF-8 text"),
    sweep_case("sweep-list", "- 1\n", "must hold a mapping"),
    sweep_case("sweep-name-collision", SWEEP + 'grid:\n  data.cache_dir: ["a/b", "a-b"]\n', "same run folder name"),
    sweep_case("sweep-name-dotdot", "name: '..'\n" + SWEEP + "grid:\n  model.n_layers: [1]\n",
               "must not start with '.'"),
    sweep_case("sweep-seed-negative", SWEEP + "grid:\n  model.n_layers: [1]\nseeds: [-1]\n",
               "'seeds' must be a non-empty list of distinct integers >= 0"),
    sweep_case("sweep-lr-inf", SWEEP + "grid:\n  train.lr: [.inf]\n", "train.lr must be a finite number"),
    sweep_case("sweep-grid-list", SWEEP + "grid: [1, 2]\n", "'grid' must be a mapping"),
    sweep_case("sweep-config-scalar", "preset: markov\nconfig: 3\ngrid:\n  model.n_layers: [1]\n",
               "'config' must be a mapping"),
    sweep_case("sweep-json-suffix", "{}", "must end in .yaml, .yml or .toml", suffix=".json"),
    sweep_case("sweep-jobs-0", SWEEP + "grid:\n  model.n_layers: [1]\n", "--jobs must be at least 1",
               extra=("--jobs", "0")),
    sweep_case("sweep-cpus-0", SWEEP + "grid:\n  model.n_layers: [1]\n", "--cpus-per-run must be > 0",
               extra=("--cpus-per-run", "0")),
    Case("sweep-missing-file", ["sweep", "{tmp}/none.yaml", "--out", "{out}"], "not found"),
]


def test_the_table_holds_at_least_75_distinct_cases():
    assert len(CASES) >= 75 and len({c.id for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def analysed_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    assert cli.main(["train", "markov", *TINY, "--out", str(base), "--name", "run", "--no-progress"]) == 0
    assert cli.main(["analyze", str(base / "run"), *ANALYZE]) == 0
    return base / "run"


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root``: a file with its size and modification time, a folder as such
    (not its time, which a lock file taken and removed again changes)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else "folder"
            for p in sorted(root.rglob("*"))}


def leftovers(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*")
            if ".tmp" in p.name or p.name in (".train.lock", ".analyze.lock")]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input__exit_0_or_one_line_and_exit_2_with_nothing_left_behind(case, analysed_run, tmp_path,
                                                                          capsys, caplog):
    ctx = Ctx(tmp_path, tmp_path / "out", tmp_path / "run", tmp_path / "input")
    shutil.copytree(analysed_run, ctx.run)
    ctx.out.mkdir()
    if case.setup:
        case.setup(ctx)
    argv = [a.format(out=ctx.out, run=ctx.run, file=ctx.file, tmp=tmp_path) for a in case.argv]
    before = snapshot(tmp_path)
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="interp"):
        code = cli.main(argv)
    out, err = capsys.readouterr()
    logged = [r.getMessage() for r in caplog.records if r.name == "interp"]
    assert not any("Traceback" in text for text in (out, err, caplog.text)), err
    if case.refused is None:
        assert code == 0, err
        assert not leftovers(tmp_path), leftovers(tmp_path)
        return
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("interp: error:"), (code, lines)
    assert case.refused in lines[0], lines[0]
    assert not logged, logged
    assert snapshot(tmp_path) == before, "a refused command changed or left files"
