"""Model shapes, TransformerLens hook names, the fast/explicit attention paths, learning."""

from __future__ import annotations

import math

import pytest
import torch
from transformer_lens import ActivationCache, FactoredMatrix

from interp.config import ModelConfig
from interp.model import Transformer

VARIANTS = [
    dict(positional="shortformer"),
    dict(positional="learned", attn_only=False),
    dict(positional="rotary"),
    dict(positional="none", normalization="none"),
    dict(positional="shortformer", smeared_key=True),
    dict(positional="learned", attn_only=False, n_layers=6),
]


def build(**overrides) -> Transformer:
    values = dict(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=24, d_vocab=40, d_mlp=64)
    return Transformer(ModelConfig(**{**values, **overrides}))


@pytest.mark.parametrize("overrides", VARIANTS)
def test_forward__logits_shape_and_cache_hook_names(overrides):
    model = build(**overrides)
    tokens = torch.randint(0, 40, (3, 24))
    logits, cache = model.run_with_cache(tokens)
    n_layers = model.cfg.n_layers
    assert logits.shape == (3, 24, 40)
    assert isinstance(cache, ActivationCache)
    for layer in range(n_layers):
        assert cache[f"blocks.{layer}.attn.hook_pattern"].shape == (3, 4, 24, 24)
        assert cache[f"blocks.{layer}.attn.hook_q"].shape == (3, 24, 4, 8)
        assert cache[f"blocks.{layer}.attn.hook_k"].shape == (3, 24, 4, 8)
        assert cache[f"blocks.{layer}.attn.hook_z"].shape == (3, 24, 4, 8)
        assert cache[f"blocks.{layer}.hook_resid_pre"].shape == (3, 24, 32)
        assert cache[f"blocks.{layer}.hook_resid_post"].shape == (3, 24, 32)
    assert ("blocks.0.hook_mlp_out" in cache) == (not model.cfg.attn_only)


