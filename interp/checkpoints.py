"""Run-directory layout, the checkpoint schedule, atomic saves, verified loads and resume.

A run directory is the unit users share; every command works on a copy of it::

    <run>/config.json            RunConfig, d_vocab resolved: rebuilds the model alone
    <run>/run.json               status (training | finished | failed), pid, host, data
                                 fingerprint, planned checkpoint steps, versions
    <run>/metrics.h5             every series (see interp.store and docs/ARCHITECTURE.md)
    <run>/step_000123/           one checkpoint = the weights after 123 optimiser updates
        model.safetensors        weights with TransformerLens names
        trainer.safetensors      optimizer moments and RNG states
        trainer.json             step, tokens, data position, lr, optimizer hyper-parameters
        eval.safetensors         (optional) the checkpoint evaluation's per-token losses, which
                                 the analysis reuses instead of measuring them again
        manifest.json            sha256 and size of each file above; written last

Nothing is pickled: tensors go to safetensors, everything else to JSON, so loading a file
never executes code from it. A checkpoint is written into a hidden temporary directory and
renamed into place, so a crash mid-write never leaves a ``step_*`` directory that looks
complete; ``manifest.json`` lets a reader detect later corruption.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from interp.config import RunConfig, TrainConfig
from interp.errors import CheckpointError
from interp.fileio import fsync_path as _fsync_dir
from interp.fileio import inside_run
from interp.fileio import sha256_file as _sha256
from interp.model import Transformer
from interp.runs import (  # noqa: F401
    CHECKPOINT_PATTERN,
    Checkpoint,
    checkpoint_name,
    list_checkpoints,
    read_config,
    read_run_info,
    run_status,
    update_run_info,
    write_json_atomic,
)
from interp.runs import fsync_file as _fsync_file

FILES = ("model.safetensors", "trainer.safetensors", "trainer.json")
# Files a checkpoint may hold; when present, the manifest covers them like the others.
OPTIONAL_FILES = ("eval.safetensors",)
EVAL_FILE = OPTIONAL_FILES[0]


@dataclass(frozen=True)
class EvalLosses:
    """Per-token held-out losses measured at a checkpoint, with what they were measured on.

    ``rows``: :func:`rows_fingerprint` of the token rows; ``dtype``: the autocast precision of
    the forward pass (``str(torch.dtype)``). A reader reuses the losses only when both match
    what it would measure itself (:func:`interp.analysis.shared_losses`).
    """

    losses: torch.Tensor  # [rows, n_ctx] float32, column 0 NaN
    rows: str
    dtype: str


def rows_fingerprint(tokens: torch.Tensor) -> str:
    """sha256 of token rows (shape and int64 values): the same rows give the same string."""
    import hashlib

    array = np.ascontiguousarray(tokens.detach().cpu().numpy().astype(np.int64))
    return hashlib.sha256(repr(array.shape).encode() + array.tobytes()).hexdigest()


# --------------------------------------------------------------------------- schedule

def checkpoint_schedule(train: TrainConfig, end: int | None = None) -> list[int]:
    """Steps to checkpoint at: log-spaced early, evenly spaced over the run, plus 0 and the end.

    ``log_checkpoints`` steps are spaced evenly in log(step) from 1 to ``log_until * steps``
    (induction heads form early, and log spacing resolves a change at any scale), and
    ``linear_checkpoints`` are spaced evenly from 0 to ``steps``. Duplicates collapse, so
    short runs get fewer checkpoints than the sum.

    ``end`` (> ``steps``: a ``train.until=phase`` run that went on, :func:`next_end`) adds the
    same even spacing continued past ``steps``, ``round(steps + j * spacing)`` for j >= 1 up to
    ``end``, and ``end`` itself. The schedule up to ``steps`` never depends on ``end``, so a run
    that goes on has the checkpoints of the run it continues.
    """
    log_end = max(1.0, train.log_until * train.steps)
    log_steps = np.geomspace(1, log_end, train.log_checkpoints) if train.log_checkpoints else []
    linear_steps = np.linspace(0, train.steps, train.linear_checkpoints + 1)
    steps = {0, train.steps, *(int(round(s)) for s in log_steps), *(int(round(s)) for s in linear_steps)}
    nominal = sorted(s for s in steps if 0 <= s <= train.steps)
    if end is None or end <= train.steps:
        return nominal
    spacing = extension_spacing(train)
    later = (int(round(train.steps + j * spacing)) for j in range(1, int((end - train.steps) / spacing) + 2))
    return nominal + sorted({s for s in later if s < end} | {end})


def extension_spacing(train: TrainConfig) -> float:
    """Steps between the checkpoints past ``train.steps``: those of the evenly spaced ones
    (``steps / linear_checkpoints``), or a stretch's length when there are none."""
    if train.linear_checkpoints:
        return train.steps / train.linear_checkpoints
    return train.steps * EXTEND_SHARE


