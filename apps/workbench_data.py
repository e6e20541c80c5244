"""Cached loaders and small pure helpers for the workbench (the only place, with the views,
that imports streamlit besides ``workbench.py``).

Stored arrays are cached with ``st.cache_resource`` keyed on (run directory, metrics.h5 mtime),
so a rerun (moving a slider) never re-reads the file, and a new write (a live run) is picked up
on the next rerun. ``cache_resource`` hands out the same arrays instead of unpickling a copy of
megabytes at every call (``cache_data``); the views only read them. Models are cached with ``st.cache_resource`` keyed on the checkpoint path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from interp import costly, store
from interp.errors import InterpError

#: Errors a view turns into a one-line warning instead of a traceback.
VIEW_ERRORS = (InterpError, OSError, ValueError, KeyError, IndexError, RuntimeError)

HEAD_SCORES = {
    "prefix matching": "prefix_matching",
    "prefix matching null (nothing repeated)": "prefix_matching_null",
    "copying (OV eigenvalues)": "copying_ov",
    "copying (empirical)": "copying_empirical",
    "previous token": "previous_token",
    "duplicate token": "duplicate_token",
    "ablation effect on ICL": "ablation_icl_change",
}


# --------------------------------------------------------------------------- discovery

def scan_runs(root: Path) -> tuple[list[Path], dict[Path, str]]:
    """Run directories (those with a config.json) under ``root`` and one level deeper (a
    sweep's folder of runs), or ``root`` itself if it is a run; and the folders that could not
    be looked into, each with the reason. A folder this user cannot read is listed (the Runs
    view marks it) instead of stopping the page for every other run; so is a run that holds a
    link out of its folder (:mod:`interp.fileio`), which no view then opens."""
    root = Path(root)
    unreadable: dict[Path, str] = {}
    if _is_run(root, unreadable):
        return [root], unreadable
    if root in unreadable:  # a run with a link out is not looked into either
        return [], unreadable
    found = []
    for child in _subfolders(root, unreadable):
        if _is_run(child, unreadable):
            found.append(child)
        elif child not in unreadable:
            found.extend(p for p in _subfolders(child, unreadable) if _is_run(p, unreadable))
    return found, unreadable


def find_runs(root: Path) -> list[Path]:
    """The run directories of :func:`scan_runs`, without the unreadable folders."""
    return scan_runs(root)[0]


def _is_run(folder: Path, unreadable: dict[Path, str]) -> bool:
    try:
        if not (folder / "config.json").is_file():
            return False
        _no_link_out(str(folder), _mtime(folder))
        return True
    except OSError as err:  # EACCES on the folder: stat of its entries fails
        unreadable[folder] = err.strerror or type(err).__name__
    except InterpError as err:  # a link out of the run folder
        unreadable[folder] = str(err)
    return False


@st.cache_data(show_spinner=False, max_entries=1024)
def _no_link_out(run: str, mtime: int) -> None:
    """:func:`interp.fileio.refuse_links_out`, once per run folder and change of its listing
    (every view's own reads check the files they open as well)."""
    from interp.fileio import refuse_links_out

    refuse_links_out(Path(run))


def _mtime(folder: Path) -> int:
    return folder.stat().st_mtime_ns


def _subfolders(folder: Path, unreadable: dict[Path, str]) -> list[Path]:
    """Sorted subfolders of ``folder`` ([] when it cannot be listed, which is recorded)."""
    try:
        children = sorted(folder.iterdir()) if folder.is_dir() else []
        return [p for p in children if _is_dir(p, unreadable)]
    except OSError as err:
        unreadable[folder] = err.strerror or type(err).__name__
        return []


def _is_dir(path: Path, unreadable: dict[Path, str]) -> bool:
    try:
        return path.is_dir()
    except OSError as err:
        unreadable[path] = err.strerror or type(err).__name__
        return False


def run_label(run: Path) -> str:
    """A run's name as shown: its path under the app's root (``sweep/run`` for a run of a
    sweep, since names repeat across sweeps); outside a page, ``sweep/run`` when the parent
    folder holds a sweep plan."""
    run = Path(run)
    root = st.session_state.get("app_root") if st.runtime.exists() else None
    if root and run != Path(root):
        try:
            return str(run.relative_to(root))
        except ValueError:
            pass
    return f"{run.parent.name}/{run.name}" if (run.parent / "sweep.json").is_file() else run.name


def metrics_mtime(run: str | Path) -> int:
    path = Path(run) / "metrics.h5"
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


# --------------------------------------------------------------------------- cached readers

@st.cache_resource(show_spinner=False, max_entries=64)
def _group(run: str, group: str, mtime: int) -> dict[str, Any]:
    if not mtime:
        return {}
    return store.series(Path(run), group)


@st.cache_resource(show_spinner=False, max_entries=64)
def _analysis(run: str, mtime: int) -> dict[str, Any]:
    if not mtime:
        return {}
    rows = store.series_by_step(Path(run), "analysis")
    try:  # the sparse ablations on the same step axis, NaN where skipped (interp.costly)
        return costly.aligned(rows, store.series(Path(run), costly.GROUP))
    except store.StoreError:
        return rows


@st.cache_resource(show_spinner=False, max_entries=64)
def _phase(run: str, mtime: int) -> dict[str, Any]:
    if not mtime:
        return {}
    return store.attrs(Path(run), "phase")


def group(run: str | Path, name: str) -> dict[str, Any]:
    return _group(str(run), name, metrics_mtime(run))


def analysis(run: str | Path) -> dict[str, Any]:
    return _analysis(str(run), metrics_mtime(run))


@st.cache_resource(show_spinner=False, max_entries=16)
def _pca(runs: tuple[str, ...], mtimes: tuple[int, ...]) -> tuple[list[np.ndarray], np.ndarray]:
    from interp.measures.pca import per_token_loss_pca

    vectors = [np.nan_to_num(np.asarray(analysis(r)["per_token_loss"], dtype=float)) for r in runs]
    return per_token_loss_pca(vectors)


def pca(runs: list[Path]) -> tuple[list[np.ndarray], np.ndarray]:
    """Joint per-token-loss PCA of the runs: per run [checkpoint, component], explained share."""
    return _pca(tuple(map(str, runs)), tuple(metrics_mtime(r) for r in runs))


@st.cache_data(show_spinner=False, max_entries=64)
def _analysed_count(run: str, mtime: int) -> int:
    return len(store.steps(Path(run), "analysis")) if mtime else 0


def analysed_count(run: str | Path) -> int:
    """Analysed checkpoints, from the step dataset alone (the runs table needs no more)."""
    return _analysed_count(str(run), metrics_mtime(run))


def has_analysis(rows: dict) -> bool:
    return len(rows.get("step", [])) > 0


def phase(run: str | Path) -> dict[str, Any]:
    return _phase(str(run), metrics_mtime(run))


@st.cache_data(show_spinner=False, max_entries=64)
def _config(run: str, mtime: int):
    from interp.runs import read_config

    return read_config(Path(run))


def config(run: str | Path):
    path = Path(run) / "config.json"
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = 0
    return _config(str(run), mtime)


def checkpoints(run: str | Path) -> list:
    from interp.runs import list_checkpoints

    return list_checkpoints(Path(run))


@st.cache_resource(show_spinner="loading checkpoint...", max_entries=8)
def model(path: str):
    from interp.checkpoints import load_model

    m = load_model(path)
    m.eval()
    return m


@st.cache_resource(show_spinner="loading data...", max_entries=4)
def _dataset(run: str, mtimes: tuple[int, int]):
    from interp.rundata import open_run_data

    return open_run_data(Path(run), config(run))


def dataset(run: str | Path):
    """The tokenizer and held-out sequences the run carries (:mod:`interp.rundata`): read from
    the run folder only, never from the corpus or cache its config.json names, and nothing is
    written (an old run without ``data/`` is read from this user's own token cache)."""
    def mtime(path: Path) -> int:
        try:
            return path.stat().st_mtime_ns
        except OSError:
            return 0
    return _dataset(str(run), (mtime(Path(run) / "config.json"), mtime(Path(run) / "data" / "data.json")))


@st.cache_data(show_spinner=False, max_entries=16)
def heldout_tokens(run: str, n: int) -> np.ndarray:
    """The first ``n`` of the held-out sequences every run carries (the analysis's set)."""
    from interp.rundata import HELDOUT_EXAMPLES, HELDOUT_SEED

    return dataset(run).heldout_batch(HELDOUT_EXAMPLES, seed=HELDOUT_SEED)[:n].numpy()


@st.cache_data(show_spinner="computing attention...", max_entries=64)
def attention(run: str, checkpoint_path: str, tokens: tuple[int, ...]) -> np.ndarray:
    """[layer, head, query, key] attention patterns of one sequence at one checkpoint."""
    import torch

    from interp.measures.heads import attention_patterns

    patterns = attention_patterns(model(checkpoint_path), torch.tensor([list(tokens)]))
    return patterns[:, 0].numpy()


@st.cache_data(show_spinner="computing losses...", max_entries=64)
def token_losses(run: str, checkpoint_path: str, tokens: tuple[int, ...]) -> np.ndarray:
    """[pos] loss of each token of one sequence (index 0 NaN)."""
    import torch

    from interp.measures.icl import per_token_losses

    with torch.no_grad():
        return per_token_losses(model(checkpoint_path), torch.tensor([list(tokens)]))[0].numpy()


@st.cache_data(show_spinner=False, max_entries=256)
def eigenvalues(checkpoint_path: str, layer: int, head: int) -> dict[str, np.ndarray]:
    """The head's OV and token-QK circuit eigenvalues at a checkpoint (complex, largest first)."""
    from interp.measures.circuits import circuit_eigenvalues

    return {k: v.numpy() for k, v in circuit_eigenvalues(model(checkpoint_path), layer, head).items()}


@st.cache_resource(show_spinner="computing the random-head baseline...", max_entries=16)
def k_baseline(d_model: int, d_head: int):
    """K-composition of random heads at these widths (``interp.composition_trend.Baseline``:
    mean and sd of single random pairs). Imports torch: for the head-detail view only."""
    from interp.composition_trend import random_baseline

    return random_baseline(d_model, d_head, "k")


# --------------------------------------------------------------------------- pure helpers

def fmt_tokens(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    if not np.isfinite(v):
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= size:
            return f"{v / size:.3g}{unit}"
    return f"{v:.0f}"


def window(run: str | Path) -> tuple[float, float] | None:
    attrs = phase(run)
    start, end = attrs.get("window_start_tokens"), attrs.get("window_end_tokens")
    try:
        if start is not None and end is not None and np.isfinite(start) and np.isfinite(end):
            return float(start), float(end)
    except TypeError:
        return None
    return None


def no_window_reason(run: str | Path) -> str | None:
    """Why the analysis found no phase-change window, from its closest candidate
    (``phase/miss_*``, the report's line); None when there is a window or no such record."""
    attrs = phase(run)
    if window(run) is not None or "miss_failed" not in attrs:
        return None
    return (f"closest candidate {fmt_tokens(attrs['miss_start_tokens'])}-{fmt_tokens(attrs['miss_end_tokens'])} "
            f"tokens (drop {attrs['miss_drop']:.3f} nats, z {attrs['miss_z']:.1f}) fails {attrs['miss_failed']}")


def induction_heads(run: str | Path) -> str:
    value = phase(run).get("induction_heads", "")
    if isinstance(value, bytes):
        value = value.decode()
    return str(value) if value else ""


def head_labels(run: str | Path) -> list[tuple[str, str]]:
    """[("l.h", "formed" | "forming" | "fading")] of the run's labelled heads (phase group)."""
    from interp.phase.report import labelled_heads

    return labelled_heads(phase(run))


def head_evidence(run: str | Path, layer: int, head: int) -> dict[str, Any] | None:
    """A labelled head's evidence from the phase group: ``text`` (the report's line), ``label``,
    ``rule`` ("null" or "legacy") and the numbers (prefix, null, z, effect, copying, slope,
    slope_z, ...); None for a head without a label. Torch-free (numpy-only interp.phase)."""
    from interp.phase.report import describe_head

    attrs = phase(run)
    name = f"{layer}.{head}"
    if name not in dict(head_labels(run)):
        return None
    prefix = f"head_{name}_"
    numbers = {k.removeprefix(prefix): v for k, v in attrs.items() if k.startswith(prefix)}
    rule = attrs.get("induction_rule", "")
    return {**numbers, "text": describe_head(attrs, name),
            "rule": rule.decode() if isinstance(rule, bytes) else str(rule)}


def token_strings(data, ids: list[int]) -> list[str]:
    return [data.decode([int(i)]) for i in ids]


def encode_text(data, text: str, n_ctx: int) -> list[int]:
    """``text`` as model input: BOS first when the data uses one, cut to the context."""
    ids = list(data.encode(text))
    bos = getattr(data, "bos_token_id", None)
    if bos is not None and (not ids or ids[0] != bos):
        ids = [bos] + ids
    return ids[:n_ctx]


def loss_colour(delta: float, scale: float) -> str:
    """Green for a loss that fell, red for one that rose; white for no change."""
    if not np.isfinite(delta) or scale <= 0:
        return "#ffffff"
    t = float(np.clip(abs(delta) / scale, 0, 1))
    shade = int(255 - 140 * t)
    return f"rgb({shade},255,{shade})" if delta < 0 else f"rgb(255,{shade},{shade})"


# Inside <script>, "</script" ends the script whatever quotes surround it, and "<!--" can keep
# the real end tag from closing it; either in a token string would let text from a run (its
# tokenizer or typed text) run as HTML. Both only appear in circuitsvis's output inside the
# JSON of the props (its bundled JavaScript has neither: the tests check), where "\u003c" is
# the same character to JSON and JavaScript.
_SCRIPT_BREAKERS = re.compile(r"<(?=/script|!--)", re.IGNORECASE)


def attention_html(tokens: list[str], attention: np.ndarray) -> str:
    """circuitsvis HTML for one head's pattern ([query, key]) or a layer's heads ([head, query,
    key]), from the JavaScript bundled in its wheel (offline), with every ``</script`` and
    ``<!--`` in token strings escaped so that no token can end the script."""
    import circuitsvis as cv

    if attention.ndim == 2:
        rendered = cv.attention.attention_pattern(tokens=tokens, attention=attention)
    else:
        rendered = cv.attention.attention_heads(attention=attention, tokens=tokens)
    return escape_script_body(rendered.local_src)  # str() would load the JS from a CDN


def escape_script_body(html: str) -> str:
    """``html`` ending in one ``</script>`` with every earlier ``</script`` / ``<!--`` written
    ``\\u003c/script`` / ``\\u003c!--`` (what circuitsvis emits: a div, then one script)."""
    end = html.lower().rfind("</script")
    if end < 0:
        return _SCRIPT_BREAKERS.sub(r"\\u003c", html)
    return _SCRIPT_BREAKERS.sub(r"\\u003c", html[:end]) + html[end:]


def coloured_tokens_html(tokens: list[str], before: np.ndarray, after: np.ndarray) -> str:
    import html

    delta = after - before
    finite = np.abs(delta[np.isfinite(delta)])
    scale = float(np.quantile(finite, 0.95)) if finite.size else 0.0
    spans = []
    for i, tok in enumerate(tokens):
        d = float(delta[i]) if i < len(delta) else float("nan")
        title = (f"index {i}: loss {before[i]:.3f} -> {after[i]:.3f} ({d:+.3f})"
                 if np.isfinite(d) else f"index {i}")
        text = html.escape(tok).replace("\n", "&#8629;<br>")
        spans.append(f'<span title="{html.escape(title)}" style="background:{loss_colour(d, scale)};'
                     f'white-space:pre-wrap;font-family:monospace;border-radius:2px">{text}</span>')
    return "<div style='line-height:1.8'>" + "".join(spans) + "</div>"


def position_bins(loss_by_position: np.ndarray, max_bins: int = 48
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean loss over log-spaced bins of token indices 1.. (index 0 has no loss).

    [checkpoint, pos] -> bin starts [b], bin ends [b] (exclusive) and means [checkpoint, b].
    Bin edges are spaced evenly in log(index), so the first indices, where in-context learning
    shows, keep a bin each and later ones are pooled: the heatmap stays at <= ``max_bins``
    columns (76 x 255 SVG cells took seconds to draw in the browser).
    """
    n = loss_by_position.shape[1]
    edges = np.unique(np.round(np.geomspace(1, n, max_bins + 1)).astype(int))
    starts, ends = edges[:-1], edges[1:]
    means = np.stack([np.nanmean(loss_by_position[:, s:e], axis=1) for s, e in zip(starts, ends)], axis=1)
    return starts, ends, means


def checkpoint_rows(binned: np.ndarray, tokens: np.ndarray, max_rows: int = 80
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At most ``max_rows`` heatmap rows: runs of consecutive checkpoints averaged together.

    [checkpoint, bin] and tokens [checkpoint] -> first tokens [r], last tokens [r] and means
    [r, bin], with r = min(checkpoints, max_rows) and the checkpoints split as evenly as they
    go (``np.array_split``); with no more checkpoints than rows, every row is one checkpoint.
    Each SVG cell costs the browser time to draw (76 x 37 cells drew in about 0.3 s, 204 x 37
    in about 0.8 s), and a chart a few hundred pixels high shows no more rows than this anyway.
    """
    tokens = np.asarray(tokens)
    if not len(tokens):
        return tokens, tokens, binned[:0]
    groups = np.array_split(np.arange(len(tokens)), max(1, min(len(tokens), max_rows)))
    means = np.stack([np.nanmean(binned[g], axis=0) for g in groups])
    return tokens[[g[0] for g in groups]], tokens[[g[-1] for g in groups]], means


def nearest_index(values: np.ndarray, target: float) -> int:
    return int(np.argmin(np.abs(np.asarray(values, dtype=float) - target)))
