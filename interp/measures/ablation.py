"""Pattern-preserving ablation of single heads (Olsson et al. 2022, "direct ablation").

Record every layer's attention pattern on the clean input; then, for each head, rerun with
that head's output (``hook_z``) zeroed and every layer's pattern frozen to its clean value.
Freezing the patterns keeps later heads attending where they did, so the change in loss is
what the ablated head contributes through the values it writes, not through re-routed
attention downstream.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.measures.activations import activations
from interp.measures.heads import attention_patterns
from interp.measures.icl import _device, losses_from_logits, per_token_losses, rows_per_batch


def _freeze_hooks(patterns: Float[Tensor, "layer batch head query key"]) -> list:
    def freeze(layer: int):
        def hook(pattern: Tensor, hook) -> Tensor:
            return patterns[layer].to(pattern.device, pattern.dtype)
        return hook

    return [(f"blocks.{layer}.attn.hook_pattern", freeze(layer)) for layer in range(len(patterns))]


def _zero_head(head: int):
    def hook(z: Tensor, hook) -> Tensor:
        z = z.clone()  # never edit a cached or shared tensor in place
        z[:, :, head] = 0
        return z
    return hook


@torch.no_grad()
def ablated_losses(model, tokens: Int[Tensor, "batch pos"], batch_size: int | None = None
                   ) -> Float[Tensor, "layer head batch pos"]:
    """Per-token losses [layer, head, batch, pos] with each head zeroed under frozen patterns.

    Column 0 of the last axis is NaN, as in :func:`per_token_losses`. ``batch_size`` rows per
    pass (None: :func:`interp.measures.icl.rows_per_batch`); patterns are frozen row by row, so
    it changes only the speed.
    """
    batch_size = batch_size or rows_per_batch(tokens.shape[-1])
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    out = torch.empty(n_layers, n_heads, *tokens.shape)
    if _resumable(model):
        return _ablated_losses_from_residual(model, tokens, batch_size, out)
    for start in range(0, tokens.shape[0], batch_size):
        chunk = tokens[start:start + batch_size].to(_device(model))
        frozen = _freeze_hooks(attention_patterns(model, chunk))
        for layer in range(n_layers):
            for head in range(n_heads):
                hooks = frozen + [(f"blocks.{layer}.attn.hook_z", _zero_head(head))]
                with model.hooks(fwd_hooks=hooks):
                    losses = per_token_losses(model, chunk, batch_size=chunk.shape[0])
                out[layer, head, start:start + chunk.shape[0]] = losses
    return out


def _resumable(model) -> bool:
    """Whether :func:`_ablated_losses_from_residual` applies: this project's model (it can
    start at a layer from a given residual stream) without MLPs (an MLP reads the residual
    between a head's output and the next block, so the head's change does not stay additive)."""
    from interp.model import Transformer

    return isinstance(model, Transformer) and model.cfg.attn_only


def _ablated_losses_from_residual(model, tokens: Int[Tensor, "batch pos"], batch_size: int,
                                  out: Float[Tensor, "layer head batch pos"]) -> Float[Tensor, "layer head batch pos"]:
    """:func:`ablated_losses` without running the blocks a head's ablation does not change.

    With every pattern frozen, zeroing head h of layer l (attention only) changes layer l's
    output by exactly ``-z_h W_O[h]`` (``b_O`` stays: it belongs to the layer) and nothing
    before it. So the stream after block l is the clean one minus that, and the model runs from
    block l+1 on (for the last layer: only the final norm and unembedding). On the default
    2-layer model that is about half the work of a full pass per head. The result is the same
    function as the hooked pass; under bf16 autocast the rounding differs (the clean stream
    holds the layer's rounded output; the subtraction is in the stream's dtype). Hooks a caller
    attached to the ablated layer's ``hook_z``, ``hook_attn_out`` or ``hook_resid_post`` are
    not re-run (the hooked pass would run them); nothing in interp attaches such hooks.
    """
    n_layers = model.cfg.n_layers
    names = [f"blocks.{layer}.{hook}" for layer in range(n_layers)
             for hook in ("attn.hook_pattern", "attn.hook_z", "hook_resid_post")]
    for start in range(0, tokens.shape[0], batch_size):
        chunk = tokens[start:start + batch_size].to(_device(model))
        clean = activations(model, chunk, names)
        frozen = _freeze_hooks(torch.stack([clean[f"blocks.{layer}.attn.hook_pattern"].float()
                                            for layer in range(n_layers)]))
        for layer in range(n_layers):
            after = clean[f"blocks.{layer}.hook_resid_post"]  # the stream's dtype (float32 under autocast)
            z = clean[f"blocks.{layer}.attn.hook_z"].to(after.dtype)  # [batch, pos, head, d_head]
            W_O = model.blocks[layer].attn.W_O.to(after.dtype)  # [head, d_head, d_model]
            for head in range(model.cfg.n_heads):
                with torch.autocast(after.device.type, enabled=False):  # the head's output, unrounded
                    resid = after - z[:, :, head] @ W_O[head]
                with model.hooks(fwd_hooks=frozen):
                    logits = model(chunk, start_at_layer=layer + 1, residual=resid)
                out[layer, head, start:start + chunk.shape[0]] = losses_from_logits(logits, chunk)
    return out


@torch.no_grad()
def losses_without_heads(model, tokens: Int[Tensor, "batch pos"], heads: list[tuple[int, int]],
                         batch_size: int | None = None) -> Float[Tensor, "batch pos"]:
    """Per-token losses with every (layer, head) in ``heads`` zeroed at once, patterns frozen.

    The joint version of :func:`ablated_losses`: how much of the ICL score a set of heads
    (say, the induction heads) accounts for together, not one at a time.
    """
    out, batch_size = [], batch_size or rows_per_batch(tokens.shape[-1])
    for start in range(0, tokens.shape[0], batch_size):
        chunk = tokens[start:start + batch_size].to(_device(model))
        hooks = _freeze_hooks(attention_patterns(model, chunk))
        for layer in sorted({layer for layer, _ in heads}):
            hooks.append((f"blocks.{layer}.attn.hook_z",
                          _zero_heads([h for l, h in heads if l == layer])))
        with model.hooks(fwd_hooks=hooks):
            out.append(per_token_losses(model, chunk, batch_size=chunk.shape[0]))
    return torch.cat(out)


def _zero_heads(heads: list[int]):
    def hook(z: Tensor, hook) -> Tensor:
        z = z.clone()
        z[:, :, heads] = 0
        return z
    return hook


def ablation_effects(clean: Float[Tensor, "batch pos"], ablated: Float[Tensor, "layer head batch pos"],
                     late: int, early: int) -> Float[Tensor, "layer head"]:
    """Change in ICL score when each head is ablated: ICL(ablated) - ICL(clean).

    ICL = mean loss at ``late`` - mean loss at ``early``; a positive change means the head
    was contributing in-context learning (its removal made the score less negative).
    """
    clean_icl = clean[:, late].mean() - clean[:, early].mean()
    ablated_icl = ablated[..., late].mean(-1) - ablated[..., early].mean(-1)
    return ablated_icl - clean_icl


def projection_on_direction(delta: Float[Tensor, "... pairs"], direction: Float[Tensor, "pairs"]
                            ) -> Float[Tensor, "..."]:
    """Projection of per-token loss changes onto a direction, normalised to a unit vector.

    Used with direction = loss(after phase change) - loss(before) on fixed (example, position)
    pairs: a head whose ablation moves the losses back to their pre-change values projects
    negatively (it undoes the change), with magnitude in nats along the unit vector.
    """
    unit = direction / direction.norm().clamp_min(1e-12)
    return delta @ unit
