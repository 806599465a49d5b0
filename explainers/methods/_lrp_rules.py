"""Layer-wise relevance propagation rules through a Vision Transformer, read from the model's own weights, and the
methods of Chefer et al. (CVPR 2021) built on it: transformer attribution, full LRP, last-layer relevance.

No special LRP layers are needed: :func:`relprop` takes the activations recorded by
``ViTModel.trace(keep_activations=True)`` and the weights of the model's own ``nn.Linear``/``nn.Conv2d``
modules, and applies the rules of Chefer et al.'s ``layers_ours.py``:

* linear layers (q/k/v, projection, MLP, classifier, pooling): alpha=1, beta=0 — positive weights with
  positive inputs plus negative weights with negative inputs, bias ignored (:func:`lrp_linear`);
* the patch embedding (pixels): the z^B rule with the per-image minimum and maximum of the input as bounds
  (:func:`lrp_zb`);
* residual additions: LRP-0 per branch, then both branches rescaled so their shares follow the absolute
  sums and the total is conserved (:func:`lrp_add`);
* the two attention products (q k^T and A v): LRP-0 to both operands, each halved (:func:`lrp_matmul`);
* LayerNorm, softmax, GELU, dropout and LayerScale pass relevance through unchanged (so do q/k norms and the
  inner norm before the attention projection);
* a gated MLP product ``act(g) * v`` (SwiGLU): half of its relevance to each factor's projection, the uniform rule
  AttnLRP uses for multiplicative interactions (:func:`lrp_linear` on both halves);
* RoPE, a linear rotation of q and k: LRP-0 through it (:func:`lrp_through`);
* a relative position bias is a bias: like the linear layers' biases, it takes no relevance;
* pooling: class token, distillation tokens, average pools (alpha-1/beta-0 on the mean), the embedding
  projection of CLIP towers, and an attention-pooling probe, whose relevance reaches the tokens through its keys
  and values (the share of its learned query is dropped, like a bias).

All rules work per image of a batch and conserve relevance (up to terms whose denominator is zero).
"""

from __future__ import annotations

import torch

__all__ = ["lrp_linear", "lrp_zb", "lrp_add", "lrp_matmul", "lrp_through", "relprop", "LRPResult"]


