"""Running the parts: a traced block (attention core written out, every intermediate an ordinary tensor of the
autograd graph), the same block on the fused attention kernel (for the many masked passes that need outputs
only), the attention-pooling probe, and the pooling end that turns tokens into an embedding and logits."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import fast
from .parts import BlockParts, Pooling, Probe
from .rules import activation, balanced_pass, identity_rule, norm_rule, uniform_rule

__all__ = ["Context", "Outputs", "Trace", "block_traced", "block_fast", "block_ablated", "pool_outputs"]


@dataclass
class Context:
    """Per-input-size state shared by all blocks of one pass: the patch grid and the RoPE embedding (a tensor, or
    one per block for depth-dependent RoPE)."""

    grid: tuple[int, int]
    rope: object = None
    rope_per_block: bool = False

    def rope_for(self, i: int):
        return self.rope[i] if (self.rope is not None and self.rope_per_block) else self.rope


@dataclass
class Outputs:
    """What the model computes for a batch: ``embedding`` (B, E), the pooled (and, for CLIP-style towers,
    projected) features, and ``logits`` (B, C), or None for a backbone or embedding model without classes."""

    embedding: torch.Tensor
    logits: torch.Tensor | None = None


@dataclass
class Trace:
    """Everything one traced forward pass recorded. Lists are indexed by block (0 = first block)."""

    logits: torch.Tensor | None
    embedding: torch.Tensor | None = None
    attentions: list = field(default_factory=list)  # (B, H, N, N) softmax probabilities
    scores: list = field(default_factory=list)  # (B, H, N, N) pre-softmax scores
    block_inputs: list = field(default_factory=list)  # (B, N, D)
    acts: list = field(default_factory=list)  # per block intermediates, when keep_activations
    final_tokens: torch.Tensor | None = None  # (B, N, D) output of the last block (before the final norm)
    patch_tokens: torch.Tensor | None = None  # (B, n_patches, D) patch-embedding output, before positions
    embedded: torch.Tensor | None = None  # (B, N, D) input of block 0
    probe_attention: torch.Tensor | None = None  # (B, H, Q, N) attention of a pooling probe
    probe_acts: dict | None = None
    pre_projection: torch.Tensor | None = None  # (B, D) pooled features before an embedding projection
    context: Context | None = None

    @property
    def outputs(self) -> Outputs:
        return Outputs(self.embedding, self.logits)


def _rope(bp: BlockParts, t: torch.Tensor, rope) -> torch.Tensor:
    from timm.layers import apply_rot_embed_cat

    n = bp.rope
    return torch.cat([t[:, :, :n], apply_rot_embed_cat(t[:, :, n:], rope, half=bp.rope_half)], dim=2).type_as(t)


def _qk(bp: BlockParts, h: torch.Tensor, ctx: Context, i: int, acts: dict | None, fused: bool = False):
    q, k, v = fast.qkv(bp.qkv, h, fused)
    if bp.q_norm is not None:
        q = bp.q_norm(q)
    if bp.k_norm is not None:
        k = bp.k_norm(k)
    if bp.rope >= 0 and ctx.rope is not None:
        if acts is not None:
            acts.update(q_pre=q, k_pre=k)
        rope = ctx.rope_for(i)
        q, k = _rope(bp, q, rope), _rope(bp, k, rope)
    return q, k, v


def _merge(o: torch.Tensor) -> torch.Tensor:
    B, H, N, d = o.shape
    return o.transpose(1, 2).reshape(B, N, H * d)


def _norm(m, x: torch.Tensor, libra: bool) -> torch.Tensor:
    """A normalisation module (None: none), with LibraGrad's rule in a balanced pass."""
    if libra:
        return norm_rule(m, x)
    return m(x) if m is not None else x


