"""interp.measures.activations: the activations run_with_cache gives, without the rest of the pass."""

from __future__ import annotations

import contextlib

import pytest
import torch

from interp.config import ModelConfig
from interp.measures.activations import activations
from interp.model import Transformer

NAMES = ["blocks.0.attn.hook_z", "blocks.1.attn.hook_pattern", "blocks.0.attn.hook_pattern"]


def model_and_tokens(**overrides):
    values = dict(n_layers=2, d_model=32, n_heads=2, d_head=16, n_ctx=64, d_vocab=50, attn_only=False)
    model = Transformer(ModelConfig(**{**values, **overrides}))
    return model, torch.randint(0, 50, (3, 40), generator=torch.Generator().manual_seed(0))


def test_activations__equal_run_with_cache():
    model, tokens = model_and_tokens()
    _, cache = model.run_with_cache(tokens)
    got = activations(model, tokens, NAMES)
    assert set(got) == set(NAMES)
    for name in NAMES:  # float32 rounding only (about 3e-8 seen)
        torch.testing.assert_close(got[name], cache[name], rtol=0, atol=1e-6)


def test_activations__stop_the_pass_after_the_last_one(monkeypatch):
    """Negative control: a version that records and lets the pass run on (no stop) reaches the
    last layer's MLP and the unembedding; this one never does."""
    model, tokens = model_and_tokens()
    calls = []
    for name in ("unembed", "ln_final"):
        module = getattr(model, name)
        counted = lambda *a, _f=module.forward, _n=name, **k: calls.append(_n) or _f(*a, **k)  # noqa: E731
        monkeypatch.setattr(module, "forward", counted)
    mlp = model.blocks[1].mlp
    monkeypatch.setattr(mlp, "forward", lambda *a, _f=mlp.forward, **k: calls.append("mlp 1") or _f(*a, **k))
    activations(model, tokens, NAMES)
    assert calls == []
    model(tokens)  # the patch counts: a full pass reaches all three
    assert set(calls) == {"unembed", "ln_final", "mlp 1"}


def test_activations__leave_no_hook_behind():
    model, tokens = model_and_tokens()
    before = model(tokens)
    activations(model, tokens, NAMES)
    assert all(not point.fwd_hooks for point in model.hook_dict.values())
    torch.testing.assert_close(model(tokens), before, rtol=0, atol=0)


def test_activations__refuse_a_name_the_model_lacks_and_one_that_never_fires():
    model, tokens = model_and_tokens(attn_only=True)
    with pytest.raises(KeyError):  # TransformerLens's own refusal of an unknown hook point
        activations(model, tokens, ["blocks.0.hook_mlp_out"])

    class Silent:  # a hooked model whose pass fires none of its hooks
        @contextlib.contextmanager
        def hooks(self, fwd_hooks):
            yield self

        def __call__(self, tokens, return_type=None):
            return None

    with pytest.raises(ValueError, match="never reached"):
        activations(Silent(), tokens, ["blocks.0.attn.hook_pattern"])
