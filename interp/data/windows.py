"""Windows of a fixed length in a split's tokens, numbered so they can be sampled uniformly.

A split is a flat token array plus document offsets. :class:`DocumentWindows` numbers every
window that lies inside one document (``packing=document``); :class:`StreamWindows` numbers
every window of the documents joined by an end-of-text token (``packing=concatenate``). Both
map a batch of window numbers to a batch of token rows with vectorised numpy, reading only
the needed tokens from the memory-mapped array.
"""

from __future__ import annotations

import numpy as np


class DocumentWindows:
    """Every window of ``length`` tokens lying inside one document.

    Window numbers run over documents in order: document d (with ``n_d >= length`` tokens)
    owns ``n_d - length + 1`` consecutive numbers, so a uniform number is a uniform window.
    """

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, length: int) -> None:
        # tokens: [n_tokens]; offsets: [n_docs + 1] int64
        self.tokens, self.length = tokens, length
        lengths = np.diff(offsets)
        self.longest = int(lengths.max()) if len(lengths) else 0
        fits = lengths >= length
        self._starts = offsets[:-1][fits]  # [n_fit] first token of each usable document
        self._counts = lengths[fits] - length + 1  # [n_fit] windows per usable document
        self._ends = np.cumsum(self._counts)  # [n_fit] one past each document's last number
        self.total = int(self._ends[-1]) if len(self._ends) else 0
        # Share of the tokens in documents that hold a window: the rest is never sampled.
        self.covered = float(lengths[fits].sum() / max(1, lengths.sum()))

    def gather(self, index: np.ndarray) -> np.ndarray:
        """Rows [batch, length] int64 of the windows numbered ``index`` [batch]."""
        doc = np.searchsorted(self._ends, index, side="right")  # [batch]
        first = self._starts[doc] + index - (self._ends[doc] - self._counts[doc])  # [batch]
        return np.asarray(self.tokens[first[:, None] + np.arange(self.length)], dtype=np.int64)


class StreamWindows:
    """Every window of ``length`` tokens in the documents joined by ``separator``.

    The stream is ``doc_0 sep doc_1 sep ... doc_last`` (no separator when it is None), so
    window k starts at stream position k. Documents are stored back to back, so a stream
    position maps to a document by a sorted search over the documents' stream starts.
    """

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, length: int,
                 separator: int | None) -> None:
        self.tokens, self.length, self.separator = tokens, length, separator
        self._offsets = offsets[:-1]  # [n_docs] first token of each document in ``tokens``
        self._lengths = np.diff(offsets)  # [n_docs]
        gap = 0 if separator is None else 1
        self._stream_starts = self._offsets + gap * np.arange(len(self._offsets))  # [n_docs]
        self.stream_length = int(offsets[-1]) + gap * max(0, len(self._offsets) - 1)
        self.longest = self.stream_length
        self.total = max(0, self.stream_length - length + 1)

    def gather(self, index: np.ndarray) -> np.ndarray:
        """Rows [batch, length] int64 starting at stream positions ``index`` [batch]."""
        position = index[:, None] + np.arange(self.length)  # [batch, length]
        if self.separator is None:
            return np.asarray(self.tokens[position], dtype=np.int64)
        doc = np.searchsorted(self._stream_starts, position, side="right") - 1  # [batch, length]
        local = position - self._stream_starts[doc]
        is_separator = local >= self._lengths[doc]
        source = self._offsets[doc] + np.minimum(local, self._lengths[doc] - 1)
        rows = np.asarray(self.tokens[source], dtype=np.int64)
        rows[is_separator] = self.separator
        return rows
