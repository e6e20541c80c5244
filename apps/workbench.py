"""Mechanistic-interpretability workbench.

    interp app [DIR]                       # or:
    streamlit run apps/workbench.py -- DIR

DIR (default ``checkpoints``) holds run directories; ``INTERP_APP_ROOT`` overrides it.
A session opens on the training curves of the run that changed last; ``?view=Head+atlas`` in
the address opens another view (the address follows the view chosen).

It serves this machine only. ``interp app`` passes ``--server.address 127.0.0.1``;
``apps/.streamlit/config.toml`` (read by Streamlit beside the script, from any working folder)
sets the same for ``streamlit run``; and a server told another address anyway (a flag, a
``STREAMLIT_SERVER_ADDRESS``, an older Streamlit without script-level config) shows nothing but
a one-line refusal, since the app reads local files and shows them. From another machine, use
an SSH tunnel (``ssh -L 8501:127.0.0.1:8501 host``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import streamlit as st  # noqa: E402

import workbench_data as D  # noqa: E402
import workbench_views as V  # noqa: E402

VIEWS = {
    "Runs": None,
    "Training curves": V.curves_view,
    "Head atlas": V.atlas_view,
    "Head detail": V.head_view,
    "Tokens": V.tokens_view,
    "Live": V.live_view,
}


def _root() -> Path:
    if os.environ.get("INTERP_APP_ROOT"):
        return Path(os.environ["INTERP_APP_ROOT"])
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        return Path(sys.argv[1])
    return Path("checkpoints")


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _serves_elsewhere() -> str | None:
    """The address the server listens on when it is not this machine's loopback, else None
    (Streamlit's default, "", means every interface)."""
    address = str(st.get_option("server.address") or "")
    return None if address in LOOPBACK else (address or "every interface")


def _most_recent(runs: list[Path]) -> Path:
    """The run whose metrics changed last: what a researcher most likely wants to see first."""
    return max(runs, key=D.metrics_mtime)


def _first_view(run: Path) -> str:
    """The view a fresh session opens on: ``?view=`` from the link if valid, else the training
    curves of the run that changed last (what one usually opens the workbench to see), else Runs."""
    asked = st.query_params.get("view")
    if asked in VIEWS:
        return asked
    return "Training curves" if D.metrics_mtime(run) else "Runs"


def main() -> None:
    st.set_page_config(page_title="interp workbench", layout="wide")
    elsewhere = _serves_elsewhere()
    if elsewhere:
        st.error(f"The workbench serves this machine only, not {elsewhere}: start it with "
                 f"`interp app` or `--server.address 127.0.0.1` (an SSH tunnel reaches it from elsewhere).")
        st.stop()
    root = _root()
    st.session_state["app_root"] = str(root)
    runs, unreadable = D.scan_runs(root)
    st.sidebar.title("interp workbench")
    st.sidebar.caption(f"runs under `{root}`")
    if unreadable:
        st.sidebar.warning(f"{len(unreadable)} folder(s) cannot be read; the Runs view lists them.")
    if unreadable and not runs:
        V.runs_view(runs, unreadable)
        return
    if not runs:
        st.info(f"No runs under `{root}`. Train one with `interp train` (or `interp quickstart`), "
                f"or start the app on another directory: `interp app DIR`.")
        return
    names = [D.run_label(r) for r in runs]
    if "selected_runs" not in st.session_state or not set(st.session_state["selected_runs"]) <= set(names):
        st.session_state["selected_runs"] = [n for n in st.session_state.get("selected_runs", []) if n in names] \
            or [D.run_label(_most_recent(runs))]
    selected = st.sidebar.multiselect("runs to compare", names, key="selected_runs")
    if "view" not in st.session_state:
        st.session_state["view"] = _first_view(runs[names.index(st.session_state["selected_runs"][0])]) \
            if st.session_state["selected_runs"] else "Runs"
    view = st.sidebar.radio("view", list(VIEWS), key="view")
    st.query_params["view"] = view  # the address bar names the view: a link reopens it
    st.sidebar.button("refresh")
    chosen = [runs[names.index(n)] for n in selected]
    try:
        if view == "Runs":
            V.runs_view(runs, unreadable)
        elif not chosen:
            st.info("Choose at least one run in the sidebar.")
        else:
            VIEWS[view](chosen)
    except D.VIEW_ERRORS as err:
        st.warning(f"{view}: {err}")


main()
