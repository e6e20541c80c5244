"""Small attention-only and MLP transformers with TransformerLens hook names.

The model subclasses TransformerLens's :class:`HookedRootModule` and places :class:`HookPoint`
modules where :class:`HookedTransformer` has them, so ``run_with_cache``, ``run_with_hooks`` and
:class:`ActivationCache` work, and parameter names match TransformerLens state dicts
(``blocks.0.attn.W_Q`` is ``[n_heads, d_model, d_head]``, ``embed.W_E`` is ``[d_vocab, d_model]``).

Speed: attention has two kernels that compute the same function (tested):
- ``sdpa``: ``F.scaled_dot_product_attention(is_causal=True)`` (flash attention on CUDA);
- ``explicit``: ``softmax(q k^T / sqrt(d_head) + causal mask) v`` as two batched matmuls, with
  1/sqrt(d_head) folded into q and the first a ``baddbmm`` whose added input is the mask.
As soon as a hook is attached to the scores or pattern (``run_with_cache``, pattern ablations)
the explicit kernel runs, with the hooks. Otherwise :func:`attention_kernel` chooses by a fixed
rule (not a calibration, so that a run and its resume always use the same kernel): ``explicit``
on the CPU up to a context of :data:`EXPLICIT_MAX_CTX`, where PyTorch's CPU flash kernel (a
blocked loop written for long contexts) trained the default preset at 0.86-0.87 of the explicit
kernel's tokens/s on a quiet 2-core CPU (``benchmarks/bench_train.py --attention``, 2026-12-02);
``sdpa`` on CUDA and
for longer contexts, where the explicit kernel's [batch, head, n, n] scores cost memory.

Architecture choices beyond the config (stated here because analysis depends on them):
- shortformer positions are added to the LayerNorm-ed input of queries and keys, not to the
  residual stream or the values (as TransformerLens's ``shortformer`` does), in every block or
  in the first ``position_layers``;
- the smeared key mixes the key vectors after the K projection and before rotary (if any):
  k'_j = sigmoid(alpha) k_j + (1 - sigmoid(alpha)) k_{j-1}, and k'_0 = k_0; alpha starts at 0;
- the loss "at token i" is the cross-entropy of predicting token i from positions < i.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import ActivationCache, FactoredMatrix, HookedRootModule
from transformer_lens.hook_points import HookPoint

from interp.config import ModelConfig

ReturnType = Literal["logits", "loss", "both", "per_token_loss"]


EXPLICIT_MAX_CTX = 1024  # above this the explicit kernel's n x n scores cost more memory than they save time
AttentionKernel = Literal["auto", "sdpa", "explicit"]


def attention_kernel(device: torch.device, n_ctx: int) -> Literal["sdpa", "explicit"]:
    """The kernel ``auto`` stands for on ``device`` with sequences of ``n_ctx`` (module docstring)."""
    return "explicit" if device.type == "cpu" and n_ctx <= EXPLICIT_MAX_CTX else "sdpa"


@functools.lru_cache(maxsize=8)
def _causal_bias(n: int, device: torch.device, dtype: torch.dtype) -> Float[Tensor, "n n"]:
    """0 on and below the diagonal, -inf above: added to the scores, it masks the future.

    Cached per (n, device, dtype): the explicit kernel adds it in every layer of every step.
    """
    return torch.full((n, n), float("-inf"), device=device, dtype=dtype).triu(1)


def _hooked(point: HookPoint) -> bool:
    """True when a forward hook is attached, so the explicit (inspectable) path must run."""
    return bool(point._forward_hooks)


class LayerNorm(nn.Module):
    """LayerNorm with TransformerLens's ``w``/``b`` names and ``hook_scale``/``hook_normalized``."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        if not _hooked(self.hook_scale):
            return self.hook_normalized(F.layer_norm(x, x.shape[-1:], self.w, self.b, self.eps))
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return self.hook_normalized(x / scale * self.w + self.b)


def _norm(cfg: ModelConfig) -> nn.Module:
    return LayerNorm(cfg.d_model) if cfg.normalization == "layernorm" else nn.Identity()


