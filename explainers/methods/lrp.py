"""Layer-wise relevance propagation through a standard ViT, read from the model's own weights, and the
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
* LayerNorm, softmax, GELU, dropout and LayerScale pass relevance through unchanged.

All rules work per image of a batch and conserve relevance (up to terms whose denominator is zero).
"""

from __future__ import annotations

import torch

from ..registry import Capture, Maps, Method, Param, register, resolve_targets
from ._common import START_LAYER, cls_row, rollout_row
from .attention import CHEFER21, CHEFER21_URL

__all__ = ["lrp_linear", "lrp_zb", "lrp_add", "lrp_matmul", "relprop", "LRPResult"]


def _safe_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b where b != 0, else 0 (Chefer's safe_divide without its 1e-9 stabiliser)."""
    nz = b != 0
    return torch.where(nz, a / torch.where(nz, b, torch.ones_like(b)), torch.zeros_like(a))


def _bsum(t: torch.Tensor) -> torch.Tensor:
    """Per-image sum, shaped to broadcast against t."""
    return t.reshape(t.shape[0], -1).sum(1).reshape(-1, *([1] * (t.dim() - 1)))


def lrp_linear(x: torch.Tensor, weight: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Alpha-1/beta-0 rule for ``y = x W^T`` (bias ignored). x: (..., in), R: (..., out) -> (..., in)."""
    xp, xn = x.clamp(min=0), x.clamp(max=0)
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


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    B, N, D = t.shape
    return t.view(B, N, heads, D // heads).transpose(1, 2)


def _merge_heads(t: torch.Tensor) -> torch.Tensor:
    B, H, N, d = t.shape
    return t.transpose(1, 2).reshape(B, N, H * d)


def _relprop_head(model, final_tokens: torch.Tensor, R_logits: torch.Tensor) -> torch.Tensor:
    """Relevance of the classifier output -> relevance of the last block's output tokens (B, N, D)."""
    hp = model.head
    x = hp.norm(final_tokens) if hp.norm is not None else final_tokens  # final norm: identity rule
    R_tok = torch.zeros_like(x)
    p = model.num_prefix_tokens
    if hp.pool == "dist":
        ya = hp.head(x[:, 0]) / 2
        yb = hp.head_dist(x[:, 1]) / 2
        ra, rb = lrp_add(ya, yb, R_logits)
        R_tok[:, 0] = lrp_linear(x[:, 0], hp.head.weight, ra)
        R_tok[:, 1] = lrp_linear(x[:, 1], hp.head_dist.weight, rb)
        return R_tok
    pooled = hp.pool_tokens(x, p)
    pooled_in = hp.fc_norm(pooled) if hp.fc_norm is not None else pooled  # fc_norm: identity rule
    R_pool = lrp_linear(pooled_in, hp.head.weight, R_logits)
    D = x.shape[-1]
    if hp.pool == "token":
        R_tok[:, 0] = R_pool
    elif hp.pool in ("avg", "token_avg"):
        if hp.pool == "token_avg":
            R_tok[:, 0] = R_pool[:, :D]
            R_pool = R_pool[:, D:]
        patches = x[:, p:]  # mean pooling is a linear map with weights 1/n: same alpha-beta rule per feature
        n = patches.shape[1]
        xp = patches.clamp(min=0)
        z = xp.sum(1, keepdim=True) / n
        R_tok[:, p:] = xp / n * _safe_div(R_pool[:, None, :], z)
    return R_tok


def _relprop_block(bp, act: dict, R: torch.Tensor, result: LRPResult, index: int) -> torch.Tensor:
    """Relevance at a block's output -> relevance at its input; stores R^{A} of the block."""
    # MLP branch: x_out = x_mid + ls2(fc2(act(fc1(norm2(x_mid)))))
    r_mid_res, r_mlp = lrp_add(act["x_mid"], act["branch2"], R)
    r_g = lrp_linear(act["g"], bp.fc2.weight, r_mlp)  # LayerScale, activation, norms: identity
    r_h2 = lrp_linear(act["h2"], bp.fc1.weight, r_g)
    r_mid = r_mid_res + r_h2  # the clone feeding residual and branch
    # attention branch: x_mid = x + ls1(proj(A v))
    r_in_res, r_attn = lrp_add(act["x"], act["branch1"], r_mid)
    r_o = lrp_linear(act["o"], bp.proj.weight, r_attn)
    r_o = _split_heads(r_o, bp.num_heads)
    r_a, r_v = lrp_matmul(act["a"], act["v"], r_o)
    result.attn[index] = r_a
    r_q, r_kt = lrp_matmul(act["q"], act["k"].transpose(-2, -1), r_a)  # softmax: identity
    r_qkv = torch.cat([_merge_heads(r_q), _merge_heads(r_kt.transpose(-2, -1)), _merge_heads(r_v)], dim=-1)
    w, _ = bp.qkv_weight()  # output features ordered (q|k|v, heads, head_dim) for fused and separate layouts
    r_h1 = lrp_linear(act["h1"], w, r_qkv)
    return r_in_res + r_h1


def relprop(model, trace, R_logits: torch.Tensor, stop_layer: int = 0, to_pixels: bool = False,
            x: torch.Tensor | None = None) -> LRPResult:
    """Propagate ``R_logits`` (B, C) from the classifier down to block ``stop_layer`` (and to the pixels
    with ``to_pixels``, which needs the model input ``x`` and ``trace.patch_tokens``)."""
    result = LRPResult()
    R = _relprop_head(model, trace.final_tokens, R_logits)
    for i in range(model.num_layers - 1, stop_layer - 1, -1):
        R = _relprop_block(model.blocks[i], trace.acts[i], R, result, i)
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


def _one_hot(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(logits).scatter_(1, targets[:, None], 1.0)


def lrp_capture(model, x, target, *, grads: bool, to_pixels: bool = False, stop_layer: int = 0) -> Capture:
    """Traced forward (+ backward for attention gradients) and one relevance pass."""
    with torch.enable_grad() if grads else torch.inference_mode():
        xin = x.detach().clone().requires_grad_(True) if grads else x
        tr = model.trace(xin, keep_activations=True, keep_patch_tokens=to_pixels)
        targets = resolve_targets(tr.logits.detach(), target)
        G = None
        if grads:
            y = tr.logits.gather(1, targets[:, None]).sum()
            G = torch.stack(torch.autograd.grad(y, tr.attentions))
    with torch.inference_mode():
        tr.acts = [{k: v.detach() for k, v in a.items()} for a in tr.acts]
        tr.final_tokens = tr.final_tokens.detach()
        if to_pixels:
            tr.patch_tokens, tr.embedded = tr.patch_tokens.detach(), tr.embedded.detach()
        res = relprop(model, tr, _one_hot(tr.logits.detach(), targets), stop_layer=stop_layer,
                      to_pixels=to_pixels, x=x)
    cap = Capture(method="", logits=tr.logits.detach(), targets=targets, grid=model.grid(x),
                  input_size=tuple(x.shape[-2:]), params={}, forward_passes=x.shape[0])
    cap.state["prefix"] = model.num_prefix_tokens
    cap.state["RA"] = torch.stack([res.attn[i] for i in range(stop_layer, model.num_layers)])
    cap.state["first"] = stop_layer
    if G is not None:
        cap.state["G"] = G
    if to_pixels:
        cap.state["pixels"] = res.pixels
    return cap


@register
class TransformerAttribution(Method):
    """Chefer et al. CVPR 2021, "Transformer Interpretability Beyond Attention Visualization".

    One forward, one backward (attention gradients ∇A_l of the target logit), one LRP pass from a one-hot
    relevance at the target class (relevance R^{A_l} of each attention map at the A·V product). Per layer
    ``Ā_l = mean_h((∇A_l ⊙ R^{A_l})^+)`` (clamp, then head mean, as in Chefer's ViT_LRP.py), ``Ā_l + I``
    without row normalisation, product over blocks ``start_layer..L-1``, CLS row.

    ``head_reduction="mean_then_clamp"`` and ``normalize_rows=True`` reproduce the mxz2013 adaptation.
    Chefer's evaluation scripts used ``start_layer=1``; notebooks and this default use 0.
    """

    name = "transformer_attribution"
    display_name = "Transformer Attribution (LRP)"
    paper, paper_url = CHEFER21, CHEFER21_URL
    cost = "1 forward + 1 backward + 1 relevance pass"
    family = "lrp"
    description = ("Combines layer-wise relevance of each attention map with its gradient for the target "
                   "class and rolls the result out through the layers.")
    params = (
        START_LAYER,
        Param("head_reduction", "choice", "clamp_then_mean",
              "Order of ReLU and head mean: Chefer's ViT_LRP.py clamps first; the mxz2013 adaptation "
              "averages heads first.", choices=("clamp_then_mean", "mean_then_clamp"), cheap=True),
        Param("normalize_rows", "bool", False,
              "Row-normalise Ā+I before multiplying (mxz2013); Chefer's code has this commented out.", cheap=True),
    )

    def capture(self, model, x, target, params, progress=None) -> Capture:
        return lrp_capture(model, x, target, grads=True)

    def reduce(self, cap, params) -> Maps:
        s = params["start_layer"]
        first = cap.state["first"]
        prod = cap.state["G"][s:] * cap.state["RA"][s - first:]
        if params["head_reduction"] == "clamp_then_mean":
            w = prod.clamp(min=0).mean(2)
        else:
            w = prod.mean(2).clamp(min=0)
        row = rollout_row(w, identity="add", normalize="row" if params["normalize_rows"] else None)
        return Maps(cls_row(row, cap.state["prefix"], cap.grid))


@register
class FullLRP(Method):
    """Full LRP (Chefer et al.'s "full" baseline): relevance propagated through every block and the patch
    embedding (z^B rule) down to the pixels, summed over colour channels. ``patch_map`` is the pixel
    relevance summed per patch; the heatmap is the pixel map itself."""

    name = "lrp_full"
    display_name = "Full LRP (pixels)"
    paper, paper_url = CHEFER21 + " (baseline, after Bach et al. 2015)", CHEFER21_URL
    cost = "1 forward + 1 relevance pass"
    family = "lrp"
    description = "Layer-wise relevance propagation from the class score all the way down to the input pixels."
    params = ()

    def capture(self, model, x, target, params, progress=None) -> Capture:
        return lrp_capture(model, x, target, grads=False, to_pixels=True)

    def reduce(self, cap, params) -> Maps:
        pix = cap.state["pixels"].sum(1)  # (B, H, W)
        B = pix.shape[0]
        gh, gw = cap.grid
        ph, pw = pix.shape[1] // gh, pix.shape[2] // gw
        patch = pix.reshape(B, gh, ph, gw, pw).sum((2, 4))
        return Maps(patch, pixel_maps=pix)


@register
class LRPLastLayer(Method):
    """Relevance of the last block's attention map (R^{A_L}, clamped at 0, head mean), CLS row
    (Chefer et al.'s "last layer" LRP baseline). ``multiply_gradient`` multiplies by ∇A_L first (their
    ``is_ablation`` variant)."""

    name = "lrp_last_layer"
    display_name = "LRP of the last attention layer"
    paper, paper_url = CHEFER21 + " (baseline)", CHEFER21_URL
    cost = "1 forward + 1 backward + 1 relevance pass through the last block"
    family = "lrp"
    description = "The relevance that layer-wise relevance propagation assigns to the last attention map."
    params = (Param("multiply_gradient", "bool", False,
                    "Multiply the relevance by the attention gradient (Chefer's ablation).", cheap=True),)

    def capture(self, model, x, target, params, progress=None) -> Capture:
        return lrp_capture(model, x, target, grads=True, stop_layer=model.num_layers - 1)

    def reduce(self, cap, params) -> Maps:
        r = cap.state["RA"][-1]
        if params["multiply_gradient"]:
            r = r * cap.state["G"][-1]
        row = r.clamp(min=0).mean(1)[:, 0]
        return Maps(cls_row(row, cap.state["prefix"], cap.grid))
