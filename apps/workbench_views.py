"""The workbench views. Each takes the chosen runs and draws into the page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

import workbench_charts as C
import workbench_data as D


def _html(html: str, height: int) -> None:
    """Embed circuitsvis HTML (rendered from its bundled JS, offline)."""
    if hasattr(st, "iframe"):
        st.iframe(html, height=height)
    else:
        components.html(html, height=height, scrolling=True)


def _warn(run: Path, err: Exception) -> None:
    st.warning(f"{D.run_label(run)}: {err}")


CANVAS = {"embedOptions": {"renderer": "canvas"}}  # vega-embed reads options from the spec's usermeta


def _chart(data: pd.DataFrame, spec: dict, canvas: bool = False, **kwargs):
    """``canvas``: drawn on a canvas, not as SVG, so one element instead of one per mark: the
    Training-curves view's four charts drew about 0.2 s sooner (warm, 20 runs of 204
    checkpoints, benchmarks/bench_app.py). Tooltips work the same; SVG stays where marks are
    clicked (the atlas grid), since its marks are elements with labels."""
    return st.vega_lite_chart(data, {**spec, "usermeta": CANVAS} if canvas else spec, width="stretch", **kwargs)


def _pick_run(runs: list[Path], key: str) -> Path:
    names = [D.run_label(r) for r in runs]
    name = st.selectbox("run", names, key=key) if len(names) > 1 else names[0]
    return runs[names.index(name)]


# --------------------------------------------------------------------------- Runs

def runs_view(all_runs: list[Path], unreadable: dict[Path, str] | None = None) -> None:
    """The table of runs; a run whose files cannot be read is a row marked ``broken``, and a
    folder that cannot be looked into (``unreadable``, from :func:`workbench_data.scan_runs`)
    a row marked ``unreadable``, each with a warning saying why."""
    st.header("Runs")
    rows, problems, unanalysed, empty = [], [], [], []
    for folder, reason in (unreadable or {}).items():
        rows.append({"run": D.run_label(folder), "status": "unreadable"})
        problems.append(f"{D.run_label(folder)}: cannot be read ({reason})")
    for run in all_runs:
        try:
            cfg = D.config(run)
            from interp.runs import read_run_info, run_status

            info = read_run_info(run)
            ckpts = D.checkpoints(run)
            analysed = D.analysed_count(run)
            win = D.window(run)
            last_step = ckpts[-1].step if ckpts else 0
            rows.append({
                "run": D.run_label(run),
                "status": run_status(run),
                "model": f"{cfg.model.n_layers}L×{cfg.model.n_heads}H d{cfg.model.d_model}"
                         f"{' attn-only' if cfg.model.attn_only else ''}",
                "data": cfg.data.source,
                "n_ctx": cfg.model.n_ctx,
                "tokens": D.fmt_tokens(last_step * cfg.tokens_per_step),
                "planned": D.fmt_tokens(cfg.train.steps * cfg.tokens_per_step),
                "checkpoints": len(ckpts),
                "analysed": analysed,
                "window": f"{D.fmt_tokens(win[0])}–{D.fmt_tokens(win[1])}" if win else "-",
                "induction heads": D.induction_heads(run) or "-",
                "device": info.get("device", "-"),
            })
            if not ckpts:
                empty.append(D.run_label(run))
            elif not analysed and rows[-1]["status"] != "training":
                unanalysed.append(run)
        except D.VIEW_ERRORS as err:
            problems.append(f"{D.run_label(run)}: {err}")
            rows.append({"run": D.run_label(run), "status": "broken"})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height=min(36 * (len(rows) + 1) + 4, 640))
    for p in problems:
        st.warning(p)
    if unanalysed:
        names = ", ".join(D.run_label(r) for r in unanalysed[:4]) + (" ..." if len(unanalysed) > 4 else "")
        st.info(f"{len(unanalysed)} run(s) not analysed yet ({names}): the curves need no analysis, the "
                f"other views do. Run `interp analyze RUN` (incremental), e.g. `interp analyze {unanalysed[0]}`.")
    if empty:
        st.caption(f"No complete checkpoint yet: {', '.join(empty)}.")
    st.caption("Choose the runs to compare in the sidebar; the other views use them.")


# --------------------------------------------------------------------------- Training curves

def curves_view(runs: list[Path]) -> None:
    st.header("Training curves")
    log_x = st.toggle("log-scale tokens", value=True, key="curves_log")
    loss_rows, icl_rows, windows = [], [], []
    for run in runs:
        try:
            train = D.group(run, "train")
            ev = D.group(run, "eval")
            an = D.analysis(run)
            win = D.window(run)
        except D.VIEW_ERRORS as err:
            _warn(run, err)
            continue
        if win:
            windows.append({"run": D.run_label(run), "start": win[0], "end": win[1]})
        if len(train.get("tokens", [])):
            loss_rows.append(pd.DataFrame({"run": D.run_label(run), "tokens": train["tokens"],
                                           "loss": train["loss"], "series": "train"}))
        if len(ev.get("tokens", [])):
            loss_rows.append(pd.DataFrame({"run": D.run_label(run), "tokens": ev["tokens"],
                                           "loss": ev["val_loss"], "series": "held-out"}))
        source = an if D.has_analysis(an) else ev
        if len(source.get("tokens", [])) and "loss_by_position" in source:
            from interp.measures.icl import icl_band_score

            icl_rows.append(pd.DataFrame({"run": D.run_label(run), "tokens": source["tokens"],
                                          "icl": icl_band_score(source["loss_by_position"]),
                                          "score": "band"}))
            icl_rows.append(pd.DataFrame({"run": D.run_label(run), "tokens": source["tokens"],
                                          "icl": source["icl_score"], "score": "single index"}))
    if not loss_rows:
        st.info("No training records yet for the chosen runs.")
        return
    def chart(df: pd.DataFrame, y: str, dash: str, title: str, bold: str | None = None) -> None:
        if log_x:
            df = df[df["tokens"] > 0]  # a log axis has no place for the initialisation
        _chart(df, C.lines("tokens", y, "run", dash=dash, bold=bold, log_x=log_x, y_title=title,
                           windows=windows), canvas=True)

    st.subheader("Loss")
    chart(pd.concat(loss_rows), "loss", "series", "loss (nats)")
    st.subheader("ICL score")
    if icl_rows:
        chart(pd.concat(icl_rows), "icl", "score", "ICL score (nats; lower = more ICL)", bold="band")
        st.caption("Band score (bold) and single-index score; shaded: each run's phase-change window.")
        for run in runs:
            reason = D.no_window_reason(run)
            if reason:
                st.caption(f"{D.run_label(run)}: no phase-change window; {reason} (docs/PHASE.md).")
    else:
        st.info("No ICL scores yet.")

    st.subheader("Loss by token index")
    analysed = [r for r in runs if D.has_analysis(D.analysis(r))]
    if analysed:
        run = _pick_run(analysed, "heatmap_run")
        an = D.analysis(run)
        starts, ends, binned = D.position_bins(np.asarray(an["loss_by_position"], dtype=float))
        first, last, binned = D.checkpoint_rows(binned, np.asarray(an["tokens"]))
        a, b = binned.shape
        df = pd.DataFrame({"checkpoint": np.repeat(np.arange(a), b), "tokens": np.repeat(first, b),
                           "to tokens": np.repeat(last, b), "from index": np.tile(starts, a),
                           "to index": np.tile(ends, a), "loss": binned.ravel()})
        _chart(df, C.heatmap("from index", "to index", "checkpoint", "loss", x_title="token index", log_x=True,
                             tooltip=["tokens", "to tokens", "from index", "to index", "loss"]), canvas=True)
        rows = ("One row per checkpoint" if a == len(an["tokens"]) else
                f"{len(an['tokens'])} checkpoints averaged into {a} rows of consecutive ones")
        st.caption(f"{rows}; token indices pooled into {len(starts)} log-spaced bins "
                   f"(single indices up to {int(starts[np.argmax(ends - starts > 1)])}).")
    else:
        st.info("The loss-by-index heatmap and the PCA need analysed runs (`interp analyze RUN`).")
        return

    st.subheader("Per-token-loss PCA")
    try:
        projected, explained = D.pca(analysed)
    except D.VIEW_ERRORS as err:
        st.warning(f"PCA unavailable: {err}")
        return
    frames = [pd.DataFrame({"run": D.run_label(r), "PC1": p[:, 0], "PC2": p[:, 1] if p.shape[1] > 1 else 0.0,
                            "tokens": D.analysis(r)["tokens"], "order": np.arange(len(p))})
              for r, p in zip(analysed, projected)]
    _chart(pd.concat(frames), C.trajectory(
        "PC1", "PC2", "run", "order", x_title=f"PC1 ({explained[0]:.0%})",
        y_title=f"PC2 ({explained[1]:.0%})" if len(explained) > 1 else "PC2", tooltip=["run", "tokens"]), canvas=True)


# --------------------------------------------------------------------------- Head atlas

def _open_head(layer: int, head: int) -> None:
    st.session_state["head"] = f"{layer}.{head}"
    st.session_state["view"] = "Head detail"


def _clicked_cell() -> None:
    """on_select callback of the atlas grid: a clicked cell opens Head detail for that head.

    A callback, because the view radio cannot be changed once it is drawn in this rerun."""
    points = st.session_state["atlas_grid"].selection.get("pick") or []
    if points:
        _open_head(int(points[0]["layer"]), int(points[0]["head"]))


def atlas_view(runs: list[Path]) -> None:
    st.header("Head atlas")
    run = _pick_run(runs, "atlas_run")
    an = D.analysis(run)
    if not D.has_analysis(an):
        st.info(f"{D.run_label(run)} has no analysis yet; run `interp analyze {run}` to fill the atlas.")
        return
    available = {label: key for label, key in D.HEAD_SCORES.items() if key in an}
    label = st.selectbox("score", list(available), key="atlas_score")
    key = available[label]
    steps = [int(s) for s in an["step"]]
    step = st.select_slider("checkpoint (step)", options=steps, value=steps[-1], key=f"atlas_step_{D.run_label(run)}")
    i = steps.index(step)
    measured = ~np.isnan(np.asarray(an[key], dtype=float).reshape(len(steps), -1)).all(axis=1)
    if not measured[i] and measured.any():  # a sparse series (ablations: interp.costly)
        i = int(np.flatnonzero(measured)[np.argmin(np.abs(np.flatnonzero(measured) - i))])
        st.caption(f"{label} is measured densely only around the phase change; showing the "
                   f"nearest measured checkpoint, step {steps[i]}.")
    values = np.asarray(an[key][i], dtype=float)
    n_layers, n_heads = values.shape
    heads = [f"{l}.{h}" for l in range(n_layers) for h in range(n_heads)]
    labels = ", ".join(f"{name} {label}" for name, label in D.head_labels(run))
    st.caption(f"step {steps[i]}, {D.fmt_tokens(an['tokens'][i])} tokens; induction heads found: "
               f"{D.induction_heads(run) or 'none'}" + (f" (at the end: {labels})" if labels else ""))
    grid = pd.DataFrame({"layer": np.repeat(np.arange(n_layers), n_heads),
                         "head": np.tile(np.arange(n_heads), n_layers), "value": values.ravel()})
    st.caption("Click a cell to open that head's detail.")
    _chart(grid, C.head_grid("value", diverging=key in ("ablation_icl_change", "copying_ov"),
                             height=min(60 * n_layers + 40, 500)),
           on_select=_clicked_cell, selection_mode="pick", key="atlas_grid")

    col1, col2 = st.columns([3, 1])
    chosen = col1.selectbox("head (layer.head)", heads, key="atlas_head",
                            index=heads.index(st.session_state.get("head", heads[0]))
                            if st.session_state.get("head") in heads else 0)
    layer, head = (int(x) for x in chosen.split("."))
    col2.button("open head detail", on_click=_open_head, args=(layer, head), key="atlas_open")

    traj = pd.DataFrame({"tokens": np.repeat(an["tokens"], n_layers * n_heads),
                         "head": heads * len(steps),
                         "value": np.asarray(an[key], dtype=float).reshape(len(steps), -1).ravel()})
    traj = traj[(traj["tokens"] > 0) & traj["value"].notna()]  # log axis; sparse series skip rows
    win = D.window(run)
    st.subheader("Every head over training")
    _chart(traj, C.lines("tokens", "value", "head", log_x=True, y_title=label, height=320,
                         windows=[{"run": D.run_label(run), "start": win[0], "end": win[1]}] if win else []))


# --------------------------------------------------------------------------- Head detail

def head_view(runs: list[Path]) -> None:
    st.header("Head detail")
    run = _pick_run(runs, "detail_run")
    cfg = D.config(run)
    ckpts = D.checkpoints(run)
    if not ckpts:
        st.info(f"{D.run_label(run)} has no complete checkpoint yet.")
        return
    heads = [f"{l}.{h}" for l in range(cfg.model.n_layers) for h in range(cfg.model.n_heads)]
    current = st.session_state.get("head")
    chosen = st.selectbox("head (layer.head)", heads, index=heads.index(current) if current in heads else 0,
                          key="detail_head_select")
    st.session_state["head"] = chosen
    layer, head = (int(x) for x in chosen.split("."))
    steps = [c.step for c in ckpts]
    step = st.select_slider("checkpoint (step)", options=steps, value=steps[-1], key=f"detail_step_{D.run_label(run)}")
    ckpt = ckpts[steps.index(step)]

    data = D.dataset(run)
    sample = D.heldout_tokens(str(run), 4)[0]
    default = data.decode([int(t) for t in sample[: min(len(sample), 64)]])
    bos_text = data.decode([data.bos_token_id]) if getattr(data, "bos_token_id", None) is not None else None
    if bos_text and default.startswith(bos_text):
        default = default[len(bos_text):].lstrip(" ")
    text = st.text_area("text (default: a held-out sample)", value=default, key=f"detail_text_{D.run_label(run)}")
    ids = D.encode_text(data, text, cfg.model.n_ctx)
    if len(ids) < 2:
        st.info("Type at least one token.")
        return
    patterns = D.attention(str(run), str(ckpt.path), tuple(ids))
    toks = D.token_strings(data, ids)
    st.subheader(f"Attention pattern of head {chosen} at step {step}")
    _html(D.attention_html(toks, patterns[layer, head]), min(120 + 14 * len(ids), 900))
    with st.expander(f"all heads of layer {layer}"):
        _html(D.attention_html(toks, patterns[layer]), 700)

    an = D.analysis(run)
    if not D.has_analysis(an):
        st.info(f"Scores over training need `interp analyze {run}`.")
        return
    frames = [pd.DataFrame({"tokens": an["tokens"], "score": label,
                            "value": np.asarray(an[key], dtype=float)[:, layer, head]})
              for label, key in D.HEAD_SCORES.items() if key in an]
    _induction_evidence(run, layer, head)
    st.subheader("Scores over training")
    scores = pd.concat(frames)
    _chart(scores[scores["tokens"] > 0], C.lines("tokens", "value", "score", log_x=True, points=True))

    a = D.nearest_index(an["step"], step)
    st.caption(f"Composition and copying at the analysed step nearest {step}: step {int(an['step'][a])}")
    c1, c2 = st.columns(2)
    ov = an.get("copying_ov")
    emp = an.get("copying_empirical")
    c1.metric("OV copying score", f"{float(ov[a, layer, head]):.3f}" if ov is not None else "-")
    c2.metric("empirical copying", f"{float(emp[a, layer, head]):.3f}" if emp is not None else "-")
    _eigen_summary(str(ckpt.path), layer, head, step)
    if layer == 0:
        st.info("Layer 0 heads have no earlier heads to compose with.")
        return
    rows = []
    for l1 in range(layer):
        for h1 in range(cfg.model.n_heads):
            rows.append({"earlier head": f"{l1}.{h1}",
                         **{kind: float(an[f"composition_{kind}"][a, l1, h1, layer, head])
                            for kind in ("k", "q", "v") if f"composition_{kind}" in an}})
    st.subheader("Composition with earlier heads")
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    if "composition_k" in an:
        _composition_over_training(run, an, layer, head)


def _induction_evidence(run: Path, layer: int, head: int) -> None:
    """The head's trend label and the evidence of the induction-head rule at the last analysed
    checkpoint (docs/PHASE.md), or why it has none."""
    from interp.phase.heads import RULE

    evidence = D.head_evidence(run, layer, head)
    st.subheader("Induction-head rule")
    if evidence is None:
        st.caption(f"Head {layer}.{head} is not labelled: it does not pass the rule at the end and is neither "
                   f"forming nor fading (rule: prefix matching above its null by z > {RULE.min_z:g} and by "
                   f"more than {RULE.min_effect:g}, OV copying > {RULE.min_copying:g}).")
        return
    cols = st.columns(6)
    fmt = {"prefix": "{:.2f}", "null": "{:.2f}", "z": "{:.1f}", "copying": "{:+.2f}", "slope": "{:+.2f}"}
    cols[0].metric("label", str(evidence.get("label", "-")))
    for col, (key, pattern) in zip(cols[1:], fmt.items()):
        value = float(evidence.get(key, float("nan")))
        col.metric({"prefix": "prefix matching", "null": "null", "z": "z", "copying": "OV copying",
                    "slope": "slope / decade"}[key], pattern.format(value) if np.isfinite(value) else "-")
    note = (f" Classified by the old rule (prefix matching > {RULE.legacy_prefix:g}): this analysis has no "
            f"null; `interp analyze --redo` measures it." if evidence["rule"] == "legacy" else "")
    st.caption(evidence["text"] + "." + note)


def _composition_over_training(run: Path, an: dict, layer: int, head: int) -> None:
    """The head's K-composition with every earlier head over training, against random heads."""
    from interp.composition_trend import composition_trend, describe

    cfg = D.config(run)
    win = D.window(run)
    trend = composition_trend(an, layer, head, win, D.k_baseline(cfg.model.d_model, cfg.model.d_head))
    names = {e.name: f"{e.name} (previous-token head)" if e is trend.previous else e.name for e in trend.earlier}
    df = pd.concat([pd.DataFrame({"tokens": trend.tokens, "K-composition": e.series, "earlier head": names[e.name]})
                    for e in trend.earlier])
    b = trend.baseline
    st.subheader("K-composition with earlier heads over training")
    _chart(df, C.composition("tokens", "K-composition", "earlier head", names=list(names.values()),
                             bold=names[trend.previous.name] if trend.previous else None,
                             baseline={"mean": b.mean, "low": b.mean - b.sd, "high": b.mean + b.sd},
                             windows=[{"run": D.run_label(run), "start": win[0], "end": win[1]}] if win else [],
                             y_title="K-composition score"))
    st.caption(f"{describe(trend)}. Dashed: the mean score of random Gaussian heads at d_model "
               f"{b.d_model}, d_head {b.d_head}; grey band: ±1 sd of a single random pair ({b.n_samples} "
               f"pairs). Bold black: the earlier-layer head with the highest previous-token score at the last "
               f"checkpoint. Shaded: the phase-change window.")


