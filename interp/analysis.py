"""Per-checkpoint analysis of a run, stored once in its metrics file (group ``analysis``).

``analyze_run`` measures every complete checkpoint not yet analysed (so it is incremental and
can run while training goes on), skipping a checkpoint that fails its integrity check with a
warning, and then recomputes the run-level phase-change statistics (group ``phase``).

The probes are fixed per corpus and tokenizer, so every checkpoint of every run on the same
data is measured on the same inputs. They come from the run folder, never from the corpus or
cache its config.json names (:mod:`interp.rundata`: a run carries its tokenizer, held-out
sequences and token counts, so a copied run is analysed anywhere, and an untrusted one reads
nothing outside itself):
- ``icl_examples`` held-out sequences (the corpus's ``heldout_batch(n, seed=0)``, as carried
  by the run) for loss by token index and the ICL score;
- the first ``ablation_examples`` of them for ablations, and ``pca_pairs`` fixed (example,
  position) pairs among those for the per-token-loss vector;
- repeated random tokens (25 x 4 after BOS, mid-frequency pool) for prefix matching,
  duplicate-token and empirical copying scores, and the same layout with nothing repeated
  (:func:`interp.measures.heads.unrepeated_token_probe`) for prefix matching's null: what each
  head scores when token identity gives it nothing to follow (the induction-head rule,
  :mod:`interp.phase.heads`, judges the score against it);
- the first ``pattern_examples`` held-out sequences (real text) for previous-token scores;
- the copyable tokens (:func:`interp.measures.vocab.dataset_copyable_tokens`: seen in the
  training data, minus BOS/EOS/EOT/pad and every other special token) over which both copying
  scores are computed; stored once per run in group ``probes`` (``copying_tokens``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp import checkpoints, runlock, rundata, store
from interp.errors import CheckpointError, InterpError, LinkOutside
from interp.fileio import refuse_links_out
from interp.measures import ablation, circuits, heads, vocab
from interp.measures.icl import (band_half_width, band_slices, context_cut, context_icl_score, foreign_context,
                                 icl_band_score, icl_indices, icl_score,
                                 per_token_losses)
from interp.recovery import recover_metrics

log = logging.getLogger("interp")
GROUP = "analysis"
PROBES_GROUP = "probes"  # run-level probe records (not series: no step axis)


@dataclass(frozen=True)
class AnalysisConfig:
    """Sample sizes of the analysis; recorded as attributes of the ``analysis`` group."""

    icl_examples: int = rundata.HELDOUT_EXAMPLES  # the set every run carries
    ablation_examples: int = 64
    context_examples: int = 128  # rows of the context ICL score (interp.measures.icl.context_icl_score)
    pca_pairs: int = 2048
    pattern_examples: int = 16
    prefix_sequences: int = 32
    prefix_seq_len: int = 25
    prefix_repeats: int = 4
    ablate: bool = True
    ablate_every: int = 4  # ablations at every 4th checkpoint, densely where things change (interp.costly); 1: all
    precision: str = "auto"  # loss forward passes only: "auto" (bf16 where fast, as training) or "fp32"
    seed: int = 0

    def __post_init__(self) -> None:
        # The ICL score's standard error needs two sequences; the rest one of each.
        if self.icl_examples < 2:
            raise InterpError(f"--icl-examples must be at least 2 (the ICL score's standard error "
                              f"needs two sequences), not {self.icl_examples}")
        if self.context_examples < 2:
            raise InterpError(f"analysis context_examples must be at least 2 (a row's foreign context "
                              f"comes from another row), not {self.context_examples}")
        if self.prefix_sequences < 2:
            raise InterpError(f"analysis prefix_sequences must be at least 2 (the prefix-matching score's "
                              f"standard error against its null needs two sequences), not {self.prefix_sequences}")
        counts = {"ablation_examples": self.ablation_examples, "pca_pairs": self.pca_pairs,
                  "pattern_examples": self.pattern_examples, "prefix_seq_len": self.prefix_seq_len}
        bad = [f"{k}={v}" for k, v in counts.items() if v < 1]
        if self.ablate_every < 1:
            bad.append(f"ablate_every={self.ablate_every}")
        if bad or self.prefix_repeats < 2 or self.seed < 0:
            raise InterpError(f"analysis sizes must be >= 1, prefix_repeats >= 2 and seed >= 0, "
                              f"not {', '.join(bad) or (self.prefix_repeats, self.seed)}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise InterpError(f"analysis precision '{self.precision}' is not one of auto, fp32, bf16, fp16")


@dataclass
class Probes:
    """The fixed inputs every checkpoint of a run is measured on."""

    heldout: torch.Tensor  # [icl_examples, n_ctx]
    repeated: heads.RepeatedTokens
    pair_examples: torch.Tensor  # [pca_pairs] indices into the ablation examples
    pair_positions: torch.Tensor  # [pca_pairs] token indices >= 1
    late: int
    early: int
    copyable: torch.Tensor | None = None  # [n] token ids the copying scores run over; None: all
    null: heads.RepeatedTokens | None = None  # the repeated probe's layout, nothing repeated

    @property
    def cut(self) -> int:
        """First position of its own that a row keeps in the context ICL score's foreign rows."""
        return context_cut(self.heldout.shape[1])


