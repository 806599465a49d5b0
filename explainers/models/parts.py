"""Uniform handles on the pieces of a Vision Transformer, whatever library built it.

A family adapter (one file per family: ``timm_vit.py``, ``hf_clip.py``, ...) describes a model with these
objects; they hold references to the model's *own* sub-modules and parameters (never copies, never closures, so a
``copy.deepcopy`` of the wrapper is a consistent, independent model), and :mod:`.blocks` runs them.

* :class:`LinearView`: a linear map whose weight (and bias) live on some module, possibly as a row slice of a
  larger matrix (``nn.MultiheadAttention.in_proj_weight``) or with a bias assembled from separate vectors (BEiT's
  ``q_bias``/``v_bias``);
* :class:`QKV`: the query/key/value projection, fused or separate;
* :class:`Scale`: LayerScale given as a module or a bare ``gamma`` parameter;
* :class:`Mlp`: a plain MLP (fc1 -> act -> [norm] -> fc2) or a gated one (SwiGLU: act(fc1_g x) * fc1_x x);
* :class:`BlockParts`: one pre-norm block with its attention variant (q/k norms, RoPE, relative position bias,
  an inner norm before the output projection) and LayerScale;
* :class:`Probe`: an attention-pooling head (SigLIP's MAP head): latent queries attending over the tokens;
* :class:`Pooling`: the classifier end: final norm, pooling, fc_norm, probe, embedding projection, classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .rules import activation

__all__ = ["LinearView", "QKV", "Scale", "Mlp", "BlockParts", "Probe", "Pooling", "POOLINGS"]


class LinearView:
    """``y = x W^T + b`` with W and b read (on each call) from ``owner``'s attributes.

    rows: a slice of W's rows (e.g. the value part of a fused in-projection). bias_names: several attribute names
    whose tensors are concatenated into the bias (``None`` entries mean zeros of the matching size)."""

    def __init__(self, owner: nn.Module, weight: str = "weight", bias: str | None = "bias", rows: slice | None = None,
                 bias_names: tuple | None = None, bias_owner: nn.Module | None = None):
        self.owner, self.wname, self.bname, self.rows, self.bias_names = owner, weight, bias, rows, bias_names
        self.bias_owner = owner if bias_owner is None else bias_owner

    @property
    def weight(self) -> torch.Tensor:
        w = getattr(self.owner, self.wname)
        return w if self.rows is None else w[self.rows]

    @property
    def bias(self) -> torch.Tensor | None:
        if self.bias_names is not None:
            parts = [getattr(self.bias_owner, n, None) for n in self.bias_names]
            if all(p is None for p in parts):
                return None
            size = self.weight.shape[0] // len(parts)
            return torch.cat([p if p is not None else self.weight.new_zeros(size) for p in parts])
        b = getattr(self.bias_owner, self.bname, None) if self.bname else None
        return b if (b is None or self.rows is None) else b[self.rows]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class QKV:
    """Query/key/value projection: ``fused`` (one map to (3, heads, head_dim)) or ``q``, ``k``, ``v`` separately."""

    def __init__(self, heads: int, head_dim: int, fused=None, q=None, k=None, v=None):
        self.heads, self.head_dim, self.fused, self.q, self.k, self.v = heads, head_dim, fused, q, k, v

    def __call__(self, h: torch.Tensor):
        B, N, _ = h.shape
        if self.fused is not None:
            qkv = self.fused(h).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            return qkv[0], qkv[1], qkv[2]
        shape = (B, N, self.heads, self.head_dim)
        return tuple(m(h).reshape(shape).transpose(1, 2) for m in (self.q, self.k, self.v))

    def weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The fused (3*H*d, D) weight and bias, whichever layout the model uses (for the LRP rules)."""
        if self.fused is not None:
            return self.fused.weight, self.fused.bias
        w = torch.cat([self.q.weight, self.k.weight, self.v.weight], 0)
        bs = [m.bias for m in (self.q, self.k, self.v)]
        b = None if all(b is None for b in bs) else torch.cat(
            [b if b is not None else m.weight.new_zeros(m.weight.shape[0])
             for b, m in zip(bs, (self.q, self.k, self.v))])
        return w, b


