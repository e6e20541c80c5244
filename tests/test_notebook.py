"""examples/quickstart.ipynb runs from top to bottom: train, analyse, the heads, TransformerLens.

Executed with nbclient in a fresh kernel of this interpreter, with its parameters cell (tagged
``parameters``, as papermill does) replaced by a 40-step run with small samples, in a temporary
folder. The notebook is kept without outputs, so that its diffs stay readable.
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"
FAST = """from pathlib import Path
STEPS = 40
OUT = Path("runs")
OVERRIDES = ["train.log_checkpoints=4", "train.linear_checkpoints=4", "train.eval_examples=16",
             "train.batch_size=16"]
ANALYSIS = {"icl_examples": 16, "ablate": False, "pca_pairs": 64, "pattern_examples": 8,
            "prefix_sequences": 8}
"""


def _notebook():
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(NOTEBOOK, as_version=4)


def test_the_notebook_is_stored_without_outputs():
    nb = _notebook()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert [c for c in code if "parameters" in c.metadata.get("tags", [])], "no parameters cell"


@pytest.mark.slow
def test_the_quickstart_notebook_runs_from_top_to_bottom(tmp_path):
    # Catches: a notebook that no longer runs against the package (a renamed function, a
    # changed return value, a checkpoint that no longer converts to TransformerLens).
    from nbclient import NotebookClient

    nb = _notebook()
    parameters = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    parameters.source = FAST
    NotebookClient(nb, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(out.get("text", "") for c in nb.cells if c.cell_type == "code" for out in c.outputs)
    assert "runs/quickstart-markov-40: finished" in text
    assert "prefix matching [layer, head] on the bridge" in text
    assert (tmp_path / "runs" / "quickstart-markov-40" / "metrics.h5").is_file()
