"""OV copying scores and composition scores: against dense references, on hand-built circuits
with analytic scores (an induction circuit, pure copiers / anti-copiers / rotations, a head
that copies ordinary tokens but suppresses BOS, heads that compose exactly or not at all),
against the random baseline's closed form, and on a TransformerBridge.

Each analytic test names, in its docstring, the wrong implementations it catches; the main
ones were checked by mutating interp/measures/circuits.py and watching the test fail."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch

from interp.config import ModelConfig
from interp.measures.circuits import (
    circuit_eigenvalues,
    composition_baseline,
    composition_scores,
    eigen_score,
    empirical_copying_score,
    ov_copying_score,
)
from interp.measures.vocab import COPYABLE_RULE, copyable_tokens, dataset_copyable_tokens, special_token_ids
from interp.model import Transformer
from tests.handbuilt import (
    build_bos_suppressing_copier,
    build_induction_model,
    induction_layout,
    repeated_sequence,
)


def random_model(n_layers=2, d_model=16, n_heads=2, d_head=4, d_vocab=10, n_ctx=16,
                 normalization="none", seed=0) -> Transformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_head=d_head,
                      n_ctx=n_ctx, d_vocab=d_vocab, normalization=normalization)
    return Transformer(cfg)


def random_tokens(d_vocab: int, n_seq: int, length: int, seed: int = 0) -> torch.Tensor:
    """BOS (0) + random non-BOS tokens (with replacement)."""
    gen = torch.Generator().manual_seed(seed)
    body = torch.randint(1, d_vocab, (n_seq, length), generator=gen)
    return torch.cat([torch.zeros(n_seq, 1, dtype=torch.long), body], dim=1)


@pytest.fixture(scope="module")
def induction_model() -> Transformer:
    return build_induction_model()


# --------------------------------------------------------------------------- hand-built model

def test_handbuilt_model_does_induction(induction_model):
    V, L = induction_model.cfg.d_vocab, 11
    tokens = repeated_sequence(V, L, batch=8)  # BOS + 11 distinct tokens, twice: 23 tokens
    loss = induction_model(tokens, return_type="per_token_loss")  # column i predicts token i+1
    first, second = loss[:, 1:L].mean(), loss[:, L + 1:2 * L].mean()  # predictions from each repeat
    assert second < 0.3 * first and second < 1e-3
    _, cache = induction_model.run_with_cache(tokens)
    prev = cache["blocks.0.attn.hook_pattern"][:, 0]
    assert prev.diagonal(-1, -2, -1).min() > 0.99  # head 0.0: i -> i-1
    induction = cache["blocks.1.attn.hook_pattern"][:, 0]
    queries = torch.arange(L + 1, 2 * L + 1)  # second repeat; the earlier copy of query q is q - L
    assert induction[:, queries, queries - L + 1].min() > 0.9  # the token after the earlier copy


def test_handbuilt_layout(induction_model):
    cfg = induction_model.cfg
    layout = induction_layout(cfg.d_vocab, cfg.n_ctx)
    assert cfg.d_model == layout["pos"].stop == 2 * cfg.d_vocab + cfg.n_ctx
    assert (cfg.positional, cfg.normalization, cfg.attn_only) == ("shortformer", "none", True)
    W_E, W_U = induction_model.W_E, induction_model.W_U
    assert torch.equal(W_E[:, layout["tok"]], torch.eye(cfg.d_vocab))
    assert torch.equal(W_U[layout["tok"]], torch.eye(cfg.d_vocab))
    for layer in range(2):  # heads x.1 are zero
        for w in ("W_Q", "W_K", "W_V", "W_O"):
            assert not getattr(induction_model, w)[layer, 1].any()


# --------------------------------------------------------------------------- copying scores

def dense_ov(model, layer: int, head: int, copyable=None) -> torch.Tensor:
    """The dense OV circuit W_E[S] W_V W_O W_U[:, S] [n, n] in float64 (S = every token if None)."""
    W_E, W_U = model.W_E.detach().double(), model.W_U.detach().double()
    if copyable is not None:
        W_E, W_U = W_E[copyable], W_U[:, copyable]
    return W_E @ model.W_V[layer, head].detach().double() @ model.W_O[layer, head].detach().double() @ W_U


def nonzero_sorted(eig: torch.Tensor, tol: float = 1e-9) -> torch.Tensor:
    """Eigenvalues with |lambda| > tol, sorted by (real, imag): a multiset to compare."""
    eig = eig[eig.abs() > tol]
    key = eig.real * 1e6 + eig.imag
    return eig[key.argsort()]


@pytest.mark.parametrize("copyable", [None, [1, 2, 3, 5, 8], [0, 9], [4]])
@pytest.mark.parametrize("d_vocab,d_head", [(10, 4), (10, 12)])
def test_ov_circuit_through_factors_equals_dense_eigenvalues(d_vocab, d_head, copyable):
    """Ground truth by brute force: the nonzero eigenvalues of the dense circuit
    W_E[S] W_V W_O W_U[:, S] [n, n] equal those from the d_head x d_head factor product (OV and
    token QK), and the score is Re(sum)/sum|.| of them. d_head = 12 > n covers a factor product
    with more zero eigenvalues than the dense matrix. Catches: a transposed factor
    (W_O (W_U W_E)^T W_V), a wrong token-QK product (e.g. W_Q^T ... W_Q), restricting the
    wrong axis of W_U, and ignoring ``copyable``."""
    model = random_model(d_vocab=d_vocab, d_head=d_head)
    index = None if copyable is None else torch.tensor(copyable)
    score = ov_copying_score(model, copyable=index)
    assert score.shape == (2, 2) and score.dtype == torch.float32
    for layer, head in itertools.product(range(2), range(2)):
        dense = torch.linalg.eigvals(dense_ov(model, layer, head, index))
        expected = dense.sum().real / dense.abs().sum()
        assert score[layer, head].item() == pytest.approx(expected.item(), abs=1e-5)
        got = circuit_eigenvalues(model, layer, head, copyable=index)
        assert torch.allclose(nonzero_sorted(got["ov"]), nonzero_sorted(dense), atol=1e-8)
        W_E = model.W_E.detach().double() if index is None else model.W_E.detach().double()[index]
        qk = W_E @ model.W_Q[layer, head].detach().double() @ model.W_K[layer, head].detach().double().T @ W_E.T
        assert torch.allclose(nonzero_sorted(got["qk"]), nonzero_sorted(torch.linalg.eigvals(qk)), atol=1e-8)
        assert eigen_score(got["ov"]) == pytest.approx(score[layer, head].item(), abs=1e-5)


def single_head_model(ov: torch.Tensor) -> Transformer:
    """1 layer, 1 head, W_E = W_U = identity (d_model = d_vocab = n), W_V = identity, W_O = ``ov``:
    the head's full OV circuit on tokens is exactly ``ov`` [n, n]."""
    n = ov.shape[0]
    cfg = ModelConfig(n_layers=1, d_model=n, n_heads=1, d_head=n, n_ctx=8, d_vocab=n,
                      positional="none", normalization="none")
    model = Transformer(cfg)
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        model.embed.W_E.copy_(torch.eye(n))
        model.unembed.W_U.copy_(torch.eye(n))
        model.blocks[0].attn.W_V[0].copy_(torch.eye(n))
        model.blocks[0].attn.W_O[0].copy_(ov)
    return model