def build_probes(data, n_ctx: int, config: AnalysisConfig) -> Probes:
    bos = data.bos_token_id
    pool = heads.middle_frequency_pool(data.token_counts(), exclude=() if bos is None else (bos,))
    repeated = heads.repeated_token_probe(pool, n_ctx, bos, config.prefix_sequences,
                                          config.prefix_seq_len, config.prefix_repeats, config.seed)
    rng = np.random.default_rng([config.seed, 7])
    n_ablate = min(config.ablation_examples, config.icl_examples)
    pair_examples = rng.integers(0, n_ablate, size=config.pca_pairs)
    pair_positions = rng.integers(1, n_ctx, size=config.pca_pairs)
    late, early = icl_indices(n_ctx)
    return Probes(data.heldout_batch(config.icl_examples, seed=config.seed), repeated,
                  torch.from_numpy(pair_examples), torch.from_numpy(pair_positions), late, early,
                  copyable=vocab.dataset_copyable_tokens(data),
                  null=heads.unrepeated_token_probe(pool, repeated, config.seed))


def shared_losses(checkpoint_path: str | Path, model, probes: Probes, config: AnalysisConfig) -> torch.Tensor | None:
    """The per-token losses training's checkpoint evaluation stored (``eval.safetensors``, see
    :func:`interp.checkpoints.read_evaluation`) when they are what :func:`analyze_checkpoint`
    would measure on ``model``: the same rows (``probes.heldout``, by fingerprint) at the same
    autocast precision. Else None, and the analysis measures them. Training evaluates the
    run's carried held-out set (``train.eval_examples`` = 256 rows, seed 0, the analysis's
    default ``icl_examples``) at its own precision, which ``precision=auto`` picks here too on
    the same kind of device; a run trained on a GPU and analysed on a CPU measures again."""
    from interp.device import pick_precision

    evaluation = checkpoints.read_evaluation(checkpoint_path)
    if evaluation is None or tuple(evaluation.losses.shape) != tuple(probes.heldout.shape):
        return None
    device = next(model.parameters()).device
    if evaluation.dtype != str(pick_precision(config.precision, device)):
        return None
    if evaluation.rows != checkpoints.rows_fingerprint(probes.heldout):
        return None
    return evaluation.losses


