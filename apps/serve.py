"""Start the workbench as a Streamlit server and find a headless browser: for the browser
test (tests/test_app_browser.py) and the app benchmark (benchmarks/bench_app.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

APP = Path(__file__).resolve().parent / "workbench.py"
LAUNCH = APP.parent / "launch.py"  # streamlit run, with the app's modules imported first
# Chromium on a machine without internet: no background connections (they are refused many
# at a time and slow every start), no sandbox (CI runs as root).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    """``$INTERP_CHROMIUM``, else ``chromium`` on the PATH (Debian's package), else None."""
    return os.environ.get("INTERP_CHROMIUM") or shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(root: Path, port: int | None = None, script: Path = APP,
              env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``streamlit run script -- root`` on 127.0.0.1 (through ``launch.py``, as ``interp app``
    starts it); returns the process and its URL once healthy."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, str(LAUNCH), "run", str(script), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", "--", str(root)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env or dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
    except BaseException:
        proc.terminate()
        raise
    return proc, url


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited: {proc.stdout.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"streamlit did not answer at {url} within {timeout:.0f} s")