def rotation(theta: float) -> torch.Tensor:
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -s], [s, c]])


@pytest.mark.parametrize("degrees", [0, 45, 90, 135, 180])
def test_ov_copying_score_of_a_rotation_is_its_cosine(degrees):
    """A rotation by theta has eigenvalues e^{+-i theta}: Re(sum)/sum|.| = cos(theta), i.e.
    +1 (identity: copies), 0.707, 0 (90 degrees: writes an orthogonal token), -0.707, -1
    (minus identity: suppresses). Catches: abs() missing in the denominator (sum lambda =
    2 cos theta gives +-1 or 0/0), |sum lambda| or sum |Re lambda| as denominator (+-1),
    abs() of the numerator (never negative), and the sign of the score."""
    theta = math.radians(degrees)
    model = single_head_model(rotation(theta))
    assert ov_copying_score(model)[0, 0].item() == pytest.approx(math.cos(theta), abs=1e-6)
    eig = circuit_eigenvalues(model, 0, 0)["ov"]
    assert eigen_score(eig) == pytest.approx(math.cos(theta), abs=1e-6)
    assert eig.abs().tolist() == pytest.approx([1.0, 1.0])


def test_ov_copying_score_mixed_signs_and_zero_head():
    """diag(3, 1, -1): Re(sum) = 3, sum|.| = 5 -> 0.6 exactly (a denominator without abs gives
    1.0; a mean of signs gives 1/3); a zero head is 0/0 := 0, not NaN."""
    assert ov_copying_score(single_head_model(torch.diag(torch.tensor([3.0, 1.0, -1.0]))))[0, 0].item() \
        == pytest.approx(0.6, abs=1e-6)
    assert ov_copying_score(single_head_model(torch.zeros(3, 3)))[0, 0].item() == 0.0


def test_bos_suppressing_copier__copies_over_the_copyable_set_and_not_over_every_token():
    """The bug of issue 9 item 1, by hand: a head copying every ordinary token (+5.6 each) while
    suppressing BOS (-379; the measured values of trained smeared-key Markov heads). Over the
    copyable set (seen tokens minus BOS, built by the same function the analysis uses) it scores
    exactly +1; over every token it scores (11 * 5.6 - 379) / (11 * 5.6 + 379) = -0.72: the
    negative control, which is what the whole-vocabulary code reported. Catches: ignoring
    ``copyable`` (or a copyable set that keeps BOS), in ov_copying_score and circuit_eigenvalues."""
    model = build_bos_suppressing_copier(d_vocab=12)
    counts = np.ones(12, dtype=np.int64)
    counts[0] = 0  # a Markov dataset's counts: every state seen, BOS not counted
    copyable = copyable_tokens(counts, special_ids=[0])
    assert copyable.tolist() == list(range(1, 12))
    restricted, everything = ov_copying_score(model, copyable=copyable), ov_copying_score(model)
    assert restricted[0, 0].item() > 0.9
    assert restricted[0, 0].item() == pytest.approx(1.0, abs=1e-6)
    assert everything[0, 0].item() < 0
    assert everything[0, 0].item() == pytest.approx((11 * 5.6 - 379) / (11 * 5.6 + 379), abs=1e-5)
    assert eigen_score(circuit_eigenvalues(model, 0, 0, copyable=copyable)["ov"]) == pytest.approx(1.0, abs=1e-6)
    assert eigen_score(circuit_eigenvalues(model, 0, 0)["ov"]) < 0
    with pytest.raises(ValueError, match="must lie in"):
        ov_copying_score(model, copyable=torch.tensor([1, 12]))
    with pytest.raises(ValueError, match="distinct"):
        ov_copying_score(model, copyable=torch.tensor([1, 1]))


