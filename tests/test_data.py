"""Tests of interp.data: sources, tokenizers, the token cache, batches and Markov chains.

Every corpus is a few KB made in tmp_path, every cache lives in tmp_path, and BPE
vocabularies are tiny, so the whole file runs in seconds.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import interp.data.cache as cache_module
from interp.config import DataConfig
from interp.data import (CachedTextDataset, MarkovDataset, TokenDataset, corpus_fingerprint,
                         iter_documents, load_dataset, load_tokenizer, train_bpe)
from interp.data.cache import heldout_names, token_dtype
from interp.data.markov import sample_chains, sample_log_gamma
from interp.errors import DataError

WORDS = ("def class return self value index items yield lambda import from with as for in "
         "while if else elif try except finally raise print len range list dict").split()


# --------------------------------------------------------------------------- helpers

def code_text(seed: int, lines: int = 60) -> str:
    """A few KB of Python-looking text, different for each seed."""
    rng = random.Random(seed)
    out = []
    for i in range(lines):
        indent = "    " * rng.randint(0, 2)
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7)))
        out.append(f"{indent}{words}(x{i % 7}, {rng.randint(0, 99)}):")
    return "\n".join(out) + "\n"


def write_corpus(folder: Path, n_docs: int = 12, lines: int = 60) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        (folder / f"doc{i:02d}.py").write_text(code_text(i, lines))
    return folder


def files_cfg(tmp_path: Path, corpus: Path | None = None, **kw) -> DataConfig:
    corpus = corpus or write_corpus(tmp_path / "corpus")
    options = dict(source="files", path=str(corpus), vocab_size=300, heldout_fraction=0.2,
                   cache_dir=str(tmp_path / "cache"))
    options.update(kw)
    return DataConfig(**options)


def tokens_cfg(tmp_path: Path, array: np.ndarray, **kw) -> DataConfig:
    path = tmp_path / "tokens.npy"
    np.save(path, array)
    options = dict(source="tokens", path=str(path), heldout_fraction=0.2,
                   cache_dir=str(tmp_path / "cache"))
    options.update(kw)
    return DataConfig(**options)


def blocks(n_docs: int, length: int) -> np.ndarray:
    """[n_docs, length] ids, row d holding d*length .. (d+1)*length - 1 (its doc is id // length)."""
    return np.arange(n_docs * length, dtype=np.int32).reshape(n_docs, length)


def assert_one_line_error(err: pytest.ExceptionInfo, *needles: str) -> None:
    message = str(err.value)
    assert "\n" not in message and message
    for needle in needles:
        assert needle in message, (needle, message)


# --------------------------------------------------------------------------- tokenizers

def test_bpe_round_trips_unicode_and_has_one_special_token():
    texts = [code_text(i) for i in range(8)]
    tok = train_bpe(texts, vocab_size=300)
    assert tok.vocab_size == 300
    assert tok.bos_token_id == tok.eot_token_id == tok.fast.token_to_id("<|endoftext|>")
    for text in ["def f(x):\n    return x  # ok", "héllo wörld — 日本語 🎉 \t\r\n", "ümlaut ß ∑"]:
        ids = tok.encode(text)
        assert all(0 <= i < 300 for i in ids)
        assert tok.decode(ids) == text
    assert tok.encode_batch(["ab", "é"]) == [tok.encode("ab"), tok.encode("é")]
    assert len(tok.fingerprint["sha256"]) == 64


def test_tokenizer_json_file_and_pretrained_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    tok = train_bpe([code_text(i) for i in range(4)], vocab_size=280)
    tok.save(tmp_path / "tokenizer.json")
    from_file = load_tokenizer(str(tmp_path / "tokenizer.json"))
    assert from_file.vocab_size == tok.vocab_size and from_file.bos_token_id == tok.bos_token_id
    assert from_file.fingerprint["sha256"] == tok.fingerprint["sha256"]

    from transformers import PreTrainedTokenizerFast

    PreTrainedTokenizerFast(tokenizer_object=tok.fast, bos_token="<|endoftext|>",
                            eos_token="<|endoftext|>").save_pretrained(tmp_path / "hf_tok")
    pretrained = load_tokenizer(str(tmp_path / "hf_tok"))
    assert pretrained.bos_token_id == tok.bos_token_id
    assert pretrained.encode("return self.value") == tok.encode("return self.value")

    cfg = files_cfg(tmp_path, tokenizer=str(tmp_path / "hf_tok"))
    ds = load_dataset(cfg, 32)
    assert ds.vocab_size == tok.vocab_size and ds.bos_token_id == tok.bos_token_id
    assert (ds.cache_path / "tokenizer.json").is_file()


def test_tokenizer_errors(tmp_path, monkeypatch):
    with pytest.raises(DataError) as err:
        load_tokenizer(str(tmp_path / "missing" / "tokenizer.json"))
    assert_one_line_error(err, "does not exist", "data.tokenizer")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError) as err:
        load_tokenizer(str(bad))
    assert_one_line_error(err, "not a valid tokenizer.json")
    # A tokenizer with no special token cannot supply a BOS.
    import tokenizers

    vocab = {"a": 0, "[UNK]": 1}
    plain = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    plain.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    plain.save(str(tmp_path / "plain.json"))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text("a a a " * 200)
    cfg = files_cfg(tmp_path, tmp_path / "c", tokenizer=str(tmp_path / "plain.json"))
    with pytest.raises(DataError) as err:
        load_dataset(cfg, 8)
    assert_one_line_error(err, "prepend_bos=false")


