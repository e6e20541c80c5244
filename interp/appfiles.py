"""Where the workbench app's files are, so that ``interp app`` can launch it from any install.

The app (``apps/`` in a checkout: the only code that imports streamlit) is not part of the
library's import graph: nothing in ``interp`` imports it; ``interp app`` hands its path to
``streamlit run`` in a child process. A wheel carries the same files as package data at
``interp/apps/`` (``pyproject.toml`` maps that folder to ``apps/``), so a non-editable
``pip install .`` can serve it too. This module only finds files; it imports nothing of the app.
"""

from __future__ import annotations

from pathlib import Path

from interp.errors import InterpError

SCRIPT = "workbench.py"


def app_folders() -> list[Path]:
    """Where the app may be, in order: the installed copy inside the package (a wheel), then
    the checkout's ``apps/`` beside the package (a source tree or an editable install)."""
    package = Path(__file__).resolve().parent
    return [package / "apps", package.parent / "apps"]


def workbench_script() -> Path:
    """The app's entry script; an InterpError in one line when no install or checkout has it."""
    for folder in app_folders():
        if (folder / SCRIPT).is_file():
            return folder / SCRIPT
    tried = " or ".join(str(folder / SCRIPT) for folder in app_folders())
    raise InterpError(f"the workbench app is not installed here ({tried} is missing); reinstall "
                      f"interp with 'pip install .' from a checkout, which ships it")
