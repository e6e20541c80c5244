"""The entries of a dictd dictionary (``NAME.index`` + ``NAME.dict[.dz]``), as documents.

Debian packages dictionaries of English prose in this format (FOLDOC in ``dict-foldoc``, the
Jargon File in ``dict-jargon``), which makes them corpora a fresh machine can install offline.
The format (dictd(8), dictfmt(1)): the ``.index`` file has one line per headword,
``headword TAB offset TAB length``, where offset and length count bytes of the uncompressed
``.dict`` file and are written in dictd's base-64 digits (``A-Z a-z 0-9 + /``, most
significant first). The ``.dict.dz`` file is gzip (dictzip only adds a seek table in the gzip
header, which plain gzip ignores). Several headwords may point at the same entry (synonyms);
each entry is yielded once, in file order. Entries whose headword starts with ``00-database``
are the dictionary's own metadata (its name, URL and licence) and are skipped.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Iterator

from interp.errors import DataError

_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_VALUE = {c: i for i, c in enumerate(_DIGITS)}
_METADATA = "00-database"


def decode_number(text: str) -> int:
    """dictd's base-64 number: ``sum(value(c_i) * 64**(n-1-i))``; "" and bad digits refused."""
    if not text or any(c not in _VALUE for c in text):
        raise ValueError(f"'{text}' is not a dictd base-64 number")
    value = 0
    for c in text:
        value = value * 64 + _VALUE[c]
    return value


def encode_number(value: int) -> str:
    """The inverse of :func:`decode_number` (for building dictionaries in tests)."""
    digits = _DIGITS[value % 64]
    while value >= 64:
        value //= 64
        digits = _DIGITS[value % 64] + digits
    return digits


def dict_file(index: Path) -> Path:
    """The data file beside ``index``: ``NAME.dict.dz`` or else ``NAME.dict``."""
    for suffix in (".dict.dz", ".dict"):
        candidate = index.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise DataError(f"no {index.stem}.dict.dz or {index.stem}.dict beside '{index}'; "
                    f"a dictd dictionary is the .index file and its .dict(.dz) file")


def entries(index: Path) -> Iterator[tuple[str, str]]:
    """``(headword, text)`` of each entry of the dictionary whose index is ``index``, in file order.

    The headword is the first index line that points at the entry; the text is the entry's
    bytes decoded as UTF-8 (undecodable bytes replaced).
    """
    spans = _spans(index)
    data = _read_data(dict_file(index))
    for (offset, length), headword in spans.items():
        if offset + length > len(data):
            raise DataError(f"'{index}' points past the end of its data file ({offset + length} > "
                            f"{len(data)} bytes); the two files do not belong together")
        yield headword, data[offset:offset + length].decode("utf-8", errors="replace")


def _spans(index: Path) -> dict[tuple[int, int], str]:
    """(offset, length) -> first headword, sorted by offset; metadata entries left out."""
    spans: dict[tuple[int, int], str] = {}
    try:
        lines = index.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise DataError(f"cannot read the dictd index '{index}' ({err.strerror})") from None
    for lineno, line in enumerate(lines, 1):
        parts = line.split("\t")
        if len(parts) < 3:
            raise DataError(f"{index}:{lineno}: a dictd index line is 'headword TAB offset TAB "
                            f"length', not {line[:60]!r}")
        try:
            span = (decode_number(parts[1]), decode_number(parts[2]))
        except ValueError as err:
            raise DataError(f"{index}:{lineno}: {err}") from None
        if not parts[0].startswith(_METADATA):
            spans.setdefault(span, parts[0])
    return dict(sorted(spans.items()))


def _read_data(path: Path) -> bytes:
    try:
        if path.suffix == ".dz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read the dictd data file '{path}' ({err}); "
                        f"reinstall the dictionary's package") from None