def _eigen_summary(checkpoint: str, layer: int, head: int, step: int) -> None:
    """OV and QK eigenvalue scores, and the top eigenvalues, of the head at the slider's step."""
    from interp.measures.circuits import eigen_score

    eig = D.eigenvalues(checkpoint, layer, head)
    st.subheader(f"OV / QK eigenvalues at step {step}")
    c1, c2 = st.columns(2)
    c1.metric("OV circuit: Re(sum λ) / sum |λ|", f"{eigen_score(eig['ov']):+.3f}",
              help="positive: the head raises the logits of the tokens it attends to (copying)")
    c2.metric("token QK circuit: Re(sum λ) / sum |λ|", f"{eigen_score(eig['qk']):+.3f}",
              help="positive: a token attends to earlier copies of itself")
    top = pd.DataFrame([{"circuit": name.upper(), "rank": i + 1, "real": float(v.real), "imag": float(v.imag),
                         "|λ|": float(abs(v))} for name, values in eig.items() for i, v in enumerate(values[:8])])
    st.dataframe(top, hide_index=True)


# --------------------------------------------------------------------------- Tokens

def tokens_view(runs: list[Path]) -> None:
    st.header("Tokens across the phase change")
    run = _pick_run(runs, "tokens_run")
    cfg = D.config(run)
    ckpts = D.checkpoints(run)
    if len(ckpts) < 2:
        st.info(f"{D.run_label(run)} needs at least two checkpoints.")
        return
    steps = [c.step for c in ckpts]
    tokens = np.array(steps) * cfg.tokens_per_step
    win = D.window(run)
    if win:
        before = steps[max([i for i, t in enumerate(tokens) if t <= win[0]], default=0)]
        after = steps[min([i for i, t in enumerate(tokens) if t >= win[1]], default=len(steps) - 1)]
        st.caption(f"phase-change window {D.fmt_tokens(win[0])}–{D.fmt_tokens(win[1])} tokens")
    else:
        st.info("No phase-change window found for this run (or not analysed): comparing the first and "
                "last checkpoints; choose others below.")
        before, after = steps[0], steps[-1]
    before, after = st.select_slider("before / after (step)", options=steps, value=(before, after),
                                     key=f"tokens_steps_{D.run_label(run)}")
    sample = st.number_input("held-out sample", min_value=0, max_value=31, value=0, key="tokens_sample")
    ids = tuple(int(t) for t in D.heldout_tokens(str(run), 32)[int(sample)])
    paths = {c.step: str(c.path) for c in ckpts}
    lb = D.token_losses(str(run), paths[before], ids)
    la = D.token_losses(str(run), paths[after], ids)
    data = D.dataset(run)
    toks = D.token_strings(data, list(ids))
    c1, c2, c3 = st.columns(3)
    c1.metric("mean loss before", f"{np.nanmean(lb):.3f}")
    c2.metric("mean loss after", f"{np.nanmean(la):.3f}", f"{np.nanmean(la) - np.nanmean(lb):+.3f}",
              delta_color="inverse")
    c3.metric("tokens better", f"{int(np.nansum(la < lb))}/{int(np.isfinite(la - lb).sum())}")
    st.caption("green: loss fell; red: loss rose (hover a token for its numbers)")
    st.markdown(D.coloured_tokens_html(toks, lb, la), unsafe_allow_html=True)
    delta = la - lb
    df = pd.DataFrame({"index": np.arange(len(ids)), "token": toks, "before": lb, "after": la, "change": delta})
    df = df[np.isfinite(df["change"])]
    c1, c2 = st.columns(2)
    c1.write("most improved")
    c1.dataframe(df.nsmallest(10, "change"), hide_index=True)
    c2.write("most worsened")
    c2.dataframe(df.nlargest(10, "change"), hide_index=True)


# --------------------------------------------------------------------------- Live

def _live_body(runs: list[Path]) -> None:
    from interp.runs import run_status

    for run in runs:
        try:
            status = run_status(run)
            ckpts = D.checkpoints(run)
            train = D.group(run, "train")
        except D.VIEW_ERRORS as err:
            _warn(run, err)
            continue
        st.markdown(f"**{D.run_label(run)}** — {status}, {len(ckpts)} checkpoints"
                    f"{f', latest step {ckpts[-1].step}' if ckpts else ''}")
        if len(train.get("tokens", [])):
            st.line_chart(pd.DataFrame({"tokens": train["tokens"], "train loss": train["loss"]}),
                          x="tokens", y="train loss", height=200)
        else:
            st.info("no training records yet")
    st.caption("Data is re-read only when a run's metrics.h5 changes.")


def live_view(runs: list[Path]) -> None:
    st.header("Live")
    st.button("refresh", key="live_refresh")
    auto = st.toggle("auto-refresh every 10 s", value=False, key="live_auto")
    if auto and hasattr(st, "fragment"):
        st.fragment(run_every=10)(_live_body)(runs)
    else:
        _live_body(runs)
