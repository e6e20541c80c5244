"""``interp report``: a compact text summary of analysed runs and the paper's figures as PNG.

Figures (one set per run, plus one PCA figure for all runs given):
- ``<run>_icl_loss.png``: ICL score (with its standard error) and training loss over tokens,
  the phase-change window shaded;
- ``<run>_heads.png``: prefix matching and OV copying score of every head over training,
  coloured by layer;
- ``<run>_loss_by_position.png``: held-out loss at each token index over training (heatmap);
- ``<run>_ablation.png``: change of the ICL score when each head is ablated, over training;
- ``<run>_composition.png``: K-composition of each induction head with every earlier head over
  training, against the random baseline (mean +- sd of random head pairs), the previous-token
  head in bold (``interp.composition_trend``);
- ``pca.png``: per-token-loss PCA trajectories of all runs given.
Reads only the metrics file; computes nothing a measure function has not stored, except the
composition baseline of random heads (from the run's d_model and d_head).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from interp import costly, store
from interp.analysis import analysis_series
from interp.composition_trend import Baseline, composition_trend, describe, random_baseline, window_from_phase
from interp.errors import InterpError
from interp.fileio import refuse_links_out
from interp.measures.icl import icl_band_score
from interp.measures.pca import per_token_loss_pca
from interp.runs import read_config
from interp.summary import summarize

LAYER_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
                 "tab:pink", "tab:gray"]


def phase_attrs(run_dir: Path) -> dict[str, Any]:
    return store.attrs(Path(run_dir), "phase")


def _k_baseline(run_dir: Path) -> Baseline:
    """K-composition of random heads at the run's widths (mean and sd of single pairs)."""
    model = read_config(run_dir).model
    return random_baseline(model.d_model, model.d_head, "k")


# The analysis series every part of the report reads; the others (ablations, composition)
# are optional and their figures are left out when absent.
REQUIRED = ("tokens", "icl_score", "icl_score_stderr", "val_loss", "loss_by_position",
            "per_token_loss", "prefix_matching", "copying_ov")


def _rows(run_dir: Path) -> dict[str, np.ndarray]:
    refuse_links_out(run_dir)  # a run from elsewhere: nothing outside it is read, no figure written there
    rows = analysis_series(run_dir)
    if not len(rows.get("step", [])):
        raise InterpError(f"'{run_dir}' has no analysis yet; run 'interp analyze {run_dir}' first")
    missing = [name for name in REQUIRED if name not in rows]
    if missing:
        raise InterpError(f"the analysis of '{run_dir}' lacks {', '.join(missing)} (written by another "
                          f"version, or damaged); run 'interp analyze {run_dir} --redo' to measure it again")
    return rows


def window_line(phase: dict[str, Any]) -> str:
    """The report's phase line: the window with its evidence (z and step z against the noise the
    rule allowed for, docs/PHASE.md), or that there is none."""
    start, end = phase.get("window_start_tokens", np.nan), phase.get("window_end_tokens", np.nan)
    if np.isnan(start):
        return _no_window_line(phase)
    still = "; still falling at the end of the run" if phase.get("window_open_end", 0.0) else ""
    return (f"phase      window {start / 1e6:.2f}M-{end / 1e6:.2f}M tokens (from the band ICL "
            f"score, indices +-{phase.get('icl_band_half_width')}); ICL {phase.get('icl_before', np.nan):+.3f} "
            f"before, {phase.get('icl_after', np.nan):+.3f} after (single-index score "
            f"{phase.get('icl_exact_before', np.nan):+.3f} -> {phase.get('icl_exact_after', np.nan):+.3f}); "
            f"{_context_part(phase)}"
            f"{100 * phase.get('window_share', np.nan):.0f}% of the total change inside; "
            f"z {phase.get('window_z', np.nan):.1f}, step z {phase.get('window_step_z', np.nan):.1f} against "
            f"jitter {phase.get('window_noise_white', np.nan):.3f} + walk {phase.get('window_noise_walk', np.nan):.3f} "
            f"nats per checkpoint{still}")


