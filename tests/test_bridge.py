"""A run's model opens in TransformerLens 4 as a TransformerBridge with the same logits and
attention patterns; architectures TransformerLens computes otherwise are refused in one line."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from conftest import tiny_config
from interp.bridge import load_bridge, to_transformer_bridge
from interp.errors import ConfigError
from interp.model import Transformer


def _model(**model) -> Transformer:
    cfg = replace(tiny_config().model, **{"d_vocab": 40, **model})
    net = Transformer(cfg).eval()
    with torch.no_grad():  # weights far from init, so that a layout error shows in the logits
        for p in net.parameters():
            p.normal_(0, 0.3)
    return net


@pytest.mark.parametrize("positional, attn_only, normalization, position_layers", [
    ("learned", True, "layernorm", 0), ("learned", False, "layernorm", 0), ("learned", True, "none", 0),
    ("shortformer", True, "layernorm", 0), ("shortformer", False, "none", 0), ("none", True, "layernorm", 0),
    ("shortformer", True, "layernorm", 1),
])
def test_a_model_and_its_bridge_give_the_same_logits_and_patterns(positional, attn_only, normalization,
                                                                  position_layers):
    # Catches: a weight converted in the wrong layout (W_O transposed, heads mis-grouped),
    # a missing bias or LayerNorm, another activation in the MLP, shortformer positions added
    # to the residual stream (or the values) instead of only to the queries and keys, or to a
    # layer past model.position_layers.
    model = _model(positional=positional, attn_only=attn_only, normalization=normalization, d_mlp=64,
                   position_layers=position_layers)
    assert model.cfg.n_layers >= 2
    bridge = to_transformer_bridge(model)
    bridge.reset_hooks()  # the shortformer hooks are permanent: a user's reset keeps them
    tokens = torch.randint(0, 40, (3, 24))
    with torch.no_grad():
        ours, our_cache = model.run_with_cache(tokens)
        theirs, their_cache = bridge.run_with_cache(tokens)
    scale = ours.abs().max()
    assert torch.allclose(ours, theirs, atol=1e-5 * scale), (ours - theirs).abs().max()
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.attn.hook_pattern"
        assert torch.allclose(our_cache[name], their_cache[name], atol=1e-5)


@pytest.mark.parametrize("change, expected", [
    ({"positional": "rotary"}, "model.positional=rotary has no TransformerLens equivalent"),
    ({"smeared_key": True}, "smeared keys have no TransformerLens equivalent"),
])
def test_architectures_transformerlens_computes_otherwise_are_refused(change, expected):
    with pytest.raises(ConfigError, match=expected):
        to_transformer_bridge(_model(**change))


def test_a_saved_run_loads_as_a_bridge(tmp_path):
    from interp.train import train

    run = train(tiny_config(train={"steps": 10}), tmp_path / "run", progress=False)  # shortformer, as every preset
    bridge = load_bridge(run)
    tokens = torch.randint(0, bridge.cfg.d_vocab, (2, 16))
    from interp.checkpoints import load_model

    with torch.no_grad():
        assert torch.allclose(load_model(run)(tokens), bridge(tokens), atol=1e-5)