@torch.no_grad()
def analyze_checkpoint(model, probes: Probes, config: AnalysisConfig,
                       losses: torch.Tensor | None = None) -> dict[str, Any]:
    """Every per-checkpoint measure of one model, as a flat dict of numpy arrays / floats.

    ``losses``: the per-token losses of ``probes.heldout`` [examples, n_ctx] when the caller has
    them (:func:`shared_losses`); else measured here."""
    from interp.device import autocast, pick_precision

    device = next(model.parameters()).device
    # Loss forward passes dominate the cost and run at training precision; attention patterns
    # and weight-based scores below stay in float32.
    fast = autocast(device, pick_precision(config.precision, device))
    with fast:
        if losses is None:
            losses = per_token_losses(model, probes.heldout)  # [examples, n_ctx], column 0 NaN
        own = losses[:config.context_examples]
        foreign = per_token_losses(model, foreign_context(probes.heldout[:own.shape[0]], probes.cut),
                                   band=band_slices(probes.heldout.shape[1])[0])  # all the split reads
    icl = icl_score(losses, probes.late, probes.early)
    context = context_icl_score(own, foreign)
    repeated = probes.repeated
    repeated_patterns = heads.attention_patterns(model, repeated.tokens)
    text_patterns = heads.attention_patterns(model, probes.heldout[:config.pattern_examples])
    pairs = losses[probes.pair_examples, probes.pair_positions]
    row: dict[str, Any] = {
        "icl_score": icl.score, "icl_score_stderr": icl.stderr,
        "icl_context": context.context, "icl_context_stderr": context.context_stderr,
        "icl_position": context.position,
        "val_loss": float(np.nanmean(losses.numpy())),
        "loss_by_position": losses.nanmean(0).numpy(),
        "per_token_loss": pairs.numpy(),
        "prefix_matching": heads.prefix_matching_score(repeated_patterns, repeated.seq_len,
                                                       repeated.repeats, repeated.offset).numpy(),
        **_prefix_matching_spread(model, repeated, repeated_patterns, probes.null),
        "duplicate_token": heads.duplicate_token_score(repeated_patterns, repeated.seq_len,
                                                       repeated.repeats, repeated.offset).numpy(),
        "previous_token": heads.previous_token_score(text_patterns).numpy(),
        "copying_ov": circuits.ov_copying_score(model, copyable=probes.copyable).numpy(),
        "copying_empirical": circuits.empirical_copying_score(model, repeated.tokens,
                                                              copyable=probes.copyable).numpy(),
    }
    for kind, scores in circuits.composition_scores(model).items():
        row[f"composition_{kind}"] = scores.numpy()
    if config.ablate:
        row.update(ablation_row(model, probes, config, losses[: config.ablation_examples]))
    return row