def test_bos_suppressing_copier__empirical_copying_over_the_copyable_set():
    """On BOS + 11 distinct tokens each query attends half to itself, half to BOS (a = 1/2).
    Over the copyable set the head raises only its own token: r = 0 off S and at BOS, so the
    score is 1 - a = 0.5 exactly. Over every token, BOS's -189.5 logit drags the mean down to
    -15.56 and inflates r on the 10 other tokens; the share falls to 0.0528 (analytic, below).
    Catches: a mean or denominator over the whole vocabulary (gives 0.0528), counting attention
    to BOS as copying (r_i[BOS] not zeroed off S with a mask that only changes the mean: gives
    more than 0.5 when r[BOS] > 0), and ignoring ``copyable``."""
    model = build_bos_suppressing_copier(d_vocab=12)
    gen = torch.Generator().manual_seed(0)
    body = torch.stack([torch.randperm(11, generator=gen) + 1 for _ in range(6)])
    tokens = torch.cat([torch.zeros(6, 1, dtype=torch.long), body], dim=1)  # [6, 12]
    copyable = torch.arange(1, 12)
    assert empirical_copying_score(model, tokens, copyable=copyable)[0, 0].item() == pytest.approx(0.5, abs=1e-5)
    g, G, V, a = 5.6, 379.0, 12, 0.5
    mean = ((1 - a) * g - a * G) / V
    r_own, r_other = (1 - a) * g - mean, -mean  # 10 other ordinary tokens; BOS: relu(-189.5 - mean) = 0
    expected = (1 - a) * r_own / (r_own + (V - 2) * r_other)
    everything = empirical_copying_score(model, tokens)[0, 0].item()
    assert everything == pytest.approx(expected, abs=1e-5) and everything < 0.06
    assert torch.allclose(empirical_copying_score(model, tokens, copyable=copyable).double(),
                          loop_empirical_copying(model, tokens, copyable), atol=1e-5)


def test_copyable_tokens__drop_bos_specials_and_unseen():
    """The rule (COPYABLE_RULE): seen at least once in training, minus every special id.
    Catches: keeping unseen (count 0) tokens, keeping BOS/EOT/pad, crashing on None or
    out-of-range special ids, returning an unsorted or non-int64 set."""
    counts = np.array([5, 0, 3, 1, 0, 7, 2, 9])  # ids 1 and 4 never seen
    got = copyable_tokens(counts, special_ids=[7, None, 2, 99, -1])
    assert got.tolist() == [0, 3, 5, 6] and got.dtype == torch.int64
    assert copyable_tokens(counts).tolist() == [0, 2, 3, 5, 6, 7]
    assert copyable_tokens(np.zeros(4, dtype=np.int64)).numel() == 0
    assert COPYABLE_RULE == "seen_minus_special"


def test_special_token_ids__read_the_dataset_and_its_tokenizer():
    """BOS, the separator, the tokenizer's BOS/EOT and every token its backend marks special
    (here a <pad> added to a trained BPE), and nothing else; a Markov dataset has only BOS.
    Catches: forgetting the separator or the tokenizer's own specials (pad)."""
    from types import SimpleNamespace

    import tokenizers

    from interp.config import DataConfig
    from interp.data import MarkovDataset, train_bpe

    markov = MarkovDataset(DataConfig(source="markov", markov_states=8), 16)
    assert special_token_ids(markov) == [8]
    assert dataset_copyable_tokens(markov).tolist() == list(range(8))

    tok = train_bpe(["def f(x):\n    return x + 1\n"] * 20, vocab_size=300)
    tok.fast.add_special_tokens([tokenizers.AddedToken("<pad>", special=True)])
    pad = tok.fast.token_to_id("<pad>")
    counts = np.ones(tok.fast.get_vocab_size(), dtype=np.int64)
    data = SimpleNamespace(bos_token_id=tok.bos_token_id, fingerprint={"eot_token_id": tok.eot_token_id},
                           tokenizer=tok, token_counts=lambda: counts)
    assert special_token_ids(data) == sorted({tok.bos_token_id, pad})
    kept = dataset_copyable_tokens(data)
    assert tok.bos_token_id not in kept and pad not in kept and len(kept) == len(counts) - 2
    plain = SimpleNamespace(bos_token_id=300, fingerprint={"eot_token_id": 299}, token_counts=lambda: counts)
    assert special_token_ids(plain) == [299, 300]


def test_copying_scores_on_handbuilt_model(induction_model):
    ov = ov_copying_score(induction_model)
    assert ov[1, 0] > 0.999  # induction head: W_E W_OV W_U = gain * identity
    # Head 0.0 writes the PREV subspace, which W_U does not read: its OV circuit on tokens is
    # exactly zero, so the score is 0/0 := 0 -- a previous-token head, not a copying head.
    # Zero-weight heads 0.1 and 1.1 also score 0.
    assert ov[0, 0] == 0 and ov[0, 1] == 0 and ov[1, 1] == 0

    tokens = random_tokens(induction_model.cfg.d_vocab, 64, 23)
    emp = empirical_copying_score(induction_model, tokens)
    assert emp.shape == (2, 2) and emp.dtype == torch.float32
    assert emp[1, 0] > 0.8  # observed ~0.86 (split attention over several matches costs some)
    assert emp[0, 0] == 0 and emp[0, 1] == 0 and emp[1, 1] == 0  # zero direct effect


