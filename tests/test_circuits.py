"""OV copying scores and composition scores: against dense references, on a hand-built
induction circuit, against the random baseline, and on a TransformerBridge."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch

from interp.config import ModelConfig
from interp.measures.circuits import (
    composition_baseline,
    composition_scores,
    empirical_copying_score,
    ov_copying_score,
)
from interp.model import Transformer
from tests.handbuilt import build_induction_model, induction_layout, repeated_sequence


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

@pytest.mark.parametrize("d_vocab,d_head", [(10, 4), (6, 8)])
def test_ov_copying_score_matches_dense_eigenvalues(d_vocab, d_head):
    model = random_model(d_vocab=d_vocab, d_head=d_head)
    score = ov_copying_score(model)
    assert score.shape == (2, 2) and score.dtype == torch.float32
    for layer, head in itertools.product(range(2), range(2)):
        W_V, W_O = model.W_V[layer, head].double(), model.W_O[layer, head].double()
        dense = model.W_E.double() @ W_V @ W_O @ model.W_U.double()  # [vocab, vocab]
        eig = torch.linalg.eigvals(dense.detach())
        expected = eig.sum().real / eig.abs().sum()
        assert abs(score[layer, head].item() - expected.item()) < 1e-4


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


def test_empirical_copying_matches_loop_reference():
    """Explicit loops on a LayerNorm model, applying the cached ln_final scale (which the
    function omits because it cancels from the ratio)."""
    model = random_model(d_vocab=9, normalization="layernorm", seed=1)
    with torch.no_grad():
        model.ln_final.w.uniform_(0.5, 1.5)
    tokens = random_tokens(9, 3, 7, seed=1)
    _, cache = model.run_with_cache(tokens)
    expected = torch.zeros(2, 2, dtype=torch.float64)
    for layer, head in itertools.product(range(2), range(2)):
        z = cache[f"blocks.{layer}.attn.hook_z"][:, :, head].double()
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][:, head].double()
        scale = cache["ln_final.hook_scale"].double()
        shares = []
        for b, i in itertools.product(range(tokens.shape[0]), range(1, tokens.shape[1])):
            out = z[b, i] @ model.W_O[layer, head].double()
            out = (out - out.mean()) / scale[b, i, 0] * model.ln_final.w.double()
            logits = out @ model.W_U.double()
            relu = (logits - logits.mean()).relu()
            target = sum(pattern[b, i, j] * relu[tokens[b, j]] for j in range(i + 1))
            shares.append(target / relu.sum())
        expected[layer, head] = torch.stack(shares).mean()
    got = empirical_copying_score(model, tokens, batch_size=2)
    assert torch.allclose(got.double(), expected.detach(), atol=1e-5)


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


def test_composition_baseline_and_random_model():
    base = composition_baseline(32, 16)
    assert set(base) == {"k", "q", "v"}
    assert all(0 < x < 1 for x in base.values())
    assert composition_baseline(32, 16) == base
    assert composition_baseline(32, 16, seed=1) != base
    model = random_model(n_layers=3, d_model=32, n_heads=4, d_head=16)  # i.i.d. Gaussian weights
    scores = composition_scores(model)
    for kind in "kqv":
        valid = scores[kind][~torch.isnan(scores[kind])]
        assert valid.numel() == 3 * 16
        assert 0.5 * base[kind] < valid.min() and valid.max() < 2 * base[kind]
        assert abs(valid.mean().item() / base[kind] - 1) < 0.2


# --------------------------------------------------------------------------- TransformerBridge

@pytest.fixture(scope="module")
def bridge():
    from transformer_lens.model_bridge import TransformerBridge

    cfg = dict(n_layers=2, d_model=32, n_heads=2, d_head=16, n_ctx=16, d_vocab=20,
               attn_only=True, act_fn="gelu", normalization_type="LN", seed=0)
    return TransformerBridge.boot_native(cfg)


def test_measures_run_on_transformer_bridge(bridge):
    ov = ov_copying_score(bridge)
    assert ov.shape == (2, 2) and torch.isfinite(ov).all() and ov.abs().max() <= 1
    emp = empirical_copying_score(bridge, random_tokens(20, 8, 15))
    assert emp.shape == (2, 2) and torch.isfinite(emp).all()
    assert (emp >= 0).all() and (emp <= 1).all()
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
