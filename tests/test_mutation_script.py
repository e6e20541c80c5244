"""scripts/mutation.py's own helpers: the work folder, the test order and mutmut's configuration."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("mutation_script", ROOT / "scripts" / "mutation.py")
mutation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mutation)


def test_work_folder__refuses_the_checkout_and_foreign_folders(tmp_path):
    """The work folder must be outside the checkout (mutmut writes mutants/ into it) and, if
    it exists, hold an earlier run or nothing: a resume never writes over unrelated files."""
    with pytest.raises(SystemExit, match="outside the checkout"):
        mutation.work_folder(ROOT / "build" / "mutation")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="holds no earlier mutation run"):
        mutation.work_folder(tmp_path)
    (tmp_path / "mutants").mkdir()
    assert mutation.work_folder(tmp_path) == (tmp_path.resolve(), False)  # a resume
    assert mutation.work_folder(tmp_path / "new") == ((tmp_path / "new").resolve(), False)


def test_run_own_tests_first__the_module_test_file_sorts_first_and_keeps_the_rest_in_order(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "conftest.py").write_text("X = 1\n")
    files = [tmp_path / "interp" / "phase" / "edges.py"]
    tests = ["tests/test_phase.py", "tests/test_phase_edges.py"]
    assert mutation.run_own_tests_first(tmp_path, files, tests) == ["test_phase_edges.py"]
    namespace: dict = {}
    exec((tmp_path / "tests" / "conftest.py").read_text(), namespace)
    assert namespace["X"] == 1  # appended, not replaced

    class Item:
        def __init__(self, nodeid):
            self.nodeid = nodeid

    items = [Item(n) for n in ("tests/test_phase.py::a", "tests/test_phase_edges.py::b",
                               "tests/test_phase.py::c", "tests/test_phase_edges.py::d")]
    namespace["pytest_collection_modifyitems"](None, items)
    assert [i.nodeid[-1] for i in items] == ["b", "d", "a", "c"]
    assert mutation.run_own_tests_first(tmp_path, [tmp_path / "interp" / "x.py"], tests) == []


def test_write_config__sets_the_timeout_and_never_copies_its_own_output(tmp_path):
    """On a resume the work folder holds mutants/, mutmut.log and setup.cfg: none of them may
    be listed in also_copy (mutmut would copy mutants/ into itself)."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    for name in ("interp", "tests", "mutants", "docs"):
        (tmp_path / name).mkdir()
    (tmp_path / "mutmut.log").write_text("")
    mutation.write_config(tmp_path, ["interp/phase/edges.py"], ["tests/test_phase_edges.py"], 3.0)
    config = (tmp_path / "setup.cfg").read_text()
    also = config.split("also_copy =")[1].split("\npytest_add_cli_args_test_selection")[0].split()
    assert sorted(also) == ["docs", "pyproject.toml", "tests"]
    assert "timeout_multiplier = 3.0" in config and "only_mutate =\n    interp/phase/edges.py" in config


def test_selected__only_patterns_keep_their_mutants_and_no_pattern_keeps_all():
    name = "interp.measures.icl.x__band_losses__mutmut_7"
    assert mutation.selected(name, [])
    assert mutation.selected(name, ["interp.measures.icl.x__band_losses__*"])
    assert not mutation.selected(name, ["interp.measures.icl.x_per_token_losses__*"])
    assert mutation.selected(name, ["nothing", "interp.measures.*"])
