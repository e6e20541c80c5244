"""Run configuration: one dataclass per run, presets by name, files and ``key=value`` overrides.

A :class:`RunConfig` holds everything needed to rebuild a model and repeat its training:
``model`` (shape and architecture), ``data`` (corpus and tokenizer) and ``train`` (optimiser,
schedule, checkpoints). It is validated on construction and never mutated; derived values are
properties, and changes make a new config through :func:`dataclasses.replace`.

Overrides name a field as ``section.field=value`` (``model.n_layers=3``) or, when the field
name is unique across sections, as ``field=value`` (``lr=1e-3``). Unknown keys and bad values
raise :class:`~interp.errors.ConfigError` with the list of what is allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import tomllib
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from interp.errors import ConfigError

Positional = Literal["learned", "shortformer", "rotary", "none"]
Normalization = Literal["layernorm", "none"]
Activation = Literal["gelu", "relu"]
SourceKind = Literal["stdlib", "files", "jsonl", "dictd", "hf", "tokens", "markov"]
Packing = Literal["document", "concatenate"]
Schedule = Literal["constant", "cosine", "linear"]
Device = Literal["auto", "cpu", "cuda", "mps"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Until = Literal["steps", "phase"]


@dataclass(frozen=True)
class ModelConfig:
    """Shape and architecture of a small transformer.

    Attributes:
        n_layers: number of transformer blocks (1 to any).
        d_model: width of the residual stream.
        n_heads: attention heads per layer.
        d_head: width of each head's queries, keys and values.
        n_ctx: context length in tokens.
        d_vocab: vocabulary size; 0 means "take it from the data" (resolved before training
            and saved resolved, so a saved config rebuilds the model alone).
        attn_only: if True the blocks have no MLP (the paper's attention-only models).
        d_mlp: hidden width of the MLP when ``attn_only`` is False.
        act_fn: MLP non-linearity.
        positional: ``learned`` absolute embeddings added to the residual stream;
            ``shortformer`` embeddings added only to the inputs of queries and keys;
            ``rotary`` rotations of queries and keys; ``none``.
        normalization: ``layernorm`` before attention, MLP and unembedding, or ``none``.
        smeared_key: per-head trainable alpha mixing each key with the previous one,
            k'_j = sigmoid(alpha) k_j + (1 - sigmoid(alpha)) k_{j-1} (Olsson et al. 2022).
        init_std: standard deviation of the normal initialisation of weight matrices.
        embed_init_std: standard deviation of the token embeddings W_E at initialisation.
            The default 1.0 (as ``nn.Embedding``) keeps each token's identity larger than
            what attention adds to the residual stream early on, which later layers need to
            read the current token; at 0.02 induction heads formed far later (docs/PRESETS.md).
        position_layers: with ``shortformer`` positions, the number of blocks (from the first)
            whose queries and keys get them; 0 = every block. At 1, later layers see no
            position at all, so their heads can only attend by content (docs/PRESETS.md: on
            the man pages the previous-token head otherwise forms in layer 1).
        pos_init_std: standard deviation of the positional embeddings at initialisation;
            0 = by positional kind: 1.0 for ``shortformer`` (positions are added to the
            LayerNorm-ed input, whose entries have unit scale, so they start as strong as
            the tokens; at 0.02 no previous-token head had formed after 8M tokens, see
            docs/PRESETS.md), ``init_std`` otherwise.
    """

    n_layers: int = 2
    d_model: int = 256
    n_heads: int = 4
    d_head: int = 64
    n_ctx: int = 256
    d_vocab: int = 0
    attn_only: bool = True
    d_mlp: int = 1024
    act_fn: Activation = "gelu"
    positional: Positional = "shortformer"
    normalization: Normalization = "layernorm"
    smeared_key: bool = False
    init_std: float = 0.02
    embed_init_std: float = 1.0
    pos_init_std: float = 0.0
    position_layers: int = 0

    def __post_init__(self) -> None:
        _check_types(self)
        _check(self.n_layers >= 1, "model.n_layers must be >= 1")
        _check(min(self.d_model, self.n_heads, self.d_head, self.n_ctx) >= 1,
               "model.d_model, n_heads, d_head and n_ctx must be >= 1")
        _check(self.d_vocab >= 0, "model.d_vocab must be >= 0 (0 = take it from the data)")
        _check(self.attn_only or self.d_mlp >= 1, "model.d_mlp must be >= 1 when attn_only=false")
        _check(self.positional != "rotary" or self.d_head % 2 == 0,
               "model.positional=rotary needs an even d_head")
        _check(self.init_std > 0, "model.init_std must be > 0")
        _check(self.embed_init_std > 0, "model.embed_init_std must be > 0")
        _check(self.pos_init_std >= 0, "model.pos_init_std must be >= 0 (0 = by positional kind)")
        _check(0 <= self.position_layers <= self.n_layers,
               f"model.position_layers must be in 0..n_layers ({self.n_layers}; 0 = every layer), "
               f"not {self.position_layers}")
        _check(self.position_layers == 0 or self.positional == "shortformer",
               f"model.position_layers needs model.positional=shortformer (the positions that enter "
               f"each block's queries and keys), not {self.positional}")
        _check_limits(self, MODEL_LIMITS)

    @property
    def resolved_position_layers(self) -> int:
        """How many blocks, from the first, get shortformer positions in their queries and keys."""
        return self.position_layers or self.n_layers

    @property
    def resolved_pos_init_std(self) -> float:
        if self.pos_init_std > 0:
            return self.pos_init_std
        return 1.0 if self.positional == "shortformer" else self.init_std


@dataclass(frozen=True)
class DataConfig:
    """Where tokens come from.

    Attributes:
        source: ``stdlib`` (the running interpreter's standard library source, offline on
            every machine), ``files`` (a text file, a directory or a glob), ``jsonl`` (a JSON
            Lines file with a text field), ``dictd`` (the entries of dictd dictionaries, by
            their ``.index`` files: FOLDOC and the Jargon File install offline this way), ``hf`` (a Hugging Face dataset: a local
            ``save_to_disk`` folder or a hub name), ``tokens`` (a pre-tokenised ``.npy`` array:
            1-D is one stream whose last ``heldout_fraction`` is held out, 2-D is one document
            per row),
            ``markov`` (synthetic in-context Markov chains, Edelman et al. 2024).
        path: file, directory, glob, dataset folder or hub name for the source.
        text_field: the field holding the text in ``jsonl`` and ``hf`` sources.
        split: the split of an ``hf`` dataset.
        tokenizer: ``bpe`` to train a byte-level BPE on the corpus, or the path of a
            ``tokenizer.json`` file, or a Hugging Face tokenizer name.
        vocab_size: vocabulary size of a trained BPE (special tokens included).
        max_bytes: read at most this many bytes of text (0 = all); for quick looks and tests.
        heldout_fraction: share of documents set aside (by a hash of their name) and never
            trained on; the ICL score and other measures use them.
        packing: ``document`` samples each training window inside one document (the ICL
            score then measures context that belongs together); ``concatenate`` joins all
            documents with an end-of-text token, for corpora of short documents.
        prepend_bos: start every sequence with the BOS token (an attention sink, and the
            paper's prefix-matching setup).
        markov_states: number of states of the synthetic Markov chains.
        markov_alpha: Dirichlet concentration of each row of a chain's transition matrix.
        cache_dir: where tokenizers and token arrays are cached ("" = ``$INTERP_CACHE`` or
            ``~/.cache/interp``).
    """

    source: SourceKind = "stdlib"
    path: str = ""
    text_field: str = "text"
    split: str = "train"
    tokenizer: str = "bpe"
    vocab_size: int = 1024
    max_bytes: int = 0
    heldout_fraction: float = 0.05
    packing: Packing = "document"
    prepend_bos: bool = True
    markov_states: int = 32
    markov_alpha: float = 0.1
    cache_dir: str = ""

    def __post_init__(self) -> None:
        _check_types(self)
        needs_path = self.source in ("files", "jsonl", "dictd", "hf", "tokens")
        _check(not needs_path or bool(self.path),
               f"data.source={self.source} needs data.path (a file, directory, glob or name)")
        _check(self.vocab_size >= 260, "data.vocab_size must be >= 260 (256 bytes + specials)")
        _check(0 < self.heldout_fraction < 0.5, "data.heldout_fraction must be in (0, 0.5)")
        _check(self.max_bytes >= 0, "data.max_bytes must be >= 0 (0 = read everything)")
        _check(self.markov_states >= 2, "data.markov_states must be >= 2")
        _check(self.markov_alpha > 0, "data.markov_alpha must be > 0")
        _check_limits(self, DATA_LIMITS)


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule, checkpoints and hardware.

    Attributes:
        seed: seeds the initialisation, the data order and every random choice.
        steps: optimiser steps; tokens seen = steps * batch_size * n_ctx.
        batch_size: sequences per step.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW decoupled weight decay (not applied to biases, norms, alphas).
        beta1, beta2: AdamW moment decay rates.
        warmup_steps: linear warm-up from 0 to ``lr``.
        schedule: after warm-up: ``constant``, ``cosine`` or ``linear`` decay to
            ``min_lr_ratio * lr`` at the last step.
        min_lr_ratio: final learning rate as a share of ``lr``.
        grad_clip: clip the global gradient norm to this (0 = off).
        log_checkpoints: checkpoints spaced evenly in log(step) over the first
            ``log_until`` share of training, where the phase change usually happens.
        linear_checkpoints: checkpoints spaced evenly over the whole run.
        log_until: share of the run covered by the log-spaced checkpoints.
        eval_examples: held-out sequences for the quick evaluation stored at each checkpoint.
            256 (128 before 2026-12-03) are the rows the analysis measures by default
            (``interp.rundata.HELDOUT_EXAMPLES``), so the checkpoint keeps their per-token losses
            and the analysis reuses them instead of measuring them again.
        device: ``auto`` (cuda, then mps, then cpu) or a device name.
        precision: ``auto`` (bf16 autocast where the hardware does bf16 fast, else fp32),
            ``fp32``, ``bf16`` or ``fp16`` (CUDA only, with a gradient scaler).
        threads: CPU threads for torch (0 = leave torch's default).
        log_every: steps between training-loss records in the metrics file.
        analyze: run ``interp analyze`` on each checkpoint as soon as it is written (adds a
            few seconds per checkpoint on a CPU; ``interp analyze RUN`` afterwards does the same).
            ``interp train`` and sweeps do it through ``train(..., on_checkpoint=...)``; training
            itself never imports the analysis.
        until: ``steps`` stops at ``steps``. ``phase`` trains ``steps`` (the nominal length the
            checkpoint schedule is laid on) and then, while the phase change is not complete,
            on in stretches of a quarter of the evenly spaced checkpoints, each with the same
            spacing, up to ``max_tokens`` (the rule: :mod:`interp.phase.complete`; the stretches:
            :func:`interp.checkpoints.next_end`).
            It never stops before ``steps``. Needs ``schedule=constant``: a decaying rate is
            defined only up to ``steps``, and stretching its decay would change the rate of
            steps already taken, so a continued run could not match one planned longer.
        max_tokens: the cap of ``until=phase`` in tokens (at least ``steps * batch_size *
            n_ctx``; 0 = four times that). Must stay 0 with ``until=steps``.
    """

    seed: int = 0
    steps: int = 3000
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.99
    warmup_steps: int = 100
    schedule: Schedule = "cosine"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    log_checkpoints: int = 30
    linear_checkpoints: int = 40
    log_until: float = 0.3
    eval_examples: int = 256
    device: Device = "auto"
    precision: Precision = "auto"
    threads: int = 0
    log_every: int = 10
    analyze: bool = False
    until: Until = "steps"
    max_tokens: int = 0

    def __post_init__(self) -> None:
        _check_types(self)
        _check(self.steps >= 1 and self.batch_size >= 1, "train.steps and batch_size must be >= 1")
        _check(0 < self.lr <= MAX_LR, f"train.lr must be in (0, {MAX_LR:g}], not {self.lr:g}: AdamW moves "
                                      f"each weight by about lr per step, so a larger rate only diverges")
        _check(0 <= self.seed < 2**32, f"train.seed must be in [0, 2**32), not {self.seed}")
        _check(self.threads >= 0, f"train.threads must be >= 0 (0 = torch's default), not {self.threads}")
        _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "train.beta1, beta2 must be in [0, 1)")
        _check(self.warmup_steps >= 0, "train.warmup_steps must be >= 0")
        _check(0 <= self.min_lr_ratio <= 1, "train.min_lr_ratio must be in [0, 1]")
        _check(self.grad_clip >= 0 and self.weight_decay >= 0,
               "train.grad_clip and weight_decay must be >= 0")
        _check(self.log_checkpoints >= 0 and self.linear_checkpoints >= 0,
               "train.log_checkpoints and linear_checkpoints must be >= 0")
        _check(0 < self.log_until <= 1, "train.log_until must be in (0, 1]")
        _check(self.eval_examples >= 1, "train.eval_examples must be >= 1")
        _check(self.log_every >= 1, "train.log_every must be >= 1")
        _check(self.max_tokens >= 0, f"train.max_tokens must be >= 0 (0 = four times the nominal "
                                     f"length), not {self.max_tokens}")
        _check(self.until == "phase" or self.max_tokens == 0,
               "train.max_tokens caps train.until=phase only; set train.until=phase or leave "
               "max_tokens at 0 (with until=steps the run stops at train.steps)")
        _check(self.until == "steps" or self.schedule == "constant",
               f"train.until=phase needs train.schedule=constant, not {self.schedule}: a decaying "
               f"rate is defined only up to train.steps, so the run could not go on past it without "
               f"a jump in the rate")
        _check_limits(self, TRAIN_LIMITS)


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs: model, data and training, plus the preset it came from."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "custom"

    def __post_init__(self) -> None:
        _check(self.data.source != "markov" or not self.data.prepend_bos
               or self.model.d_vocab in (0, self.data.markov_states + 1),
               "model.d_vocab must be 0 or markov_states + 1 for the markov source")
        # A run, not a bare model (measures work on any context): its ICL score compares two
        # token indices and its prefix-matching probe repeats a sequence, which need room.
        _check(self.model.n_ctx >= MIN_CTX, f"model.n_ctx must be >= {MIN_CTX} for a run (the ICL score "
                                            f"and the prefix-matching probe need that many positions), "
                                            f"not {self.model.n_ctx}")
        _check_size(self)
        _check_cap(self)

    @property
    def tokens_per_step(self) -> int:
        return self.train.batch_size * self.model.n_ctx

    @property
    def total_tokens(self) -> int:
        return self.train.steps * self.tokens_per_step

    @property
    def max_steps(self) -> int:
        """The most steps a ``train.until=phase`` run may take: ``max_tokens`` in whole steps,
        or ``DEFAULT_CAP_FACTOR`` x ``steps`` when it is 0; ``steps`` with ``until=steps``."""
        train = self.train
        if train.until == "steps":
            return train.steps
        return train.max_tokens // self.tokens_per_step if train.max_tokens else DEFAULT_CAP_FACTOR * train.steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RunConfig":
        """Build a config from nested dicts, refusing unknown sections and keys."""
        _check(isinstance(raw, dict), f"a run config must be a mapping of sections, not {type(raw).__name__}")
        unknown = set(raw) - {f.name for f in fields(cls)}
        _check(not unknown, f"unknown config section(s) {sorted(unknown, key=str)}; "
                            f"allowed: {[f.name for f in fields(cls)]}")
        parts: dict[str, Any] = {}
        for section, klass in SECTIONS.items():
            values = raw.get(section, {})
            _check(isinstance(values, dict), f"config section '{section}' must be a table/dict")
            bad = set(values) - {f.name for f in fields(klass)}
            _check(not bad, f"unknown key(s) {sorted(bad, key=str)} in [{section}]; "
                            f"allowed: {sorted(f.name for f in fields(klass))}")
            parts[section] = klass(**{k: _coerce(klass, k, v) for k, v in values.items()})
        return cls(**parts, preset=str(raw.get("preset", "custom")))

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        return cls.from_dict(json.loads(text))


SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


# --------------------------------------------------------------------------- presets

def _preset_default() -> RunConfig:
    # Found by the search recorded in docs/PRESETS.md: the smallest budget on a 2-core CPU
    # at which a layer-1 head of a 2-layer attention-only model passes 0.5 prefix matching.
    return RunConfig(
        model=ModelConfig(n_layers=2, d_model=256, n_heads=4, d_head=64, n_ctx=256),
        data=DataConfig(source="stdlib", vocab_size=1024),
        # Constant after warm-up: a decaying rate delays the change. 2000 steps = 8.2M
        # tokens, about 2.4x where the induction head formed in the search, so many
        # checkpoints fall before, during and after it.
        train=TrainConfig(steps=2000, batch_size=16, lr=3e-3, warmup_steps=100,
                          schedule="constant", log_checkpoints=30, linear_checkpoints=50),
        preset="default",
    )


def _preset_prose() -> RunConfig:
    # The default with smeared keys, trained until the change is complete (docs/PRESETS.md, "A
    # preset for prose"). On prose the previous-token head can form in layer 1 and none in
    # layer 0 (man pages: with 4 and with 8 heads), which leaves the two-layer circuit no
    # layer for its induction head; a smeared key carries the previous token by itself, so an
    # induction head can form in either layer (Olsson et al. 2022, argument 2).
    base = _preset_default()
    return replace(base, model=replace(base.model, smeared_key=True),
                   train=replace(base.train, until="phase", max_tokens=20_000_000), preset="prose")


def _preset_prose_circuit() -> RunConfig:
    # The default with shortformer positions in layer 0 only, trained until the change is
    # complete (docs/PRESETS.md, "The two-layer circuit on prose"): layer 1 can attend by
    # content alone, so the previous-token head forms in layer 0 and the induction head in
    # layer 1, as in the paper's two-layer models (on the man pages the default puts the
    # previous-token head in layer 1).
    base = _preset_default()
    return replace(base, model=replace(base.model, position_layers=1),
                   train=replace(base.train, until="phase", max_tokens=20_000_000), preset="prose-circuit")


def _preset_markov() -> RunConfig:
    # Edelman et al. 2024: each sequence has its own transition matrix, so only in-context
    # statistics help; induction ("statistical induction") heads form within seconds.
    return RunConfig(
        model=ModelConfig(n_layers=2, d_model=64, n_heads=2, d_head=32, n_ctx=128),
        data=DataConfig(source="markov", markov_states=32, markov_alpha=0.1),
        train=TrainConfig(steps=800, batch_size=64, lr=3e-3, warmup_steps=50,
                          schedule="constant", eval_examples=256),
        preset="markov",
    )


def _comparison(n_layers: int, attn_only: bool, smeared: bool = False) -> RunConfig:
    """The paper's comparison set, scaled down to the default corpus and budget."""
    base = _preset_default()
    name = f"{'attn' if attn_only else 'mlp'}{n_layers}{'-smeared' if smeared else ''}"
    model = replace(base.model, n_layers=n_layers, attn_only=attn_only, smeared_key=smeared)
    return replace(base, model=model, preset=name)


PRESETS: dict[str, Any] = {
    "default": _preset_default,
    "prose": _preset_prose,
    "prose-circuit": _preset_prose_circuit,
    "markov": _preset_markov,
    **{f"attn{n}": (lambda n=n: _comparison(n, True)) for n in (1, 2, 3)},
    **{f"mlp{n}": (lambda n=n: _comparison(n, False)) for n in (1, 2, 3)},
    **{f"attn{n}-smeared": (lambda n=n: _comparison(n, True, True)) for n in (1, 2)},
}

PRESET_HELP: dict[str, str] = {
    "default": "2-layer attention-only on the Python stdlib; shows the phase change on a CPU",
    "prose": "default with smeared keys, trained until the change is complete (20M tokens at most)",
    "prose-circuit": "default with positions in layer 0 only, until the change is complete: the "
                     "two-layer circuit on prose",
    "markov": "in-context Markov chains; induction heads in under a minute (tests, quick looks)",
    "attn1": "1-layer attention-only (no phase change expected)",
    "attn2": "2-layer attention-only (same as default)",
    "attn3": "3-layer attention-only",
    "mlp1": "1-layer with MLPs", "mlp2": "2-layer with MLPs", "mlp3": "3-layer with MLPs",
    "attn1-smeared": "1-layer attention-only with smeared keys (gains induction heads)",
    "attn2-smeared": "2-layer attention-only with smeared keys (earlier phase change)",
}


@dataclass(frozen=True)
class Advice:
    """Which preset and overrides to start from for one kind of data, and why."""

    data: str
    preset: str
    overrides: tuple[str, ...] = ()
    why: str = ""

    def command(self) -> str:
        return " ".join(["interp train", self.preset, *self.overrides])


# Which preset for which text: measured per corpus in docs/PRESETS.md (the held-aside corpus
# there was run once, with this advice as written, after it was fixed).
PRESET_ADVICE: list[Advice] = [
    Advice("code (the stdlib, a repository)", "default"),
    Advice("prose (documentation, man pages, books)", "prose", (),
           "smeared keys: an induction head above 0.5 within about 3 minutes on every prose "
           "corpus measured, in layer 0 or 1 (the smeared key does the previous-token head's "
           "job, as in the paper's smeared-key models). Trains on until the ICL drop has closed "
           "and a head has risen and levelled off, at most 20M tokens"),
    Advice("prose, for the paper's two-layer circuit", "prose-circuit", (),
           "positions in layer 0 only: the previous-token head forms in layer 0 and the "
           "induction head in layer 1 (on the man pages `default` puts the previous-token head "
           "in layer 1 and no induction head forms). Slower and weaker than `prose`: its best "
           "head reached 0.46 (man pages), 0.64 (Python docs) and 0.36 (FOLDOC) in 6-10 minutes, "
           "and none formed by 20M tokens on the held-aside Jargon File (a small corpus); add "
           "data.packing=concatenate for short documents"),
    Advice("short documents (dictionary entries, posts)", "prose", ("data.packing=concatenate",),
           "packing=document samples windows only inside documents of at least n_ctx tokens; "
           "the data layer warns when those hold under 80% of the corpus. For code in short "
           "files, the same override on `default`"),
    Advice("in-context Markov chains", "markov"),
]


def preset(name: str) -> RunConfig:
    """Return the named preset, or raise a ConfigError listing the valid names."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]()


# --------------------------------------------------------------------------- files and overrides

def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML, JSON or YAML config file into nested dicts.

    Whatever is wrong with the file (missing, unreadable, not UTF-8, a syntax error, a top
    level that is not a mapping) is one ConfigError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' not found; give the path of a .toml/.json/.yaml file")
    if path.suffix not in (".toml", ".json", ".yaml", ".yml"):
        raise ConfigError(f"config file '{path}' must end in .toml, .json or .yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file '{path}' is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except OSError as err:
        raise ConfigError(f"config file '{path}' cannot be read ({err.strerror})") from None
    raw = _parse(path, text)
    if not isinstance(raw, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of sections (model, data, train) "
                          f"to their values, not a {type(raw).__name__}")
    return raw


def _parse(path: Path, text: str) -> Any:
    """The file's text parsed by its suffix; a syntax error as one line with its position."""
    import yaml  # a dependency; imported here so the library imports fast

    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text) if text.strip() else {}
    except (tomllib.TOMLDecodeError, ValueError, yaml.YAMLError) as err:
        reason = " ".join(str(err).split())  # YAML's messages span lines
        raise ConfigError(f"config file '{path}' is not valid {path.suffix[1:]}: {reason}") from None


