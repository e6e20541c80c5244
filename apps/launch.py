"""``python apps/launch.py run apps/workbench.py ...``: ``streamlit run`` with the workbench's
heavy imports done before the server starts.

Streamlit runs the app's script in the server's own process, so what is imported here is
already in ``sys.modules`` when the first browser session runs the script: pandas, h5py,
pyarrow (which Streamlit loads to send a chart's data), Streamlit's component API and the
parts of ``interp`` the views read with. Those imports took about 0.6 s of a session's first
open on a 2-core CPU; here they take it from the server's start, before anyone has a page to
wait for. No data is read ahead. The app's own modules are left to the script: they declare
Streamlit caches, which want the server's runtime to exist first.
"""

import sys
from pathlib import Path

_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "interp" / "__init__.py").is_file() and str(_checkout) not in sys.path:
    # a source checkout run without an install (``python -m interp.cli app`` from it): what
    # ``python -m streamlit`` gave by putting the working folder first
    sys.path.append(str(_checkout))

import h5py  # noqa: E402, F401
import numpy  # noqa: E402, F401
import pandas  # noqa: E402, F401
import pyarrow  # noqa: E402, F401
import streamlit.components.v1  # noqa: E402, F401
from streamlit.web.cli import main  # noqa: E402

import interp.measures.icl  # noqa: E402, F401
import interp.store  # noqa: E402, F401

if __name__ == "__main__":
    sys.exit(main(prog_name="streamlit"))
