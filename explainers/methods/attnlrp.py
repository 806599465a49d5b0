"""AttnLRP (Achtibat et al., ICML 2024) and CP-LRP (Ali et al., ICML 2022) as gradient x input through a forward
pass whose backward is modified by LRP rules.

The model is run through the library's own parts (:mod:`..models.parts`, the same sub-modules and weights as
``ViTModel.trace``), with these rules written into the forward as custom autograd functions, so that after one
backward pass ``input * gradient`` is the LRP relevance (the "efficient" formulation of the ``lxt`` package):

* linear layers (q/k/v, projection, MLP, pooling, classifier, patch embedding): the plain gradient, i.e. LRP-0
  (epsilon -> 0); biases absorb their share;
* normalisations (LayerNorm, RMSNorm, q/k norms, inner norms): the identity rule of AttnLRP, written as in lxt by
  holding the standard deviation (the root mean square) constant; any other normalisation module: the identity
  rule element-wise (``R_in = R_out``);
* element-wise activations (GELU, SiLU, ...): the identity rule (``grad * act(x) / x``);
* softmax: its own gradient, which under gradient x input is AttnLRP's softmax rule ``x (R - s sum R)``;
* AttnLRP: the bilinear products ``q k^T`` and ``A v`` and a gated MLP's ``act(g) * v`` get the uniform rule
  (each operand half of the relevance: q and k a quarter, v a half, as lxt does);
* CP-LRP: attention probabilities are constants (q and k detached), so relevance flows through the values only
  and is conserved; a gated MLP's gate is a constant as well (lxt's ``cp_gated_mlp_forward``);
* attention-pooling probe: its query is learned (a constant), so the keys take all of the score's relevance and
  the ``A v`` product is split half/half (AttnLRP) or the keys are detached (CP-LRP).

Relevance starts at the target's logit (one-hot, +1/-1 for a contrast) or, for embedding targets, as in
:func:`.lrp.initial_relevance`. The patch map is the relevance of the patch tokens at the input of block 0 (the
token level; prefix tokens dropped) or the pixel relevance summed per patch (``level="pixels"``).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F

from ..models import Outputs
from ..models.blocks import _rope
from ..models.rules import identity_rule, norm_rule, uniform_rule
from ..registry import Capture, Maps, Method, Param, register
from ..targets import bind
from ._common import new_capture
from ._lrp_rules import _safe_div
from .lrp import initial_relevance

__all__ = ["AttnLRP", "CPLRP", "rule_relevance"]

ATTNLRP = ("Achtibat, Hatefi, Dreyer, Jain, Wiegand, Lapuschkin & Samek, AttnLRP: Attention-Aware Layer-Wise "
           "Relevance Propagation for Transformers, ICML 2024")
ATTNLRP_URL = "https://arxiv.org/abs/2402.05602"
CPLRP = ("Ali, Schnake, Eberle, Montavon, Müller & Wolf, XAI for Transformers: Better Explanations through "
         "Conservative Propagation, ICML 2022")
CPLRP_URL = "https://arxiv.org/abs/2202.07304"


def _mlp(m, h: torch.Tensor, cp: bool) -> torch.Tensor:
    if m.gated:
        gate = m.fc1_g(h)
        if cp:
            g = m.act(gate.detach()) * m.fc1_x(h)
        else:
            g = uniform_rule(identity_rule(m.act, gate) * m.fc1_x(h), 2)
    else:
        g = identity_rule(m.act, m.fc1(h))
    return m.fc2(norm_rule(m.mid_norm, g))


def _attend(q, k, v, scale, bias=None) -> torch.Tensor:
    """softmax(q k^T scale + bias) v on PyTorch's fused kernel: its backward is the softmax's own gradient and the
    products' gradients, which is AttnLRP's softmax rule once q, k, v carry the uniform rule (as lxt runs torch's
    attention)."""
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    B, H, N, d = o.shape
    return o.transpose(1, 2).reshape(B, N, H * d)


def _block(bp, x: torch.Tensor, ctx, i: int, cp: bool) -> torch.Tensor:
    h1 = norm_rule(bp.norm1, x)
    q, k, v = bp.qkv(h1)
    q, k = norm_rule(bp.q_norm, q), norm_rule(bp.k_norm, k)
    if bp.rope >= 0 and ctx.rope is not None:
        q, k = _rope(bp, q, ctx.rope_for(i)), _rope(bp, k, ctx.rope_for(i))
    if cp:
        q, k = q.detach(), k.detach()
    else:
        q, k, v = uniform_rule(q, 4), uniform_rule(k, 4), uniform_rule(v, 2)
    bias = bp.rel_bias.bias(ctx.grid, q.shape[-2]).to(q.dtype) if bp.rel_bias is not None else None
    o = bp.proj(norm_rule(bp.attn_norm, _attend(q, k, v, bp.scale, bias)))
    x = x + (bp.ls1(o) if bp.ls1 is not None else o)
    f = _mlp(bp.mlp, norm_rule(bp.norm2, x), cp)
    return x + (bp.ls2(f) if bp.ls2 is not None else f)


def _probe(p, x: torch.Tensor, cp: bool) -> torch.Tensor:
    B, N, _ = x.shape
    if p.pos_embed_name:
        x = x + getattr(p.owner, p.pos_embed_name).unsqueeze(0).to(x.dtype)
    lat = p.latent.expand(B, -1, -1)
    Q = lat.shape[1]
    q = norm_rule(p.q_norm, p.q(lat).reshape(B, Q, p.num_heads, p.head_dim).transpose(1, 2))
    k = norm_rule(p.k_norm, p.k(x).reshape(B, N, p.num_heads, p.head_dim).transpose(1, 2))
    v = p.v(x).reshape(B, N, p.num_heads, p.head_dim).transpose(1, 2)
    # the latent query is a constant: the score q k^T is linear in k, only A v is a product of two inputs
    k, v = (k.detach(), v) if cp else (uniform_rule(k, 2), uniform_rule(v, 2))
    y = p.proj(_attend(q.detach(), k, v, p.scale))
    out = y + _mlp(p.mlp, norm_rule(p.norm, y), cp) if p.mlp is not None else y
    return out[:, 0] if p.pool == "token" else out.mean(1)


def _pool(pool, t: torch.Tensor, P: int, cp: bool) -> Outputs:
    x = norm_rule(pool.norm, t)
    if pool.kind == "dist":
        return Outputs((x[:, 0] + x[:, 1]) / 2, (pool.head(x[:, 0]) + pool.head_dist(x[:, 1])) / 2)
    e = {"token": lambda: x[:, 0], "avg": lambda: x[:, P:].mean(1), "avg_all": lambda: x.mean(1),
         "token_avg": lambda: torch.cat([x[:, 0], x[:, P:].mean(1)], -1),
         "map": lambda: _probe(pool.probe, x, cp)}[pool.kind]()
    e = norm_rule(pool.fc_norm, e)
    if pool.proj is not None:
        e = pool.proj(e)
    return Outputs(e, pool.head(e) if pool.head is not None else None)


def rule_relevance(model, x: torch.Tensor, target, cp: bool):
    """One forward with the rules and one backward. Returns (bound target, outputs, token relevance (B, N) at the
    input of block 0 (all tokens), pixel relevance (B, H, W), the start relevance's sum per image)."""
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        t, ctx = model.adapter.embed(model.module, xg)
        tb = t
        for i, bp in enumerate(model.blocks):
            t = _block(bp, t, ctx, i, cp)
        out = _pool(model.pooling, t, model.num_prefix_tokens, cp)
        bound = bind(model, target, Outputs(out.embedding.detach(),
                                            out.logits.detach() if out.logits is not None else None), x)
        where, R = initial_relevance(model, bound, SimpleNamespace(logits=out.logits, embedding=out.embedding))
        y = out.logits if where == "logits" else out.embedding
        grad_out = R if where == "logits" else _safe_div(R, y.detach())
        gt, gx = torch.autograd.grad(y, [tb, xg], grad_out)
    start = (y.detach() * grad_out).flatten(1).sum(1)
    return bound, out, (tb.detach() * gt).sum(-1), (xg.detach() * gx).sum(1), start


class _RuleLRP(Method):
    cp = False
    family = "lrp"
    signed = True  # relevance: positive for the target, negative against it
    cost = "1 forward + 1 modified backward"
    params = (Param("level", "choice", "tokens",
                    "Where the patch map is read: the patch tokens entering block 0, or the pixels (gradient x "
                    "input through the patch embedding), summed per patch.", choices=("tokens", "pixels"),
                    cheap=True),)

    def capture(self, model, x, target, params, progress=None) -> Capture:
        bound, out, tok, pix, _ = rule_relevance(model, x, target, self.cp)
        cap = new_capture(model, x, out, bound, x.shape[0])
        cap.state["tokens"] = tok[:, model.num_prefix_tokens:].float()
        cap.state["pixels"] = pix.float()
        return cap

    def reduce(self, cap, params) -> Maps:
        gh, gw = cap.grid
        pix = cap.state["pixels"]
        if params["level"] == "pixels":
            B, H, W = pix.shape
            patch = pix.reshape(B, gh, H // gh, gw, W // gw).sum((2, 4))
            return Maps(patch, pixel_maps=pix)
        return Maps(cap.state["tokens"].reshape(-1, gh, gw))


@register
class AttnLRP(_RuleLRP):
    """AttnLRP (Achtibat et al. 2024): LRP through the whole transformer including the softmax (its own
    rule) and the attention products (uniform rule), as gradient x input with modified backward passes.
    Linear layers use LRP-0 (epsilon -> 0), as lxt's "efficient" rules do without a gamma composite; the
    paper's ViT figures add zennit's gamma rule on linear layers, which is not applied here."""

    name = "attnlrp"
    display_name = "AttnLRP"
    paper, paper_url = ATTNLRP, ATTNLRP_URL
    description = ("Layer-wise relevance propagation through every part of the transformer, attention "
                   "included, with rules that keep relevance faithful to the softmax and the attention products.")


@register
class CPLRP(_RuleLRP):
    """CP-LRP (Ali et al. 2022): LRP with the attention probabilities held constant (relevance flows through
    the values only) and LayerNorm's scale held constant, which makes the propagation conservative."""

    name = "cp_lrp"
    display_name = "CP-LRP (conservative propagation)"
    paper, paper_url = CPLRP, CPLRP_URL
    cp = True
    description = ("Layer-wise relevance propagation that treats the attention weights as constants, so that the "
                   "relevance of the class score is conserved from layer to layer.")