@torch.no_grad()
def ablation_row(model, probes: Probes, config: AnalysisConfig,
                 clean: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """The per-head ablation measures of one model: ``ablation_icl_change`` [L, H] (each head's
    ablation's change of the ICL score) and ``ablation_per_token_change`` [L, H, pca_pairs].
    ``clean``: the unablated per-token losses of the first ``ablation_examples`` held-out
    sequences, when the caller has them already."""
    from interp.device import autocast, pick_precision

    device = next(model.parameters()).device
    tokens = probes.heldout[: config.ablation_examples]
    with autocast(device, pick_precision(config.precision, device)):
        if clean is None:
            clean = per_token_losses(model, tokens)
        ablated = ablation.ablated_losses(model, tokens)
    pairs = clean[probes.pair_examples, probes.pair_positions]
    delta = ablated[:, :, probes.pair_examples, probes.pair_positions] - pairs
    return {"ablation_icl_change": ablation.ablation_effects(clean, ablated, probes.late, probes.early).numpy(),
            "ablation_per_token_change": delta.numpy().astype(np.float32)}


def _prefix_matching_spread(model, repeated: heads.RepeatedTokens, patterns: torch.Tensor,
                            null: heads.RepeatedTokens | None) -> dict[str, np.ndarray]:
    """The prefix-matching score's standard error over the probe's sequences and, with a null
    probe, the null's mean and standard error ([L, H] each): what the induction-head rule
    (:func:`interp.phase.heads.prefix_evidence`) weighs the score against."""
    def stats(probe: heads.RepeatedTokens, pattern: torch.Tensor):
        return heads.mean_and_stderr(heads.prefix_matching_per_sequence(pattern, probe.seq_len,
                                                                         probe.repeats, probe.offset))
    out = {"prefix_matching_stderr": stats(repeated, patterns)[1].numpy()}
    if null is not None:
        mean, stderr = stats(null, heads.attention_patterns(model, null.tokens))
        out.update(prefix_matching_null=mean.numpy(), prefix_matching_null_stderr=stderr.numpy())
    return out


def analyzed_steps(run_dir: Path) -> set[int]:
    """Steps already in the analysis group (reads that one dataset, not the whole group)."""
    try:
        return {int(s) for s in store.steps(Path(run_dir), GROUP)}
    except store.StoreError:
        return set()


def analyze_run(run_dir: str | Path, config: AnalysisConfig = AnalysisConfig(),
                progress: bool = True, wait: bool = False) -> dict[str, Any]:
    """Analyse the checkpoints of ``run_dir`` that are not analysed yet; then the phase change.

    One analysis per run at a time (:mod:`interp.runlock`): with another one running this
    raises :class:`~interp.runlock.RunBusy`, or with ``wait`` (a trainer's or sweep worker's
    own analysis) waits for it. A damaged metrics file is first moved aside and rebuilt
    (:mod:`interp.recovery`); the note saying so is logged and returned as ``recovered``.

    Returns {"analyzed": [steps], "skipped": {step: reason}, "recovered": note or None,
    "shared_losses": how many checkpoints' held-out losses came from training's evaluation}.
    """
    run_dir = Path(run_dir)
    run_config = checkpoints.read_config(run_dir)
    refuse_links_out(run_dir)  # a run from elsewhere: nothing outside it is read or written
    found = checkpoints.list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"'{run_dir}' has no complete checkpoint yet; wait for training to "
                              f"write one (interp runs shows its status)")
    with runlock.hold(run_dir, "analyze", wait=wait):
        result: dict[str, Any] = {"analyzed": [], "skipped": {}, "recovered": _recover(run_dir)}
        todo = [c for c in found if c.step not in analyzed_steps(run_dir)]
        probes = None
        if todo:
            data = rundata.analysis_data(run_dir, run_config, config.icl_examples, config.seed)
            probes = build_probes(data, run_config.model.n_ctx, config)
            _analyze_checkpoints(run_dir, todo, probes, config, run_config.tokens_per_step, result, progress)
        flat = update_phase(run_dir)
        if config.ablate and _ablate_where_needed(run_dir, run_config, found, flat, probes, config, result):
            update_phase(run_dir)  # the ablation projection needs the new rows
    return result