# A train.until=phase run goes on in stretches of this share of its evenly spaced checkpoints.
EXTEND_SHARE = 0.25


def next_end(config: RunConfig, end: int) -> int | None:
    """Where a ``train.until=phase`` run whose current end is ``end`` stops next, or None when
    ``end`` is at the cap (``config.max_steps``).

    The ends lie on a fixed grid, ``round(steps + k * n * spacing)`` for k >= 1 with n =
    ceil(``EXTEND_SHARE`` x ``linear_checkpoints``) (a quarter of the run's evenly spaced
    checkpoints, at least one) and ``spacing`` = :func:`extension_spacing`, cut at the cap: a
    pure function of the config and the current end, so a resumed run goes on exactly as an
    uninterrupted one. (The default preset: 2000 steps, 50 even checkpoints of 40 steps, so
    stretches of 13 checkpoints, 520 steps, 2.1M tokens.)
    """
    train, cap = config.train, config.max_steps
    if end >= cap:
        return None
    per_stretch = max(1, math.ceil(EXTEND_SHARE * train.linear_checkpoints)) if train.linear_checkpoints else 1
    stretch = per_stretch * extension_spacing(train)
    k = max(1, math.floor((end - train.steps) / stretch) + 1)
    while int(round(train.steps + k * stretch)) <= end:  # rounding: the first grid end past ``end``
        k += 1
    return min(cap, int(round(train.steps + k * stretch)))


# --------------------------------------------------------------------------- saving

def save_checkpoint(
    run_dir: Path,
    model: Transformer,
    optimizer: torch.optim.Optimizer,
    trainer: dict[str, Any],
    extra_tensors: dict[str, torch.Tensor] | None = None,
    evaluation: EvalLosses | None = None,
) -> Path:
    """Write ``step_{trainer['step']}`` atomically; returns its path.

    Args:
        trainer: JSON-serialisable trainer state; must contain ``step``.
        extra_tensors: tensors to keep beside the optimizer state (RNG states).
        evaluation: the checkpoint evaluation's losses, written to ``eval.safetensors``.
    """
    run_dir = Path(run_dir)
    final = run_dir / checkpoint_name(trainer["step"])
    tmp = run_dir / f".{final.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_checkpoint_files(tmp, model, optimizer, trainer, extra_tensors, evaluation)
        if final.is_symlink():  # never made by interp: replace the link, not what it points to
            final.unlink()
        elif final.exists():  # a rerun of the same step (resume) replaces it whole
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:  # a failed write (a full disk) leaves no half-written temporary behind
        shutil.rmtree(tmp, ignore_errors=True)
    _fsync_dir(run_dir)
    return final


def _write_checkpoint_files(tmp: Path, model: Transformer, optimizer: torch.optim.Optimizer,
                            trainer: dict[str, Any], extra_tensors: dict[str, torch.Tensor] | None,
                            evaluation: EvalLosses | None = None) -> None:
    tmp.mkdir(parents=True)
    save_file(_cpu_contiguous(model.state_dict()), tmp / "model.safetensors")
    tensors, optim_meta = optimizer_to_flat(optimizer)
    save_file(_cpu_contiguous({**tensors, **(extra_tensors or {})}), tmp / "trainer.safetensors")
    (tmp / "trainer.json").write_text(json.dumps({**trainer, "optimizer": optim_meta}, indent=2))
    names = list(FILES)
    if evaluation is not None:
        save_file({"losses": evaluation.losses.detach().float().cpu().contiguous()}, tmp / EVAL_FILE,
                  metadata={"rows": evaluation.rows, "dtype": evaluation.dtype})
        names.append(EVAL_FILE)
    manifest = {name: {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
                for name in names}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    for name in (*names, "manifest.json"):
        _fsync_file(tmp / name)


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete half-written checkpoint directories left by a crash."""
    for child in Path(run_dir).glob(".step_*.tmp*"):
        shutil.rmtree(child, ignore_errors=True)


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into flat tensors and JSON-able hyper-parameters."""
    state = optimizer.state_dict()
    tensors = {f"optimizer/{index}/{key}": value
               for index, slots in state["state"].items()
               for key, value in slots.items() if torch.is_tensor(value)}
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items()}
              for group in state["param_groups"]]
    return tensors, {"param_groups": groups}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of :func:`optimizer_to_flat`: a state dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, index, slot = key.split("/", 2)
            state.setdefault(int(index), {})[slot] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in group.items()}
              for group in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


