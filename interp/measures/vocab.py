"""Which tokens a head can be asked to copy: the vocabulary the copying scores are computed over.

A head's full OV circuit ``W_E W_V W_O W_U`` is a vocab x vocab matrix, and its eigenvalue
copying score sums over every token. Tokens that never occur as ordinary content distort that
sum: trained models push the BOS token's own logit far down (on trained smeared-key Markov
models the BOS->BOS entry is about -379 where ordinary tokens' diagonal averages +5.6), which
alone turned a head that copies every ordinary token into an "anti-copying" head (score -0.36
over the whole vocabulary, +0.98 without BOS). Never-seen tokens keep their random initial
embeddings and add noise. So the copying measures take a *copyable set*, built here by one rule:

**COPYABLE_RULE = "seen_minus_special"**: the ids ``v`` with ``token_counts[v] >= 1`` in the
training split (a token the model has seen at least once) that are not special tokens. Special
tokens are the dataset's BOS (also an id added past a pre-tokenised vocabulary), its end-of-text
separator, the tokenizer's BOS and EOT/EOS, and every token the tokenizer itself marks special
(pad, unk, mask, ``<|endoftext|>``, ...). For Markov chains that is every state (BOS excluded).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

COPYABLE_RULE = "seen_minus_special"


def copyable_tokens(token_counts: Int[np.ndarray, "vocab"],
                    special_ids: Iterable[int | None] = ()) -> Int[Tensor, "n"]:
    """The copyable set under :data:`COPYABLE_RULE`: ids seen at least once, minus specials.

    Args:
        token_counts: [vocab] count of each id in the training data (``data.token_counts()``).
        special_ids: ids to leave out whatever their count (BOS, EOS/EOT, pad, ...); ``None``
            entries and ids outside the vocabulary are ignored.

    Returns: the ids ``v`` with ``token_counts[v] >= 1`` and ``v`` not special, ascending,
    as an int64 CPU tensor [n] (possibly empty).
    """
    counts = np.asarray(token_counts).reshape(-1)
    keep = counts >= 1
    for i in special_ids:
        if i is not None and 0 <= int(i) < keep.size:
            keep[int(i)] = False
    return torch.from_numpy(np.flatnonzero(keep).astype(np.int64))


def special_token_ids(data: Any) -> list[int]:
    """Every special id of a dataset (a :class:`interp.data.TokenDataset`), sorted.

    Reads, where present: ``data.bos_token_id``; the end-of-text separator recorded in
    ``data.fingerprint["eot_token_id"]``; ``data.tokenizer``'s ``bos_token_id`` and
    ``eot_token_id``; and every added token its ``tokenizers`` backend marks special
    (``get_added_tokens_decoder``) or, for a ``transformers`` tokenizer without one,
    ``all_special_ids``. Datasets without a tokenizer (Markov chains, bare token arrays)
    contribute only their BOS and separator.
    """
    ids: set[int | None] = {getattr(data, "bos_token_id", None)}
    fingerprint = getattr(data, "fingerprint", None) or {}
    ids.add(fingerprint.get("eot_token_id"))
    tokenizer = getattr(data, "tokenizer", None)
    if tokenizer is not None:
        ids.update((getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eot_token_id", None)))
        fast = getattr(tokenizer, "fast", None)
        slow = getattr(tokenizer, "slow", None)
        if fast is not None:
            ids.update(i for i, tok in fast.get_added_tokens_decoder().items() if tok.special)
        elif slow is not None:
            ids.update(getattr(slow, "all_special_ids", ()))
    return sorted(int(i) for i in ids if i is not None)


def dataset_copyable_tokens(data: Any) -> Int[Tensor, "n"]:
    """:func:`copyable_tokens` of a dataset: its training token counts minus its special ids."""
    return copyable_tokens(data.token_counts(), special_token_ids(data))
