"""The dictd reader and the ``dictd`` source, on dictionaries the tests build (gzip and plain)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from interp.config import DataConfig
from interp.data import dictd
from interp.data.sources import iter_documents
from interp.errors import DataError

ENTRIES = [("00-database-short", "A test dictionary\n"),
           ("alpha", "alpha\n   The first letter; see {beta}.\n"),
           ("beta", "beta\n   The second letter, naïve café.\n"),
           ("gamma", "gamma\n   The third.\n")]


def build(folder: Path, name: str = "test", compress: bool = True,
          synonyms: dict[str, str] | None = None) -> Path:
    """A dictd dictionary of ENTRIES (index lines in headword order, as dictfmt writes them)."""
    data, lines, offset = b"", [], 0
    spans = {}
    for headword, text in ENTRIES:
        raw = text.encode()
        spans[headword] = (offset, len(raw))
        data += raw
        offset += len(raw)
    for alias, target in (synonyms or {}).items():
        spans[alias] = spans[target]
    for headword in sorted(spans):
        start, length = spans[headword]
        lines.append(f"{headword}\t{dictd.encode_number(start)}\t{dictd.encode_number(length)}")
    index = folder / f"{name}.index"
    index.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if compress:
        with gzip.open(folder / f"{name}.dict.dz", "wb") as handle:
            handle.write(data)
    else:
        (folder / f"{name}.dict").write_bytes(data)
    return index


def test_numbers_are_dictds_base64_most_significant_first():
    # 'K5' is 10 * 64 + 57: a wrong alphabet or digit order gives another number.
    assert dictd.decode_number("K5") == 697
    assert dictd.decode_number("A") == 0 and dictd.decode_number("/") == 63
    assert dictd.decode_number("BA") == 64
    for value in (0, 1, 63, 64, 4095, 4096, 2 ** 31 + 7):
        assert dictd.decode_number(dictd.encode_number(value)) == value
    for bad in ("", "a-b", "!"):
        with pytest.raises(ValueError):
            dictd.decode_number(bad)


@pytest.mark.parametrize("compress", [True, False])
def test_entries_once_each_in_file_order_without_metadata(tmp_path, compress):
    # "aardvark" sorts first and points at beta's entry: beta must still come second (file
    # order) and only once, under the first headword that names it.
    index = build(tmp_path, compress=compress, synonyms={"aardvark": "beta", "zeta": "gamma"})
    got = list(dictd.entries(index))
    assert [text for _, text in got] == [text for _, text in ENTRIES[1:]]
    assert [word for word, _ in got] == ["alpha", "aardvark", "gamma"]
    assert "naïve café" in got[1][1]


def test_dictd_source_names_documents_by_file_and_headword(tmp_path):
    build(tmp_path, "one")
    build(tmp_path, "two", compress=False)
    docs = list(iter_documents(DataConfig(source="dictd", path=str(tmp_path))))
    assert [name for name, _ in docs] == ["one.index:alpha", "one.index:beta", "one.index:gamma",
                                          "two.index:alpha", "two.index:beta", "two.index:gamma"]


def test_broken_dictionaries_are_one_data_error(tmp_path):
    index = build(tmp_path)
    (tmp_path / "test.dict.dz").unlink()
    with pytest.raises(DataError, match="no test.dict.dz or test.dict"):
        list(dictd.entries(index))
    index = build(tmp_path)
    index.write_text("alpha\tA\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"test.index:1: a dictd index line"):
        list(dictd.entries(index))
    index.write_text("alpha\tA\t-\n", encoding="utf-8")
    with pytest.raises(DataError, match="not a dictd base-64 number"):
        list(dictd.entries(index))
    index.write_text("alpha\tA\tBAAA\n", encoding="utf-8")
    with pytest.raises(DataError, match="points past the end"):
        list(dictd.entries(index))
    (tmp_path / "test.dict.dz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read the dictd data file"):
        list(dictd.entries(index))