def _ablate_where_needed(run_dir: Path, run_config, found: list, phase: dict, probes: Probes | None,
                         config: AnalysisConfig, result: dict) -> bool:
    """Ablate the analysed checkpoints that :func:`interp.costly.costly_steps` picks and that
    have no ablation row yet; store them in group ``ablation``. True if any was added."""
    from interp import costly
    from interp.runs import run_status

    rows = analysis_series(run_dir)
    if not len(rows.get("step", [])) or costly.SERIES[0] in rows:  # an older, dense analysis
        return False
    window = None
    if phase.get("phase/has_window"):
        window = (float(phase["phase/window_start_tokens"]), float(phase["phase/window_end_tokens"]))
    scores = [rows[k] for k in ("prefix_matching", "previous_token") if k in rows]
    finished = run_status(run_dir) == "finished"
    wanted = costly.costly_steps(rows["step"], scores, window, rows["tokens"], config.ablate_every, finished)
    try:
        done = {int(s) for s in store.steps(run_dir, costly.GROUP)}
    except store.StoreError:
        done = set()
    by_step = {c.step: c for c in found}
    todo = [by_step[int(s)] for s in wanted if int(s) not in done and int(s) in by_step]
    if not todo:
        return False
    if probes is None:
        data = rundata.analysis_data(run_dir, run_config, config.icl_examples, config.seed)
        probes = build_probes(data, run_config.model.n_ctx, config)
    for checkpoint in todo:
        try:
            model = checkpoints.load_model(checkpoint.path)
        except InterpError as err:
            log.warning("skipping the ablation of step %d: %s", checkpoint.step, err)
            continue
        shared = shared_losses(checkpoint.path, model, probes, config)
        row = ablation_row(model, probes, config, None if shared is None else shared[:config.ablation_examples])
        row.update(step=checkpoint.step, tokens=checkpoint.step * run_config.tokens_per_step)
        with store.update(run_dir) as handle:
            store.append(handle, costly.GROUP, {k: [v] for k, v in row.items()})
            handle[costly.GROUP].attrs.update({"ablate_every": config.ablate_every, "margin": costly.MARGIN,
                                               "change": costly.CHANGE,
                                               "ablation_examples": config.ablation_examples})
        result.setdefault("ablated", []).append(checkpoint.step)
    return True


def _recover(run_dir: Path) -> str | None:
    note = recover_metrics(run_dir)
    if note:
        log.warning("%s", note)
    return note


def _analyze_checkpoints(run_dir: Path, todo: list, probes: Probes, config: AnalysisConfig,
                         tokens_per_step: int, result: dict, progress: bool) -> None:
    from tqdm.auto import tqdm

    _record_copying_tokens(run_dir, probes.copyable)
    reused = 0
    for checkpoint in tqdm(todo, desc=f"analyze {run_dir.name}", disable=not progress, unit="ckpt"):
        try:
            model = checkpoints.load_model(checkpoint.path)
        except LinkOutside:
            raise  # not a damaged checkpoint: the run folder is refused as a whole
        except InterpError as err:
            log.warning("skipping step %d: %s", checkpoint.step, err)
            result["skipped"][checkpoint.step] = str(err)
            continue
        shared = shared_losses(checkpoint.path, model, probes, config)
        row = analyze_checkpoint(model, probes, replace(config, ablate=False), shared)  # ablations: sparse, after
        reused += shared is not None
        row.update(step=checkpoint.step, tokens=checkpoint.step * tokens_per_step)
        with store.update(run_dir) as handle:
            _backfill(handle, row)
            store.append(handle, GROUP, {k: [v] for k, v in row.items()})
            handle[GROUP].attrs.update({**asdict(config), "icl_late_index": probes.late,
                                        "icl_early_index": probes.early,
                                        "prefix_matching_seq_len": probes.repeated.seq_len,
                                        "prefix_matching_repeats": probes.repeated.repeats,
                                        "bos": probes.repeated.offset, **_copying_attrs(probes.copyable)})
        result["analyzed"].append(checkpoint.step)
    result["shared_losses"] = result.get("shared_losses", 0) + reused  # held-out passes not run again


def _backfill(handle: Any, row: dict[str, Any]) -> None:
    """Give a series this row brings, and that rows analysed before lack (measured by an older
    interp: the prefix-matching null, say), NaN for those rows, so that every series keeps one
    entry per stored step. NaN means "not measured"; readers fall back where it matters
    (:func:`update_phase`), and ``interp analyze --redo`` measures it."""
    if GROUP not in handle or "step" not in handle[GROUP]:
        return
    group = handle[GROUP]
    n = len(group["step"])
    missing = {k: v for k, v in row.items() if k not in group and k not in ("step", "tokens")}
    if n and missing:
        store.append(handle, GROUP, {k: np.full((n, *np.shape(v)), np.nan, dtype=np.float32)
                                     for k, v in missing.items()})


