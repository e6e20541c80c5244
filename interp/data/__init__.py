"""Token data for training and measuring: corpora, tokenizers, the token cache, Markov chains.

:func:`load_dataset` turns a :class:`~interp.config.DataConfig` and a context length into a
:class:`TokenDataset`: a corpus tokenised once into an on-disk cache
(:class:`CachedTextDataset`), or synthetic in-context Markov chains (:class:`MarkovDataset`).
"""

from __future__ import annotations

from interp.config import DataConfig
from interp.data.cache import TokenCache, cache_root, open_cache
from interp.data.dataset import TokenDataset
from interp.data.markov import MarkovDataset
from interp.data.sources import corpus_fingerprint, iter_documents
from interp.data.text import CachedTextDataset
from interp.data.tokenizer import Tokenizer, load_tokenizer, train_bpe
from interp.errors import DataError

__all__ = ["CachedTextDataset", "MarkovDataset", "TokenCache", "TokenDataset", "Tokenizer",
           "cache_root", "corpus_fingerprint", "iter_documents", "load_dataset", "load_tokenizer",
           "open_cache", "train_bpe"]


def load_dataset(cfg: DataConfig, n_ctx: int) -> TokenDataset:
    """The dataset ``cfg`` describes, with rows of ``n_ctx`` tokens (BOS included).

    Text sources are tokenised on first use and cached (see :mod:`interp.data.cache`);
    later calls only fingerprint the corpus and map the cached arrays.
    """
    if n_ctx < 1 + cfg.prepend_bos:
        raise DataError(f"model.n_ctx={n_ctx} leaves no room for tokens"
                        f"{' after the BOS' if cfg.prepend_bos else ''}; raise model.n_ctx")
    if cfg.source == "markov":
        return MarkovDataset(cfg, n_ctx)
    return CachedTextDataset(cfg, n_ctx, open_cache(cfg))
