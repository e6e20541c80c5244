"""Activations at named hook points, with the forward pass stopped once the last of them is in.

``run_with_cache`` runs the whole model even when only attention patterns are wanted: the
last layer's value mixing and output, the final norm, the unembedding (d_model x d_vocab per
token: on the default model about a third of a forward pass) and the logits are computed and
thrown away. :func:`activations` records the wanted hooks and stops the forward pass by an
exception raised from the hook that completes the set, so nothing after the last wanted
activation runs. It works on any model with TransformerLens hook points (``model.hooks``
resets them on the way out, exception or not), this project's and a TransformerBridge's alike.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from jaxtyping import Int
from torch import Tensor


class _Complete(Exception):
    """Raised by the hook that records the last wanted activation; never leaves this module."""


@torch.no_grad()
def activations(model, tokens: Int[Tensor, "batch pos"], names: Iterable[str]) -> dict[str, Tensor]:
    """{name: activation} for every hook name in ``names``, as the model computes it on
    ``tokens`` (same device and dtype). The forward pass stops right after the last of them."""
    wanted = set(names)
    got: dict[str, Tensor] = {}

    def recorder(name: str):  # by the name asked for: a bridge's hook has its own name
        def record(activation: Tensor, hook) -> None:
            got[name] = activation
            if len(got) == len(wanted):
                raise _Complete
        return record

    try:
        with model.hooks(fwd_hooks=[(name, recorder(name)) for name in sorted(wanted)]):
            model(tokens, return_type=None)
    except _Complete:
        pass
    missing = wanted - got.keys()
    if missing:  # a hook that never fires (a misspelt name is refused by model.hooks itself)
        raise ValueError(f"the forward pass never reached hook(s) {sorted(missing)}")
    return got