# --------------------------------------------------------------------------- loading

def checkpoint_file(path: Path, name: str) -> Path:
    """``path / name`` for a checkpoint folder of a run; :class:`~interp.errors.LinkOutside`
    when the folder or the file is a link out of the run folder (:mod:`interp.fileio`)."""
    return inside_run(Path(path).parent, Path(path) / name)


def verify_checkpoint(path: Path) -> None:
    """Raise CheckpointError unless the manifest maps every checkpoint file to its size and
    sha256 and every file matches. A manifest that is not such a complete mapping ({}, [], an
    entry missing or malformed) is invalid, never a pass: it would let a damaged file through."""
    path = Path(path)
    manifest = _read_manifest(path)
    for name in manifest:
        file, entry = checkpoint_file(path, name), manifest[name]
        if not file.is_file() or file.stat().st_size != entry["bytes"] or _sha256(file) != entry["sha256"]:
            raise CheckpointError(f"checkpoint {path} fails its integrity check ({name} differs from "
                                  f"manifest.json); delete it, or resume from an earlier one")


def _read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    try:
        manifest = json.loads(checkpoint_file(path, "manifest.json").read_text())
    except (OSError, ValueError):
        raise CheckpointError(f"checkpoint {path} has no readable manifest.json; it is incomplete") from None
    valid = isinstance(manifest, dict) and set(FILES) <= set(manifest) <= {*FILES, *OPTIONAL_FILES} and all(
        isinstance(e, dict) and isinstance(e.get("sha256"), str)
        and isinstance(e.get("bytes"), int) and not isinstance(e.get("bytes"), bool)
        for e in manifest.values())
    if not valid:
        raise CheckpointError(f"checkpoint {path} has an invalid manifest.json (it must give the sha256 "
                              f"and bytes of {', '.join(FILES)} and of nothing but {', '.join(OPTIONAL_FILES)} "
                              f"besides); it cannot be trusted")
    return manifest


def read_evaluation(path: str | Path) -> EvalLosses | None:
    """The checkpoint's ``eval.safetensors`` (verified against the manifest), or None when the
    checkpoint has none (written before interp kept it) or it cannot be used. Never raises for
    the file itself: the reader measures the losses instead."""
    from safetensors import safe_open

    path = Path(path)
    try:
        entry = _read_manifest(path).get(EVAL_FILE)
        file = checkpoint_file(path, EVAL_FILE)
        if entry is None or file.stat().st_size != entry["bytes"] or _sha256(file) != entry["sha256"]:
            return None
        with safe_open(str(file), framework="pt") as handle:
            meta = handle.metadata() or {}
            losses = handle.get_tensor("losses")
    except (CheckpointError, SafetensorError, OSError, ValueError, RuntimeError, KeyError):
        return None
    if losses.ndim != 2 or not isinstance(meta.get("rows"), str) or not isinstance(meta.get("dtype"), str):
        return None
    return EvalLosses(losses.float(), meta["rows"], meta["dtype"])