def _safe_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b where b != 0, else 0 (Chefer's safe_divide without its 1e-9 stabiliser)."""
    nz = b != 0
    return torch.where(nz, a / torch.where(nz, b, torch.ones_like(b)), torch.zeros_like(a))


def _bsum(t: torch.Tensor) -> torch.Tensor:
    """Per-image sum, shaped to broadcast against t."""
    return t.reshape(t.shape[0], -1).sum(1).reshape(-1, *([1] * (t.dim() - 1)))


def lrp_linear(x: torch.Tensor, weight: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Alpha-1/beta-0 rule for ``y = x W^T`` (bias ignored). x: (..., in), R: (..., out) -> (..., in).
    The weight is taken in x's number format (a zero-shot head's text embeddings are no module parameter, so a
    float64 copy of the model leaves them float32)."""
    xp, xn = x.clamp(min=0), x.clamp(max=0)
    weight = weight.to(x.dtype)
    wp, wn = weight.clamp(min=0), weight.clamp(max=0)
    z = xp @ wp.T + xn @ wn.T
    s = _safe_div(R, z)
    return xp * (s @ wp) + xn * (s @ wn)


def lrp_zb(x: torch.Tensor, weight: torch.Tensor, R: torch.Tensor, low: torch.Tensor, high: torch.Tensor):
    """z^B rule for the input layer ``y = x W^T`` with inputs bounded by [low, high] (broadcastable to x)."""
    wp, wn = weight.clamp(min=0), weight.clamp(max=0)
    lo, hi = low.expand_as(x), high.expand_as(x)
    z = x @ weight.T - lo @ wp.T - hi @ wn.T
    s = _safe_div(R, z)
    return x * (s @ weight) - lo * (s @ wp) - hi * (s @ wn)


def lrp_add(a: torch.Tensor, b: torch.Tensor, R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Conservative split of the relevance of ``a + b`` (Chefer's Add.relprop), per image."""
    s = _safe_div(R, a + b)
    ra, rb = a * s, b * s
    sa, sb, total = _bsum(ra), _bsum(rb), _bsum(R)
    denom = sa.abs() + sb.abs()
    ra = ra * _safe_div(_safe_div(sa.abs(), denom) * total, sa)
    rb = rb * _safe_div(_safe_div(sb.abs(), denom) * total, sb)
    return ra, rb


def lrp_through(fn, x: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """LRP-0 through a linear map ``z = fn(x)`` (RoPE): ``R_x = x * J^T (R / z)``, conservative."""
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        z = fn(xg)
        (g,) = torch.autograd.grad(z, xg, _safe_div(R, z.detach()))
    return xg.detach() * g


def lrp_matmul(a: torch.Tensor, b: torch.Tensor, R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LRP-0 for ``z = a @ b`` to both operands, each halved (so that together they conserve R)."""
    s = _safe_div(R, a @ b)
    ra = a * (s @ b.transpose(-2, -1))
    rb = b * (a.transpose(-2, -1) @ s)
    return ra / 2, rb / 2


class LRPResult:
    """What one relevance pass produced: per-block attention relevance R^{A_l} (block index -> (B,H,N,N)),
    token relevance at the input of the lowest block reached, and optionally pixel relevance."""

    def __init__(self):
        self.attn: dict[int, torch.Tensor] = {}
        self.tokens: torch.Tensor | None = None
        self.pixels: torch.Tensor | None = None  # (B, 3, H, W)
        self.probe: torch.Tensor | None = None  # (B, H, Q, N) relevance of a pooling probe's attention
        self.dropped: torch.Tensor | None = None  # (B,) relevance left on a probe's learned query (not a token)


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    B, N, D = t.shape
    return t.view(B, N, heads, D // heads).transpose(1, 2)


def _merge_heads(t: torch.Tensor) -> torch.Tensor:
    B, H, N, d = t.shape
    return t.transpose(1, 2).reshape(B, N, H * d)


def _pool_relprop(model, x: torch.Tensor, R_pool: torch.Tensor, trace, result) -> torch.Tensor:
    """Relevance of the pooled vector -> relevance of the (normalised) final tokens (B, N, D)."""
    kind, p = model.pooling.kind, model.num_prefix_tokens
    R_tok = torch.zeros_like(x)
    D = x.shape[-1]
    if kind == "token":
        R_tok[:, 0] = R_pool
    elif kind == "token_avg":
        R_tok[:, 0] = R_pool[:, :D]
        R_tok[:, p:] = _mean_rule(x[:, p:], R_pool[:, D:])
    elif kind == "avg":
        R_tok[:, p:] = _mean_rule(x[:, p:], R_pool)
    elif kind == "avg_all":
        R_tok = _mean_rule(x, R_pool)
    elif kind == "map":
        R_tok = _probe_relprop(model.pooling.probe, trace.probe_acts, R_pool, result)
    return R_tok


def _mean_rule(tokens: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Mean pooling is a linear map with weights 1/n: the alpha-1/beta-0 rule per feature."""
    n = tokens.shape[1]
    tp = tokens.clamp(min=0)
    return tp / n * _safe_div(R[:, None, :], tp.sum(1, keepdim=True) / n)


def _mlp_relprop(mlp, acts: dict, h_in: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
    r_g = lrp_linear(acts["g"], mlp.fc2.weight, r_out)  # activation, inner norm: identity
    if mlp.gated:  # act(g) * v: half to each factor
        return lrp_linear(h_in, mlp.fc1_g.weight, r_g / 2) + lrp_linear(h_in, mlp.fc1_x.weight, r_g / 2)
    return lrp_linear(h_in, mlp.fc1.weight, r_g)


def _probe_relprop(probe, acts: dict, R_pool: torch.Tensor, result) -> torch.Tensor:
    R_out = torch.zeros_like(acts["y"])
    if probe.pool == "token":
        R_out[:, 0] = R_pool
    else:
        R_out = _mean_rule(acts["y"] + acts.get("mlp", 0), R_pool)
    if probe.mlp is not None:
        r_y, r_m = lrp_add(acts["y"], acts["mlp"], R_out)
        r_y = r_y + _mlp_relprop(probe.mlp, acts, acts["hn"], r_m)
    else:
        r_y = R_out
    r_o = _split_heads(lrp_linear(acts["o"], probe.proj.weight, r_y), probe.num_heads)
    r_a, r_v = lrp_matmul(acts["a"], acts["v"], r_o)
    result.probe = r_a
    r_q, r_kt = lrp_matmul(acts["q"], acts["k"].transpose(-2, -1), r_a)  # the latent query's share is dropped
    result.dropped = _bsum(r_q).reshape(-1)
    x = acts["x"]
    return lrp_linear(x, probe.k.weight, _merge_heads(r_kt.transpose(-2, -1))) + \
        lrp_linear(x, probe.v.weight, _merge_heads(r_v))


def _relprop_head(model, trace, start, result) -> torch.Tensor:
    """Initial relevance (on the logits or on the embedding) -> relevance of the last block's output tokens."""
    pool = model.pooling
    where, R = start
    x = pool.norm(trace.final_tokens) if pool.norm is not None else trace.final_tokens  # final norm: identity
    if pool.kind == "dist":
        R_tok = torch.zeros_like(x)
        ra, rb = lrp_add(pool.head(x[:, 0]) / 2, pool.head_dist(x[:, 1]) / 2, R)
        R_tok[:, 0] = lrp_linear(x[:, 0], pool.head.weight, ra)
        R_tok[:, 1] = lrp_linear(x[:, 1], pool.head_dist.weight, rb)
        return R_tok
    e = trace.embedding
    if where == "logits":
        R = lrp_linear(e, pool.head.weight, R)
    if pool.proj is not None:  # CLIP towers: embedding = proj(fc_norm(pooled))
        pre = trace.pre_projection
        R = lrp_linear(pre, pool.proj.weight, R)
    return _pool_relprop(model, x, R, trace, result)  # fc_norm: identity


def _relprop_block(bp, act: dict, R: torch.Tensor, result: LRPResult, index: int, rope=None,
                   to_input: bool = True) -> torch.Tensor | None:
    """Relevance at a block's output -> relevance at its input; stores R^{A} of the block. ``to_input=False``
    stops at R^{A} (the lowest block of a pass that needs no token relevance: no q/k/v or residual work)."""
    # MLP branch: x_out = x_mid + ls2(fc2(act(fc1(norm2(x_mid)))))
    r_mid_res, r_mlp = lrp_add(act["x_mid"], act["branch2"], R)
    r_mid = r_mid_res + _mlp_relprop(bp.mlp, act, act["h2"], r_mlp)  # the clone feeding both
    # attention branch: x_mid = x + ls1(proj(A v))
    r_in_res, r_attn = lrp_add(act["x"], act["branch1"], r_mid)
    r_o = lrp_linear(act["o"], bp.proj.weight, r_attn)
    r_o = _split_heads(r_o, bp.num_heads)
    if not to_input:
        result.attn[index] = act["a"] * (_safe_div(r_o, act["a"] @ act["v"]) @ act["v"].transpose(-2, -1)) / 2
        return None
    r_a, r_v = lrp_matmul(act["a"], act["v"], r_o)
    result.attn[index] = r_a
    r_q, r_kt = lrp_matmul(act["q"], act["k"].transpose(-2, -1), r_a)  # softmax: identity
    r_k = r_kt.transpose(-2, -1)
    if "q_pre" in act:  # RoPE: LRP-0 through the rotation
        from ..models.blocks import _rope

        r_q = lrp_through(lambda t: _rope(bp, t, rope), act["q_pre"], r_q)
        r_k = lrp_through(lambda t: _rope(bp, t, rope), act["k_pre"], r_k)
    r_qkv = torch.cat([_merge_heads(r_q), _merge_heads(r_k), _merge_heads(r_v)], dim=-1)
    w, _ = bp.qkv_weight()  # output features ordered (q|k|v, heads, head_dim) for fused and separate layouts
    r_h1 = lrp_linear(act["h1"], w, r_qkv)
    return r_in_res + r_h1


def relprop(model, trace, start, stop_layer: int = 0, to_pixels: bool = False,
            x: torch.Tensor | None = None, tokens: bool = True) -> LRPResult:
    """Propagate the initial relevance ``start`` = ("logits", (B, C)) or ("embedding", (B, E)) down to block
    ``stop_layer`` (and to the pixels with ``to_pixels``, which needs the model input ``x`` and
    ``trace.patch_tokens``). ``tokens=False`` (and no pixels): the lowest block stops at its attention relevance
    and ``result.tokens`` stays None."""
    result = LRPResult()
    if isinstance(start, torch.Tensor):
        start = ("logits", start)
    R = _relprop_head(model, trace, start, result)
    ctx = trace.context
    for i in range(model.num_layers - 1, stop_layer - 1, -1):
        R = _relprop_block(model.blocks[i], trace.acts[i], R, result, i, ctx.rope_for(i) if ctx else None,
                           to_input=tokens or to_pixels or i > stop_layer)
    result.tokens = R
    if to_pixels:
        p = model.num_prefix_tokens
        patch_out = trace.patch_tokens  # (B, n, D): conv output before positions
        embedded = trace.embedded[:, p:]  # (B, n, D) after positions (+ norm_pre: identity rule)
        r_patch, _ = lrp_add(patch_out, embedded - patch_out, R[:, p:])  # relevance kept by the patch branch
        conv = model.patch_conv
        ph, pw = model.patch_size
        B, C, H, W = x.shape
        cols = torch.nn.functional.unfold(x, kernel_size=(ph, pw), stride=(ph, pw)).transpose(1, 2)  # (B, n, C*ph*pw)
        wmat = conv.weight.reshape(conv.out_channels, -1)
        low = x.amin(dim=(1, 2, 3)).view(B, 1, 1)
        high = x.amax(dim=(1, 2, 3)).view(B, 1, 1)
        r_cols = lrp_zb(cols, wmat, r_patch, low, high)
        result.pixels = torch.nn.functional.fold(r_cols.transpose(1, 2), (H, W), kernel_size=(ph, pw), stride=(ph, pw))
    return result