def _copying_attrs(copyable: torch.Tensor | None) -> dict[str, Any]:
    """The copyable set's rule and size, as attributes ("all" and -1 when every token is used)."""
    if copyable is None:
        return {"copying_tokens_rule": "all", "copying_tokens_count": -1}
    return {"copying_tokens_rule": vocab.COPYABLE_RULE, "copying_tokens_count": int(copyable.numel())}


def _record_copying_tokens(run_dir: Path, copyable: torch.Tensor | None) -> None:
    """Store the copyable set once: ``probes/copying_tokens`` [n] int64 with attributes
    ``copying_tokens_rule`` and ``copying_tokens_count``. Outside the ``analysis`` group, whose
    datasets are all series over checkpoints (sorted and truncated by step).

    Rows analysed before (by an interp that scored copying over every token, or with another
    set) are not rescored: a warning says so and how to redo them.
    """
    if copyable is None:
        return
    ids = copyable.cpu().numpy().astype(np.int64)
    if np.array_equal(stored_copying_tokens(run_dir), ids):
        return  # the usual case: nothing to write
    with store.update(run_dir) as handle:
        group = handle.require_group(PROBES_GROUP)
        old = group["copying_tokens"][()] if "copying_tokens" in group else None
        analysed = GROUP in handle and "step" in handle[GROUP] and len(handle[GROUP]["step"]) > 0
        if analysed:
            before = "every token" if old is None else f"another set of {len(old)} tokens"
            log.warning("%s: checkpoints analysed earlier scored copying over %s; new rows use %d "
                        "copyable tokens (rule %s); run 'interp analyze --redo' to rescore them all",
                        run_dir, before, len(ids), vocab.COPYABLE_RULE)
        if old is not None:
            del group["copying_tokens"]
        group.create_dataset("copying_tokens", data=ids)
        group.attrs.update(_copying_attrs(copyable))


def stored_copying_tokens(run_dir: str | Path) -> np.ndarray | None:
    """The run's recorded copyable set ``probes/copying_tokens`` [n] (None if not recorded: the
    run was analysed by an interp that scored copying over every token, or not at all).
    Pass it as ``copyable=`` to the copying measures to score a checkpoint as the analysis did."""
    try:
        with store.read(Path(run_dir)) as handle:
            group = handle.get(PROBES_GROUP)
            return None if group is None or "copying_tokens" not in group else group["copying_tokens"][()]
    except store.StoreError:
        return None


def drop_analysis(run_dir: str | Path) -> None:
    """Delete the stored analysis and phase groups (training metrics are kept); under the
    analysis lock, so it never runs beside an analysis of the same run. A damaged metrics
    file is moved aside and rebuilt first (its analysis is dropped either way)."""
    run_dir = Path(run_dir)
    checkpoints.read_config(run_dir)  # a clear error for a missing or foreign directory
    refuse_links_out(run_dir)
    with runlock.hold(run_dir, "analyze"):
        _recover(run_dir)
        if not (run_dir / store.FILENAME).exists():
            return
        with store.update(run_dir) as handle:
            for group in (GROUP, "phase", PROBES_GROUP, "ablation"):
                if group in handle:
                    del handle[group]