def rotary_tables(n_ctx: int, d_head: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos and sin tables [n_ctx, d_head] for rotary embeddings (rotate-half convention)."""
    inv_freq = 1.0 / base ** (torch.arange(0, d_head, 2).float() / d_head)
    angles = torch.outer(torch.arange(n_ctx).float(), inv_freq)  # [n_ctx, d_head/2]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: Float[Tensor, "batch pos head d_head"], cos: Tensor, sin: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    n = x.shape[1]
    return x * cos[:n, None, :] + rotated * sin[:n, None, :]


def _project(
    x: Float[Tensor, "batch pos d_model"],
    weight: Float[Tensor, "head d_model d_head"],
    bias: Float[Tensor, "head d_head"],
) -> Float[Tensor, "batch pos head d_head"]:
    """x W + b per head as one [d_model, head*d_head] matmul (faster than einsum on CPU)."""
    heads, d_model, d_head = weight.shape
    flat = weight.transpose(0, 1).reshape(d_model, heads * d_head)
    return F.linear(x, flat.T, bias.flatten()).unflatten(-1, (heads, d_head))


class Attention(nn.Module):
    """Multi-head causal attention with per-head weights in TransformerLens layout."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        h, d, k = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(h, d, k))
        self.W_K = nn.Parameter(torch.empty(h, d, k))
        self.W_V = nn.Parameter(torch.empty(h, d, k))
        self.W_O = nn.Parameter(torch.empty(h, k, d))
        self.b_Q = nn.Parameter(torch.zeros(h, k))
        self.b_K = nn.Parameter(torch.zeros(h, k))
        self.b_V = nn.Parameter(torch.zeros(h, k))
        self.b_O = nn.Parameter(torch.zeros(d))
        if cfg.smeared_key:
            self.smear_alpha = nn.Parameter(torch.zeros(h))
        if cfg.positional == "rotary":
            cos, sin = rotary_tables(cfg.n_ctx, k)
            self.register_buffer("rotary_cos", cos, persistent=False)
            self.register_buffer("rotary_sin", sin, persistent=False)
            self.hook_rot_q = HookPoint()
            self.hook_rot_k = HookPoint()
        self.hook_q = HookPoint()  # [batch, pos, head, d_head]
        self.hook_k = HookPoint()  # keys as used in the scores (after smearing)
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint()  # [batch, head, query_pos, key_pos], pre-softmax
        self.hook_pattern = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]
        self.hook_result = HookPoint()  # [batch, pos, head, d_model]; only when hooked
        self.kernel: AttentionKernel = "auto"  # Transformer.set_attention_kernel sets every layer's

    def forward(
        self,
        query_input: Float[Tensor, "batch pos d_model"],
        key_input: Float[Tensor, "batch pos d_model"],
        value_input: Float[Tensor, "batch pos d_model"],
    ) -> Float[Tensor, "batch pos d_model"]:
        if query_input is key_input:  # shortformer and plain models: one matmul for Q and K
            q, k = _project(query_input, torch.cat([self.W_Q, self.W_K]),
                            torch.cat([self.b_Q, self.b_K])).chunk(2, dim=2)
        else:
            q, k = _project(query_input, self.W_Q, self.b_Q), _project(key_input, self.W_K, self.b_K)
        q = self.hook_q(q)
        # V stays its own matmul: one Q-K-V matmul on the normed input, with the positions'
        # share added to Q and K after it, trained 6% slower on the CPU (2026-12-03).
        v = self.hook_v(_project(value_input, self.W_V, self.b_V))
        if self.cfg.smeared_key:
            k = self.smear(k)
        k = self.hook_k(k)
        if self.cfg.positional == "rotary":
            q = self.hook_rot_q(apply_rotary(q, self.rotary_cos, self.rotary_sin))
            k = self.hook_rot_k(apply_rotary(k, self.rotary_cos, self.rotary_sin))
        z = self.hook_z(self._attend(q, k, v))
        if _hooked(self.hook_result):
            result = self.hook_result(torch.einsum("bphk,hkd->bphd", z, self.W_O))
            return result.sum(dim=2) + self.b_O
        return F.linear(z.flatten(2), self.W_O.flatten(0, 1).T, self.b_O)

    def smear(self, k: Float[Tensor, "batch pos head d_head"]) -> Float[Tensor, "batch pos head d_head"]:
        """k'_j = sigmoid(alpha) k_j + (1 - sigmoid(alpha)) k_{j-1}; position 0 is left as is."""
        keep = torch.sigmoid(self.smear_alpha)[:, None]  # [head, 1]
        mixed = keep * k[:, 1:] + (1 - keep) * k[:, :-1]
        return torch.cat([k[:, :1], mixed], dim=1)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Float[Tensor, "batch pos head d_head"]:
        qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # [batch, head, pos, d_head]
        hooked = _hooked(self.hook_attn_scores) or _hooked(self.hook_pattern)
        kernel = self.kernel if self.kernel != "auto" else attention_kernel(q.device, q.shape[1])
        if not hooked and kernel == "sdpa":
            return F.scaled_dot_product_attention(qh, kh, vh, is_causal=True).transpose(1, 2)
        batch, heads, n, d_head = qh.shape
        # One GEMM gives mask + (q / sqrt(d_head)) k^T: the causal mask is its additive input, so
        # it costs no pass over the n x n scores, and the addition's backward is the identity
        # (a masked_fill's backward masks again). Scaling q (n x d_head), not the GEMM's alpha,
        # keeps the scores bit-identical to the earlier q-scaled matmul and masked_fill.
        scaled_q = (qh * (1.0 / math.sqrt(self.cfg.d_head))).reshape(-1, n, d_head)
        scores = torch.baddbmm(_causal_bias(n, q.device, q.dtype), scaled_q, kh.reshape(-1, n, d_head).transpose(1, 2))
        scores = self.hook_attn_scores(scores.view(batch, heads, n, n))
        pattern = self.hook_pattern(scores.softmax(dim=-1).to(vh.dtype))
        return (pattern @ vh).transpose(1, 2)


