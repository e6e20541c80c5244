"""A checkpoint as a TransformerLens 4 ``TransformerBridge``, the field's own model class.

TransformerLens 4 removed ``HookedTransformer``; its ``TransformerBridge.boot_native`` builds
the same architecture natively, and ``convert_tl_checkpoint`` turns a state dict in
``HookedTransformer``'s layout (``blocks.0.attn.W_Q`` of ``[head, d_model, d_head]``, which is
this project's layout) into the bridge's. So a run trained here opens in TransformerLens with
its own ``run_with_cache``, hook names and tools, and gives the same logits and patterns
(tested for every positional kind converted).

Positions: ``learned`` ones are the bridge's own. ``shortformer`` positions (every preset's)
enter only the queries and keys, which the native bridge has no option for; since a query is
``(LN(x) + p) W_Q + b_Q``, the bridge gets zero ``W_pos`` and a permanent hook on each layer's
``hook_q`` and ``hook_k`` that adds ``p W_Q`` and ``p W_K`` (fixed at conversion: they do not
follow later edits of the bridge's weights; the positions themselves are kept as
``bridge.shortformer_W_pos``). ``none`` is a zero ``W_pos``. Refused in one line: ``rotary``
(TransformerLens pairs the rotated dimensions differently, so the logits would differ) and
smeared keys (no TransformerLens counterpart).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interp.errors import ConfigError

CONVERTED = ("learned", "shortformer", "none")


def bridge_config(model_cfg: Any) -> dict[str, Any]:
    """The ``boot_native`` config for a model of ``model_cfg`` (a :class:`ModelConfig`);
    a ConfigError naming the reason for an architecture TransformerLens computes otherwise."""
    if model_cfg.positional not in CONVERTED:
        raise ConfigError(f"model.positional={model_cfg.positional} has no TransformerLens equivalent that "
                          f"computes the same logits; runs with {', '.join(CONVERTED)} positions convert")
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
    import torch
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    bridge = TransformerBridge.boot_native(bridge_config(model.cfg))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    positions = state.pop("pos_embed.W_pos", None)
    if model.cfg.positional != "learned":  # the residual stream gets no positions
        state["pos_embed.W_pos"] = torch.zeros(model.cfg.n_ctx, model.cfg.d_model)
    else:
        state["pos_embed.W_pos"] = positions
    bridge.load_state_dict(convert_tl_checkpoint(state, bridge.cfg), strict=True)
    if model.cfg.positional == "shortformer":
        _add_shortformer_hooks(bridge, model, positions)
    return bridge.to(next(model.parameters()).device).eval()


def _add_shortformer_hooks(bridge, model, positions) -> None:
    """Permanent hooks adding ``positions @ W_Q`` to the queries and ``positions @ W_K`` to the
    keys of every layer that gets them (``model.position_layers``): what shortformer positions
    added to the LayerNorm-ed input do."""
    import torch

    bridge.shortformer_W_pos = positions
    for layer, block in enumerate(model.blocks[:model.cfg.resolved_position_layers]):
        for name, weight in (("q", block.attn.W_Q), ("k", block.attn.W_K)):
            term = torch.einsum("pd,hdk->phk", positions, weight.detach().cpu())
            bridge.add_hook(f"blocks.{layer}.attn.hook_{name}", _adder(term), is_permanent=True)


def _adder(term):
    """A hook adding ``term[:pos]`` (``[pos, head, d_head]``) to ``[batch, pos, head, d_head]``."""
    def add(value, hook):
        return value + term[: value.shape[1]].to(value.device, value.dtype)
    return add


def load_bridge(path: str | Path, device: str = "cpu"):
    """A checkpoint (or a run: its last checkpoint) as a ``TransformerBridge``, loaded and
    checked as :func:`interp.checkpoints.load_model` does."""
    from interp.checkpoints import load_model

    return to_transformer_bridge(load_model(path, device))
