"""The workbench's exposure: it listens on this machine only however it is started, stops
with ``interp app``, never lets a token string end its script, and one unreadable folder
does not stop the page for the other runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_analysed_run

streamlit = pytest.importorskip("streamlit")
psutil = pytest.importorskip("psutil")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "apps" / "workbench.py"
sys.path.insert(0, str(ROOT / "apps"))
import serve  # noqa: E402
import workbench_data as D  # noqa: E402


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """serve's wait for the server, but a server that cannot start here skips the test."""
    try:
        serve._wait_healthy(url, proc, timeout)
    except RuntimeError as err:
        pytest.skip(f"streamlit did not start: {str(err)[-300:]}")


def _listening(pids: list[int], port: int) -> set[str]:
    """The local addresses on which any of ``pids`` listens on ``port``."""
    found = set()
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="inet")
        except psutil.Error:
            continue
        found |= {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    return found


def _stop(proc: subprocess.Popen) -> None:
    """End a server this test started, and its children, by pid."""
    try:
        family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        family = [proc.pid]
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    proc.wait(timeout=10)


def _clean_env() -> dict[str, str]:
    """This environment without STREAMLIT_* settings, as a user's shell would have it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}


# --------------------------------------------------------------------------- binding

def test_streamlit_run_from_another_folder__listens_on_loopback_only(tmp_path):
    """``streamlit run .../apps/workbench.py`` from a folder without .streamlit/ (the
    project-level config is read from the working folder only)."""
    port = serve.free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
                             "--server.headless", "true", "--", str(tmp_path)],
                            cwd=tmp_path, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
        assert _listening([proc.pid], port) == {"127.0.0.1"}
    finally:
        _stop(proc)


def test_a_server_told_another_address__refuses_to_show_anything(monkeypatch, tmp_path):
    monkeypatch.setenv("INTERP_APP_ROOT", str(tmp_path))
    previous = streamlit.get_option("server.address")
    streamlit.config.set_option("server.address", "0.0.0.0")
    try:
        at = AppTest.from_file(str(APP), default_timeout=60).run()
    finally:
        streamlit.config.set_option("server.address", previous)
    assert not at.exception
    assert [e.value for e in at.error] and "this machine only" in at.error[0].value
    assert not at.sidebar.radio  # no view was drawn


def test_interp_app_stops_its_server_on_sigterm(tmp_path):
    port = serve.free_port()
    proc = subprocess.Popen([sys.executable, "-m", "interp.cli", "app", str(tmp_path), "--port", str(port)],
                            cwd=ROOT, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    server: list = []
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
        server = psutil.Process(proc.pid).children(recursive=True)
        assert server and _listening([p.pid for p in server], port) == {"127.0.0.1"}
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        _, alive = psutil.wait_procs(server, timeout=30)
        assert not alive, "the streamlit server outlived interp app"
    finally:
        if proc.poll() is None:
            _stop(proc)
        for child in server:  # an orphaned server (the failure this test catches): by its pid
            if child.is_running():
                child.kill()


# --------------------------------------------------------------------------- HTML

HOSTILE = ["BOS", "</script><script>alert(1)</script>", "</SCRIPT >", "<!--<script>", "a<b", "\\</script>"]


@pytest.mark.parametrize("attention", [np.full((6, 6), 1 / 6), np.full((2, 6, 6), 1 / 6)])
def test_attention_html__no_token_string_can_end_the_script(attention):
    html = D.attention_html(HOSTILE, attention)
    assert html.lower().count("</script") == 1 and html.rstrip().lower().endswith("</script>")
    assert "<!--" not in html
    start = max(html.rfind('{"tokens"'), html.rfind('{"attention"'))
    props = html[start:html.rindex("}") + 1]  # the props JSON circuitsvis renders with
    assert json.loads(props)["tokens"] == HOSTILE


def test_attention_html__leaves_the_bundled_javascript_as_circuitsvis_wrote_it():
    import circuitsvis as cv

    plain = ["a", "b", "c"]
    pattern = np.full((3, 3), 1 / 3)
    rendered = cv.attention.attention_pattern(tokens=plain, attention=pattern).local_src
    escaped = D.attention_html(plain, pattern)
    uuid = rendered[rendered.index("circuits-vis-"):][:26]  # each render draws a fresh div id
    assert escaped.replace(escaped[escaped.index("circuits-vis-"):][:26], uuid) == rendered


# --------------------------------------------------------------------------- unreadable folders

@pytest.fixture
def deny(monkeypatch):
    """deny(folder): make ``folder`` behave as one this user may not enter (EACCES on listing
    it and on every path inside), also for root, for whom chmod 000 changes nothing."""
    import builtins

    denied: list[str] = []

    def blocked(path) -> bool:
        try:
            p = os.path.abspath(os.fsdecode(path))
        except TypeError:
            return False
        return any(p.startswith(d + os.sep) for d in denied)

    def guard(real, listing: bool = False):
        def call(path=".", *args, **kwargs):
            if blocked(path) or (listing and os.path.abspath(os.fsdecode(path)) in denied):
                raise PermissionError(13, "Permission denied", os.fsdecode(path))
            return real(path, *args, **kwargs)
        return call
    monkeypatch.setattr(os, "stat", guard(os.stat))
    monkeypatch.setattr(os, "scandir", guard(os.scandir, listing=True))
    monkeypatch.setattr(os, "listdir", guard(os.listdir, listing=True))
    monkeypatch.setattr(builtins, "open", guard(builtins.open))
    return lambda folder: denied.append(os.path.abspath(folder))


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return make_analysed_run(tmp_path_factory.mktemp("safety-runs"))


def test_scan_runs__an_unreadable_folder_is_reported_and_the_other_runs_found(runs_root, tmp_path, deny):
    good = runs_root / "tiny"
    (tmp_path / "tiny").symlink_to(good)
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "config.json").write_text("{}")
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "closed").mkdir()
    deny(tmp_path / "locked")
    deny(tmp_path / "sweep" / "closed")
    runs, unreadable = D.scan_runs(tmp_path)
    assert runs == [tmp_path / "tiny"]
    assert set(unreadable) == {tmp_path / "locked", tmp_path / "sweep" / "closed"}
    assert all("Permission denied" in reason for reason in unreadable.values())


def test_the_app__marks_an_unreadable_folder_and_draws_every_view_of_the_others(runs_root, tmp_path, monkeypatch, deny):
    (tmp_path / "tiny").symlink_to(runs_root / "tiny")
    (tmp_path / "locked").mkdir()
    deny(tmp_path / "locked")
    monkeypatch.setenv("INTERP_APP_ROOT", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, at.exception
    assert any("cannot be read" in w.value for w in at.sidebar.warning)
    at.sidebar.radio(key="view").set_value("Runs").run()
    table = at.dataframe[0].value
    assert dict(zip(table["run"], table["status"])) == {"locked": "unreadable", "tiny": "finished"}
    for view in ("Training curves", "Head atlas"):
        at.sidebar.radio(key="view").set_value(view).run()
        assert not at.exception and not at.main.warning, [w.value for w in at.main.warning]


def test_checkpoint_rows__consecutive_checkpoints_averaged_into_at_most_max_rows():
    # Catches rows of non-consecutive checkpoints (a strided pick), a dropped last checkpoint,
    # a sum for a mean, and pooling when every checkpoint has its row already.
    import numpy as np
    binned = np.arange(20, dtype=float).reshape(10, 2)  # checkpoint c holds [2c, 2c + 1]
    tokens = np.arange(10) * 100
    first, last, means = D.checkpoint_rows(binned, tokens, max_rows=4)
    assert first.tolist() == [0, 300, 600, 800] and last.tolist() == [200, 500, 700, 900]
    np.testing.assert_allclose(means[:, 0], [2.0, 8.0, 13.0, 17.0])  # means of c = 0-2, 3-5, 6-7, 8-9 (x2)
    first, last, means = D.checkpoint_rows(binned, tokens, max_rows=80)
    assert first.tolist() == last.tolist() == tokens.tolist()
    np.testing.assert_array_equal(means, binned)
    first, last, means = D.checkpoint_rows(binned[:0], tokens[:0])  # no checkpoint: no row
    assert first.size == last.size == means.size == 0


def test_no_window_reason__the_closest_candidate_only_when_there_is_no_window(monkeypatch):
    # Catches the reason shown beside a window, or a missing record taken for a reason.
    miss = {"miss_start_tokens": 2.29e6, "miss_end_tokens": 3.6e6, "miss_drop": 0.301, "miss_z": 6.8,
            "miss_step_z": 3.7, "miss_failed": "step z 3.7 < 4"}
    for attrs, expected in ((miss, "closest candidate 2.29M-3.6M tokens (drop 0.301 nats, z 6.8) fails step z 3.7 < 4"),
                            ({**miss, "window_start_tokens": 1e6, "window_end_tokens": 2e6}, None), ({}, None)):
        monkeypatch.setattr(D, "phase", lambda run, attrs=attrs: attrs)
        assert D.no_window_reason("run") == expected