# --------------------------------------------------------------------------- sources

def test_files_source_file_directory_and_glob(tmp_path):
    corpus = tmp_path / "c"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "b.txt").write_text("bee text")
    (corpus / "sub" / "a.py").write_text("print('a')")
    (corpus / "blob.bin").write_bytes(b"\x00\x01binary")
    (corpus / "empty.txt").write_text("")
    (corpus / ".hidden").write_text("secret")

    def docs(path):
        return list(iter_documents(DataConfig(source="files", path=str(path))))

    assert docs(corpus / "b.txt") == [("b.txt", "bee text")]
    assert docs(corpus) == [("b.txt", "bee text"), ("sub/a.py", "print('a')")]
    assert docs(f"{corpus}/**/*.py") == [(f"{corpus}/sub/a.py", "print('a')")]
    assert [n for n, _ in iter_documents(DataConfig(source="files", path=str(corpus),
                                                    max_bytes=10))] == ["b.txt", "sub/a.py"]
    fp = corpus_fingerprint(DataConfig(source="files", path=str(corpus), max_bytes=10))
    assert fp["bytes"] == 10 and fp["documents"] == 2


def test_files_source_warns_once_about_text_that_is_not_utf8(tmp_path, caplog):
    """Issue 12: latin-1 files were decoded with replacement characters without a word. One
    warning names the first three files and counts the rest; valid UTF-8 gives none."""
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "good.txt").write_text("caf\u00e9 ok", encoding="utf-8")
    for i in range(5):
        (corpus / f"latin{i}.txt").write_bytes("caf\u00e9".encode("latin-1"))
    with caplog.at_level("WARNING", logger="interp"):
        docs = dict(iter_documents(DataConfig(source="files", path=str(corpus))))
    assert docs["good.txt"] == "caf\u00e9 ok" and docs["latin0.txt"] == "caf\ufffd"
    warnings = [r.getMessage() for r in caplog.records if "not valid UTF-8" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("5 file(s)") and "and 2 more" in warnings[0]
    assert "latin0.txt" in warnings[0] and "iconv" in warnings[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="interp"):  # a corpus cut short still says so
        list(iter_documents(DataConfig(source="files", path=str(corpus), max_bytes=12)))
    assert [r for r in caplog.records if "1 file(s)" in r.getMessage()]
    caplog.clear()
    with caplog.at_level("WARNING", logger="interp"):
        list(iter_documents(DataConfig(source="files", path=str(corpus / "good.txt"))))
    assert not [r for r in caplog.records if "UTF-8" in r.getMessage()]


def test_jsonl_source_and_its_errors(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "first doc"}\n\n{"text": "second", "id": 2}\n')
    cfg = DataConfig(source="jsonl", path=str(path))
    assert [t for _, t in iter_documents(cfg)] == ["first doc", "second"]
    path.write_text('{"text": "ok"}\n{"text": "fine"}\nnot json at all\n')
    with pytest.raises(DataError) as err:
        list(iter_documents(cfg))
    assert_one_line_error(err, "line 3", str(path), "JSON object")
    path.write_text('{"body": "no text field"}\n')
    with pytest.raises(DataError) as err:
        list(iter_documents(cfg))
    assert_one_line_error(err, "line 1", "body", "data.text_field")


def test_hf_source_from_save_to_disk(tmp_path):
    import datasets

    rows = {"text": [code_text(i) for i in range(6)], "n": list(range(6))}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "single"))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows),
                          "test": datasets.Dataset.from_dict({"text": ["x"], "n": [0]})}
                         ).save_to_disk(str(tmp_path / "dict"))
    docs = list(iter_documents(DataConfig(source="hf", path=str(tmp_path / "single"))))
    assert [t for _, t in docs] == rows["text"]
    docs = list(iter_documents(DataConfig(source="hf", path=str(tmp_path / "dict"), split="test")))
    assert docs == [("row000000000", "x")]
    with pytest.raises(DataError) as err:
        list(iter_documents(DataConfig(source="hf", path=str(tmp_path / "dict"), split="nope")))
    assert_one_line_error(err, "data.split", "train")
    with pytest.raises(DataError) as err:
        list(iter_documents(DataConfig(source="hf", path=str(tmp_path / "single"),
                                       text_field="content")))
    assert_one_line_error(err, "content", "text, n", "data.text_field")