def test_negative_copying_head_scores_minus_one(induction_model):
    model = copy.deepcopy(induction_model)
    V = model.cfg.d_vocab
    tok = torch.arange(V)
    with torch.no_grad():  # head 1.1: OV = -identity on the token subspace, attention uniform
        model.blocks[1].attn.W_V[1, tok, tok] = 1.0
        model.blocks[1].attn.W_O[1, tok, tok] = -1.0
    assert ov_copying_score(model)[1, 1] < -0.999
    emp = empirical_copying_score(model, random_tokens(V, 32, 23))
    assert emp[1, 1] < 0.1  # it raises the tokens it does NOT attend to


def loop_empirical_copying(model, tokens: torch.Tensor, copyable=None) -> torch.Tensor:
    """The empirical copying score by explicit loops over (layer, head, sequence, query), written
    from the docstring: it applies the cached ln_final scale (which the function omits because
    it cancels from the ratio), and restricts the mean, the sum and r to the copyable set S."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    keep = torch.zeros(model.cfg.d_vocab, dtype=torch.bool)
    keep[torch.arange(model.cfg.d_vocab) if copyable is None else torch.as_tensor(copyable)] = True
    _, cache = model.run_with_cache(tokens)
    ln = "ln_final.hook_scale" in cache
    ln_w = model.ln_final.w.detach().double() if ln else None
    expected = torch.zeros(n_layers, n_heads, dtype=torch.float64)
    for layer, head in itertools.product(range(n_layers), range(n_heads)):
        z = cache[f"blocks.{layer}.attn.hook_z"][:, :, head].double()
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][:, head].double()
        shares = []
        for b, i in itertools.product(range(tokens.shape[0]), range(1, tokens.shape[1])):
            out = z[b, i] @ model.W_O[layer, head].detach().double()
            if ln:
                out = (out - out.mean()) / cache["ln_final.hook_scale"][b, i, 0].double() * ln_w
            logits = out @ model.W_U.detach().double()
            r = torch.where(keep, (logits - logits[keep].mean()).relu(), torch.zeros_like(logits))
            target = sum(pattern[b, i, j] * r[tokens[b, j]] for j in range(i + 1))
            shares.append(target / r.sum() if r.sum() > 0 else torch.tensor(0.0, dtype=torch.float64))
        expected[layer, head] = torch.stack(shares).mean()
    return expected.detach()


@pytest.mark.parametrize("copyable", [None, [0, 2, 3, 5, 7, 8]])
def test_empirical_copying_matches_loop_reference(copyable):
    """On a LayerNorm model with random weights, over every token and over a subset."""
    model = random_model(d_vocab=9, normalization="layernorm", seed=1)
    with torch.no_grad():
        model.ln_final.w.uniform_(0.5, 1.5)
    tokens = random_tokens(9, 3, 7, seed=1)
    index = None if copyable is None else torch.tensor(copyable)
    got = empirical_copying_score(model, tokens, batch_size=2, copyable=index)
    assert torch.allclose(got.double(), loop_empirical_copying(model, tokens, index), atol=1e-5)


def test_empirical_copying__attention_to_a_non_copyable_token_is_not_copying():
    """A head that copies BOS positively (+20) and ordinary tokens (+5.6), on [BOS, t, t]:
    query 1 attends to BOS and t equally -> share 1/2; query 2 to BOS, t, t -> 2/3; mean 7/12.
    Catches: r not zeroed off S (a mask that changes only the mean counts the BOS share as
    copying: 0.475 here), and a denominator over every token."""
    model = build_bos_suppressing_copier(d_vocab=12, bos_gain=20.0)
    tokens = torch.tensor([[0, 3, 3]])
    got = empirical_copying_score(model, tokens, copyable=torch.arange(1, 12))[0, 0].item()
    assert got == pytest.approx(7 / 12, abs=1e-5)


# --------------------------------------------------------------------------- composition

def dense_composition(model) -> dict[str, torch.Tensor]:
    W_Q, W_K, W_V, W_O = (getattr(model, n).detach().double() for n in ("W_Q", "W_K", "W_V", "W_O"))
    n_layers, n_heads = W_Q.shape[:2]
    out = {k: torch.full((n_layers, n_heads, n_layers, n_heads), float("nan"), dtype=torch.float64)
           for k in "kqv"}
    fro = torch.linalg.norm
    for l1, h1, l2, h2 in itertools.product(range(n_layers), range(n_heads), range(n_layers), range(n_heads)):
        if l2 <= l1:
            continue
        ov1 = W_V[l1, h1] @ W_O[l1, h1]  # [d_model, d_model]
        ov2 = W_V[l2, h2] @ W_O[l2, h2]
        qk2 = W_Q[l2, h2] @ W_K[l2, h2].T
        out["k"][l1, h1, l2, h2] = fro(qk2 @ ov1.T) / (fro(qk2) * fro(ov1))
        out["q"][l1, h1, l2, h2] = fro(ov1 @ qk2) / (fro(qk2) * fro(ov1))
        out["v"][l1, h1, l2, h2] = fro(ov1 @ ov2) / (fro(ov2) * fro(ov1))
    return out


def test_composition_scores_match_dense_products():
    model = random_model(n_layers=3, d_model=12, n_heads=2, d_head=4)
    scores = composition_scores(model)
    expected = dense_composition(model)
    later = torch.arange(3)[:, None, None, None] < torch.arange(3)[None, None, :, None]
    later = later.expand(3, 2, 3, 2)
    for kind in "kqv":
        got = scores[kind]
        assert got.shape == (3, 2, 3, 2) and got.dtype == torch.float32
        assert torch.isnan(got[~later]).all()
        assert not torch.isnan(got[later]).any()
        assert torch.allclose(got[later].double(), expected[kind][later], atol=1e-5)


def test_composition_on_handbuilt_model(induction_model):
    cfg = induction_model.cfg
    scores = composition_scores(induction_model)
    base = composition_baseline(cfg.d_model, cfg.d_head)
    k, q, v = (scores[x][0, 0, 1, 0].item() for x in "kqv")
    V = cfg.d_vocab
    assert k == pytest.approx(math.sqrt((V - 1) / (V * (V - 1 + V / 4))), abs=1e-5)  # 0.256
    assert k > 1.5 * base["k"]  # baseline ~0.144 for d_model=48, d_head=24 (the most a
    # rank-V isometry pair can reach is 1/sqrt(V) = 0.289)
    assert q < 1e-6 and v < 1e-6 and k > q and k > v  # 0.0 writes PREV; 1.0 reads PREV only as key
    for kind in "kqv":  # a zero-weight head on either side: 0/0 := 0, not NaN
        s = scores[kind]
        assert s[0, 1, 1].eq(0).all() and s[0, :, 1, 1].eq(0).all()
        assert torch.isnan(s[1]).all() and torch.isnan(s[0, :, 0]).all()


def composing_model() -> Transformer:
    """2 layers x 3 heads, d_model 8, d_head 2, no positions or norms; e_i = residual basis.

    Layer 0: head 0.0 W_OV = e0 e2^T (reads 0, writes 2; rank 1, ||.|| = 1); head 0.1
    W_OV = e0 e3^T + e1 e4^T (rank 2, ||.|| = sqrt 2); head 0.2 zero.
    Layer 1: head 1.0 W_QK = e5 e2^T (its key reads what 0.0 writes), W_OV = e6 e7^T;
    head 1.1 W_QK = e3 e6^T (its query reads one of 0.1's two directions), W_OV = e4 e7^T
    (its value reads the other); head 1.2 W_QK = e6 k^T with k = cos(60) e2 + sin(60) e5
    (its key half-reads 0.0's output), OV zero.

    Exact scores [h1, h2] (l1 = 0, l2 = 1), from ||A B||_F / (||A||_F ||B||_F):
    K = [[1, 0, 0.5], 0, 0], Q = 1/sqrt(2) at (0.1, 1.1), V = 1/sqrt(2) at (0.1, 1.1), all
    others 0.
    """
    cfg = ModelConfig(n_layers=2, d_model=8, n_heads=3, d_head=2, n_ctx=8, d_vocab=8,
                      positional="none", normalization="none")
    model = Transformer(cfg)
    e = torch.eye(8)
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        a0, a1 = model.blocks[0].attn, model.blocks[1].attn
        a0.W_V[0, :, 0], a0.W_O[0, 0] = e[0], e[2]
        a0.W_V[1, :, 0], a0.W_O[1, 0], a0.W_V[1, :, 1], a0.W_O[1, 1] = e[0], e[3], e[1], e[4]
        a1.W_Q[0, :, 0], a1.W_K[0, :, 0], a1.W_V[0, :, 0], a1.W_O[0, 0] = e[5], e[2], e[6], e[7]
        a1.W_Q[1, :, 0], a1.W_K[1, :, 0], a1.W_V[1, :, 0], a1.W_O[1, 0] = e[3], e[6], e[4], e[7]
        theta = math.radians(60)
        a1.W_Q[2, :, 0], a1.W_K[2, :, 0] = e[6], math.cos(theta) * e[2] + math.sin(theta) * e[5]
    return model


def test_composition_scores_of_heads_built_to_compose_exactly_or_not_at_all():
    """Analytic ground truth (composing_model). Catches: K and Q swapped, W_QK used where the
    K-score needs W_QK^T (K would read the query side: 1.0 would score 0 and 1.1 would score 1/2),
    a missing or squared norm in the denominator (the rank-2 head gives 1 or 1/2 instead of
    1/sqrt 2; the partial key 0.25 instead of 0.5), a trace-like shortcut (not a Frobenius norm
    of the product), and NaN instead of 0 for a zero head."""
    scores = composition_scores(composing_model())
    r = 1 / math.sqrt(2)
    expected = {"k": [[1, 0, 0.5], [0, 0, 0], [0, 0, 0]],
                "q": [[0, 0, 0], [0, r, 0], [0, 0, 0]],
                "v": [[0, 0, 0], [0, r, 0], [0, 0, 0]]}
    for kind, table in expected.items():
        assert torch.allclose(scores[kind][0, :, 1].double(), torch.tensor(table, dtype=torch.float64),
                              atol=1e-6), (kind, scores[kind][0, :, 1])
        assert torch.isnan(scores[kind][1]).all() and torch.isnan(scores[kind][0, :, 0]).all()


@pytest.mark.parametrize("d_model,d_head", [(32, 16), (64, 8)])
def test_composition_baseline_is_one_over_sqrt_d_model(d_model, d_head):
    """Closed form for i.i.d. Gaussian heads: with A = W_V W_O, E[A^T A] = d_model d_head I, so
    E||A X||^2 = d_model d_head E||X||^2 and E||A||^2 = d_model^2 d_head: the score's square is
    about 1/d_model (whatever d_head; 1 to 2% off at these sizes, measured), for every kind.
    Catches a wrong normalisation (one norm only, squared norms, a d_head factor), and K/Q/V
    products of the wrong shapes; also determinism and the seed. A random model's scores sit on
    the same value."""
    base = composition_baseline(d_model, d_head, n_samples=64)
    assert set(base) == {"k", "q", "v"}
    for value in base.values():
        assert value * math.sqrt(d_model) == pytest.approx(1.0, abs=0.05)
    assert composition_baseline(d_model, d_head, n_samples=64) == base
    assert composition_baseline(d_model, d_head, n_samples=64, seed=1) != base
    model = random_model(n_layers=3, d_model=d_model, n_heads=4, d_head=d_head)  # i.i.d. Gaussian weights
    for kind, s in composition_scores(model).items():
        valid = s[~torch.isnan(s)]
        assert valid.numel() == 3 * 16
        assert valid.mean().item() * math.sqrt(d_model) == pytest.approx(1.0, abs=0.1)


# --------------------------------------------------------------------------- TransformerBridge

@pytest.fixture(scope="module")
def bridge():
    from transformer_lens.model_bridge import TransformerBridge

    cfg = dict(n_layers=2, d_model=32, n_heads=2, d_head=16, n_ctx=16, d_vocab=20,
               attn_only=True, act_fn="gelu", normalization_type="LN", seed=0)
    return TransformerBridge.boot_native(cfg)


def test_measures_run_on_transformer_bridge(bridge):
    """The bridge's weights are read like ours: the OV score equals the dense eigenvalue
    computation (whole vocabulary and a subset) and the empirical score equals the loop
    reference (LayerNorm applied through the bridge's own hooks). Catches a weights adapter
    that reads another layout (e.g. W_O transposed, grouped heads not expanded)."""
    copyable = torch.tensor([1, 2, 4, 8, 16, 19])
    for index in (None, copyable):
        ov = ov_copying_score(bridge, copyable=index)
        assert ov.shape == (2, 2)
        for layer, head in itertools.product(range(2), range(2)):
            eig = torch.linalg.eigvals(dense_ov(bridge, layer, head, index))
            assert ov[layer, head].item() == pytest.approx((eig.sum().real / eig.abs().sum()).item(), abs=1e-5)
        tokens = random_tokens(20, 4, 11)
        emp = empirical_copying_score(bridge, tokens, copyable=index)
        assert torch.allclose(emp.double(), loop_empirical_copying(bridge, tokens, index), atol=1e-5)
    scores = composition_scores(bridge)
    base = composition_baseline(32, 16, n_samples=8)
    for kind in "kqv":
        s = scores[kind]
        assert s.shape == (2, 2, 2, 2)
        assert torch.isfinite(s[0, :, 1]).all() and torch.isnan(s[1]).all() and torch.isnan(s[0, :, 0]).all()
        assert ((s[0, :, 1] > 0) & (s[0, :, 1] < 1)).all()
        # TransformerLens's own scores (SVD-collapsed factored products, zeros below l2 > l1)
        reference = bridge.all_composition_scores(kind.upper())
        reference = getattr(reference, "scores", reference)
        assert torch.allclose(s[0, :, 1], reference[0, :, 1].float().cpu(), atol=1e-4)
        assert 0.5 * base[kind] < s[0, :, 1].mean() < 2 * base[kind]


def test_repeat_losses__second_repeat_is_free_for_an_induction_head(induction_model):
    from interp.measures.heads import RepeatedTokens, repeat_losses

    V, L = induction_model.cfg.d_vocab, 11
    probe = RepeatedTokens(repeated_sequence(V, L, batch=8), seq_len=L, repeats=2, offset=1)
    first, second = repeat_losses(induction_model, probe).tolist()
    assert first > 1.0 and second < 1e-3  # the hand-built head copies every second-repeat token


def test_losses_without_heads__removing_the_induction_head_removes_in_context_prediction(induction_model):
    from interp.measures.ablation import losses_without_heads
    from interp.measures.icl import per_token_losses

    V, L = induction_model.cfg.d_vocab, 11
    tokens = repeated_sequence(V, L, batch=8)
    clean = per_token_losses(induction_model, tokens)
    assert torch.allclose(losses_without_heads(induction_model, tokens, []), clean, equal_nan=True)
    # The zero-output head 1.1 changes nothing. Nor does the previous-token head 0.0: the
    # patterns are frozen, so 1.0 still attends where it did, and its values read TOK, not PREV.
    assert torch.allclose(losses_without_heads(induction_model, tokens, [(1, 1)]), clean, equal_nan=True)
    assert torch.allclose(losses_without_heads(induction_model, tokens, [(0, 0)]), clean, equal_nan=True)
    second = slice(L + 2, 2 * L + 1)
    without = losses_without_heads(induction_model, tokens, [(1, 0)])
    assert clean[:, second].mean() < 1e-3 and without[:, second].mean() > 1.0
    both = losses_without_heads(induction_model, tokens, [(1, 0), (1, 1), (0, 1)])
    assert torch.allclose(both, without, equal_nan=True)


def test_circuit_eigenvalues__ov_matches_the_copying_score_and_qk_reads_tokens(induction_model):
    from interp.measures.circuits import circuit_eigenvalues, eigen_score, ov_copying_score

    scores = ov_copying_score(induction_model)
    for layer, head in ((0, 0), (1, 0)):
        eig = circuit_eigenvalues(induction_model, layer, head)
        assert eigen_score(eig["ov"]) == pytest.approx(float(scores[layer, head]), abs=1e-5)
        assert (eig["ov"].abs()[:-1] >= eig["ov"].abs()[1:]).all()  # sorted, largest first
    # head 0.0's QK reads only positions, so its token QK circuit is zero; a zero head scores 0
    assert float(circuit_eigenvalues(induction_model, 0, 0)["qk"].abs().max()) < 1e-9
    assert eigen_score(circuit_eigenvalues(induction_model, 1, 1)["ov"]) == 0.0


# --------------------------------------------------------------------------- found by mutation testing
# Each test below names the mutants of `scripts/mutation.py interp/measures` it kills (mutmut's
# names; see docs/MUTATION.md).


class _StackedWeights:
    """A stand-in model: the stacked TransformerLens-layout weights and the cfg fields that the
    weight-based circuit measures read, and nothing else."""

    def __init__(self, W_Q, W_K, W_V, W_O, W_E, W_U):
        self.W_Q, self.W_K, self.W_V, self.W_O, self.W_E, self.W_U = W_Q, W_K, W_V, W_O, W_E, W_U
        self.cfg = type("Cfg", (), {"n_layers": W_Q.shape[0], "n_heads": W_Q.shape[1]})()


def test_grouped_key_value_heads__each_serves_consecutive_query_heads():
    """A model with grouped key/value heads (GQA: 4 query heads, 2 key/value heads; query head h
    uses key/value head h // 2, as in TransformerLens) scores exactly like the same model with
    those key/value weights written out per query head; also when d_model equals the number of
    heads (the head axis must not be confused with the d_model axis).
    Kills circuits.x__expand_heads__mutmut_1 .. _9 (no test had a grouped model)."""
    for d_model in (12, 4):
        _check_grouped_heads(d_model)


def _check_grouped_heads(d_model: int):
    gen = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    n_layers, d_head, d_vocab = 2, 3, 10
    W_Q, W_O = randn(n_layers, 4, d_model, d_head), randn(n_layers, 4, d_head, d_model)
    W_K, W_V = randn(n_layers, 2, d_model, d_head), randn(n_layers, 2, d_model, d_head)
    W_E, W_U = randn(d_vocab, d_model), randn(d_model, d_vocab)
    group = torch.tensor([0, 0, 1, 1])
    grouped = _StackedWeights(W_Q, W_K, W_V, W_O, W_E, W_U)
    full = _StackedWeights(W_Q, W_K[:, group], W_V[:, group], W_O, W_E, W_U)
    torch.testing.assert_close(ov_copying_score(grouped), ov_copying_score(full))
    for kind, scores in composition_scores(grouped).items():
        torch.testing.assert_close(scores, composition_scores(full)[kind], equal_nan=True)
    for head in range(4):
        for name, eig in circuit_eigenvalues(grouped, 1, head).items():
            torch.testing.assert_close(eig, circuit_eigenvalues(full, 1, head)[name])
    # negative control: the other natural layout (heads 0, 1, 0, 1) gives other scores
    wrong = _StackedWeights(W_Q, W_K[:, [0, 1, 0, 1]], W_V[:, [0, 1, 0, 1]], W_O, W_E, W_U)
    assert not torch.allclose(ov_copying_score(wrong), ov_copying_score(full))


def test_copyable_ids__checked_against_the_vocabulary_any_integer_dtype():
    """Token ids are checked against d_vocab, not d_model (a model narrower than its vocabulary
    accepts every id below d_vocab; a wider one refuses d_vocab), and any integer array works.
    Kills circuits.x_ov_copying_score__mutmut_12, x_circuit_eigenvalues__mutmut_8 and
    x_empirical_copying_score__mutmut_18 (the range read from W_E's d_model axis),
    x__token_index__mutmut_4 and _6 (an int32 index kept as int32: index_fill_ refuses it),
    x__token_index__mutmut_15 (the message)."""
    narrow = random_model(d_model=8, n_heads=2, d_head=4, d_vocab=12)  # d_model < d_vocab
    wide = random_model(d_model=16, d_vocab=10)  # d_model > d_vocab
    tokens = random_tokens(12, 2, 7)
    scorers = (lambda m, c: ov_copying_score(m, copyable=c),
               lambda m, c: circuit_eigenvalues(m, 0, 1, copyable=c)["ov"],
               lambda m, c: empirical_copying_score(m, tokens[:, :5] % 10, copyable=c))
    for score in scorers:
        score(narrow, torch.tensor([1, 11]))  # 11 >= d_model = 8, but a real token
        with pytest.raises(ValueError, match="must lie in"):
            score(wide, torch.tensor([1, 10]))
        with pytest.raises(ValueError, match="^copyable token ids must be distinct$"):
            score(wide, torch.tensor([1, 1]))
        torch.testing.assert_close(score(narrow, np.array([1, 2, 11], dtype=np.int32)),
                                   score(narrow, torch.tensor([1, 2, 11])))


def test_final_norm__read_from_either_config_and_absent_when_the_model_has_none():
    """Kills circuits.x__final_norm__mutmut_20 (a cfg with neither ``normalization`` nor
    ``normalization_type`` crashes) and _31 (a model without ``ln_final`` crashes)."""
    from types import SimpleNamespace

    from interp.measures.circuits import _final_norm

    assert _final_norm(SimpleNamespace(cfg=SimpleNamespace())) == (None, False)
    w = torch.full((4,), 2.0)
    for kind, centres in (("LN", True), ("LNPre", True), ("RMS", False), (None, False)):
        model = SimpleNamespace(cfg=SimpleNamespace(normalization_type=kind), ln_final=SimpleNamespace(w=w))
        got, centre = _final_norm(model)
        assert centre is centres and torch.equal(got, w)
    assert _final_norm(SimpleNamespace(cfg=SimpleNamespace(normalization="layernorm"),
                                       ln_final=torch.nn.Identity())) == (None, True)


def test_empirical_copying__one_copyable_token_and_one_query():
    """With a single copyable token, r = relu(u - mean over S) is 0 on S, so every score is
    0/0 := 0; one query attending half to BOS and half to itself scores 1/2.
    Kills circuits.x_empirical_copying_score__mutmut_125 (the mean over S divided by at least 2)
    and _182 (the mean over queries divided by at least 2)."""
    model = build_bos_suppressing_copier(d_vocab=12)
    tokens = torch.tensor([[0, 3, 3, 5]])
    assert empirical_copying_score(model, tokens, copyable=torch.tensor([3]))[0, 0].item() == 0.0
    one_query = empirical_copying_score(model, torch.tensor([[0, 3]]), copyable=torch.arange(1, 12))
    assert one_query[0, 0].item() == pytest.approx(0.5, abs=1e-5)


def test_composition_baseline__the_mean_dense_score_of_its_documented_random_heads():
    """The documented recipe, by brute force: from a CPU generator seeded with ``seed``, float64
    standard Gaussian W_Q, W_K, W_V [2, n, d_model, d_head] and W_O [2, n, d_head, d_model]
    (index 0 = the earlier head h1, 1 = the later head h2), scored with dense d_model x d_model
    products; defaults 32 samples and seed 0. The closed-form test (1/sqrt(d_model)) is symmetric
    in h1 and h2 and blind to the draws.
    Kills circuits.x_composition_baseline__mutmut_1 (default samples), _8 and _13 (float32
    draws), _14 (three heads drawn per sample), _39 and _49 (h2's OV in place of h1's)."""
    d_model, d_head, n, seed = 12, 3, 5, 7
    gen = torch.Generator().manual_seed(seed)
    W_Q, W_K, W_V = (torch.randn(2, n, d_model, d_head, generator=gen, dtype=torch.float64) for _ in range(3))
    W_O = torch.randn(2, n, d_head, d_model, generator=gen, dtype=torch.float64)
    fro = torch.linalg.norm
    expected = {"k": 0.0, "q": 0.0, "v": 0.0}
    for s in range(n):
        ov1, ov2 = W_V[0, s] @ W_O[0, s], W_V[1, s] @ W_O[1, s]
        qk2 = W_Q[1, s] @ W_K[1, s].T
        expected["k"] += float(fro(qk2 @ ov1.T) / (fro(qk2) * fro(ov1))) / n
        expected["q"] += float(fro(ov1 @ qk2) / (fro(qk2) * fro(ov1))) / n
        expected["v"] += float(fro(ov1 @ ov2) / (fro(ov2) * fro(ov1))) / n
    got = composition_baseline(d_model, d_head, n_samples=n, seed=seed)
    assert got == pytest.approx(expected, abs=1e-9)
    assert composition_baseline(d_model, d_head) == composition_baseline(d_model, d_head, n_samples=32, seed=0)


def test_copyable_tokens__an_id_equal_to_the_vocabulary_size_is_ignored():
    """Kills vocab.x_copyable_tokens__mutmut_14 (an out-of-range special id == vocab size
    indexes past the end)."""
    counts = np.array([1, 1, 1, 1])
    assert copyable_tokens(counts, special_ids=[4, 1]).tolist() == [0, 2, 3]


def test_special_token_ids__every_source_read_each_optional():
    """Each source of special ids, alone and missing: a dataset with no attributes at all; a
    tokenizer with BOS/EOT ids of its own and no backend; a ``transformers`` tokenizer without a
    fast backend (``slow.all_special_ids``), with and without that attribute.
    Kills vocab.x_special_token_ids__mutmut_6, _15 (a dataset without ``bos_token_id`` or
    ``fingerprint`` crashes), _32, _36 .. _39, _43 .. _45 (the tokenizer's BOS/EOT ids),
    _51, _54, _55, _59 .. _61, _64 .. _73 (the slow tokenizer's specials)."""
    from types import SimpleNamespace

    from interp.data.tokenizer import Tokenizer

    assert special_token_ids(object()) == []
    bare = SimpleNamespace(tokenizer=SimpleNamespace())  # a tokenizer without any of the attributes
    assert special_token_ids(bare) == []
    own = Tokenizer(name="t", vocab_size=50, bos_token_id=41, eot_token_id=42)
    assert special_token_ids(SimpleNamespace(bos_token_id=40, tokenizer=own)) == [40, 41, 42]
    slow = Tokenizer(name="t", vocab_size=50, bos_token_id=None, eot_token_id=None,
                     slow=SimpleNamespace(all_special_ids=[3, 4]))
    assert special_token_ids(SimpleNamespace(tokenizer=slow, fingerprint={"eot_token_id": 9})) == [3, 4, 9]
    no_list = Tokenizer(name="t", vocab_size=50, bos_token_id=None, eot_token_id=None, slow=SimpleNamespace())
    assert special_token_ids(SimpleNamespace(tokenizer=no_list)) == []