def analysis_series(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The ``analysis`` group sorted by step (rows may be appended out of order), with the
    sparse ablation series aligned to it (NaN where a checkpoint was not ablated;
    :mod:`interp.costly`)."""
    from interp import costly

    rows = store.series_by_step(Path(run_dir), GROUP)
    try:
        sparse = store.series(Path(run_dir), costly.GROUP)
    except store.StoreError:
        sparse = {}
    return costly.aligned(rows, sparse)


def update_phase(run_dir: str | Path) -> dict[str, Any]:
    """Recompute the run-level phase statistics from the stored series; store group ``phase``.

    Stores the flat ``phase/...`` scalars of :func:`interp.phase.analyse_phase` as attributes,
    with ``phase/miss_*`` (the closest candidate and the gates it failed) when there is no window
    (the heads classified against the prefix-matching null when every row has it, else by the
    old rule: ``phase/induction_rule``) and, when there is a window and ablations, ``phase/ablation_projection`` [A, layer, head]:
    each head's ablation loss change projected on the unit vector from the mean per-token
    loss before the window to the mean after it.
    """
    from interp.phase import analyse_phase

    rows = analysis_series(run_dir)
    if len(rows.get("step", [])) < 3:
        return {}
    train = store.series(run_dir, "train")
    band = icl_band_score(rows["loss_by_position"])  # the window is found on the smoother band
    report = analyse_phase(rows["tokens"], band, train.get("tokens", np.zeros(0)),
                           train.get("loss", np.zeros(0)), rows["prefix_matching"], rows["copying_ov"],
                           null=rows.get("prefix_matching_null"), prefix_stderr=rows.get("prefix_matching_stderr"),
                           null_stderr=rows.get("prefix_matching_null_stderr"))
    flat = {**report.to_flat_dict(), "phase/icl_estimator": "band",
            "phase/icl_band_half_width": band_half_width(rows["loss_by_position"].shape[1])}
    if report.window is not None:
        for series, name in (("icl_score", "icl_exact"), ("icl_context", "icl_context"),
                             ("icl_position", "icl_position")):
            flat.update(_side_means(rows, series, name, report.window))
    else:
        flat.update(_nearest_miss(rows["tokens"], band))
    projection = _ablation_projection(rows, report.window)
    with store.update(run_dir) as handle:
        if "phase" in handle:
            del handle["phase"]
        group = handle.create_group("phase")
        group.attrs.update({k.removeprefix("phase/"): v for k, v in flat.items()})
        if projection is not None:
            group.create_dataset("ablation_projection", data=projection)
            group.create_dataset("step", data=rows["step"])
    return flat


def _nearest_miss(tokens: np.ndarray, band: np.ndarray) -> dict[str, Any]:
    """``phase/miss_*``: the candidate window that came closest to passing and the gates it
    failed (:func:`interp.phase.window.nearest_miss`), the evidence behind "no window"."""
    from interp.phase.window import nearest_miss

    miss = nearest_miss(tokens, band)
    if miss is None:
        return {}
    window, failed = miss
    return {"phase/miss_start_tokens": window.start_tokens, "phase/miss_end_tokens": window.end_tokens,
            "phase/miss_drop": window.drop, "phase/miss_z": window.z, "phase/miss_step_z": window.step_z,
            "phase/miss_failed": "; ".join(failed)}


def _side_means(rows: dict, series: str, name: str, window) -> dict[str, float]:
    """``phase/<name>_before`` and ``_after``: the mean of a stored series over the checkpoints
    before the window and after it, its NaN rows left out (rows analysed before the series
    existed); NaN where nothing was measured."""
    tokens = rows["tokens"]
    values = rows.get(series, np.full(tokens.size, np.nan))
    out = {}
    for side, mask in (("before", tokens < window.start_tokens), ("after", tokens > window.end_tokens)):
        finite = values[mask][np.isfinite(values[mask])]
        out[f"phase/{name}_{side}"] = float(finite.mean()) if finite.size else float("nan")
    return out


def _ablation_projection(rows: dict, window) -> np.ndarray | None:
    if window is None or "ablation_per_token_change" not in rows:
        return None
    tokens, vectors = rows["tokens"], rows["per_token_loss"]
    before, after = tokens < window.start_tokens, tokens > window.end_tokens
    if not before.any() or not after.any():
        return None
    direction = torch.from_numpy(vectors[after].mean(0) - vectors[before].mean(0))
    delta = torch.from_numpy(rows["ablation_per_token_change"]).float()  # [A, layer, head, pairs]; NaN rows: not ablated
    return ablation.projection_on_direction(delta, direction.float()).numpy()