class Scale:
    """LayerScale: a module (timm ``LayerScale``, HF ``layer_scale1``) or a gamma parameter on ``owner``."""

    def __init__(self, module: nn.Module | None = None, owner: nn.Module | None = None, name: str = ""):
        self.module, self.owner, self.name = module, owner, name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.module is not None:
            return self.module(x)
        return x * getattr(self.owner, self.name)


@dataclass
class Mlp:
    """fc1 -> act -> [mid_norm] -> fc2, or gated: act(fc1_g h) * fc1_x h -> [mid_norm] -> fc2.

    A fused gated projection (timm ``GluMlp``) is given as ``fc1_g``/``fc1_x`` row views of its ``fc1``."""

    fc1: object | None
    act: nn.Module
    fc2: object
    mid_norm: nn.Module | None = None
    fc1_g: object | None = None
    fc1_x: object | None = None

    @property
    def gated(self) -> bool:
        return self.fc1_g is not None

    @property
    def hidden(self) -> int:
        return (self.fc1_x if self.gated else self.fc1).out_features

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        g = activation(self.act, self.fc1_g(h)) * self.fc1_x(h) if self.gated else activation(self.act, self.fc1(h))
        if self.mid_norm is not None:
            g = self.mid_norm(g)
        return self.fc2(g)


@dataclass
class BlockParts:
    """One pre-norm transformer block: ``x + ls1(proj(attn(norm1 x)))``, then ``+ ls2(mlp(norm2 x))``.

    Attention variants: q_norm/k_norm (per head), RoPE (``rope`` = number of leading tokens it skips, -1 = none;
    the rotation comes from the model's position context), relative position bias (``rel_bias``: an object with
    ``bias(grid, n_tokens)`` -> (1, H, N, N)), an inner norm on the merged heads before ``proj`` (EVA)."""

    norm1: nn.Module
    qkv: QKV
    proj: object
    norm2: nn.Module
    mlp: Mlp
    num_heads: int
    head_dim: int
    scale: float
    ls1: Scale | None = None
    ls2: Scale | None = None
    q_norm: nn.Module | None = None
    k_norm: nn.Module | None = None
    rope: int = -1
    rope_half: bool = False
    rel_bias: object | None = None
    attn_norm: nn.Module | None = None

    # read by older code and by the LRP rules
    @property
    def fc1(self):
        return self.mlp.fc1 if not self.mlp.gated else self.mlp.fc1_x

    @property
    def fc2(self):
        return self.mlp.fc2

    def qkv_weight(self):
        return self.qkv.weight()


@dataclass
class Probe:
    """Attention pooling: ``latent`` queries (1, Q, D) attend over the tokens, then ``+ mlp(norm(.))``.

    kv: k and v projections of the tokens (``k``, ``v`` views); q: projection of the latent; pool: how the Q
    outputs become one vector ("token" = the first, "avg" = their mean)."""

    owner: nn.Module
    latent_name: str
    q: object
    k: object
    v: object
    proj: object
    num_heads: int
    head_dim: int
    scale: float
    norm: nn.Module | None = None
    mlp: Mlp | None = None
    q_norm: nn.Module | None = None
    k_norm: nn.Module | None = None
    pos_embed_name: str | None = None
    pool: str = "token"

    @property
    def latent(self) -> torch.Tensor:
        lat = getattr(self.owner, self.latent_name)
        return lat if lat.dim() == 3 else lat.view(1, -1, lat.shape[-1])


POOLINGS = {
    "token": "the class token",
    "dist": "the mean of the class and distillation tokens' classifiers",
    "avg": "the mean of the patch tokens (prefix tokens and registers excluded)",
    "avg_all": "the mean of all tokens",
    "token_avg": "the class token concatenated with the mean of the patch tokens",
    "map": "an attention-pooling probe (a learned query attending over the tokens)",
}


@dataclass
class Pooling:
    """tokens -> [norm] -> pool -> [fc_norm] -> [proj] = embedding -> [head] = logits.

    kind: a key of :data:`POOLINGS`. ``head`` None: a backbone or an embedding model (no classes)."""

    kind: str
    norm: nn.Module | None = None
    fc_norm: nn.Module | None = None
    head: object | None = None
    head_dist: object | None = None
    proj: object | None = None
    probe: Probe | None = None

    @property
    def description(self) -> str:
        return POOLINGS[self.kind]