class MLP(nn.Module):
    """Two-layer MLP with TransformerLens names (``W_in``, ``hook_pre``, ``hook_post``)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))
        self.act = F.gelu if cfg.act_fn == "gelu" else F.relu
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        post = self.hook_post(self.act(self.hook_pre(F.linear(x, self.W_in.T, self.b_in))))
        return F.linear(post, self.W_out.T, self.b_out)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.ln1 = _norm(cfg)
        self.attn = Attention(cfg)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_in = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_post = HookPoint()
        if not cfg.attn_only:
            self.ln2 = _norm(cfg)
            self.mlp = MLP(cfg)
            self.hook_resid_mid = HookPoint()
            self.hook_mlp_out = HookPoint()

    def forward(self, resid: Tensor, shortformer_pos: Tensor | None) -> Tensor:
        resid = self.hook_resid_pre(resid)
        normed = self.ln1(self.hook_attn_in(resid))
        qk_input = normed if shortformer_pos is None else normed + shortformer_pos
        resid = resid + self.hook_attn_out(self.attn(qk_input, qk_input, normed))
        if not self.cfg.attn_only:
            resid = self.hook_resid_mid(resid)
            resid = resid + self.hook_mlp_out(self.mlp(self.ln2(resid)))
        return self.hook_resid_post(resid)


class Embed(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model))

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        return F.embedding(tokens, self.W_E)


class PosEmbed(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model))

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "pos d_model"]:
        return self.W_pos[: tokens.shape[1]]


class Unembed(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab))
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab))

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_vocab"]:
        return F.linear(x, self.W_U.T, self.b_U)


class Transformer(HookedRootModule):
    """A small decoder-only transformer, hookable like a TransformerLens ``HookedTransformer``.

    Args:
        cfg: the model config; ``cfg.d_vocab`` must be resolved (> 0).
        init: draw the initial weights (:meth:`init_weights`); False leaves them uninitialised,
            for a caller that loads every weight next (a checkpoint).
    """

    def __init__(self, cfg: ModelConfig, init: bool = True):
        super().__init__()
        if cfg.d_vocab <= 0:
            raise ValueError("ModelConfig.d_vocab must be set (> 0) before building a model")
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        if cfg.positional in ("learned", "shortformer"):
            self.pos_embed = PosEmbed(cfg)
            self.hook_pos_embed = HookPoint()
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.ln_final = _norm(cfg)
        self.unembed = Unembed(cfg)
        if init:
            self.init_weights()
        self.setup()

    def init_weights(self) -> None:
        """Weight matrices ~ N(0, init_std), W_E ~ N(0, embed_init_std), W_pos ~ N(0,
        resolved_pos_init_std); biases 0;
        LayerNorm w=1, b=0; smear alpha 0."""
        for name, param in self.named_parameters():
            if name.split(".")[-1].startswith("W_"):
                std = {"W_pos": self.cfg.resolved_pos_init_std, "W_E": self.cfg.embed_init_std
                       }.get(name.split(".")[-1], self.cfg.init_std)
                nn.init.normal_(param, std=std)

    def forward(
        self,
        tokens: Int[Tensor, "batch pos"],
        return_type: ReturnType | None = "logits",
        *,
        start_at_layer: int | None = None,
        residual: Float[Tensor, "batch pos d_model"] | None = None,
    ) -> Tensor | tuple[Tensor, Tensor] | None:
        """Run the model.

        Returns, by ``return_type``: ``logits`` [batch, pos, d_vocab]; ``loss`` (scalar mean
        next-token cross-entropy); ``per_token_loss`` [batch, pos-1] where column i is the loss
        of predicting token i+1; ``both`` (logits, loss); ``None``.

        ``start_at_layer`` (0..n_layers) with ``residual``: the residual stream entering that
        block replaces everything before it (as TransformerLens's ``start_at_layer``; n_layers
        runs only the final norm and unembedding). ``tokens`` still give the positions and the
        loss's targets. What an ablation of a late head needs: the blocks before it are not run.
        """
        if tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError(f"sequence of {tokens.shape[1]} tokens is longer than n_ctx={self.cfg.n_ctx}")
        if (start_at_layer is None) != (residual is None):
            raise ValueError("start_at_layer and residual go together")
        if start_at_layer is not None and not (0 <= start_at_layer <= self.cfg.n_layers
                                               and residual.shape[:2] == tokens.shape):
            raise ValueError(f"start_at_layer {start_at_layer} must be in 0..{self.cfg.n_layers}, with a "
                             f"residual [batch, pos, d_model] matching the tokens {tuple(tokens.shape)}")
        shortformer_pos = None
        if start_at_layer is None:
            resid = self.hook_embed(self.embed(tokens))
            if self.cfg.positional == "learned":
                resid = resid + self.hook_pos_embed(self.pos_embed(tokens))
        else:
            resid = residual
        if self.cfg.positional == "shortformer":  # the blocks' queries and keys need it
            shortformer_pos = self.hook_pos_embed(self.pos_embed(tokens))
        first, positioned = start_at_layer or 0, self.cfg.resolved_position_layers
        for index, block in enumerate(self.blocks[first:], first):
            resid = block(resid, shortformer_pos if index < positioned else None)
        logits = self.unembed(self.ln_final(resid))
        if return_type == "logits":
            return logits
        if return_type is None:
            return None
        per_token = next_token_loss(logits, tokens)
        if return_type == "per_token_loss":
            return per_token
        if return_type == "loss":
            return per_token.mean()
        return logits, per_token.mean()

    def set_attention_kernel(self, kernel: AttentionKernel) -> None:
        """Use ``kernel`` in every layer when no pattern hook is attached (``auto``: the rule of
        :func:`attention_kernel`). Both kernels compute the same function; this is for speed."""
        if kernel not in ("auto", "sdpa", "explicit"):
            raise ValueError(f"attention kernel must be auto, sdpa or explicit, not {kernel!r}")
        for block in self.blocks:
            block.attn.kernel = kernel

    def run_with_cache(self, *args, **kwargs) -> tuple[Tensor, ActivationCache]:  # type: ignore[override]
        """Like HookedRootModule.run_with_cache, returning an ActivationCache."""
        out, cache = super().run_with_cache(*args, **kwargs)
        return out, ActivationCache(cache, self)

    # ---- weights stacked over layers, as on HookedTransformer: [n_layers, n_heads, ...]
    def _stack(self, name: str) -> Tensor:
        return torch.stack([getattr(block.attn, name) for block in self.blocks])

    @property
    def W_Q(self) -> Float[Tensor, "layer head d_model d_head"]:
        return self._stack("W_Q")

    @property
    def W_K(self) -> Float[Tensor, "layer head d_model d_head"]:
        return self._stack("W_K")

    @property
    def W_V(self) -> Float[Tensor, "layer head d_model d_head"]:
        return self._stack("W_V")

    @property
    def W_O(self) -> Float[Tensor, "layer head d_head d_model"]:
        return self._stack("W_O")

    @property
    def b_Q(self) -> Tensor:
        return self._stack("b_Q")

    @property
    def b_K(self) -> Tensor:
        return self._stack("b_K")

    @property
    def b_V(self) -> Tensor:
        return self._stack("b_V")

    @property
    def b_O(self) -> Tensor:
        return self._stack("b_O")

    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return self.embed.W_E

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        return self.unembed.W_U

    @property
    def W_pos(self) -> Float[Tensor, "n_ctx d_model"]:
        return self.pos_embed.W_pos

    @property
    def QK(self) -> FactoredMatrix:
        """W_Q W_K^T per head, [n_layers, n_heads, d_model, d_model], kept factored."""
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self) -> FactoredMatrix:
        """W_V W_O per head, [n_layers, n_heads, d_model, d_model], kept factored."""
        return FactoredMatrix(self.W_V, self.W_O)

    @property
    def device(self) -> torch.device:
        return self.embed.W_E.device


def next_token_loss(
    logits: Float[Tensor, "batch pos d_vocab"], tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "batch pos_minus_1"]:
    """Cross-entropy of predicting tokens[:, i+1] from logits[:, i]; column i is token i+1's loss.

    loss_i = -log softmax(logits_i)[t_{i+1}], computed in float32 (at least) whatever the
    logits' precision, as ``F.cross_entropy(logits[:, :-1].float(), ...)`` would; the gradient
    is (softmax(logits_i) - onehot(t_{i+1})) g_i at i < pos - 1 and 0 at the last position.
    """
    return _NextTokenCrossEntropy.apply(logits, tokens)


class _NextTokenCrossEntropy(torch.autograd.Function):
    """:func:`next_token_loss` without autograd's copies of the shifted logits.

    Autograd's version of the same formula copies the logits' slice [:, :-1] in the forward and
    fills and copies a [batch, pos, d_vocab] gradient for it in the backward. This one takes
    the log-softmax of every position (the last one's is not read) and leaves the last
    position's gradient 0; the rest are the very kernels autograd runs (log-softmax in
    float32, the gather's scatter, the log-softmax's backward, the cast back), so losses and
    gradients are bit-identical to ``F.cross_entropy(logits[:, :-1].float(), ...)`` and
    training takes the same path as before this function existed (checked over training
    steps of the default and markov presets under bf16 autocast; a hand-written
    exp-and-subtract backward differed by float32 rounding, enough to change a run's path).
    """

    @staticmethod
    def forward(ctx, logits: Tensor, tokens: Tensor) -> Tensor:
        compute = torch.promote_types(logits.dtype, torch.float32)
        log_probs = torch.log_softmax(logits, dim=-1, dtype=compute)  # [batch, pos, d_vocab]
        targets = torch.cat([tokens[:, 1:], tokens[:, -1:]], dim=1)[..., None]  # the last: any token
        ctx.save_for_backward(log_probs, targets)
        ctx.logits_dtype = logits.dtype
        return (-log_probs.gather(-1, targets))[:, :-1, 0].contiguous()

    @staticmethod
    @torch.autograd.function.once_differentiable  # its backward is not differentiable again
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        log_probs, targets = ctx.saved_tensors
        weight = F.pad(grad, (0, 1))[..., None]  # the last position's gradient is 0
        grad_log_probs = torch.zeros_like(log_probs).scatter_(-1, targets, -weight)
        grad_logits = torch._log_softmax_backward_data(grad_log_probs, log_probs, -1, log_probs.dtype)
        return grad_logits.to(ctx.logits_dtype), None