def _mlp_traced(m, h2: torch.Tensor, acts: dict | None, libra: bool = False) -> torch.Tensor:
    """The MLP; with ``libra`` LibraGrad's backward (gates held constant, a gated product's gradient halved)."""
    act = (lambda t: identity_rule(m.act, t)) if libra else (lambda t: activation(m.act, t))
    if m.gated:
        gate, val = m.fc1_g(h2), m.fc1_x(h2)
        g = act(gate) * val
        g = uniform_rule(g, 2) if libra else g
        f1 = gate
    else:
        f1 = m.fc1(h2)
        g = act(f1)
        gate = val = None
    gn = _norm(m.mid_norm, g, libra)
    if acts is not None:
        acts.update(f1=f1, g=gn, gate=gate, val=val)
    return m.fc2(gn)


def block_traced(bp: BlockParts, x: torch.Tensor, tr: Trace, ctx: Context, i: int, keep_scores: bool,
                 keep_acts: bool) -> torch.Tensor:
    acts = {} if keep_acts else None
    fused = not keep_acts and fast.use_fused(x)  # no gradients, no activations kept: only the attention matters
    libra = balanced_pass()
    h1 = _norm(bp.norm1, x, libra)
    q, k, v = _qk(bp, h1, ctx, i, acts, fused)
    s = (q * bp.scale) @ k.transpose(-2, -1)
    if bp.rel_bias is not None:
        s = s + bp.rel_bias.bias(ctx.grid, s.shape[-1]).to(s.dtype)
    if libra:  # LibraGrad: no gradient into q and k; the scores' and probabilities' own gradients are still read
        s = s.detach().requires_grad_(True)
    a = s.softmax(dim=-1)
    tr.attentions.append(a)
    if keep_scores:
        tr.scores.append(s)
    o = _merge(a @ v)
    if fused:
        return _after_attention(bp, o, x, True)
    on = _norm(bp.attn_norm, o, libra)
    attn_out = bp.proj(on)
    branch1 = bp.ls1(attn_out) if bp.ls1 is not None else attn_out
    x_mid = x + branch1
    h2 = _norm(bp.norm2, x_mid, libra)
    f2 = _mlp_traced(bp.mlp, h2, acts, libra)
    branch2 = bp.ls2(f2) if bp.ls2 is not None else f2
    out = x_mid + branch2
    if keep_acts:
        acts.update(x=x, h1=h1, q=q, k=k, v=v, a=a, o=on, branch1=branch1, x_mid=x_mid, h2=h2, branch2=branch2)
        tr.acts.append(acts)
    return out


def block_fast(bp: BlockParts, x: torch.Tensor, ctx: Context, i: int, h: torch.Tensor | None = None) -> torch.Tensor:
    """The same block on PyTorch's fused attention kernel (no attention matrix kept); without autograd on the CPU
    also with the bias, GELU and residual additions fused into the matrix products (:mod:`.fast`).

    h: the first norm's output to attend over instead of ``norm1(x)`` (the residual stream stays ``x``): ViT-ReciproCAM
    masks it."""
    fused = fast.use_fused(x)
    h = bp.norm1(x) if h is None else h
    q, k, v = _qk(bp, h, ctx, i, None, fused)
    mask = bp.rel_bias.bias(ctx.grid, q.shape[-2]).to(q.dtype) if bp.rel_bias is not None else None
    o = _merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=bp.scale))
    return _after_attention(bp, o, x, fused)


def block_ablated(bp: BlockParts, x: torch.Tensor, ctx: Context, i: int, keep: torch.Tensor,
                  mean: bool = False) -> torch.Tensor:
    """:func:`block_fast` with heads removed: ``keep`` (B, heads) is 1 for a head kept and 0 for a head whose output
    (its slice of the merged attention output, before the output projection) is zeroed, or with ``mean``
    replaced by its mean over the tokens of the same image (mean ablation)."""
    fused = fast.use_fused(x)
    h = bp.norm1(x)
    q, k, v = _qk(bp, h, ctx, i, None, fused)
    mask = bp.rel_bias.bias(ctx.grid, q.shape[-2]).to(q.dtype) if bp.rel_bias is not None else None
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=bp.scale)  # (B, heads, N, d)
    w = keep.to(o.dtype)[:, :, None, None]
    o = o * w + (1 - w) * o.mean(2, keepdim=True) if mean else o * w
    return _after_attention(bp, _merge(o), x, fused)


