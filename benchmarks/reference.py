"""A minimal plain-PyTorch transformer of the default shape: the speed reference.

Written the way a careful engineer would write it without any interpretability machinery
(nanoGPT style: nn.Linear projections, fused SDPA attention, no hooks), with the same
architecture as interp's default model (attention-only, LayerNorm, shortformer positions),
so that ``bench_train.py`` compares like with like.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from interp.config import ModelConfig


class ReferenceAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        inner = cfg.n_heads * cfg.d_head
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_head
        self.qk = nn.Linear(cfg.d_model, 2 * inner)  # queries and keys share the shortformer input
        self.v = nn.Linear(cfg.d_model, inner)
        self.out = nn.Linear(inner, cfg.d_model)

    def forward(self, qk_in: torch.Tensor, v_in: torch.Tensor) -> torch.Tensor:
        b, n, _ = v_in.shape
        q, k = self.qk(qk_in).split(self.n_heads * self.d_head, dim=-1)
        heads = lambda t: t.view(b, n, self.n_heads, self.d_head).transpose(1, 2)  # (B, nh, T, hs)
        z = F.scaled_dot_product_attention(heads(q), heads(k), heads(self.v(v_in)), is_causal=True)
        return self.out(z.transpose(1, 2).reshape(b, n, -1))


class ReferenceModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        assert cfg.attn_only and cfg.positional == "shortformer" and cfg.normalization == "layernorm"
        self.tok = nn.Embedding(cfg.d_vocab, cfg.d_model)
        self.pos = nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.lns = nn.ModuleList(nn.LayerNorm(cfg.d_model) for _ in range(cfg.n_layers))
        self.attns = nn.ModuleList(ReferenceAttention(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.d_vocab)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=cfg.init_std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tok(tokens)
        pos = self.pos.weight[: tokens.shape[1]]
        for ln, attn in zip(self.lns, self.attns):
            normed = ln(x)
            x = x + attn(normed + pos, normed)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten())
