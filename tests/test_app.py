"""The Streamlit workbench (apps/workbench.py) driven headless with AppTest on a tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import make_analysed_run

streamlit = pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parent.parent / "apps" / "workbench.py")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_analysed_run(tmp_path_factory.mktemp("app-runs"))


def _app(monkeypatch, root: Path) -> AppTest:
    monkeypatch.setenv("INTERP_APP_ROOT", str(root))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    return at


def _view(at: AppTest, name: str) -> AppTest:
    at.sidebar.radio(key="view").set_value(name).run()
    assert not at.exception, at.exception
    return at


def test_opens_on_the_latest_runs_curves_or_the_view_a_link_names(monkeypatch, root):
    at = _app(monkeypatch, root)
    assert at.sidebar.radio(key="view").value == "Training curves"
    assert at.query_params["view"] in ("Training curves", ["Training curves"])
    monkeypatch.setenv("INTERP_APP_ROOT", str(root))
    linked = AppTest.from_file(APP, default_timeout=60)
    linked.query_params["view"] = "Head atlas"
    linked.run()
    assert not linked.exception and linked.sidebar.radio(key="view").value == "Head atlas"


def test_runs_view(monkeypatch, root):
    at = _view(_app(monkeypatch, root), "Runs")
    assert len(at.dataframe) == 1
    assert "tiny" in at.dataframe[0].value["run"].tolist()
    assert at.sidebar.multiselect(key="selected_runs").value == ["tiny"]


def test_curves_view(monkeypatch, root):
    at = _view(_app(monkeypatch, root), "Training curves")
    assert len(at.get("vega_lite_chart")) >= 4  # loss, ICL, heatmap, PCA
    at.toggle(key="curves_log").set_value(False).run()
    assert not at.exception


def test_head_atlas_and_detail(monkeypatch, root):
    at = _view(_app(monkeypatch, root), "Head atlas")
    slider = at.select_slider[0]
    assert len(slider.options) >= 2
    slider.set_value(int(slider.options[0])).run()
    assert not at.exception
    at.selectbox(key="atlas_score").set_value("previous token").run()
    at.selectbox(key="atlas_head").set_value("1.1").run()
    at.button(key="atlas_open").click().run()
    assert not at.exception
    assert at.sidebar.radio(key="view").value == "Head detail"
    assert at.selectbox(key="detail_head_select").value == "1.1"
    assert at.dataframe  # composition with earlier heads
    labels = [m.label for m in at.metric]
    assert any(label.startswith("OV circuit") for label in labels)
    assert any(label.startswith("token QK circuit") for label in labels)
    # K-composition with every earlier head over training: the previous-token head in bold and
    # the random baseline (dashed rule in a band), with its statistic in the caption
    specs = [c.proto.spec for c in at.get("vega_lite_chart")]
    composition = [s for s in specs if "previous-token head" in s]
    assert len(composition) == 1
    layers = json.loads(composition[0])["layer"]
    assert {layer["mark"]["type"] for layer in layers} >= {"rect", "rule", "line"}
    assert any("random heads" in json.dumps(layer.get("data", {})) for layer in layers)
    assert any(c.value.startswith("K-composition with previous-token head 0.") for c in at.caption)
    at.select_slider[0].set_value(int(at.select_slider[0].options[1])).run()
    assert not at.exception


def test_tokens_and_live(monkeypatch, root):
    at = _view(_app(monkeypatch, root), "Tokens")
    assert any("background" in m.value for m in at.markdown)
    _view(at, "Live")
    at.button(key="live_refresh").click().run()
    assert not at.exception


def test_empty_directory(monkeypatch, tmp_path):
    at = _app(monkeypatch, tmp_path)
    assert any("No runs under" in i.value for i in at.info)


def test_broken_runs_warn(monkeypatch, tmp_path, root):
    (tmp_path / "no_ckpt").mkdir()
    (tmp_path / "no_ckpt" / "config.json").write_text((root / "tiny" / "config.json").read_text())
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "config.json").write_text((root / "tiny" / "config.json").read_text())
    (tmp_path / "corrupt" / "metrics.h5").write_bytes(b"not an hdf5 file")
    (tmp_path / "badjson").mkdir()
    (tmp_path / "badjson" / "config.json").write_text(json.dumps({"model": "nope"}))
    at = _app(monkeypatch, tmp_path)
    assert at.warning
    at.sidebar.multiselect(key="selected_runs").set_value(["badjson", "corrupt", "no_ckpt"]).run()
    for view in ("Training curves", "Head atlas", "Head detail", "Tokens", "Live"):
        _view(at, view)
        assert at.warning or at.info, view


def test_head_detail__shows_the_label_and_the_evidence_of_the_rule(monkeypatch, root, tmp_path):
    # Catches a head detail without the trend label and the rule's evidence (score, null, z,
    # copying, slope), and the old-rule note missing for an analysis without the null. The
    # phase attributes of a copy of the tiny run are set by hand: head 1.1 forming.
    import shutil

    from interp import store

    copy = tmp_path / "labelled"
    shutil.copytree(root, copy)
    attrs = {"head_labels": "1.1:forming", "head_1.1_label": "forming", "head_1.1_prefix": 0.38,
             "head_1.1_null": 0.04, "head_1.1_effect": 0.34, "head_1.1_z": 31.5, "head_1.1_copying": 0.99,
             "head_1.1_slope": 0.62, "head_1.1_slope_z": 4.1, "head_1.1_steepest": 0.9, "head_1.1_tail": 15.0,
             "head_1.1_passes": 1.0, "induction_rule": "null"}
    with store.update(copy / "tiny") as handle:
        handle["phase"].attrs.update(attrs)
    at = _view(_app(monkeypatch, copy), "Head detail")
    at.selectbox(key="detail_head_select").set_value("1.1").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["label"] == "forming" and metrics["null"] == "0.04" and metrics["z"] == "31.5"
    assert metrics["prefix matching"] == "0.38" and metrics["slope / decade"] == "+0.62"
    assert any("vs null 0.04 (effect +0.34, z 31.5)" in c.value for c in at.caption)
    with store.update(copy / "tiny") as handle:
        handle["phase"].attrs["induction_rule"] = "legacy"
    at.run()
    assert any("old rule" in c.value for c in at.caption)
    at.selectbox(key="detail_head_select").set_value("0.0").run()
    assert any("is not labelled" in c.value for c in at.caption)


def test_curves_view__says_why_a_run_has_no_window(monkeypatch, root):
    # The tiny run has no window; its closest candidate is named under the ICL chart.
    from interp import store
    from interp.analysis import update_phase
    run = next(p.parent for p in Path(root).rglob("metrics.h5"))
    update_phase(run)  # the stored phase record with its miss_* (older fixtures lack them)
    phase = store.attrs(run, "phase")
    at = _view(_app(monkeypatch, root), "Training curves")
    captions = " ".join(c.value for c in at.caption)
    assert ("no phase-change window; closest candidate" in captions) == ("miss_failed" in phase and not phase["has_window"])