def _load_tensors(file: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """A safetensors file, any read failure (truncated, not safetensors) as a CheckpointError."""
    try:
        return load_file(file, device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint file {file} cannot be read ({str(err).splitlines()[0][:120]})") from None


def _check_shapes(expected: dict[str, tuple], found: dict[str, tuple], path: Path) -> None:
    """Refuse weights whose names or shapes differ from the model's, naming the first."""
    if found != expected:
        wrong = sorted(set(found) ^ set(expected)) or [k for k in expected if found[k] != expected[k]]
        name = wrong[0]
        raise CheckpointError(f"checkpoint {path} does not fit its run's config.json ({name}: "
                              f"{found.get(name, 'missing')} in the checkpoint, {expected.get(name, 'none')} "
                              f"in the model)")


@functools.lru_cache(maxsize=8)
def _expected_shapes(model_config) -> dict[str, tuple]:
    """The weight shapes a model config implies (built on the meta device: no memory). Cached:
    an analysis loads every checkpoint of a run, all with the same config."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in Transformer(model_config, init=False).state_dict().items()}


def _check_before_allocating(config: RunConfig, path: Path) -> None:
    """Compare the shapes config.json implies (a model built on the meta device, which holds no
    memory) with the tensor shapes in the safetensors header, before the model is allocated.

    A run folder can come from anyone: a config.json within the workbench's limits may still
    claim a model of gigabytes, and only a checkpoint that actually holds those weights makes
    this process allocate them."""
    from safetensors import safe_open

    expected = _expected_shapes(config.model)
    try:
        with safe_open(str(checkpoint_file(path, "model.safetensors")), framework="pt") as handle:
            found = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint file {path / 'model.safetensors'} cannot be read "
                              f"({str(err).splitlines()[0][:120]})") from None
    _check_shapes(expected, found, path)


def _load_weights(model: Transformer, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Load ``weights`` only if they have exactly the model's names and shapes, so a refused
    checkpoint leaves the model as it was (``load_state_dict`` would copy what fits first)."""
    _check_shapes({k: tuple(v.shape) for k, v in model.state_dict().items()},
                  {k: tuple(v.shape) for k, v in weights.items()}, path)
    # NaN or infinite weights (a run that diverged before runs stopped on it) measure nothing
    # and make the linear algebra of the analysis fail in C libraries.
    broken = next((k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if broken is not None:
        raise CheckpointError(f"checkpoint {path} holds non-finite weights ({broken}): the run diverged by "
                              f"this step")
    model.load_state_dict(weights)


def load_model(path: str | Path, device: str | torch.device = "cpu", verify: bool = True) -> Transformer:
    """Rebuild a model from a checkpoint directory (or a run directory: its last checkpoint).

    Needs only ``config.json`` beside the checkpoint and ``model.safetensors``; no training
    code runs and nothing in the files is executed. The model is allocated only once the file's
    tensor shapes match those config.json implies. Any failure is a one-line CheckpointError.
    """
    path = Path(path)
    if not (path / "model.safetensors").is_file():
        checkpoints = list_checkpoints(path)
        if not checkpoints:
            read_config(path)  # raises the clearer error for a missing or foreign directory
            raise CheckpointError(f"run '{path}' has no complete checkpoint yet")
        path = checkpoints[-1].path
    if verify:
        verify_checkpoint(path)
    config = read_config(path.parent)  # sizes within interp.config's limits
    _check_before_allocating(config, path)
    model = Transformer(config.model, init=False)  # every weight is loaded next, or the model refused
    _load_weights(model, _load_tensors(checkpoint_file(path, "model.safetensors")), path)
    return model.to(device).eval()


@dataclass
class TrainerState:
    """What a resumed run continues from."""

    step: int
    trainer: dict[str, Any]
    tensors: dict[str, torch.Tensor]


def load_trainer_state(checkpoint: Checkpoint, model: Transformer,
                       optimizer: torch.optim.Optimizer) -> TrainerState:
    """Load weights and optimizer state in place; return the step and the remaining state.

    Everything is read and checked before the model is touched; any failure is a
    CheckpointError, so a caller can fall back to an older checkpoint.
    """
    path = checkpoint.path
    verify_checkpoint(path)
    weights = _load_tensors(checkpoint_file(path, "model.safetensors"), str(model.device))
    tensors = _load_tensors(checkpoint_file(path, "trainer.safetensors"))
    try:
        trainer = json.loads(checkpoint_file(path, "trainer.json").read_text())
        step, meta = int(trainer["step"]), trainer.pop("optimizer")
        optim_state = optimizer_from_flat(tensors, meta)
        if "rng/torch_cpu" not in tensors:
            raise KeyError("rng/torch_cpu")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"checkpoint {path} has an unreadable trainer state ({type(err).__name__}: "
                              f"{err})") from None
    _load_weights(model, weights, path)
    try:
        optimizer.load_state_dict(optim_state)
    except (ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {path} holds an optimizer state that does not fit the model "
                              f"({str(err).splitlines()[0][:120]})") from None
    return TrainerState(step=step, trainer=trainer, tensors=tensors)


def last_good_checkpoint(run_dir: Path) -> Checkpoint | None:
    """The newest checkpoint that passes its integrity check (older ones are tried in turn)."""
    for checkpoint in reversed(list_checkpoints(run_dir)):
        try:
            verify_checkpoint(checkpoint.path)
            return checkpoint
        except CheckpointError:
            continue
    return None


def resolved_config(config: RunConfig, d_vocab: int) -> RunConfig:
    """The config with the vocabulary size filled in from the data."""
    if config.model.d_vocab not in (0, d_vocab):
        raise CheckpointError(f"model.d_vocab={config.model.d_vocab} but the tokenizer has {d_vocab} "
                              f"tokens; set model.d_vocab=0 to take it from the data")
    return replace(config, model=replace(config.model, d_vocab=d_vocab))


# --------------------------------------------------------------------------- helpers

def _cpu_contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
