"""A hand-built two-layer induction circuit, for tests of the measures.

:func:`build_induction_model` returns an attention-only :class:`interp.model.Transformer`
(``normalization="none"``, ``positional="shortformer"``, 2 layers x 2 heads, all biases 0)
whose weights are set by hand. With V = d_vocab and N = n_ctx the residual stream is

====================  ==============  ===================================================
dims                  name            written by
====================  ==============  ===================================================
[0, V)                ``TOK``         W_E: token t -> one-hot e_t (read by W_U: logit t)
[V, 2V)               ``PREV``        head 0.0: the previous token's one-hot
[2V, 2V + N)          ``POS``         W_pos: position p -> one-hot (shortformer: it only
                                      enters the query/key inputs, never the residual)
====================  ==============  ===================================================

so d_model = 2V + N and d_head = max(V + 1, N). Token 0 is the BOS token and should appear
only at position 0.

- Head 0.0, previous-token head: QK reads only POS, score(i -> i-1) = ``attn_scale`` (after
  the model's 1/sqrt(d_head)) and 0 for every other key, so query i >= 1 attends to i-1 with
  weight ~1 (position 0 attends to itself). OV copies TOK -> PREV with gain 1
  (``W_OV = sum_t TOK_t^T PREV_t``), so PREV at position i holds token i-1 (BOS at 0).
- Head 1.0, induction head (K-composition with 0.0): query reads TOK, key reads PREV,
  ``W_QK = s * sum_{t>=1} TOK_t^T PREV_t + (s / 2) * sum_t TOK_t^T TOK_0`` with s =
  ``attn_scale``: a query with token t attends to the keys whose previous token is t
  (score s) and, when there is none, rests on the BOS token (score s / 2; the key reads its
  own token, since positions 0 and 1 both have BOS in PREV), like trained induction heads.
  OV copies TOK -> TOK with gain ``copy_gain`` (``W_E W_OV W_U = copy_gain * I``), raising
  the logit of the attended token (BOS too, so a resting query predicts BOS: the loss on a
  first occurrence is about ``copy_gain`` nats).
- Heads 0.1 and 1.1: all weights zero (uniform attention, zero output).

Consequences the tests rely on: on BOS + a sequence of distinct tokens repeated twice, the
second repeat is predicted with loss ~0; the OV copying score of 1.0 is +1 and of 0.0 is 0
(its OV writes PREV, which W_U does not read); K-composition(0.0 -> 1.0) is exactly
sqrt((V - 1) / (V * (V - 1 + V / 4))) (about 1/sqrt(V); the resting term, which does not go
through PREV, lowers it a little) while its Q- and V-composition are 0.
"""

from __future__ import annotations

import math

import torch

from interp.config import ModelConfig
from interp.model import Transformer


def induction_layout(d_vocab: int, n_ctx: int) -> dict[str, slice]:
    """The residual-stream subspaces of :func:`build_induction_model`."""
    return {"tok": slice(0, d_vocab), "prev": slice(d_vocab, 2 * d_vocab),
            "pos": slice(2 * d_vocab, 2 * d_vocab + n_ctx)}


@torch.no_grad()
def build_induction_model(d_vocab: int = 12, n_ctx: int = 24, attn_scale: float = 30.0,
                          copy_gain: float = 20.0) -> Transformer:
    """A 2-layer attention-only model whose head 0.0 is a previous-token head and whose head
    1.0 is an induction head; layout in the module docstring."""
    V, N = d_vocab, n_ctx
    d_head = max(V + 1, N)
    cfg = ModelConfig(n_layers=2, d_model=2 * V + N, n_heads=2, d_head=d_head, n_ctx=N,
                      d_vocab=V, attn_only=True, positional="shortformer", normalization="none")
    model = Transformer(cfg)
    for param in model.parameters():
        param.zero_()
    tok, prev, pos = (torch.arange(s.start, s.stop) for s in induction_layout(V, N).values())
    vocab, positions = torch.arange(V), torch.arange(N)
    q_gain = attn_scale * math.sqrt(d_head)  # the model divides scores by sqrt(d_head)

    model.embed.W_E[vocab, tok] = 1.0
    model.pos_embed.W_pos[positions, pos] = 1.0
    model.unembed.W_U[tok, vocab] = 1.0

    prev_head = model.blocks[0].attn  # head 0: query i -> slot i, key j -> slot j+1
    prev_head.W_Q[0, pos, positions] = q_gain
    prev_head.W_K[0, pos[:-1], positions[1:]] = 1.0
    prev_head.W_V[0, tok, vocab] = 1.0
    prev_head.W_O[0, vocab, prev] = 1.0

    induction = model.blocks[1].attn  # head 0: slot t matches token t; slot V rests on BOS
    induction.W_Q[0, tok[1:], vocab[1:]] = q_gain
    induction.W_K[0, prev[1:], vocab[1:]] = 1.0
    induction.W_Q[0, tok, V] = q_gain / 2
    induction.W_K[0, tok[0], V] = 1.0
    induction.W_V[0, tok, vocab] = 1.0
    induction.W_O[0, vocab, tok] = copy_gain
    return model