@pytest.mark.parametrize("kernel", ["sdpa", "explicit"])
@pytest.mark.parametrize("overrides", VARIANTS)
def test_unhooked_kernels__equal_the_hooked_pattern_path(overrides, kernel):
    # Catches a kernel that drops the causal mask, the 1/sqrt(d_head) scale or the smear /
    # rotary step (the hooked path is the reference a cache exposes), in values and gradients.
    model = build(**overrides)
    tokens = torch.randint(0, 40, (2, 24))
    model.set_attention_kernel(kernel)
    fast = model(tokens, return_type="loss")
    fast_grads = torch.autograd.grad(fast, list(model.parameters()))
    reference = {}
    hook = ("blocks.0.attn.hook_pattern", lambda p, hook: p)  # any pattern hook forces the explicit path
    with model.hooks(fwd_hooks=[hook]):
        reference["loss"] = model(tokens, return_type="loss")
    ref_grads = torch.autograd.grad(reference["loss"], list(model.parameters()))
    torch.testing.assert_close(fast, reference["loss"], atol=1e-5, rtol=1e-4)
    for a, b in zip(fast_grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("d_head", [8, 6])  # 1/sqrt(d_head) a power of two, and not
def test_explicit_kernel__bit_identical_to_the_masked_fill_formulation_under_bf16(d_head):
    # Runs trained with the earlier explicit kernel (q scaled, q k^T, masked_fill_ with -inf)
    # must train the same way now. Catches the scale moved into the GEMM's alpha (bf16 rounds
    # q k^T before the scale then: d_head 6) or a finite mask value.
    from interp import model as model_module

    def earlier(self, q, k, v):
        qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
        n = q.shape[1]
        scores = (qh * (1.0 / math.sqrt(self.cfg.d_head))) @ kh.transpose(-1, -2)
        scores = scores.masked_fill_(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        return (scores.softmax(dim=-1).to(vh.dtype) @ vh).transpose(1, 2)

    torch.manual_seed(0)
    model = build(d_head=d_head)
    model.set_attention_kernel("explicit")
    tokens = torch.randint(0, 40, (3, 24))
    results = []
    for attend in (model_module.Attention._attend, earlier):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(model_module.Attention, "_attend", attend)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(tokens, return_type="loss")
            results.append((loss, torch.autograd.grad(loss, list(model.parameters()))))
    (loss, grads), (expected, expected_grads) = results
    assert torch.equal(loss, expected)
    assert all(torch.equal(a, b) for a, b in zip(grads, expected_grads))


def test_attention_kernel__the_chosen_kernel_runs_and_hooks_force_the_explicit_one(monkeypatch):
    # The kernels compute the same values, so only a spy sees which one ran. Catches the
    # kernel setting ignored or inverted, "auto" read from the wrong axis of q (heads, not
    # positions), and a pattern hook that does not force the explicit path.
    import torch.nn.functional as F

    from interp import model as model_module
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = build()  # 4 heads, 24 positions
    tokens = torch.randint(0, 40, (1, 24))
    for kernel, expected in (("sdpa", 2), ("explicit", 0)):
        calls.clear()
        model.set_attention_kernel(kernel)
        model(tokens)
        assert len(calls) == expected, kernel
        with model.hooks(fwd_hooks=[("blocks.0.attn.hook_attn_scores", lambda x, hook: x)]):
            calls.clear()
            model(tokens)
        assert len(calls) == (1 if kernel == "sdpa" else 0), kernel  # only the unhooked layer
    model.set_attention_kernel("auto")
    monkeypatch.setattr(model_module, "EXPLICIT_MAX_CTX", 16)  # 24 positions > 16 >= 4 heads: SDPA
    calls.clear()
    model(tokens)
    assert len(calls) == 2
    double = build().double()  # the explicit kernel's mask in the model's own dtype
    double.set_attention_kernel("explicit")
    assert double(tokens).dtype == torch.float64


def test_attention_kernel_rule__explicit_on_cpu_up_to_the_limit_else_sdpa():
    from interp.model import EXPLICIT_MAX_CTX, attention_kernel

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert attention_kernel(cpu, EXPLICIT_MAX_CTX) == "explicit"
    assert attention_kernel(cpu, EXPLICIT_MAX_CTX + 1) == "sdpa"
    assert attention_kernel(cuda, 256) == "sdpa"
    with pytest.raises(ValueError, match="attention kernel"):
        build().set_attention_kernel("flash")


def test_fused_adamw__same_update_as_the_loop():
    # Catches a fused optimiser built with other hyper-parameters (betas, weight decay groups)
    # or a state layout that a checkpoint cannot round-trip: both take three identical steps.
    from interp.config import preset
    from interp.train import make_optimizer

    train = preset("markov").train
    models = [build(), build()]
    models[1].load_state_dict(models[0].state_dict())
    start = models[0].blocks[0].attn.W_Q.detach().clone()
    fused = make_optimizer(models[0], train)
    loop = torch.optim.AdamW([
        {"params": [p for p in models[1].parameters() if p.dim() >= 2], "weight_decay": train.weight_decay},
        {"params": [p for p in models[1].parameters() if p.dim() < 2], "weight_decay": 0.0}],
        lr=train.lr, betas=(train.beta1, train.beta2), foreach=False)
    assert fused.defaults["fused"] and not loop.defaults["fused"]
    tokens = torch.randint(0, 40, (2, 24))
    for _ in range(3):
        for model, opt in zip(models, (fused, loop)):
            model(tokens, return_type="loss").backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(models[0].blocks[0].attn.W_Q, start)  # the steps did move the weights


def test_patterns__are_causal_and_normalised():
    _, cache = build().run_with_cache(torch.randint(0, 40, (2, 24)))
    pattern = cache["blocks.1.attn.hook_pattern"]
    assert torch.allclose(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))
    assert pattern.triu(1).abs().max() == 0


def test_run_with_hooks__zeroing_a_layer_output_changes_logits():
    model = build()
    tokens = torch.randint(0, 40, (2, 24))
    zeroed = model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_attn_out", lambda x, hook: x * 0)])
    assert not torch.allclose(zeroed, model(tokens))


def test_weights__tl_layout_and_factored_circuits():
    model = build(n_layers=3)
    assert model.W_Q.shape == (3, 4, 32, 8)
    assert model.W_O.shape == (3, 4, 8, 32)
    assert model.W_E.shape == (40, 32) and model.W_U.shape == (32, 40)
    assert isinstance(model.OV, FactoredMatrix) and model.OV.shape == (3, 4, 32, 32)
    dense = model.W_V[1, 2] @ model.W_O[1, 2]
    torch.testing.assert_close(model.OV[1, 2].AB, dense)
    assert "blocks.0.attn.W_Q" in model.state_dict()


def test_smeared_key__mixes_previous_key_and_leaves_position_zero():
    model = build(smeared_key=True)
    attn = model.blocks[0].attn
    keys = torch.randn(1, 5, 4, 8)
    smeared = attn.smear(keys)
    keep = torch.sigmoid(attn.smear_alpha)[None, :, None]
    torch.testing.assert_close(smeared[:, 0], keys[:, 0])
    torch.testing.assert_close(smeared[0, 3], keep[0] * keys[0, 3] + (1 - keep[0]) * keys[0, 2])


def test_smeared_key__weights_own_key_by_sigmoid_alpha_at_nonzero_alpha():
    # Catches: swapping sigmoid(alpha) and 1 - sigmoid(alpha) (invisible at alpha = 0, where
    # both are 1/2, the only value the test above sees), mixing with the next key instead of
    # the previous one, wrapping position 0 around (roll), or sharing one alpha across heads.
    # Convention (Olsson et al. 2022, smeared keys; interp.model docstring):
    #   k'_j = sigmoid(alpha_h) k_j + (1 - sigmoid(alpha_h)) k_{j-1},  k'_0 = k_0.
    model = build(smeared_key=True, positional="learned")  # keys read ln1's output alone
    attn = model.blocks[0].attn
    alphas = [2.0, -1.0, 0.5, -3.0]
    with torch.no_grad():
        attn.smear_alpha.copy_(torch.tensor(alphas))
    keys = torch.randn(2, 6, 4, 8)
    smeared = attn.smear(keys)
    for head, alpha in enumerate(alphas):
        own = 1 / (1 + math.exp(-alpha))  # sigmoid by hand, not through the model's code
        for pos in range(6):
            expected = keys[:, 0, head] if pos == 0 else own * keys[:, pos, head] + (1 - own) * keys[:, pos - 1, head]
            torch.testing.assert_close(smeared[:, pos, head], expected)
    # The limits say the same without arithmetic: alpha -> +inf keeps each key, -inf takes the previous one.
    with torch.no_grad():
        attn.smear_alpha.copy_(torch.tensor([30.0, -30.0, 30.0, -30.0]))
    smeared = attn.smear(keys)
    torch.testing.assert_close(smeared[:, :, 0], keys[:, :, 0])
    torch.testing.assert_close(smeared[:, 1:, 1], keys[:, :-1, 1])
    # And the forward pass uses it: the keys in hook_k are the smeared projections.
    tokens = torch.randint(0, 40, (2, 24))
    _, cache = model.run_with_cache(tokens)
    raw = torch.einsum("bpd,hdk->bphk", cache["blocks.0.ln1.hook_normalized"], attn.W_K) + attn.b_K
    torch.testing.assert_close(cache["blocks.0.attn.hook_k"], attn.smear(raw), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(cache["blocks.0.attn.hook_k"], raw, atol=1e-3)  # smearing did something


def test_shortformer__positions_reach_queries_and_keys_but_not_values():
    model = build(positional="shortformer")
    tokens = torch.randint(0, 40, (1, 24))
    _, cache = model.run_with_cache(tokens)
    with torch.no_grad():
        model.pos_embed.W_pos.add_(torch.randn_like(model.pos_embed.W_pos))
    _, moved = model.run_with_cache(tokens)
    torch.testing.assert_close(cache["blocks.0.attn.hook_v"], moved["blocks.0.attn.hook_v"])
    assert not torch.allclose(cache["blocks.0.attn.hook_q"], moved["blocks.0.attn.hook_q"])


@pytest.mark.parametrize("position_layers, moved_layers", [(1, [0]), (2, [0, 1]), (0, [0, 1, 2])])
def test_position_layers__positions_reach_only_the_first_layers_queries(position_layers, moved_layers):
    # Catches: position_layers ignored (positions in every layer), counted from 1 or from the
    # last layer, or its 0 ("every layer") read as none. A layer without positions computes
    # its queries from the LayerNorm-ed residual alone.
    model = build(positional="shortformer", n_layers=3, position_layers=position_layers)
    tokens = torch.randint(0, 40, (1, 24))
    _, cache = model.run_with_cache(tokens)
    for layer in range(3):
        block = model.blocks[layer]
        plain = torch.einsum("bpd,hdk->bphk", cache[f"blocks.{layer}.ln1.hook_normalized"],
                             block.attn.W_Q) + block.attn.b_Q
        has_positions = not torch.allclose(cache[f"blocks.{layer}.attn.hook_q"], plain, atol=1e-5)
        assert has_positions == (layer in moved_layers), layer


def test_position_layers__refused_beyond_the_layers_or_without_shortformer():
    from interp.errors import ConfigError
    with pytest.raises(ConfigError, match="model.position_layers must be in 0..n_layers"):
        ModelConfig(n_layers=2, position_layers=3)
    with pytest.raises(ConfigError, match="needs model.positional=shortformer"):
        ModelConfig(positional="learned", position_layers=1)


def test_per_token_loss__column_i_is_the_loss_of_token_i_plus_1():
    model = build()
    tokens = torch.randint(0, 40, (2, 24))
    logits = model(tokens)
    per_token = model(tokens, return_type="per_token_loss")
    expected = -logits[0, 4].log_softmax(-1)[tokens[0, 5]]
    torch.testing.assert_close(per_token[0, 4], expected)
    torch.testing.assert_close(model(tokens, return_type="loss"), per_token.mean())


def test_next_token_loss__bit_identical_to_autograd_cross_entropy():
    # Training must take the same path as with F.cross_entropy on the shifted float logits
    # (runs trained before the hand-written backward, and the README's figures, depend on it).
    # Catches an exp-and-subtract backward (float32 rounding differs: checked), a loss reduced
    # in another order, or a gradient cast through another dtype.
    # In float32 as well, where a rounding difference is not hidden by the cast to bf16.
    from interp.model import next_token_loss
    for dtype in (torch.bfloat16, torch.float32):
        torch.manual_seed(1)
        tokens = torch.randint(0, 64, (4, 33))
        logits = (3 * torch.randn(4, 33, 64)).to(dtype)
        ours, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
        loss = next_token_loss(ours, tokens).mean()
        expected = torch.nn.functional.cross_entropy(theirs[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten(),
                                                     reduction="none").view(4, 32).mean()
        loss.backward()
        expected.backward()
        assert torch.equal(loss, expected) and torch.equal(ours.grad, theirs.grad), dtype


def test_next_token_loss__values_and_hand_written_gradient_match_autograd():
    # The loss has a hand-written backward. Catches a gradient without the -1 at the target
    # (or at the wrong column: the shift), unscaled by the incoming gradient, nonzero at the
    # last position (it has no target), or returned in float32 for bf16 logits.
    from interp.model import next_token_loss
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11, dtype=torch.float64, requires_grad=True)
    tokens = torch.randint(0, 11, (3, 7))
    assert torch.autograd.gradcheck(lambda x: next_token_loss(x, tokens), (logits,))
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten(),
                                                 reduction="none").view(3, 6)
    torch.testing.assert_close(next_token_loss(logits, tokens), expected)
    weights = torch.rand(3, 6, dtype=torch.float64)
    (next_token_loss(logits, tokens) * weights).sum().backward()
    assert logits.grad[:, -1].eq(0).all()
    low = logits.detach().bfloat16().requires_grad_()
    loss = next_token_loss(low, tokens)
    loss.sum().backward()
    assert loss.dtype == torch.float32 and low.grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss, next_token_loss(low.detach().float(), tokens))
    # Its backward is not differentiable: a second-order gradient must fail, not come out wrong.
    weight = torch.randn(11, 11, dtype=torch.float64, requires_grad=True)
    first, = torch.autograd.grad(next_token_loss(logits.detach() @ weight, tokens).sum(), weight, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|not differentiable|does not require grad"):
        torch.autograd.grad(first.pow(2).sum(), weight)


def test_training__loss_decreases_on_a_repeated_batch():
    model = build()
    tokens = torch.randint(0, 40, (4, 24))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = model(tokens, return_type="loss").item()
    for _ in range(60):
        loss = model(tokens, return_type="loss")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.5 * first


def test_too_long_sequence__is_refused_with_the_limit():
    with pytest.raises(ValueError, match="n_ctx=24"):
        build()(torch.zeros(1, 25, dtype=torch.long))
