"""A checkpoint as a TransformerLens 4 ``TransformerBridge``, the field's own model class.

TransformerLens 4 removed ``HookedTransformer``; its ``TransformerBridge.boot_native`` builds
the same architecture natively, and ``convert_tl_checkpoint`` turns a state dict in
``HookedTransformer``'s layout (``blocks.0.attn.W_Q`` of ``[head, d_model, d_head]``, which is
this project's layout) into the bridge's. So a run trained here opens in TransformerLens with
its own ``run_with_cache``, hook names and tools, and gives the same logits (tested).

Only the architectures both sides compute alike are converted: learned absolute positions,
LayerNorm or none, attention-only or with MLPs. Refused in one line: ``shortformer`` (the
native bridge has none), ``rotary`` (TransformerLens pairs the rotated dimensions differently,
so the logits would differ), no positions, and smeared keys (no TransformerLens equivalent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interp.errors import ConfigError


def bridge_config(model_cfg: Any) -> dict[str, Any]:
    """The ``boot_native`` config for a model of ``model_cfg`` (a :class:`ModelConfig`);
    a ConfigError naming the reason for an architecture TransformerLens computes otherwise."""
    if model_cfg.positional != "learned":
        raise ConfigError(f"model.positional={model_cfg.positional} has no TransformerLens equivalent that "
                          f"computes the same logits; only runs with model.positional=learned convert")
    if model_cfg.smeared_key:
        raise ConfigError("smeared keys have no TransformerLens equivalent; only runs without "
                          "model.smeared_key convert")
    cfg = {"n_layers": model_cfg.n_layers, "d_model": model_cfg.d_model, "n_heads": model_cfg.n_heads,
           "d_head": model_cfg.d_head, "n_ctx": model_cfg.n_ctx, "d_vocab": model_cfg.d_vocab,
           "attn_only": model_cfg.attn_only, "act_fn": model_cfg.act_fn,
           "normalization_type": "LN" if model_cfg.normalization == "layernorm" else None,
           "positional_embedding_type": "standard"}
    if not model_cfg.attn_only:
        cfg["d_mlp"] = model_cfg.d_mlp
    return cfg


def to_transformer_bridge(model):
    """This project's :class:`interp.model.Transformer` as an equivalent ``TransformerBridge``
    (same weights, same device, eval mode)."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    bridge = TransformerBridge.boot_native(bridge_config(model.cfg))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    bridge.load_state_dict(convert_tl_checkpoint(state, bridge.cfg), strict=True)
    return bridge.to(next(model.parameters()).device).eval()


def load_bridge(path: str | Path, device: str = "cpu"):
    """A checkpoint (or a run: its last checkpoint) as a ``TransformerBridge``, loaded and
    checked as :func:`interp.checkpoints.load_model` does."""
    from interp.checkpoints import load_model

    return to_transformer_bridge(load_model(path, device))