def _after_attention(bp: BlockParts, o: torch.Tensor, x: torch.Tensor, fused: bool) -> torch.Tensor:
    """The rest of a block from the merged attention output ``o`` (fused kernels where ``fused``)."""
    if bp.attn_norm is not None:
        o = bp.attn_norm(o)
    if bp.ls1 is None:
        x = fast.linear_add(bp.proj, o, x, fused)
    else:
        x = x + bp.ls1(fast.linear(bp.proj, o, fused))
    if bp.ls2 is None:
        return fast.mlp_add(bp.mlp, bp.norm2(x), x, fused)
    return x + bp.ls2(fast.mlp_add(bp.mlp, bp.norm2(x), None, fused))


def probe_forward(p: Probe, x: torch.Tensor, tr: Trace | None = None, keep_acts: bool = False) -> torch.Tensor:
    """Attention pooling of tokens x (B, N, D) -> (B, D). Records the probe's attention in ``tr``."""
    B, N, D = x.shape
    if p.pos_embed_name:
        x = x + getattr(p.owner, p.pos_embed_name).unsqueeze(0).to(x.dtype)
    lat = p.latent.expand(B, -1, -1)
    Q = lat.shape[1]
    q = p.q(lat).reshape(B, Q, p.num_heads, p.head_dim).transpose(1, 2)
    k = p.k(x).reshape(B, N, p.num_heads, p.head_dim).transpose(1, 2)
    v = p.v(x).reshape(B, N, p.num_heads, p.head_dim).transpose(1, 2)
    if p.q_norm is not None:
        q = p.q_norm(q)
    if p.k_norm is not None:
        k = p.k_norm(k)
    libra = balanced_pass()
    if tr is None and not libra:
        o = F.scaled_dot_product_attention(q, k, v, scale=p.scale)
        a = None
    else:
        s = (q * p.scale) @ k.transpose(-2, -1)
        a = (s.detach().requires_grad_(True) if libra else s).softmax(-1)
        o = a @ v
        if tr is not None:
            tr.probe_attention = a
    o = _merge(o)
    y = p.proj(o)
    out = y
    if p.mlp is not None:
        hn = _norm(p.norm, y, libra)
        if (keep_acts and tr is not None) or libra:
            acts: dict = {}
            m = _mlp_traced(p.mlp, hn, acts, libra)
            if keep_acts and tr is not None:
                tr.probe_acts = dict(x=x, q=q, k=k, v=v, a=a, o=o, y=y, hn=hn, mlp=m, **acts)
        else:
            m = p.mlp(hn)
        out = y + m
    elif keep_acts and tr is not None:
        tr.probe_acts = dict(x=x, q=q, k=k, v=v, a=a, o=o, y=y)
    return out[:, 0] if p.pool == "token" else out.mean(1)


def pool_outputs(pool: Pooling, tokens: torch.Tensor, num_prefix: int, tr: Trace | None = None,
                 keep_acts: bool = False) -> Outputs:
    """Final tokens (B, N, D) -> :class:`Outputs` (embedding and, when the model has classes, logits)."""
    libra = balanced_pass()
    x = _norm(pool.norm, tokens, libra)
    if pool.kind == "dist":
        e = (x[:, 0] + x[:, 1]) / 2
        return Outputs(e, (pool.head(x[:, 0]) + pool.head_dist(x[:, 1])) / 2)
    if pool.kind == "token":
        e = x[:, 0]
    elif pool.kind == "avg":
        e = x[:, num_prefix:].mean(1)
    elif pool.kind == "avg_all":
        e = x.mean(1)
    elif pool.kind == "token_avg":
        e = torch.cat([x[:, 0], x[:, num_prefix:].mean(1)], dim=-1)
    elif pool.kind == "map":
        e = probe_forward(pool.probe, x, tr, keep_acts)
    else:  # pragma: no cover - adapters only build the kinds above
        raise ValueError(pool.kind)
    e = _norm(pool.fc_norm, e, libra)
    if pool.proj is not None:
        if tr is not None:
            tr.pre_projection = e
        e = pool.proj(e)
    return Outputs(e, pool.head(e) if pool.head is not None else None)