def merge(base: RunConfig, raw: dict[str, Any]) -> RunConfig:
    """Apply nested overrides ({"model": {"n_layers": 3}}) to a config."""
    _check(isinstance(raw, dict), f"config values must be a mapping of sections to values, not {raw!r}")
    merged = base.to_dict()
    merged["preset"] = raw.get("preset", base.preset)
    for section, values in raw.items():
        if section == "preset":
            continue
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section '{section}'; allowed: {list(SECTIONS)}")
        _check(isinstance(values, dict), f"config section '{section}' must be a table/dict of "
                                         f"{section} values, not {values!r}")
        merged[section].update(values)
    return RunConfig.from_dict(merged)


def resolve_key(key: str) -> tuple[str, str]:
    """``model.n_layers`` -> (model, n_layers); a bare name unique across sections is found."""
    owners: dict[str, list[str]] = {}
    for section, klass in SECTIONS.items():
        for f in fields(klass):
            owners.setdefault(f.name, []).append(section)
    section, dot, name = key.rpartition(".")
    if dot and not section:
        raise ConfigError(f"'{key}' starts with '.'; write section.key (model.n_layers) or a bare key (lr)")
    if not section:
        sections = owners.get(name, [])
        if len(sections) != 1:
            known = sorted(f"{s}.{n}" for n, ss in owners.items() for s in ss)
            why = "is ambiguous" if sections else "is not a config key"
            raise ConfigError(f"'{key}' {why}; use one of: {', '.join(known)}")
        section = sections[0]
    if section not in SECTIONS:
        raise ConfigError(f"unknown config section '{section}' in '{key}'; allowed: {list(SECTIONS)}")
    if name not in {f.name for f in fields(SECTIONS[section])}:
        allowed = ", ".join(sorted(f.name for f in fields(SECTIONS[section])))
        raise ConfigError(f"unknown key '{name}' in section '{section}'; allowed: {allowed}")
    return section, name


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """Turn ``["model.n_layers=3", "lr=1e-3"]`` into nested dicts, resolving bare names."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override '{item}' must look like key=value (e.g. model.n_layers=3)")
        section, name = resolve_key(key)
        out.setdefault(section, {})[name] = _parse_value(SECTIONS[section], name, value)
    return out


@functools.lru_cache(maxsize=None)
def _type_hints(klass: type) -> dict[str, Any]:
    """typing.get_type_hints of a config class, once per class (it re-evaluates every
    annotation string on each call: reading a run's config.json for each of its checkpoints
    spent 20 ms per read there). Read-only: callers never change the dict."""
    return typing.get_type_hints(klass)


def _parse_value(klass: type, name: str, text: str) -> Any:
    hints = _type_hints(klass)
    if name not in hints:
        allowed = ", ".join(sorted(f.name for f in fields(klass)))
        raise ConfigError(f"unknown key '{name}' for {klass.__name__}; allowed: {allowed}")
    kind = hints[name]
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"'{name}' must be true or false, not '{text}'")
    if kind in (int, float):
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(f"'{name}' must be a number, not '{text}'") from None
        return _coerce(klass, name, number)
    return text


def _coerce(klass: type, name: str, value: Any) -> Any:
    """Accept 3.0 for an int field, 3 for a float field, and a number written as a string for
    either: YAML 1.1 (PyYAML) reads ``lr: 1e-3`` as the string "1e-3", since its floats need a
    dot. Other checks are left to the class."""
    kind = _type_hints(klass).get(name)
    if kind in (int, float) and isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return value  # refused by the class's type check, naming the field
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _check_types(obj: Any) -> None:
    """Refuse values of the wrong type and Literal values outside their choices."""
    hints = _type_hints(type(obj))
    section = {v: k for k, v in SECTIONS.items()}.get(type(obj), type(obj).__name__)
    for f in fields(obj):
        value, kind = getattr(obj, f.name), hints[f.name]
        if get_origin(kind) is Literal:
            if value not in get_args(kind):
                raise ConfigError(f"{section}.{f.name}='{value}' is not allowed; "
                                  f"choose one of: {', '.join(get_args(kind))}")
        elif kind is bool:
            _check(isinstance(value, bool), f"{section}.{f.name} must be true or false, not {value!r}")
        elif kind in (int, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and (kind is float or isinstance(value, int))
            _check(ok, f"{section}.{f.name} must be {'an integer' if kind is int else 'a number'}, "
                       f"not {value!r}")
            _check(math.isfinite(value), f"{section}.{f.name} must be a finite number, not {value!r}")
        elif kind is str:
            _check(isinstance(value, str), f"{section}.{f.name} must be a string, not {value!r}")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


# --------------------------------------------------------------------------- limits
#
# Upper bounds that keep a typo (steps=1e12, d_model=1e9) from reaching an allocation or a loop
# of years: each is 100x or more beyond what a workbench of small transformers uses (the
# presets: d_model 256, n_ctx 256, 2000 steps), so no sensible run meets one. A value past a
# bound is refused when the config is built, before any folder or tensor exists.

MIN_CTX = 8
MAX_LR = 1.0
MODEL_LIMITS = {"n_layers": 256, "d_model": 65_536, "n_heads": 1024, "d_head": 4096, "n_ctx": 65_536,
                "d_vocab": 2**20, "d_mlp": 262_144}
DATA_LIMITS = {"vocab_size": 2**20, "markov_states": 1024}
TRAIN_LIMITS = {"steps": 10**8, "batch_size": 65_536, "warmup_steps": 10**8, "log_checkpoints": 10_000,
                "linear_checkpoints": 10_000, "eval_examples": 65_536, "threads": 1024, "log_every": 10**8}
DEFAULT_CAP_FACTOR = 4  # train.until=phase with max_tokens=0 goes up to 4 x train.steps
MAX_PARAMETERS = 2 * 10**9  # 32 GB with gradients and AdamW's two moments
MAX_ATTENTION = 2**31  # entries of one layer's attention pattern for a batch (8 GB in float32)


def _check_limits(obj: Any, limits: dict[str, int]) -> None:
    section = {v: k for k, v in SECTIONS.items()}.get(type(obj), type(obj).__name__)
    for name, limit in limits.items():
        value = getattr(obj, name)
        _check(value <= limit, f"{section}.{name}={value:,} is beyond this workbench's limit of {limit:,} "
                               f"(interp.config limits); choose a smaller value")


def parameter_count(config: "RunConfig") -> int:
    """Parameters of the model ``config`` builds (d_vocab 0 is taken as the data's vocabulary)."""
    m, data = config.model, config.data
    vocab = m.d_vocab or (data.markov_states + 1 if data.source == "markov" else data.vocab_size)
    attention = 4 * m.n_heads * m.d_head * m.d_model + 4 * m.d_model
    mlp = 0 if m.attn_only else 2 * m.d_model * m.d_mlp + m.d_mlp + m.d_model
    return 2 * vocab * m.d_model + m.n_ctx * m.d_model + m.n_layers * (attention + mlp)


def _check_size(config: "RunConfig") -> None:
    """Refuse a model or a batch far beyond memory before anything is allocated."""
    params = parameter_count(config)
    _check(params <= MAX_PARAMETERS, f"this model has about {params:.3g} parameters, beyond this "
                                     f"workbench's limit of {MAX_PARAMETERS:.0e}; choose smaller model sizes")
    m, batch = config.model, max(config.train.batch_size, min(config.train.eval_examples, 64))
    pattern = batch * m.n_heads * m.n_ctx * m.n_ctx
    _check(pattern <= MAX_ATTENTION, f"one layer's attention pattern would hold {pattern:.3g} numbers "
                                     f"(batch x n_heads x n_ctx^2), beyond the limit of {MAX_ATTENTION:.3g}; "
                                     f"lower train.batch_size, model.n_heads or model.n_ctx")


def _check_cap(config: "RunConfig") -> None:
    """The cap of ``train.until=phase``: not below the nominal length, not past the step limit."""
    train = config.train
    if train.until != "phase":
        return
    _check(not train.max_tokens or train.max_tokens >= config.total_tokens,
           f"train.max_tokens={train.max_tokens:,} is below the nominal length of {config.total_tokens:,} "
           f"tokens (train.steps x batch_size x n_ctx); raise max_tokens or lower train.steps")
    _check(config.max_steps <= TRAIN_LIMITS["steps"],
           f"train.max_tokens allows {config.max_steps:,} steps, beyond this workbench's limit of "
           f"{TRAIN_LIMITS['steps']:,} (interp.config limits); choose a smaller cap")


# What a resume may change: when the run stops, never what it has trained or will train on.
RESUME_KEYS = ("train.until", "train.max_tokens")


def continue_config(config: RunConfig, overrides: dict[str, dict[str, Any]]) -> RunConfig:
    """``config`` with the ``key=value`` overrides of a resume (parsed by :func:`parse_overrides`),
    which may name only ``RESUME_KEYS``: the steps already taken, the rate of every step and the
    checkpoint schedule up to ``train.steps`` stay as they were, so the continued run is the run
    an uninterrupted one with these values would have been."""
    named = [f"{section}.{name}" for section, values in overrides.items() for name in values]
    refused = [key for key in named if key not in RESUME_KEYS]
    _check(not refused, f"{', '.join(refused)} cannot change when a run resumes (only "
                        f"{' and '.join(RESUME_KEYS)} can: the rest would change what it has trained); "
                        f"start a new run for that")
    return merge(config, overrides)


def build_config(preset_name: str = "default", config_file: str | None = None,
                 overrides: list[str] | None = None) -> RunConfig:
    """Preset, then file, then ``key=value`` overrides, each refusing what it does not know."""
    config = preset(preset_name)
    if config_file:
        config = merge(config, load_config_file(config_file))
    if overrides:
        config = merge(config, parse_overrides(overrides))
    return config