def _no_window_line(phase: dict[str, Any]) -> str:
    """No window, with the closest candidate and what it failed when the analysis stored one."""
    start = phase.get("miss_start_tokens", np.nan)
    if not np.isfinite(start):
        return "phase      no phase change: the smoothed ICL score has no falling stretch to test"
    return (f"phase      no phase-change window: the closest candidate, {start / 1e6:.2f}M-"
            f"{phase['miss_end_tokens'] / 1e6:.2f}M tokens (drop {phase['miss_drop']:.3f} nats, "
            f"z {phase['miss_z']:.1f}, step z {phase['miss_step_z']:.1f}), fails {phase['miss_failed']} "
            f"(the rule: docs/PHASE.md)")


def _context_part(phase: dict[str, Any]) -> str:
    """The band score split into context and position (before -> after), when measured."""
    context = [phase.get(f"icl_context_{side}", np.nan) for side in ("before", "after")]
    position = [phase.get(f"icl_position_{side}", np.nan) for side in ("before", "after")]
    if not np.isfinite(context).all():
        return ""
    return (f"of which the far context {context[0]:+.3f} -> {context[1]:+.3f} and the late "
            f"position {position[0]:+.3f} -> {position[1]:+.3f}; ")


def text_report(run_dir: str | Path) -> str:
    """The training summary plus window, induction heads, ICL before/after and lag."""
    run_dir = Path(run_dir)
    rows, phase = _rows(run_dir), phase_attrs(run_dir)
    lines = [summarize(run_dir), f"analysis   {len(rows['step'])} checkpoints analysed "
             f"(ICL on {rows['attrs'].get('icl_examples')} held-out sequences, tokens "
             f"{rows['attrs'].get('icl_late_index')} vs {rows['attrs'].get('icl_early_index')})"]
    lines.append(window_line(phase))
    bump = phase.get("bump_start_tokens", np.nan)
    if not np.isnan(bump):
        lines.append(f"loss bump  {bump / 1e6:.2f}M-{phase.get('bump_end_tokens') / 1e6:.2f}M tokens, "
                     f"{phase.get('bump_height', np.nan):.3f} nats above the convex hull")
    wanted = "composition_k" in rows and any(layer >= 1 for layer, _ in _induction_heads(phase))
    lines += _head_lines(rows, phase, _k_baseline(run_dir) if wanted else None)
    return "\n".join(lines)


def _head_lines(rows: dict, phase: dict, baseline: Baseline | None = None) -> list[str]:
    """Per induction head (the summary above gave each labelled head's label and evidence): the
    ablation effect, the lag to the ICL change and the K-composition trend."""
    lines = []
    for layer, head in _induction_heads(phase):
        lag = phase.get(f"head_{layer}.{head}_lag_log10", np.nan)
        low, high = phase.get(f"head_{layer}.{head}_lag_low", np.nan), phase.get(f"head_{layer}.{head}_lag_high", np.nan)
        ablated = _last_ablation(rows, layer, head)
        if np.isfinite(lag):
            timing = f"to the ICL change {lag:+.3f} log10 tokens (90% interval {low:+.3f}..{high:+.3f})"
        else:  # not "+nan": say why there is no lag
            why = "no phase-change window" if window_from_phase(phase) is None else "not estimable"
            timing = f"to the ICL change: none ({why})"
        lines.append(f"lag {layer}.{head:<4}  {timing}{ablated}")
        if "composition_k" in rows:
            trend = composition_trend(rows, layer, head, window_from_phase(phase), baseline)
            lines.append(f"           {describe(trend)}")
    return lines


# --------------------------------------------------------------------------- figures

def _shade(ax, phase: dict) -> None:
    start, end = phase.get("window_start_tokens", np.nan), phase.get("window_end_tokens", np.nan)
    if not np.isnan(start):
        ax.axvspan(start, end, color="gold", alpha=0.3, label="phase-change window")


def _per_head(ax, tokens: np.ndarray, values: np.ndarray) -> None:
    """One line per head of a [checkpoint, layer, head] series, coloured by layer."""
    for layer in range(values.shape[1]):
        for head in range(values.shape[2]):
            ax.plot(tokens, values[:, layer, head], color=LAYER_COLOURS[layer % 8], lw=1,
                    label=f"layer {layer}" if head == 0 else None)


def _over_tokens(ax, phase: dict, ylabel: str | None = None, title: str | None = None) -> None:
    """Log-token x axis, the phase window shaded, labels and legend."""
    _shade(ax, phase)
    ax.set_xscale("log")
    ax.set_xlabel("tokens")
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)