def repeated_sequence(d_vocab: int, length: int, batch: int = 8, seed: int = 0) -> torch.Tensor:
    """BOS (token 0) + ``length`` distinct random non-BOS tokens, repeated twice: [batch, 1 + 2*length]."""
    gen = torch.Generator().manual_seed(seed)
    rows = torch.stack([torch.randperm(d_vocab - 1, generator=gen)[:length] + 1 for _ in range(batch)])
    return torch.cat([torch.zeros(batch, 1, dtype=torch.long), rows, rows], dim=1)


@torch.no_grad()
def build_bos_suppressing_copier(d_vocab: int = 12, n_ctx: int = 24, copy_gain: float = 5.6,
                                 bos_gain: float = -379.0, attn_scale: float = 30.0) -> Transformer:
    """A 1-layer, 1-head attention-only model whose head copies every ordinary token and
    strongly suppresses BOS (token 0), like the heads of trained smeared-key Markov models
    (defaults: their measured diagonal averages, +5.6 for ordinary tokens, -379 for BOS).

    Residual stream = TOK only (d_model = V, W_E = W_U = identity, no positions, no norm).
    OV: ``W_E W_V W_O W_U = diag(bos_gain, copy_gain, ..., copy_gain)``, so over every token
    its eigenvalues are that diagonal and its copying score is
    ``((V - 1) copy_gain + bos_gain) / ((V - 1) |copy_gain| + |bos_gain|)`` (-0.72 with the
    defaults), while over the ordinary tokens 1..V-1 it is exactly +1.
    QK: a query with token t >= 1 scores ``attn_scale`` (after 1/sqrt(d_head)) on keys with
    the same token t (slot t) and on the BOS key (slot V), 0 elsewhere; so on BOS + distinct
    tokens each query i >= 1 attends half to itself and half to BOS.
    """
    V = d_vocab
    d_head = V + 1
    cfg = ModelConfig(n_layers=1, d_model=V, n_heads=1, d_head=d_head, n_ctx=n_ctx, d_vocab=V,
                      attn_only=True, positional="none", normalization="none")
    model = Transformer(cfg)
    for param in model.parameters():
        param.zero_()
    vocab = torch.arange(V)
    q_gain = attn_scale * math.sqrt(d_head)
    model.embed.W_E[vocab, vocab] = 1.0
    model.unembed.W_U[vocab, vocab] = 1.0
    attn = model.blocks[0].attn
    attn.W_Q[0, vocab[1:], vocab[1:]] = q_gain  # token t matches keys of token t ...
    attn.W_K[0, vocab[1:], vocab[1:]] = 1.0
    attn.W_Q[0, vocab[1:], V] = q_gain  # ... and the BOS key, equally
    attn.W_K[0, 0, V] = 1.0
    attn.W_V[0, vocab, vocab] = 1.0
    attn.W_O[0, vocab, vocab] = copy_gain
    attn.W_O[0, 0, 0] = bos_gain
    return model


@torch.no_grad()
def add_positional_head(model: Transformer, layer: int, head: int, back: int, attn_scale: float = 30.0,
                        copy_gain: float = 20.0) -> Transformer:
    """Make head (layer, head) of a :func:`build_induction_model` attend from every query i to
    key i - ``back`` (QK reads only POS, like head 0.0; queries i < ``back`` see all-zero scores
    and attend uniformly) and copy TOK -> TOK with ``copy_gain``, whatever the tokens are.

    With ``back = seq_len - 1`` on a probe of blocks of ``seq_len`` tokens, every query of a later
    block attends to the place right after its own place in the previous block: an induction
    target when the blocks repeat, and the same position when they do not. Its prefix matching
    is then high on both the repeated probe and its null, and its OV copying is +1: the old
    rule (prefix matching > 0.4, copying > 0) calls it an induction head."""
    V, N = model.cfg.d_vocab, model.cfg.n_ctx
    _, _, pos = (torch.arange(s.start, s.stop) for s in induction_layout(V, N).values())
    tok = torch.arange(V)
    q_gain = attn_scale * math.sqrt(model.cfg.d_head)
    attn = model.blocks[layer].attn
    for name in ("W_Q", "W_K", "W_V", "W_O"):
        getattr(attn, name)[head].zero_()
    slots = torch.arange(N - back)
    attn.W_Q[head, pos[back:], slots] = q_gain  # query i -> slot i - back
    attn.W_K[head, pos[:N - back], slots] = 1.0  # key j -> slot j
    attn.W_V[head, tok, tok] = 1.0
    attn.W_O[head, tok, tok] = copy_gain
    return model
