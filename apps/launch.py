"""``python apps/launch.py run apps/workbench.py ...``: ``streamlit run`` with the workbench's
modules imported before the server starts.

Streamlit runs the app's script in the server's own process, so what is imported here is
already in ``sys.modules`` when the first browser session runs the script: pandas, h5py, the
store, the chart and view modules and pyarrow (which Streamlit loads to send a chart's data).
Those imports took about 0.6 s of a session's first open on a 2-core CPU; here they take it
from the server's start instead, before anyone has a page to wait for. No data is read.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow  # noqa: E402, F401
import workbench_charts  # noqa: E402, F401
import workbench_data  # noqa: E402, F401
import workbench_views  # noqa: E402, F401
from streamlit.web.cli import main  # noqa: E402

import interp.measures.icl  # noqa: E402, F401  (the training-curves view's band score)

if __name__ == "__main__":
    sys.exit(main(prog_name="streamlit"))