def figure_icl_loss(run_dir: Path, rows: dict, phase: dict, out: Path) -> Path:
    import matplotlib.pyplot as plt

    train = store.series(run_dir, "train")
    fig, (icl_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4))
    keep = rows["tokens"] > 0
    tokens, icl, err = rows["tokens"][keep], rows["icl_score"][keep], rows["icl_score_stderr"][keep]
    icl_ax.plot(tokens, icl, "o-", ms=2, lw=0.8, alpha=0.6, label="ICL score (single indices)")
    icl_ax.fill_between(tokens, icl - err, icl + err, alpha=0.15, label="± standard error")
    icl_ax.plot(tokens, icl_band_score(rows["loss_by_position"][keep]), "-", lw=2,
                label="ICL score (band of indices)")
    if "tokens" in train and "loss" in train:  # absent in a run whose metrics were rebuilt without it
        loss_ax.plot(train["tokens"], train["loss"], lw=1, label="training loss")
    loss_ax.plot(tokens, rows["val_loss"][keep], "o", ms=3, label="held-out loss")
    _over_tokens(icl_ax, phase, "ICL score (nats)")
    _over_tokens(loss_ax, phase, "loss (nats)")
    fig.suptitle(f"{run_dir.name}: in-context learning and loss")
    return _save(fig, out / f"{run_dir.name}_icl_loss.png")


