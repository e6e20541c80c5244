"""Weight-based circuit measures: OV copying scores and composition scores (Olsson et al. 2022).

Conventions (TransformerLens's row-vector convention throughout): a residual-stream vector is a
row ``x`` [d_model]; a head reads ``q = x W_Q``, ``k = x W_K``, ``v = x W_V`` and writes
``z W_O``; its attention score is ``q k^T = x_q (W_Q W_K^T) x_k^T``. So per head

- ``W_QK = W_Q W_K^T`` [d_model, d_model]: rows are the query side, columns the key side;
- ``W_OV = W_V W_O`` [d_model, d_model]: ``x W_OV`` is what the head writes for input ``x``;
- the full OV circuit on tokens is ``W_E W_V W_O W_U`` [d_vocab, d_vocab] (the paper's
  ``W_U W_O W_V W_E`` in column convention, transposed; same eigenvalues).

Everything works on this project's :class:`interp.model.Transformer` and on TransformerLens
``TransformerBridge`` models (e.g. from ``TransformerBridge.boot_native``): both expose stacked
``W_Q/W_K/W_V`` [layer, head, d_model, d_head], ``W_O`` [layer, head, d_head, d_model],
``W_E``, ``W_U``, ``cfg.n_layers/n_heads``, ``ln_final`` and TransformerLens hook names; the
small adapter :func:`_weights` reads them the same way from both. Functions are pure, run
under ``torch.no_grad`` and return CPU float32 tensors; linear algebra runs in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.measures.activations import activations
from interp.measures.icl import _device

COMPOSITION_KINDS = ("k", "q", "v")


# --------------------------------------------------------------------------- weights adapter

@dataclass(frozen=True)
class _Weights:
    """Detached weights of a model, stacked over layers and heads (float64)."""

    W_Q: Float[Tensor, "layer head d_model d_head"]
    W_K: Float[Tensor, "layer head d_model d_head"]
    W_V: Float[Tensor, "layer head d_model d_head"]
    W_O: Float[Tensor, "layer head d_head d_model"]
    W_E: Float[Tensor, "d_vocab d_model"]
    W_U: Float[Tensor, "d_model d_vocab"]


def _expand_heads(w: Tensor, n_heads: int) -> Tensor:
    """Repeat grouped key/value heads (GQA) so every query head has its own copy."""
    if w.shape[1] == n_heads:
        return w
    return w.repeat_interleave(n_heads // w.shape[1], dim=1)


def _weights(model) -> _Weights:
    """Read the stacked weights from this project's Transformer or a TransformerBridge.

    Both expose the same properties (``W_Q`` ... ``W_U``) in TransformerLens layout; the
    bridge needs nothing more except expanding grouped key/value heads when it has them.
    """
    n_heads = model.cfg.n_heads

    def get(name: str) -> Tensor:
        return getattr(model, name).detach().to(torch.float64)

    return _Weights(
        W_Q=get("W_Q"),
        W_K=_expand_heads(get("W_K"), n_heads),
        W_V=_expand_heads(get("W_V"), n_heads),
        W_O=get("W_O"),
        W_E=get("W_E"),
        W_U=get("W_U"),
    )


def _final_norm(model) -> tuple[Tensor | None, bool]:
    """(weight of the final norm or None, whether it centres over d_model).

    This project's model: ``ln_final`` is a LayerNorm (``w``, centres) when
    ``cfg.normalization == "layernorm"`` and an Identity otherwise. A TransformerBridge:
    ``ln_final.w`` exists for LayerNorm and RMSNorm; it centres for ``normalization_type``
    "LN"/"LNPre" and not for "RMS"/"RMSPre"/None.
    """
    cfg = model.cfg
    if hasattr(cfg, "normalization"):
        center = cfg.normalization == "layernorm"
    else:
        center = str(getattr(cfg, "normalization_type", None) or "").startswith("LN")
    ln = getattr(model, "ln_final", None)
    try:
        w = None if ln is None else ln.w
    except AttributeError:
        w = None
    w = None if not isinstance(w, Tensor) else w.detach().float()
    return w, center


def _safe_ratio(num: Tensor, den: Tensor) -> Tensor:
    """num / den with 0/0 (and x/0) defined as 0 (heads with zero weights score 0)."""
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), torch.zeros_like(num))


# --------------------------------------------------------------------------- copying

def _token_index(copyable, d_vocab: int) -> Tensor | None:
    """``copyable`` as a validated int64 CPU index [n] into the vocabulary (None: every token)."""
    if copyable is None:
        return None
    index = torch.as_tensor(copyable, dtype=torch.long).flatten().cpu()
    if index.numel() and (index.min() < 0 or index.max() >= d_vocab):
        raise ValueError(f"copyable token ids must lie in [0, {d_vocab}); got {index.min()}..{index.max()}")
    if index.unique().numel() != index.numel():
        raise ValueError("copyable token ids must be distinct")
    return index


def _unembed_embed(w: _Weights, index: Tensor | None) -> Tensor:
    """``W_U[:, S] W_E[S]`` [d_model, d_model] over the token set S (every token when None)."""
    if index is None:
        return w.W_U @ w.W_E
    index = index.to(w.W_E.device)
    return w.W_U[:, index] @ w.W_E[index]


@torch.no_grad()
def ov_copying_score(model, copyable: Int[Tensor, "n"] | None = None) -> Float[Tensor, "layer head"]:
    """Weight-based copying score of every head: Re(sum(lambda)) / sum(|lambda|) in [-1, 1].

    lambda are the eigenvalues of the head's full OV circuit restricted to the copyable tokens
    S, ``W_E[S] W_V W_O W_U[:, S]`` [n, n] (row convention; the paper's ``W_U W_O W_V W_E``):
    entry (s, t) is how much attending to token s raises the logit of token t. ``copyable``
    is S as integer token ids (:func:`interp.measures.vocab.copyable_tokens` gives the
    analysis's set: tokens seen in training minus BOS/EOS/EOT/pad and other specials);
    ``None`` keeps every token (the whole vocabulary, for models whose data is unknown).
    Why restrict: trained models push BOS's own logit far down (a BOS->BOS entry of about
    -379 beside ordinary diagonal entries of about +5.6), which alone flips the sign of the
    whole-vocabulary score of heads that copy every ordinary token.

    The dense n x n matrix is never built: the circuit is ``FactoredMatrix(W_E[S] W_V,
    W_O W_U[:, S])``, whose nonzero eigenvalues are those of the small reverse product
    ``W_O W_U[:, S] W_E[S] W_V`` [d_head, d_head]; we form it as ``W_O (W_U[:, S] W_E[S]) W_V``
    so that nothing vocab-sized is stored per head. The remaining eigenvalues are exactly 0
    and change neither sum. Positive = the head raises the logits of the tokens it attends to
    (copying), -1 = it lowers them.

    Choices: raw weights, no LayerNorm folded in (no ln1 / ln_final weights or scales), no
    biases; computed in float64; a head whose circuit is zero (sum |lambda| = 0) scores 0.
    """
    w = _weights(model)
    unembed_embed = _unembed_embed(w, _token_index(copyable, w.W_E.shape[0]))  # [d_model, d_model]
    small = w.W_O @ unembed_embed @ w.W_V  # W_O W_U W_E W_V: [layer, head, d_head, d_head]
    eig = torch.linalg.eigvals(small)
    return _safe_ratio(eig.sum(-1).real, eig.abs().sum(-1)).float().cpu()


@torch.no_grad()
def circuit_eigenvalues(model, layer: int, head: int, copyable: Int[Tensor, "n"] | None = None
                        ) -> dict[str, Tensor]:
    """Nonzero eigenvalues of one head's full OV and token QK circuits, largest |lambda| first.

    Both circuits are restricted to the copyable tokens S (``copyable``, integer ids; ``None``
    keeps the whole vocabulary), as in :func:`ov_copying_score`:
    OV: ``W_E[S] W_V W_O W_U[:, S]`` [n, n]; positive real parts mean the head raises the
    logits of the tokens it attends to.
    QK: ``W_E[S] W_Q W_K^T W_E[S]^T`` [n, n], the token part of the attention score (query
    token x key token); positive real parts mean a token attends to copies of itself.
    Both come from their d_head x d_head reverse products ``W_O (W_U[:, S] W_E[S]) W_V`` and
    ``W_K^T (W_E[S]^T W_E[S]) W_Q`` (the other eigenvalues are 0), in float64 from raw
    weights, no LayerNorm folded in. Returns complex tensors [d_head].
    """
    w = _weights(model)
    index = _token_index(copyable, w.W_E.shape[0])
    W_E = w.W_E if index is None else w.W_E[index.to(w.W_E.device)]
    ov = w.W_O[layer, head] @ _unembed_embed(w, index) @ w.W_V[layer, head]
    qk = w.W_K[layer, head].T @ (W_E.T @ W_E) @ w.W_Q[layer, head]
    out = {}
    for name, small in (("ov", ov), ("qk", qk)):
        eig = torch.linalg.eigvals(small)
        out[name] = eig[eig.abs().argsort(descending=True)]
    return out


def eigen_score(eigenvalues) -> float:
    """Re(sum lambda) / sum |lambda| in [-1, 1] (0 for a zero circuit)."""
    total = float(abs(eigenvalues).sum())  # torch or numpy
    return float(eigenvalues.sum().real) / total if total > 0 else 0.0


def _copy_readout(model, w: _Weights, keep: Int[Tensor, "S"]) -> Float[Tensor, "layer head d_head S"]:
    """The map from a head's ``hook_z`` to its direct logit effect on the tokens ``keep``.

    ``u = ((z W_O) C) * ln_w @ W_U[:, keep]``, C the centring over d_model when the final norm
    centres, ln_w the final norm's weight: both are linear, so they fold into W_O (centring
    ``z W_O`` is ``z`` times W_O with each row's mean removed) and the whole map is one
    [d_head, S] matrix per head, applied with d_head-long inner products instead of d_model.
    """
    device = _device(model)
    ln_w, center = _final_norm(model)
    W_O = w.W_O.to(device)  # [layer, head, d_head, d_model], float64 until the product
    if center:
        W_O = W_O - W_O.mean(-1, keepdim=True)
    if ln_w is not None:
        W_O = W_O * ln_w.to(device, W_O.dtype)
    return (W_O @ w.W_U.to(device, W_O.dtype)[:, keep]).float()


@torch.no_grad()
def empirical_copying_score(model, tokens: Int[Tensor, "batch pos"], batch_size: int = 16,
                            copyable: Int[Tensor, "n"] | None = None) -> Float[Tensor, "layer head"]:
    """Empirical copying score of every head on ``tokens`` (random tokens the caller provides).

    Every vocabulary operation below runs over the copyable tokens S only (``copyable``,
    integer ids, as in :func:`ov_copying_score`; ``None`` = the whole vocabulary): the mean and
    the sum over v are over v in S, and r_i[v] := 0 for v outside S, so attention to a BOS or
    other non-copyable token counts as no copying. Otherwise one hugely suppressed logit (BOS)
    drags the mean down and inflates r_i on every other token, diluting the share.

    For each head, sequence and query position i >= 1:

    1. direct logit effect of the head at i: ``u_i = out_i W_U`` where ``out_i = z_i W_O`` is the
       head's output (``blocks.{l}.attn.hook_z`` times ``W_O``; no ``b_O``, which belongs to the
       layer, and no ``b_U``). When the model ends in a LayerNorm, ``out_i`` is first centred over
       d_model and multiplied elementwise by ``ln_final.w`` (an RMSNorm: multiplied only); all of
       it is folded into one matrix per head (:func:`_copy_readout`). The per-position
       LayerNorm scale 1/sigma_i is NOT applied: it is a positive scalar per query and cancels
       exactly from the ratio in step 3, so applying the cached ``ln_final.hook_scale`` would
       give the same number;
    2. ``r_i = relu(u_i - mean_{v in S} u_i[v])`` on S, 0 off S;
    3. ``score_i = sum_j pattern[i, j] * r_i[tok_j] / sum_{v in S} r_i[v]`` (attention-weighted share
       of the positive logit increase on the tokens the head attends to; 0/0 := 0, e.g. a head
       whose output W_U does not read).

    The score is the mean of score_i over queries i >= 1 (query 0 can only attend to itself)
    and sequences. It is 1 for a head that attends sharply to one token (or to copies of one
    token) and raises only that token's logit; note it is attention-weighted, so a head that
    copies perfectly but spreads its attention evenly over k distinct tokens scores 1/k.
    """
    device = _device(model)
    n_layers = model.cfg.n_layers
    w = _weights(model)
    keep = _token_index(copyable, w.W_E.shape[0])
    keep = (torch.arange(w.W_U.shape[-1]) if keep is None else keep).to(device)
    read = _copy_readout(model, w, keep)  # [layer, head, d_head, S]: z -> u on S
    # A token outside S reads column 0 with weight in_set[v] = 0: where[v] is v's column in S.
    where = torch.zeros(w.W_U.shape[-1], dtype=torch.long, device=device).index_copy_(
        0, keep, torch.arange(keep.numel(), device=device))
    in_set = torch.zeros(w.W_U.shape[-1], device=device).index_fill_(0, keep, 1.0)
    names = [f"blocks.{layer}.attn.{hook}" for layer in range(n_layers) for hook in ("hook_z", "hook_pattern")]
    total = torch.zeros(n_layers, model.cfg.n_heads, dtype=torch.float64)
    n_queries = 0
    for start in range(0, tokens.shape[0], batch_size):
        chunk = tokens[start:start + batch_size].to(device)
        cache = activations(model, chunk, names)
        n_batch, n_pos = chunk.shape
        n_queries += n_batch * (n_pos - 1)
        for layer in range(n_layers):
            z = cache[f"blocks.{layer}.attn.hook_z"].float()[:, 1:]  # [batch, query, head, d_head]
            pattern = cache[f"blocks.{layer}.attn.hook_pattern"].float()[:, :, 1:]  # [b, h, q, k]
            # u_i on S for every head at once: [head, b*q, d_head] @ [head, d_head, S].
            u = torch.bmm(z.permute(2, 0, 1, 3).reshape(z.shape[2], -1, z.shape[3]), read[layer])
            r = (u - u.mean(-1, keepdim=True)).relu_().view(z.shape[2], n_batch, n_pos - 1, -1)  # [h, b, q, S]
            index = where[chunk][None, :, None, :].expand(r.shape[0], -1, n_pos - 1, -1)
            on_attended = r.gather(-1, index)  # r_i[tok_j]: [head, batch, query, key]
            weight = pattern.transpose(0, 1) * in_set[chunk][None, :, None, :]  # [h, b, q, k]
            share = _safe_ratio((weight * on_attended).sum(-1), r.sum(-1))  # [head, batch, query]
            total[layer] += share.double().sum(dim=(1, 2)).cpu()
    return (total / max(n_queries, 1)).float()


# --------------------------------------------------------------------------- composition

def _r_factor(a: Tensor) -> Tensor:
    """R of the reduced QR of ``a`` [..., n, m]: ||a X||_F = ||R X||_F for every X (Q is an
    isometry), with R [..., min(n, m), m]. This is how the products stay small yet exact."""
    return torch.linalg.qr(a, mode="r").R


def _collapsed(W_Q: Tensor, W_K: Tensor, W_V: Tensor, W_O: Tensor
               ) -> tuple[Tensor, dict[str, Tensor]]:
    """Small exact stand-ins for the d_model x d_model matrices of every head.

    Every score is ``||W_OV^{h1} X^{h2}||_F / (||W_OV^{h1}||_F ||X^{h2}||_F)`` with X = W_QK
    (Q), W_QK^T (K), W_OV (V). With ``W_V1 = Q1 R1`` and, for ``X = A B``, ``B^T = Q2 R2``
    (reduced QRs; Q1, Q2 isometries), ``||W_V1 W_O1 A B||_F = ||(R1 W_O1) (A R2^T)||_F``:
    the Frobenius norm of the real product, computed in a d_head x d_head form (no trace
    shortcut). Returns ``left = R1 W_O`` [..., m, d_model] and ``right[kind] = A R2^T``
    [..., d_model, m]; also ||left|| = ||W_OV|| and ||right[kind]|| = ||X||.
    """
    left = _r_factor(W_V) @ W_O
    right = {
        "q": W_Q @ _r_factor(W_K).transpose(-1, -2),  # X = W_Q W_K^T = W_QK
        "k": W_K @ _r_factor(W_Q).transpose(-1, -2),  # X = W_K W_Q^T = W_QK^T
        "v": W_V @ _r_factor(W_O.transpose(-1, -2)).transpose(-1, -2),  # X = W_V W_O = W_OV
    }
    return left, right


def _fro(m: Tensor) -> Tensor:
    return m.flatten(-2).norm(dim=-1)


def _composition_from_weights(W_Q: Tensor, W_K: Tensor, W_V: Tensor, W_O: Tensor
                              ) -> dict[str, Tensor]:
    """Composition scores [l1, h1, l2, h2] from stacked per-head weights (float64)."""
    n_layers, n_heads = W_Q.shape[:2]
    left, right = _collapsed(W_Q, W_K, W_V, W_O)
    left_norm = _fro(left)  # ||W_OV^{h1}||_F [layer, head]
    scores = {}
    for kind, r in right.items():
        right_norm = _fro(r)
        out = torch.full((n_layers, n_heads, n_layers, n_heads), float("nan"), dtype=W_Q.dtype,
                         device=W_Q.device)
        for l1 in range(n_layers - 1):  # one earlier layer at a time bounds the memory
            num = _fro(torch.einsum("hmd,bgdn->hbgmn", left[l1], r[l1 + 1:]))
            den = left_norm[l1][:, None, None] * right_norm[l1 + 1:][None]
            out[l1, :, l1 + 1:] = _safe_ratio(num, den)
        scores[kind] = out
    return scores


@torch.no_grad()
def composition_scores(model) -> dict[str, Float[Tensor, "l1 h1 l2 h2"]]:
    """Q-, K- and V-composition scores between every head h1 of layer l1 and h2 of layer l2.

    Row convention (module docstring): head h1 writes ``x W_OV^{h1}``. When that is the
    *key* input of h2 the score is ``x_q W_QK^{h2} (y W_OV^{h1})^T = x_q W_QK^{h2} (W_OV^{h1})^T y^T``,
    so K-composition reads ``W_QK^{h2} (W_OV^{h1})^T``; as the *query* input it is
    ``y W_OV^{h1} W_QK^{h2} x_k^T``, so Q-composition reads ``W_OV^{h1} W_QK^{h2}``; as the value
    input h2 writes ``y W_OV^{h1} W_OV^{h2}``. Scores (all in [0, 1]):

    - ``k``: ||W_QK^{h2} (W_OV^{h1})^T||_F / (||W_QK^{h2}||_F ||W_OV^{h1}||_F)
      (= ||W_OV^{h1} (W_QK^{h2})^T||_F / ..., TransformerLens's form);
    - ``q``: ||W_OV^{h1} W_QK^{h2}||_F / (||W_QK^{h2}||_F ||W_OV^{h1}||_F);
    - ``v``: ||W_OV^{h1} W_OV^{h2}||_F / (||W_OV^{h2}||_F ||W_OV^{h1}||_F).

    The numerator is the Frobenius norm of the real product, computed exactly through QR
    factors of the d_model x d_head weights (never a "cyclic" trace shortcut, per the paper's
    errata). Raw weights: LayerNorms, biases and positional terms are not folded in. A pair
    with a zero-weight head scores 0 (0/0 := 0). Entries with l2 <= l1 are NaN.

    Returns: ``{"k", "q", "v"}`` -> float32 CPU tensors [n_layers, n_heads, n_layers, n_heads]
    indexed [l1, h1, l2, h2].
    """
    w = _weights(model)
    scores = _composition_from_weights(w.W_Q, w.W_K, w.W_V, w.W_O)
    return {kind: scores[kind].float().cpu() for kind in COMPOSITION_KINDS}


@torch.no_grad()
def composition_baseline(d_model: int, d_head: int, n_samples: int = 32, seed: int = 0
                         ) -> dict[str, float]:
    """Mean composition scores of random heads, to read the scores of a model against.

    Each sample draws two heads (h1 in layer 0, h2 in layer 1) whose W_Q, W_K, W_V
    [d_model, d_head] and W_O [d_head, d_model] are i.i.d. standard Gaussian (the scores are
    scale-invariant, so the standard deviation does not matter) from a CPU generator seeded
    with ``seed``, and scores them exactly as :func:`composition_scores`; the result is the
    mean over ``n_samples`` samples. Same arguments, same numbers. Keys "k", "q", "v".
    """
    gen = torch.Generator().manual_seed(seed)

    def draw(*shape: int) -> Tensor:
        return torch.randn(2, n_samples, *shape, generator=gen, dtype=torch.float64)

    W_Q, W_K, W_V = (draw(d_model, d_head) for _ in range(3))
    W_O = draw(d_head, d_model)
    left, right = _collapsed(W_Q, W_K, W_V, W_O)  # [2 (h1, h2), sample, ...]
    out = {}
    for kind in COMPOSITION_KINDS:
        num = _fro(left[0] @ right[kind][1])
        out[kind] = float(_safe_ratio(num, _fro(left[0]) * _fro(right[kind][1])).mean())
    return out