def test_hf_source_through_load_dataset_on_a_data_folder(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    folder = tmp_path / "raw"
    folder.mkdir()
    texts = [code_text(i) for i in range(5)]
    (folder / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    cfg = DataConfig(source="hf", path=str(folder), vocab_size=280, heldout_fraction=0.2,
                     cache_dir=str(tmp_path / "cache"))
    assert [t for _, t in iter_documents(cfg)] == texts
    ds = load_dataset(cfg, 16)
    assert ds.train_batch(0, 2, 0).shape == (2, 16)
    with pytest.raises(DataError) as err:
        list(iter_documents(DataConfig(source="hf", path="no-such-user/no-such-dataset")))
    assert_one_line_error(err, "no-such-user/no-such-dataset", "data.path")


def test_stdlib_source_reads_real_files_and_fingerprints_the_python_version():
    cfg = DataConfig(max_bytes=200_000)
    docs = list(iter_documents(cfg))
    assert docs and all(name.endswith(".py") for name, _ in docs)
    assert not any("site-packages" in n or "dist-packages" in n for n, _ in docs)
    assert sum(len(t.encode()) for _, t in docs) == 200_000
    assert [n for n, _ in docs] == sorted(n for n, _ in docs)
    fp = corpus_fingerprint(cfg)
    import sys

    assert fp["kind"] == "stdlib" and fp["python"] == ".".join(map(str, sys.version_info[:3]))
    assert fp["documents"] == len(docs) and fp["bytes"] == 200_000 and len(fp["sha256"]) == 64
    json.dumps(fp)


def test_tokens_source_1d_is_one_stream_split_at_its_tail(tmp_path):
    stream = np.arange(1000, dtype=np.uint16) % 50
    ds = load_dataset(tokens_cfg(tmp_path, stream, packing="concatenate"), 16)
    assert ds.vocab_size == 51 and ds.bos_token_id == 50  # ids 0..49, plus a BOS
    assert ds.fingerprint["heldout"]["tokens"] == 200 and ds.fingerprint["train"]["tokens"] == 800
    batch = ds.train_batch(3, 8, 0)
    assert (batch[:, 0] == 50).all()
    assert ((batch[:, 2:] - batch[:, 1:-1]) % 50 == 1).all()  # consecutive stream positions
    assert ds.token_counts().sum() == 800 and ds.token_counts()[50] == 0
    assert ds.decode([50, 3, 4]) == "<|bos|> 3 4"
    with pytest.raises(DataError) as err:
        ds.encode("text")
    assert_one_line_error(err, "data.tokenizer")


def test_tokens_source_2d_rows_are_documents(tmp_path):
    ds = load_dataset(tokens_cfg(tmp_path, blocks(20, 40), prepend_bos=False), 10)
    assert ds.vocab_size == 800 and ds.bos_token_id is None
    batch = ds.train_batch(0, 64, 1).numpy()
    assert batch.shape == (64, 10)
    assert (np.diff(batch, axis=1) == 1).all()  # each row is one slice of one document


def test_tokens_source_errors(tmp_path):
    cases = [(np.ones(10, dtype=np.float32), ("float32", "integer dtype")),
             (np.array([1, -2, 3], dtype=np.int64), ("negative", ">= 0")),
             (np.array([1, 2**32], dtype=np.int64), ("uint32", "2**32")),
             (np.zeros((2, 2, 2), dtype=np.int32), ("shape", "2-D"))]
    for array, needles in cases:
        with pytest.raises(DataError) as err:
            load_dataset(tokens_cfg(tmp_path, array), 4)
        assert_one_line_error(err, *needles)
    tok = train_bpe([code_text(1)], vocab_size=280)
    tok.save(tmp_path / "tok.json")
    with pytest.raises(DataError) as err:
        load_dataset(tokens_cfg(tmp_path, np.array([1, 5000] * 50, dtype=np.int32),
                                tokenizer=str(tmp_path / "tok.json")), 4)
    assert_one_line_error(err, "5000", "data.tokenizer")
    with pytest.raises(DataError) as err:
        token_dtype(2**32 + 1)
    assert_one_line_error(err, "uint32")
    (tmp_path / "notnpy.npy").write_text("hello")
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(source="tokens", path=str(tmp_path / "notnpy.npy")), 4)
    assert_one_line_error(err, "numpy.save")


# --------------------------------------------------------------------------- cache

def test_cache_is_built_once_and_reused(tmp_path, monkeypatch):
    cfg = files_cfg(tmp_path)
    first = load_dataset(cfg, 32)
    meta = first.cache_path / "meta.json"
    stamp = meta.stat().st_mtime_ns
    assert sorted(p.name for p in first.cache_path.iterdir()) == [
        "counts.npy", "heldout.bin", "heldout_docs.npy", "meta.json", "tokenizer.json",
        "train.bin", "train_docs.npy"]

    def no_training(*args, **kwargs):
        raise AssertionError("the tokenizer was trained again")

    monkeypatch.setattr(cache_module, "train_bpe", no_training)
    second = load_dataset(cfg, 32)
    assert second.cache_path == first.cache_path and meta.stat().st_mtime_ns == stamp
    assert second.fingerprint == first.fingerprint
    assert torch.equal(second.train_batch(5, 4, 0), first.train_batch(5, 4, 0))
    assert isinstance(second.cache.train, np.memmap)
    assert second.cache.train.dtype == np.uint16
    # Changing the corpus changes the key.
    (tmp_path / "corpus" / "doc00.py").write_text(code_text(99))
    with pytest.raises(AssertionError, match="trained again"):
        load_dataset(cfg, 32)


def test_incomplete_cache_is_rebuilt(tmp_path):
    cfg = files_cfg(tmp_path)
    first = load_dataset(cfg, 32)
    expected = first.heldout_batch(4)
    (first.cache_path / "meta.json").unlink()
    (first.cache_path / "train.bin").write_bytes(b"")
    again = load_dataset(cfg, 32)
    assert (again.cache_path / "meta.json").is_file()
    assert torch.equal(again.heldout_batch(4), expected)
    assert not [p for p in again.cache_path.parent.iterdir() if p.name.startswith(".build")]


def test_concurrent_loads_build_the_cache_once(tmp_path, monkeypatch):
    import threading

    calls = []

    def counting_train_bpe(*args, **kwargs):
        calls.append(1)
        return train_bpe(*args, **kwargs)

    monkeypatch.setattr(cache_module, "train_bpe", counting_train_bpe)
    cfg = files_cfg(tmp_path)
    results = []
    threads = [threading.Thread(target=lambda: results.append(load_dataset(cfg, 32)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and len(calls) == 1
    assert len({tuple(r.heldout_batch(4).flatten().tolist()) for r in results}) == 1


def test_cache_root_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "env_cache"))
    cfg = files_cfg(tmp_path, cache_dir="")
    ds = load_dataset(cfg, 16)
    assert ds.cache_path.parent.parent == tmp_path / "env_cache"


def test_heldout_names_rule():
    names = [f"d{i}" for i in range(200)]
    held = heldout_names(names, 0.1)
    assert 5 < len(held) < 40 and held == heldout_names(list(reversed(names)), 0.1)
    assert heldout_names(["only"], 0.1) == set()
    assert len(heldout_names(["a", "b"], 0.01)) == 1  # at least one held out...
    assert len(heldout_names(["a", "b"], 0.49)) <= 1  # ...and at least one kept


# --------------------------------------------------------------------------- batches

def test_train_batch_is_a_function_of_seed_and_step(tmp_path):
    ds = load_dataset(files_cfg(tmp_path), 32)
    assert isinstance(ds, TokenDataset) and isinstance(ds, CachedTextDataset)
    a = ds.train_batch(7, 8, 0)
    assert a.shape == (8, 32) and a.dtype == torch.long
    assert torch.equal(a, ds.train_batch(7, 8, 0))
    assert not torch.equal(a, ds.train_batch(8, 8, 0))
    assert not torch.equal(a, ds.train_batch(7, 8, 1))
    assert (a[:, 0] == ds.bos_token_id).all() and (a[:, 1:] != ds.bos_token_id).all()
    assert int(a.max()) < ds.vocab_size
    no_bos = load_dataset(files_cfg(tmp_path, prepend_bos=False), 32)
    assert no_bos.bos_token_id is None and no_bos.train_batch(0, 4, 0).shape == (4, 32)


def test_document_windows_stay_inside_one_document_and_skip_heldout(tmp_path):
    # Each document is made of one letter only, so a window's letters name its document.
    corpus = tmp_path / "letters"
    corpus.mkdir()
    rng = random.Random(0)
    for i, letter in enumerate("abcdefghij"):
        words = (letter * rng.randint(1, 4) for _ in range(300))
        (corpus / f"{letter}.txt").write_text(" ".join(words))
    ds = load_dataset(files_cfg(tmp_path, corpus, vocab_size=270, heldout_fraction=0.3), 24)

    def letters(batch):
        return [set(ds.decode(row[1:].tolist())) - {" "} for row in batch]

    train = letters(ds.train_batch(0, 200, 0))
    held = letters(ds.heldout_batch(50))
    assert all(len(s) == 1 for s in train + held)
    train_letters, held_letters = set().union(*train), set().union(*held)
    assert held_letters and not train_letters & held_letters
    assert len(train_letters) >= 5


def test_concatenate_windows_cross_documents_through_the_separator(tmp_path):
    ds = load_dataset(tokens_cfg(tmp_path, blocks(30, 6), packing="concatenate"), 16)
    sep = ds.bos_token_id
    assert sep == 180
    batch = ds.train_batch(0, 32, 0).numpy()[:, 1:]
    assert (batch == sep).any()  # windows of 15 in documents of 6 must cross a boundary
    for row in batch:
        pieces = [p for p in np.split(row, np.flatnonzero(row == sep)) if len(p)]
        for piece in pieces:
            piece = piece[piece != sep]
            assert len(set(piece // 6)) <= 1 and (np.diff(piece) == 1).all()
    with pytest.raises(DataError) as err:  # the same documents are too short for packing=document
        load_dataset(tokens_cfg(tmp_path, blocks(30, 6)), 16)
    assert_one_line_error(err, "longest training document has 6", "data.packing=concatenate",
                          "model.n_ctx")


def test_heldout_batch_is_fixed_across_loads_and_runs(tmp_path):
    cfg = files_cfg(tmp_path)
    a = load_dataset(cfg, 32).heldout_batch(16)
    b = load_dataset(cfg, 32).heldout_batch(16)
    assert a.shape == (16, 32) and torch.equal(a, b)
    assert len({tuple(r) for r in a.tolist()}) == 16  # distinct windows
    assert not torch.equal(a, load_dataset(cfg, 32).heldout_batch(16, seed=1))


def test_heldout_batch_samples_with_replacement_when_short(tmp_path, caplog):
    ds = load_dataset(tokens_cfg(tmp_path, np.arange(200, dtype=np.int32) % 13), 30)
    with caplog.at_level("WARNING", logger="interp"):
        batch = ds.heldout_batch(50)
    assert batch.shape == (50, 30) and "with replacement" in caplog.text


def test_single_document_is_split_by_its_tail(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "only.py").write_text(code_text(0, 400))
    ds = load_dataset(files_cfg(tmp_path, tmp_path / "one", heldout_fraction=0.1), 16)
    train, held = ds.fingerprint["train"], ds.fingerprint["heldout"]
    assert train["documents"] == held["documents"] == 1
    assert abs(held["tokens"] / (train["tokens"] + held["tokens"]) - 0.1) < 0.01
    assert "single document" in ds.fingerprint["split_rule"]
    counts = ds.token_counts()
    assert counts.shape == (ds.vocab_size,) and counts.sum() == train["tokens"]


# --------------------------------------------------------------------------- bad input

def test_bad_input_errors_are_one_line_with_a_fix(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset(files_cfg(tmp_path, tmp_path / "nowhere"), 16)
    assert_one_line_error(err, "does not exist", "directory or a glob")
    with pytest.raises(DataError) as err:
        load_dataset(files_cfg(tmp_path, Path(f"{tmp_path}/*.nothing")), 16)
    assert_one_line_error(err, "matches no files")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("")
    with pytest.raises(DataError) as err:
        load_dataset(files_cfg(tmp_path, tmp_path / "empty"), 16)
    assert_one_line_error(err, "has no text", str(tmp_path / "empty"))
    with pytest.raises(DataError) as err:
        load_dataset(files_cfg(tmp_path), 4096)
    assert_one_line_error(err, "model.n_ctx=4096", "longest training document has",
                          "data.packing=concatenate")
    # Held-out too small: the lone held-out document is far shorter than the window.
    corpus = tmp_path / "uneven"
    corpus.mkdir()
    (corpus / "a_long.txt").write_text(code_text(1, 300))
    (corpus / "z_short.txt").write_text("tiny")
    with pytest.raises(DataError) as err:
        load_dataset(files_cfg(tmp_path, corpus, heldout_fraction=0.01), 64)
    assert_one_line_error(err, "held-out split is too small", "data.heldout_fraction")
    with pytest.raises(DataError) as err:
        load_dataset(files_cfg(tmp_path), 1)
    assert_one_line_error(err, "model.n_ctx")


# --------------------------------------------------------------------------- markov

def test_markov_batches_are_deterministic_and_start_with_bos():
    ds = load_dataset(DataConfig(source="markov", markov_states=8), 20)
    assert isinstance(ds, MarkovDataset) and isinstance(ds, TokenDataset)
    assert ds.vocab_size == 9 and ds.bos_token_id == 8
    a = ds.train_batch(3, 16, 0)
    assert a.shape == (16, 20) and (a[:, 0] == 8).all() and (a[:, 1:] < 8).all()
    assert torch.equal(a, ds.train_batch(3, 16, 0))
    assert not torch.equal(a, ds.train_batch(4, 16, 0))
    held = ds.heldout_batch(16)
    assert torch.equal(held, ds.heldout_batch(16)) and not torch.equal(held, a)
    assert ds.encode(ds.decode(a[0])) == a[0].tolist()
    assert ds.token_counts().tolist() == [1] * 8 + [0]
    json.dumps(ds.fingerprint)
    plain = load_dataset(DataConfig(source="markov", markov_states=8, prepend_bos=False), 20)
    assert plain.vocab_size == 8 and plain.bos_token_id is None
    assert plain.train_batch(0, 2, 0).shape == (2, 20)


def test_markov_sequences_follow_their_own_chains():
    seqs = sample_chains(64, 300, 6, 0.01, torch.Generator().manual_seed(0)).numpy()
    agree, total, maps = 0, 0, []
    for seq in seqs:
        following = {}
        for prev, nxt in zip(seq[:-1], seq[1:]):
            following.setdefault(prev, []).append(nxt)
        for nexts in following.values():
            agree += np.bincount(nexts).max()
            total += len(nexts)
        maps.append(tuple(np.bincount(following.get(s, [0])).argmax() for s in range(6)))
    assert agree / total > 0.9  # nearly deterministic rows: one next state per state
    assert len(set(maps)) > 32  # ...but a different chain in each sequence


def test_dirichlet_sampler_is_unbiased_and_tiny_alpha_safe():
    g = torch.Generator().manual_seed(1)
    assert abs(sample_log_gamma(2.0, (20000,), g).exp().mean().item() - 2.0) < 0.05
    rows = torch.softmax(sample_log_gamma(1e-3, (100, 10), g), -1)
    assert torch.isfinite(rows).all() and (rows.max(-1).values > 0.99).float().mean() > 0.9


def test_a_corpus_of_short_documents__is_told_to_concatenate(tmp_path, caplog):
    # 200 documents of ~40 bytes and 12 of ~240: with n_ctx=64 only the long ones hold a window,
    # under half of the tokens, and packing=document would train on them alone without a word.
    # Catches: the share counted in documents (3 of 63) or in windows, not in tokens, or no
    # warning at all.
    corpus = tmp_path / "short"
    corpus.mkdir()
    for i in range(200):
        (corpus / f"s{i:03d}.txt").write_text(f"entry {i}: a short line of text here.\n")
    for i in range(12):
        (corpus / f"long{i}.txt").write_text(" ".join(f"word{j % 50}" for j in range(40)))
    with caplog.at_level("WARNING", logger="interp"):
        ds = load_dataset(files_cfg(tmp_path, corpus, heldout_fraction=0.3), 64)
    assert "set data.packing=concatenate" in caplog.text and ds._train.covered < 0.8
    caplog.clear()
    with caplog.at_level("WARNING", logger="interp"):
        load_dataset(files_cfg(tmp_path, corpus, heldout_fraction=0.3, packing="concatenate"), 64)
        load_dataset(files_cfg(tmp_path, corpus, heldout_fraction=0.3), 8)  # every document holds 7
        for i in range(12):  # the same 12 long documents, now nearly all of the tokens
            (corpus / f"long{i}.txt").write_text(" ".join(f"word{j % 50}" for j in range(3000)))
        load_dataset(files_cfg(tmp_path, corpus, heldout_fraction=0.3), 64)
    assert "concatenate" not in caplog.text
