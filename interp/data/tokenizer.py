"""Tokenizers: a byte-level BPE trained on the corpus, or one loaded from a file or the hub.

Whatever its origin, a :class:`Tokenizer` offers the few operations the workbench needs
(encode, batch encode, decode, vocabulary size, BOS and end-of-text ids) and a fingerprint,
so token caches are keyed by the exact tokenizer that made them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from interp.errors import DataError

log = logging.getLogger("interp")

END_OF_TEXT = "<|endoftext|>"  # the trained BPE's only special token: BOS and separator
# Special tokens recognised in a bare tokenizer.json, which has no notion of BOS/EOS.
_BOS_NAMES = ("<|endoftext|>", "<|begin_of_text|>", "<s>", "<bos>", "[BOS]", "<|bos|>")
_EOS_NAMES = ("<|end_of_text|>", "</s>", "<eos>", "[EOS]", "<|eos|>", "[SEP]")


@dataclass
class Tokenizer:
    """A tokenizer reduced to what the workbench uses.

    Attributes:
        name: how it is shown, e.g. ``BPE 1024`` or ``gpt2``.
        vocab_size: number of ids, special tokens included.
        bos_token_id: the id put at the start of sequences (None if it has none).
        eot_token_id: the id joining documents in ``packing=concatenate`` (None if none).
        fast: the ``tokenizers`` backend, when there is one.
        slow: a ``transformers`` tokenizer without a fast backend (rare).
    """

    name: str
    vocab_size: int
    bos_token_id: int | None
    eot_token_id: int | None
    fast: tokenizers.Tokenizer | None = None
    slow: Any = None

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` with no special tokens added."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of many texts at once (parallel in the ``tokenizers`` backend)."""
        if self.fast is not None:
            # encode_batch_fast (tokenizers >= 0.20) skips the offsets we never use
            encode = getattr(self.fast, "encode_batch_fast", self.fast.encode_batch)
            return [enc.ids for enc in encode(list(texts), add_special_tokens=False)]
        return [list(ids) for ids in self.slow(list(texts), add_special_tokens=False)["input_ids"]]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``, special tokens shown (a BOS reads as ``<|endoftext|>``)."""
        ids = [int(i) for i in ids]
        if self.fast is not None:
            return self.fast.decode(ids, skip_special_tokens=False)
        return self.slow.decode(ids, skip_special_tokens=False)

    def to_json(self) -> str | None:
        """The serialised tokenizer (``tokenizer.json`` format), if it has a fast backend."""
        return self.fast.to_str() if self.fast is not None else None

    @property
    def fingerprint(self) -> dict[str, Any]:
        """Identity of the tokenizer: the sha256 of its serialised JSON, plus its special ids."""
        text = self.to_json()
        if text is None:  # a slow tokenizer: hash its vocabulary instead
            vocab = sorted(self.slow.get_vocab().items(), key=lambda item: item[1])
            text = type(self.slow).__name__ + json.dumps(vocab)
        return {"name": self.name, "vocab_size": self.vocab_size,
                "bos_token_id": self.bos_token_id, "eot_token_id": self.eot_token_id,
                "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}

    def save(self, path: Path) -> bool:
        """Write ``tokenizer.json`` at ``path``; False when there is no fast backend to save."""
        if self.fast is None:
            return False
        self.fast.save(str(path))
        return True


def train_bpe(texts: Iterable[str], vocab_size: int, length: int | None = None) -> Tokenizer:
    """Train a byte-level BPE whose vocabulary (``<|endoftext|>`` included) is ``vocab_size``.

    All 256 bytes are in the initial alphabet, so any text encodes without unknown tokens.
    ``length`` (the number of texts) only drives the trainer's progress accounting.
    """
    fast = tokenizers.Tokenizer(models.BPE())
    fast.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    fast.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    fast.train_from_iterator(texts, trainer=trainer, length=length)
    size = fast.get_vocab_size(with_added_tokens=True)
    if size < vocab_size:
        log.warning("the corpus only supports %d BPE tokens, fewer than data.vocab_size=%d",
                    size, vocab_size)
    eot = fast.token_to_id(END_OF_TEXT)
    return Tokenizer(f"BPE {size}", size, eot, eot, fast=fast)


def load_tokenizer(spec: str) -> Tokenizer:
    """A ``tokenizer.json`` file, or a folder or hub name for ``AutoTokenizer``.

    ``spec`` is ``data.tokenizer``; ``bpe`` is handled by the cache, which trains one.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return load_tokenizer_file(path)
    if path.is_dir() or not _looks_like_path(spec):
        return _load_pretrained(spec)
    raise DataError(f"tokenizer file '{spec}' does not exist; set data.tokenizer to bpe, a "
                    f"tokenizer.json path or a Hugging Face tokenizer name")


def load_tokenizer_file(path: str | Path, name: str | None = None,
                        bos_token_id: int | None = None,
                        eot_token_id: int | None = None) -> Tokenizer:
    """A ``tokenizer.json``; BOS/EOT ids are given (from a cache) or guessed from its specials."""
    path = Path(path)
    try:
        fast = tokenizers.Tokenizer.from_file(str(path))
    except Exception as err:  # noqa: BLE001 - the Rust side raises plain Exceptions
        raise DataError(f"'{path}' is not a valid tokenizer.json ({str(err)[:200]}); give a file "
                        f"saved by tokenizers.Tokenizer.save or set data.tokenizer=bpe") from None
    specials = {tok.content: i for i, tok in fast.get_added_tokens_decoder().items()
                if tok.special}
    if bos_token_id is None:
        bos_token_id = _first_present(_BOS_NAMES, specials, _first_present(_EOS_NAMES, specials))
    if eot_token_id is None:
        eot_token_id = _first_present(_EOS_NAMES, specials, bos_token_id)
    return Tokenizer(name or path.name, fast.get_vocab_size(with_added_tokens=True),
                     bos_token_id, eot_token_id, fast=fast)


def _load_pretrained(spec: str) -> Tokenizer:
    """``transformers.AutoTokenizer`` on a local folder or a hub name (cached when offline)."""
    try:
        from transformers import AutoTokenizer  # slow to import; only this path needs it

        auto = AutoTokenizer.from_pretrained(spec)
    except Exception as err:  # noqa: BLE001 - hub, network and format errors alike
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise DataError(f"could not load tokenizer '{spec}' ({first}); set data.tokenizer to bpe, "
                        f"a tokenizer.json path or a Hugging Face tokenizer name "
                        f"(offline, it must already be cached)") from None
    bos = auto.bos_token_id if auto.bos_token_id is not None else auto.eos_token_id
    eot = auto.eos_token_id if auto.eos_token_id is not None else auto.bos_token_id
    backend = getattr(auto, "backend_tokenizer", None) if auto.is_fast else None
    fast = None
    if backend is not None:  # a private copy without padding or truncation settings
        fast = tokenizers.Tokenizer.from_str(backend.to_str())
        fast.no_padding()
        fast.no_truncation()
    name = Path(spec).expanduser().name if Path(spec).expanduser().is_dir() else spec
    return Tokenizer(name, len(auto), bos, eot,
                     fast=fast, slow=None if fast is not None else auto)


def _first_present(names: Sequence[str], ids: dict[str, int],
                   default: int | None = None) -> int | None:
    return next((ids[n] for n in names if n in ids), default)


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".json") or spec.startswith((".", "/", "~")) or spec.count("/") > 1
