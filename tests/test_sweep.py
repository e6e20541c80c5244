"""Sweeps: file validation (with the offending line), local processes, resume, and Ray."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_sweep_text

from interp import checkpoints
from interp.errors import ConfigError
from interp.sweep import load_sweep, run_sweep
from interp.sweep.local import core_shares

def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_sweep_file_expands_to_grid_times_seeds_with_stable_names(tmp_path):
    sweep = load_sweep(write(tmp_path, tiny_sweep_text("  model.n_layers: [1, 2]\n", "[0, 3]")))
    assert [r.name for r in sweep.runs] == ["n_layers=1_seed=0", "n_layers=1_seed=3",
                                            "n_layers=2_seed=0", "n_layers=2_seed=3"]
    run = sweep.runs[3]
    assert (run.config.model.n_layers, run.config.train.seed, run.config.train.steps) == (2, 3, 30)
    assert run.config.model.d_model == 32 and run.config.data.source == "markov"


def test_toml_sweeps_read_the_same(tmp_path):
    text = ('preset = "markov"\nseeds = [0]\n[config]\n"train.steps" = 30\n'
            '[grid]\n"model.n_layers" = [1, 2]\n"model.attn_only" = [true, false]\n')
    sweep = load_sweep(write(tmp_path, text, "s.toml"))
    assert [r.name for r in sweep.runs][:2] == ["n_layers=1_attn_only=true_seed=0",
                                                "n_layers=1_attn_only=false_seed=0"]
    assert all(r.config.train.steps == 30 for r in sweep.runs)


@pytest.mark.parametrize("text, expected", [
    # an unknown field in the grid, named with its line
    ("preset: markov\ngrid:\n  model.n_layers: [1, 2]\n  model.nosuch: [1]\n",
     "line 4: 'model.nosuch' = 1: unknown key 'nosuch' in section 'model'"),
    # an empty grid
    ("preset: markov\ngrid: {}\nseeds: [0]\n", "line 2: the grid is empty"),
    # a value of the wrong type: the line of that value
    ("preset: markov\ngrid:\n  model.n_layers:\n    - 1\n    - two\n",
     "line 5: 'model.n_layers' = 'two': model.n_layers must be an integer"),
    # a Literal outside its choices
    ("preset: markov\ngrid:\n  model.positional: [rotary, sideways]\n",
     "line 3: 'model.positional' = 'sideways'"),
    ("preset: markov\ngrid:\n  model.n_layers: []\n", "line 3: grid field 'model.n_layers' must be a non-empty list"),
    ("preset: markov\ngrid:\n  n_layers: [1]\nseeds: [0, zero]\n", "line 4: 'seeds' must be a non-empty list"),
    ("preset: nosuch\ngrid:\n  n_layers: [1]\n", "line 1: unknown preset 'nosuch'"),
    ("preset: markov\ngirds:\n  n_layers: [1]\n", "line 2: unknown sweep key 'girds'"),
    ("preset: markov\nconfig:\n  train.steps: many\ngrid:\n  n_layers: [1]\n", "line 3: 'train.steps' = 'many'"),
    ("preset: markov\n", "the sweep has no 'grid'"),
    # fields checked together: a source that needs a path, given none
    ("preset: default\nconfig:\n  train.steps: 10\n  data.source: hf\ngrid:\n  n_layers: [1]\n",
     "line 4: 'data.source' = 'hf': data.source=hf needs data.path"),
])

def test_bad_sweep_files_are_refused_naming_the_line(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=None) as err:
        load_sweep(write(tmp_path, text))
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_fields_that_depend_on_each_other_are_checked_together(tmp_path):
    text = "preset: default\nconfig:\n  data.source: jsonl\n  data.path: x.jsonl\ngrid:\n  n_layers: [1]\n"
    assert load_sweep(write(tmp_path, text)).runs[0].config.data.path == "x.jsonl"


def test_cli_refuses_a_bad_sweep_in_one_line_before_starting(tmp_path):
    path = write(tmp_path, "preset: markov\ngrid:\n  model.n_layers: [1, 2.5]\n")
    proc = subprocess.run([sys.executable, "-m", "interp.cli", "sweep", str(path), "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"interp: error: {path} line 3:")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "sweep").exists()


def test_core_shares_split_the_usable_cores():
    cores = sorted(os.sched_getaffinity(0))
    shares = core_shares(len(cores))
    assert sorted(c for share in shares for c in share) == cores
    assert core_shares(1) == [cores]


def test_local_sweep_trains_analyses_skips_and_resumes(tmp_path):
    sweep = load_sweep(write(tmp_path, tiny_sweep_text("  model.n_layers: [1, 2]\n", "[0]")))
    lines: list[str] = []
    results = run_sweep(sweep, tmp_path / "runs", jobs=2, say=lines.append)
    assert sorted(r["action"] for r in results) == ["trained", "trained"], lines
    runs = tmp_path / "runs" / "sweep"
    for name in ("n_layers=1_seed=0", "n_layers=2_seed=0"):
        assert checkpoints.run_status(runs / name) == "finished"
        from interp.analysis import analyzed_steps
        assert analyzed_steps(runs / name) == {c.step for c in checkpoints.list_checkpoints(runs / name)}
    assert any(line.startswith("[2/2] done") for line in lines)
    # Each worker ran pinned to its own share of the cores, with that many torch threads.
    shares = core_shares(2)
    for name in ("n_layers=1_seed=0", "n_layers=2_seed=0"):
        log = (runs / "logs" / f"{name}.log").read_text()
        assert any(f"on cores {share} with {len(share)} torch thread(s)" in log for share in shares), log
    saved = json.loads((runs / "sweep_results.json").read_text())
    assert saved["runs"][0]["status"] == "finished"
    assert saved["across_seeds"] == []  # one seed per config: no across-seed table
    assert not any(line.startswith("across seeds") for line in lines)

    # Interrupt one run after its third checkpoint: the sweep resumes it, skips the other.
    victim = runs / "n_layers=2_seed=0"
    final = (victim / checkpoints.list_checkpoints(victim)[-1].path.name / "model.safetensors").read_bytes()
    for ckpt in checkpoints.list_checkpoints(victim)[3:]:
        shutil.rmtree(ckpt.path)
    checkpoints.update_run_info(victim, status="interrupted")
    # jobs=2 again: the same one thread per run, so the float sums run in the same order.
    again = {r["run"]: r["action"] for r in run_sweep(sweep, tmp_path / "runs", jobs=2, say=lines.append)}
    assert again == {"n_layers=1_seed=0": "skipped", "n_layers=2_seed=0": "resumed"}
    last = checkpoints.list_checkpoints(victim)[-1].path
    assert (last / "model.safetensors").read_bytes() == final  # resumed bit for bit


def test_a_sweep_with_three_seeds_ends_with_across_seed_intervals(tmp_path):
    # Synthetic finished, analysed runs with the sweep's exact configs: the sweep skips them all
    # (no worker starts) and ends with the across-seed table. Catches a sweep that prints or
    # saves nothing across seeds, or pools the 1-layer and 2-layer configs together.
    from conftest import write_phase_run

    sweep = load_sweep(write(tmp_path, tiny_sweep_text("  model.n_layers: [1, 2]\n", "[0, 1, 2]")))
    nan = float("nan")
    for run in sweep.runs:
        two, seed = run.config.model.n_layers == 2, run.config.train.seed
        start = [1e6, 2e6, 4e6][seed]
        phase = {"has_window": float(two), "window_start_tokens": start if two else nan,
                 "window_end_tokens": 2 * start if two else nan, "window_share": 0.7 if two else nan,
                 "icl_before": -0.01 if two else nan, "icl_after": -0.4 if two else nan,
                 "induction_heads": f"1.{seed}" if two else "",
                 f"head_1.{seed}_formation_tokens": 1.5 * start, f"head_1.{seed}_lag_log10": 0.05}
        write_phase_run(tmp_path / "runs" / "sweep" / run.name, run.config, phase)
    lines: list[str] = []
    results = run_sweep(sweep, tmp_path / "runs", say=lines.append)
    assert [r["action"] for r in results] == ["skipped"] * 6
    saved = json.loads((tmp_path / "runs" / "sweep" / "sweep_results.json").read_text())
    groups = {g["label"]: g for g in saved["across_seeds"]}
    assert set(groups) == {"n_layers=1", "n_layers=2"}
    assert (groups["n_layers=1"]["n"], groups["n_layers=1"]["windows"]) == (3, 0)
    start = groups["n_layers=2"]["quantities"]["window_start_tokens"]
    assert start["n"] == 3 and abs(start["mean"] - 2e6) < 1
    assert groups["n_layers=2"]["quantities"]["earliest_head_formation_tokens"]["mean"] == pytest.approx(3e6)
    text = "\n".join(lines)
    assert "n_layers=2: 3 of 3 seeds finished and analysed (seeds 0, 1, 2)" in text
    assert any(line.split()[:5] == ["window", "start", "3", "2.00M", "0.62M"] for line in lines), text
    assert "  induction heads (seeds with each index): 1.0 in 1, 1.1 in 1, 1.2 in 1" in lines


def test_a_run_directory_with_another_config_is_refused_before_anything_starts(tmp_path):
    sweep = load_sweep(write(tmp_path, tiny_sweep_text("  model.n_layers: [1]\n", "[0]")))
    run_sweep(sweep, tmp_path / "runs", say=lambda _: None)
    changed = load_sweep(write(tmp_path, tiny_sweep_text("  model.n_layers: [1]\n", "[0]").replace("steps: 30", "steps: 31")))
    with pytest.raises(Exception, match="holds a run with another config .*train.steps: 30 there, 31 in the sweep"):
        run_sweep(changed, tmp_path / "runs", say=lambda _: None)


def test_ray_backend_runs_each_run_as_a_task_on_a_local_ray_instance(tmp_path):
    import ray  # in the dev extra, so CI runs this for real

    sweep = load_sweep(write(tmp_path, tiny_sweep_text("  model.n_layers: [1, 2]\n", "[0]")))
    lines: list[str] = []
    results = run_sweep(sweep, tmp_path / "runs", backend="ray", cpus_per_run=1, say=lines.append)
    assert sorted(r["action"] for r in results) == ["trained", "trained"], lines
    assert not ray.is_initialized()  # the instance started for the sweep is shut down
    for result in results:
        run = tmp_path / "runs" / "sweep" / result["run"]
        assert checkpoints.run_status(run) == "finished"
        info = checkpoints.read_run_info(run)
        assert info["pid"] != os.getpid()  # trained in a Ray worker, not in this process
    assert any("1 cpu, 0 gpu" in line or "1.0 cpu" in line for line in lines)


@pytest.mark.parametrize("grid, expected", [
    ('  data.cache_dir: ["a/b", "a-b"]\n', "grid values 'a/b' and 'a-b' of 'data.cache_dir' give the same run folder"),
    ('  model.n_layers: ["2", 2]\n', "grid values '2' and 2 of 'model.n_layers' give the same run folder"),
])
def test_grid_values_that_make_one_folder_name__are_refused_naming_both(tmp_path, grid, expected):
    # Catches: "a/b" and "a-b" both mapped to one run folder: "2 runs", one trained, exit 0.
    with pytest.raises(ConfigError) as err:
        load_sweep(write(tmp_path, tiny_sweep_text(grid)))
    assert expected in str(err.value) and "line " in str(err.value)


@pytest.mark.parametrize("name", ["..", ".", ".hidden"])
def test_sweep_name_that_is_not_one_plain_folder__is_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="must not start with '.'"):
        load_sweep(write(tmp_path, f"name: '{name}'\n" + tiny_sweep_text("  model.n_layers: [1]\n")))


@pytest.mark.parametrize("name, text, expected", [
    # A key in both config and grid: the grid's value is wrong, so the grid's line is named
    # (the text search found the config's line, then the first "0" after it: line 4).
    ("sweep.yaml", "preset: markov\nconfig:\n  model.n_layers: 2\n  train.steps: 30\ngrid:\n"
                   "  model.d_model: [32]\n  model.n_layers: [1, 0]\n", "line 7: 'model.n_layers' = 0"),
    # The same, nested by section and as a block list: the line of the bad item.
    ("sweep.yaml", "preset: markov\nconfig:\n  model:\n    n_layers: 2\n  train.steps: 30\ngrid:\n"
                   "  model:\n    n_layers:\n      - 1\n      - 0\n", "line 10: 'model.n_layers' = 0"),
    # In TOML, the search starts at the section's header.
    ("sweep.toml", 'preset = "markov"\n[config]\n"model.n_layers" = 2\n"train.steps" = 30\n[grid]\n'
                   '"model.n_layers" = [1, 0]\n', "line 6: 'model.n_layers' = 0"),
])
def test_a_key_repeated_across_sections__is_named_at_its_own_line(tmp_path, name, text, expected):
    # Catches: the line finder reporting the first line whose key matches, anywhere in the file.
    with pytest.raises(ConfigError) as err:
        load_sweep(write(tmp_path, text, name))
    assert expected in str(err.value), str(err.value)


@pytest.mark.parametrize("text, expected", [
    ("preset: markov\ngrid:\n  model.n_layers: [1, 2]\n  model.n_layers: [3]\n",
     "line 4: key 'model.n_layers' in 'grid' is given twice (lines 3 and 4)"),
    ("preset: markov\npreset: default\ngrid:\n  model.n_layers: [1]\n", "line 2: key 'preset' is given twice"),
    ("preset: markov\nconfig:\n  train.steps: 30\n  train:\n    steps: 40\ngrid:\n  model.n_layers: [1]\n",
     "line 5: key 'train.steps' in 'config' is given twice (lines 3 and 5)"),
])
def test_a_key_repeated_in_one_mapping__is_refused_naming_both_lines(tmp_path, text, expected):
    # Catches: PyYAML silently keeping the last of two equal keys, so the sweep runs values
    # its author did not read last.
    with pytest.raises(ConfigError) as err:
        load_sweep(write(tmp_path, text))
    assert expected in str(err.value) and "\n" not in str(err.value)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_cluster(tmp_path):
    """A real one-node cluster from ``ray start --head`` on 127.0.0.1, as the README's recipe
    starts it, with a token in a private HOME, so Ray turns token authentication on as it
    ships. Yields (address, environment, log). Stopped by ending its ``--block`` process,
    which takes its cluster down: ``ray stop`` would stop every Ray process on the machine."""
    import tempfile
    import time

    pytest.importorskip("ray")
    ray_bin = Path(sys.executable).with_name("ray")
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(os.urandom(32).hex())
    # Ray would advertise the interface's address; this keeps every socket on 127.0.0.1.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port, log = _free_port(), tmp_path / "ray-start.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(ray_bin), "start", "--head", "--block", "--port", str(port),
                                 "--node-ip-address", "127.0.0.1", "--num-cpus", "2", "--include-dashboard",
                                 "false", "--disable-usage-stats", "--temp-dir", temp],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while "Ray runtime started" not in log.read_text() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert "Ray runtime started" in log.read_text(), log.read_text()[-3000:]
        yield f"127.0.0.1:{port}", env, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_ray_sweep_runs_on_a_cluster_started_with_ray_start_and_its_token(tmp_path, ray_cluster):
    # Catches: the README's recipe (ray start --head, then interp sweep --backend ray
    # --address HEAD:PORT) refused with "Authentication token is missing or incorrect",
    # because Ray's driver sends its token to an explicit address only with RAY_AUTH_MODE=token.
    address, env, log = ray_cluster
    assert "Token authentication is enabled" in log.read_text()  # the cluster enforces it
    path = write(tmp_path, tiny_sweep_text("  model.n_layers: [1, 2]\n", "[0]", extra="analyze: false\n"))
    proc = subprocess.run([sys.executable, "-m", "interp.cli", "sweep", str(path), "--backend", "ray",
                           "--address", address, "--out", str(tmp_path / "runs"), "--cpus-per-run", "1"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "RAY_AUTH_MODE" not in env
    for name in ("n_layers=1_seed=0", "n_layers=2_seed=0"):
        run = tmp_path / "runs" / "sweep" / name
        assert checkpoints.run_status(run) == "finished", proc.stdout
    assert "backend ray" in proc.stdout and proc.stdout.count("cpu, 0") == 2, proc.stdout  # two tasks


def test_ray_driver_turns_token_mode_on_only_for_an_address_with_a_token_and_restores_it(tmp_path, monkeypatch):
    # Catches: token mode forced on a local instance, on a user who chose RAY_AUTH_MODE, or
    # left behind in the environment after the sweep.
    from interp.sweep import ray_backend

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    with ray_backend.token_auth("127.0.0.1:6379"):
        assert "RAY_AUTH_MODE" not in os.environ  # no token here: nothing to send
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("0" * 64)
    assert ray_backend.token_source() == str(tmp_path / ".ray" / "auth_token")
    with ray_backend.token_auth(None):
        assert "RAY_AUTH_MODE" not in os.environ  # a local instance: Ray decides
    with ray_backend.token_auth("127.0.0.1:6379"):
        assert os.environ["RAY_AUTH_MODE"] == "token"
    assert "RAY_AUTH_MODE" not in os.environ
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with ray_backend.token_auth("127.0.0.1:6379"):
        assert os.environ["RAY_AUTH_MODE"] == "disabled"  # the user's choice stands


def test_a_refused_ray_token_is_one_line_saying_where_the_token_is_looked_for():
    from interp.sweep.ray_backend import _connect_error

    try:
        try:
            raise RuntimeError("RPC error: InvalidAuthToken: Authentication token is missing or incorrect.\nmore")
        except RuntimeError as inner:
            raise ConnectionError("Failed to connect to Ray cluster at 127.0.0.1:1") from inner
    except ConnectionError as err:
        message = str(_connect_error("127.0.0.1:1", err))
    assert "\n" not in message and "~/.ray/auth_token or RAY_AUTH_TOKEN" in message
    assert message.startswith("could not reach a Ray cluster at '127.0.0.1:1': Failed to connect")


@pytest.mark.slow
def test_slurm_backend_runs_a_sweep_as_submitit_jobs_on_its_local_executor(tmp_path):
    # Catches: the SLURM path (scripts/slurm_ray_sweep.sh before it) never having run: the same
    # jobs submitit sends to sbatch, run by its LocalExecutor, train and analyse both runs.
    pytest.importorskip("submitit")
    path = write(tmp_path, tiny_sweep_text("  model.n_layers: [1, 2]\n", "[0]"))
    proc = subprocess.run([sys.executable, "-m", "interp.cli", "sweep", str(path), "--backend", "slurm",
                           "--slurm-cluster", "local", "--slurm-time", "10", "--jobs", "2",
                           "--out", str(tmp_path / "runs")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    runs = tmp_path / "runs" / "sweep"
    from interp.analysis import analyzed_steps

    for name in ("n_layers=1_seed=0", "n_layers=2_seed=0"):
        assert checkpoints.run_status(runs / name) == "finished", proc.stdout
        assert analyzed_steps(runs / name) == {c.step for c in checkpoints.list_checkpoints(runs / name)}
    assert proc.stdout.count(", job ") == 2 and "[2/2] done" in proc.stdout, proc.stdout
    assert len(list((runs / "logs" / "submitit").glob("*_log.out"))) == 2  # each job's own log
    saved = json.loads((runs / "sweep_results.json").read_text())
    assert sorted(r["action"] for r in saved["runs"]) == ["trained", "trained"]


@pytest.mark.parametrize("flags, expected", [
    (["--slurm-option", "mem"], "--slurm-option 'mem' must be KEY=VALUE"),
    (["--slurm-option", "=32G"], "must be KEY=VALUE"),
    (["--slurm-time", "0"], "--slurm-time must be between 1 and 525600 minutes"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--gpus-per-run", "0.5"], "--gpus-per-run must be a whole number of GPUs for slurm, not 0.5"),
])
def test_bad_slurm_flags_are_one_line_and_leave_nothing(tmp_path, capsys, flags, expected):
    from interp.cli import main

    path = write(tmp_path, tiny_sweep_text("  model.n_layers: [1]\n"))
    code = main(["sweep", str(path), "--backend", "slurm", "--slurm-cluster", "local", "--out",
                 str(tmp_path / "runs"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


class _FakeJob:
    """A finished submitit job: ``result()`` returns ``value`` or raises it."""

    job_id = "42"

    def __init__(self, value, log="logs/submitit/42_0_log.out"):
        self.value, self.paths = value, type("Paths", (), {"stdout": log})()

    def result(self):
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


@pytest.mark.parametrize("value, kind, expected", [
    ({"run": "a", "action": "trained"}, "done", None),
    ({"error": "interp: error: 'x' holds a run with another config"}, "error",
     "interp: error: 'x' holds a run with another config (log: logs/submitit/42_0_log.out)"),
    (RuntimeError("Job 42 failed\nTraceback (most recent call last):\n  ...\nMemoryError: out of memory\n"),
     "error", "job 42: MemoryError: out of memory (log: logs/submitit/42_0_log.out)"),
])
def test_a_finished_submitit_job_becomes_one_event_line(value, kind, expected):
    from interp.sweep.slurm import _outcome

    got_kind, info = _outcome(_FakeJob(value))
    assert got_kind == kind
    assert (info == value) if expected is None else (info["message"] == expected)


def test_the_slurm_backend_without_sbatch_is_one_line_before_anything_is_written(tmp_path, capsys, monkeypatch):
    # Catches: a machine without SLURM ending in sbatch's FileNotFoundError traceback after
    # the sweep folder was made.
    from interp.cli import main

    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    path = write(tmp_path, tiny_sweep_text("  model.n_layers: [1]\n"))
    code = main(["sweep", str(path), "--backend", "slurm", "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "submits with sbatch, which is not on this machine's PATH" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_a_refused_submission_cancels_the_jobs_in_flight_and_is_one_line():
    from interp.errors import InterpError
    from interp.sweep.slurm import _submit

    class Refusing:
        def submit(self, *args):
            raise RuntimeError("sbatch failed\nsbatch: error: invalid partition specified: gpux")

    class Running:
        cancelled = False

        def cancel(self, check=True):
            self.cancelled = True

    other = Running()
    with pytest.raises(InterpError) as err:
        _submit(Refusing(), Path("sweep.json"), "n_layers=1_seed=0", 1, {other: "a"})
    assert other.cancelled and "\n" not in str(err.value)
    assert str(err.value).startswith("could not submit the job for n_layers=1_seed=0: sbatch: error: invalid partition")


def test_a_sweep_without_address_starts_its_own_ray_instance(monkeypatch):
    # Catches: ray.init(address=None), which joins the last cluster 'ray start' noted in
    # /tmp/ray/ray_current_cluster, and once hung 14 minutes on such a note of a stopped one.
    import types

    from interp.sweep.ray_backend import run_ray

    calls = []
    fake = types.SimpleNamespace(is_initialized=lambda: False, init=lambda **kw: calls.append(kw),
                                 shutdown=lambda: None, remote=lambda **kw: (lambda f: f),
                                 exceptions=types.SimpleNamespace(RayError=RuntimeError))
    monkeypatch.setitem(sys.modules, "ray", fake)
    run_ray([], "/nowhere", False, False, None, 1, 0, lambda *a: None)
    assert calls and calls[0]["address"] == "local"
