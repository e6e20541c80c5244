"""A non-editable install (a wheel) carries the workbench app, and ``interp app`` serves it
from any folder, importing only what is installed.

The wheel is built offline from a copy of the source (so the checkout gets no build/ or
egg-info), with this environment's setuptools (``--no-build-isolation``), and installed with
``--no-deps`` into a fresh venv that sees this environment's packages (torch, streamlit, ...)
through a ``.pth`` line but not the editable install of the checkout: a ``.pth`` line adds a
folder to the path without running the ``.pth`` files in it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from conftest import tiny_config, write_phase_run

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "interp", "apps")


def _run(command: list, cwd: Path, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)
    assert proc.returncode == 0, f"{command}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv with interp installed from its wheel; returns the venv folder."""
    base = tmp_path_factory.mktemp("packaging")
    source = base / "source"
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__", "*.egg-info")}
                                            if (ROOT / name).is_dir() else {}))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "-q", "-w", base / "dist", source], cwd=base)
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=base)
    python = venv / "bin" / "python"
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=base).stdout.strip())
    (purelib / "zz_outer_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next((base / "dist").glob("interp-*.whl"))
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel], cwd=base)
    return venv


def test_every_package_under_interp_is_listed_for_the_wheel():
    # Catches: a new subpackage missing from pyproject's explicit package list (listed, not
    # found, so that apps/ can be mapped in), which a wheel would silently leave out.
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "interp").rglob("__init__.py")}
    assert found <= listed and listed - found == {"interp.apps"}


def test_a_wheel_install_finds_and_runs_the_app_from_any_folder(installed, tmp_path):
    # Catches: apps/ missing from the wheel, so that 'interp app' failed outside a checkout,
    # and an installed app that imports the checkout's modules instead of the installed ones.
    python, interp = installed / "bin" / "python", installed / "bin" / "interp"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert "--port" in _run([interp, "app", "--help"], cwd=elsewhere).stdout
    assert "quickstart" in _run([interp, "quickstart", "--help"], cwd=elsewhere).stdout
    runs = tmp_path / "runs"
    write_phase_run(runs / "tiny", tiny_config(), {"has_window": 0.0, "induction_heads": ""})
    probe = _run([python, "-c", APP_PROBE, str(runs)], cwd=elsewhere, timeout=180)
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    site = Path(seen["purelib"])
    assert Path(seen["script"]) == site / "interp" / "apps" / "workbench.py"
    source_apps = {p.relative_to(ROOT / "apps") for p in (ROOT / "apps").glob("*.py")}
    if (ROOT / "apps" / ".streamlit" / "config.toml").is_file():  # the app's own Streamlit settings
        source_apps.add(Path(".streamlit") / "config.toml")
    assert all((site / "interp" / "apps" / f).is_file() for f in source_apps), sorted(source_apps)
    assert seen["exceptions"] == [] and seen["runs_table"], json.dumps(seen)[:3000]
    assert seen["from_checkout"] == [], seen["from_checkout"]  # nothing imported from the checkout
    assert "interp" in seen["interp_modules"] and "interp.apps" not in " ".join(seen["interp_modules"])


# Runs in the installed venv: find the app as 'interp app' does, run it with Streamlit's AppTest
# on a folder with one run, and report where every imported module came from.
APP_PROBE = r"""
import json, os, sys, sysconfig
from pathlib import Path
from interp.appfiles import workbench_script
from streamlit.testing.v1 import AppTest
script = workbench_script()
os.environ["INTERP_APP_ROOT"] = sys.argv[1]
from streamlit import config
config.set_option("server.address", "127.0.0.1")  # as 'interp app' serves it
at = AppTest.from_file(str(script), default_timeout=120)
at.query_params["view"] = "Runs"  # the table of runs: reads them through the installed interp
at.run()
checkout = [Path(p) for p in json.loads(%r)]
files = {n: getattr(m, "__file__", None) or "" for n, m in list(sys.modules.items())}
print(json.dumps({
    "script": str(script), "purelib": sysconfig.get_paths()["purelib"],
    "exceptions": [e.value for e in at.exception],
    "runs_table": len(at.dataframe) > 0 or len(at.table) > 0,
    "shown": [e.value for e in at.error] + [e.value for e in at.warning] + [e.value for e in at.info],
    "from_checkout": sorted(n for n, f in files.items()
                            if f and any(Path(f).resolve().is_relative_to(c) for c in checkout)),
    "interp_modules": sorted(n for n in files if n == "interp" or n.startswith("interp.")),
}))
""" % json.dumps([str(ROOT / "interp"), str(ROOT / "apps")])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_interp_app_from_a_wheel_install_serves_on_127_0_0_1(installed, tmp_path):
    # Catches: 'interp app' of a non-editable install failing to start its server.
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.Popen([str(installed / "bin" / "interp"), "app", str(tmp_path), "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own group: the server goes with it below
    try:
        deadline, healthy = time.time() + 90, False
        while time.time() < deadline and proc.poll() is None and not healthy:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as answer:
                    healthy = answer.read() == b"ok"
            except OSError:
                time.sleep(0.3)
        assert healthy, proc.stdout.read().decode()[-3000:] if proc.poll() is not None else "no answer"
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