def figure_heads(run_dir: Path, rows: dict, phase: dict, out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    keep = rows["tokens"] > 0
    for ax, name, title in ((axes[0], "prefix_matching", "prefix-matching score"),
                            (axes[1], "copying_ov", "copying score (OV eigenvalues)")):
        _per_head(ax, rows["tokens"][keep], rows[name][keep])
        _over_tokens(ax, phase, title=title)
    fig.suptitle(f"{run_dir.name}: every head over training")
    return _save(fig, out / f"{run_dir.name}_heads.png")


def figure_loss_by_position(run_dir: Path, rows: dict, out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    losses = rows["loss_by_position"][:, 1:]
    image = ax.imshow(losses, aspect="auto", origin="lower", cmap="viridis",
                      extent=(1, losses.shape[1] + 1, 0, len(losses)))
    ticks = np.linspace(0, len(losses) - 1, 6).astype(int)
    ax.set_yticks(ticks + 0.5, [f"{rows['tokens'][t] / 1e6:.2f}M" for t in ticks])
    ax.set_xlabel("token index")
    ax.set_ylabel("checkpoint (tokens trained)")
    fig.colorbar(image, label="held-out loss (nats)")
    ax.set_title(f"{run_dir.name}: loss by token index over training")
    return _save(fig, out / f"{run_dir.name}_loss_by_position.png")


def _last_ablation(rows: dict, layer: int, head: int) -> str:
    """"; ablation changes ICL by x (at N tokens)" from the newest ablated checkpoint, or ""."""
    ablation = rows.get("ablation_icl_change")
    if ablation is None or not costly.measured(ablation).any():
        return ""
    last = np.flatnonzero(costly.measured(ablation))[-1]
    at = "" if last == len(ablation) - 1 else f" (at {rows['tokens'][last] / 1e6:.2f}M tokens)"
    return f"; ablation changes ICL by {ablation[last, layer, head]:+.3f}{at}"


def figure_ablation(run_dir: Path, rows: dict, phase: dict, out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    if "ablation_icl_change" not in rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    keep = (rows["tokens"] > 0) & costly.measured(rows["ablation_icl_change"])  # sparse: interp.costly
    _per_head(ax, rows["tokens"][keep], rows["ablation_icl_change"][keep])
    ax.axhline(0, color="k", lw=0.5)
    _over_tokens(ax, phase, "ICL score change when ablated (nats)",
                 f"{run_dir.name}: pattern-preserving ablation of each head")
    return _save(fig, out / f"{run_dir.name}_ablation.png")


def _induction_heads(phase: dict) -> list[tuple[int, int]]:
    found = str(phase.get("induction_heads", "")).strip()
    return [tuple(int(x) for x in name.split(".")) for name in found.split(",")] if found else []


def figure_composition(run_dir: Path, rows: dict, phase: dict, out: Path, baseline: Baseline) -> Path | None:
    """One panel per induction head (of layer >= 1): its K-composition with every earlier head
    over training, the random baseline (dashed, band +- 1 sd of single random pairs), the
    window shaded, the previous-token head in bold black, the others in colours of their own
    (by layer when there are more than 8). None
    without such a head."""
    import matplotlib.pyplot as plt

    heads = [h for h in _induction_heads(phase) if h[0] >= 1]
    if "composition_k" not in rows or not heads:
        return None
    window = window_from_phase(phase)
    cols = min(len(heads), 3)
    n_rows = -(-len(heads) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(5.5 * cols, 4 * n_rows), squeeze=False)
    for ax, (layer, head) in zip(axes.ravel(), heads):
        trend = composition_trend(rows, layer, head, window, baseline)
        ax.axhspan(baseline.mean - baseline.sd, baseline.mean + baseline.sd, color="gray", alpha=0.25, lw=0)
        ax.axhline(baseline.mean, color="gray", ls="--", lw=1,
                   label=f"random heads {baseline.mean:.3f} ± {baseline.sd:.3f} (sd)")
        label_each = len(trend.earlier) <= 8  # else one colour and one legend entry per layer
        for i, e in enumerate(trend.earlier):
            if (e.layer, e.head) == trend.previous_token_head:
                continue
            ax.plot(trend.tokens, e.series, lw=1.2, alpha=0.8,
                    color=f"C{i % 10}" if label_each else LAYER_COLOURS[e.layer % 8],
                    label=f"head {e.name}" if label_each else (f"layer {e.layer}" if e.head == 0 else None))
        prev = trend.previous
        title = f"head {trend.name}"
        if prev is not None:
            ax.plot(trend.tokens, prev.series, color="black", lw=2.5,
                    label=f"head {prev.name} (previous-token head)")
            r = prev.rise
            if np.isfinite(r.share):
                what = "rise" if r.rises else "fall"
                title += f": {100 * r.share:.0f}% of the {what} with {prev.name} inside the window"
            elif not r.has_window:
                title += " (no phase-change window)"
            else:
                title += f": no change with {prev.name}"
        _over_tokens(ax, phase, "K-composition score", title)
    for ax in axes.ravel()[len(heads):]:
        ax.set_visible(False)
    fig.suptitle(f"{run_dir.name}: K-composition of each induction head with earlier heads")
    return _save(fig, out / f"{run_dir.name}_composition.png")


def figure_pca(run_dirs: list[Path], all_rows: list[dict], out: Path) -> Path:
    import matplotlib.pyplot as plt

    projections, explained = per_token_loss_pca([rows["per_token_loss"] for rows in all_rows])
    fig, ax = plt.subplots(figsize=(6, 5))
    for run_dir, points in zip(run_dirs, projections):
        line, = ax.plot(points[:, 0], points[:, 1], "-", lw=1, label=run_dir.name)
        ax.scatter(points[:, 0], points[:, 1], s=8, color=line.get_color())
        ax.annotate("start", points[0, :2], fontsize=7)
    ax.set_xlabel(f"PC 1 ({100 * explained[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC 2 ({100 * explained[1]:.0f}%)")
    ax.set_title("per-token-loss PCA trajectories")
    ax.legend(fontsize=8)
    return _save(fig, out / "pca.png")


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_figures(run_dirs: list[str | Path], out: str | Path | None = None) -> list[Path]:
    """Write every figure of the given runs; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; never opens a window
    run_dirs = [Path(r) for r in run_dirs]
    out = Path(out) if out else run_dirs[0] / "figures"
    written, all_rows = [], []
    for run_dir in run_dirs:
        rows, phase = _rows(run_dir), phase_attrs(run_dir)
        all_rows.append(rows)
        written += [figure_icl_loss(run_dir, rows, phase, out), figure_heads(run_dir, rows, phase, out),
                    figure_loss_by_position(run_dir, rows, out)]
        written.append(figure_ablation(run_dir, rows, phase, out))
        if "composition_k" in rows and any(layer >= 1 for layer, _ in _induction_heads(phase)):
            written.append(figure_composition(run_dir, rows, phase, out, _k_baseline(run_dir)))
    if len({rows["per_token_loss"].shape[1] for rows in all_rows}) == 1:
        written.append(figure_pca(run_dirs, all_rows, out))
    return [p for p in written if p is not None]
