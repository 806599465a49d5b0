"""The passes the inside views share: one image in, the residual stream after every block, the target bound on
the model's own outputs, and the model's pooling end applied to single tokens (for the per-token logit lens)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InvalidParameterError
from ..models.blocks import Context, Outputs, block_fast, pool_outputs
from ..models.fast import _plain
from ..targets import Bound, ClassLogit, ClassProbability, Contrast, Similarity, bind

__all__ = ["Stream", "stream", "single_input", "token_outputs", "needed_classes", "num_registers"]


def single_input(model, image) -> torch.Tensor:
    """A PIL image, path, bytes or tensor -> the (1, 3, H, W) model input; a batch of several is refused."""
    from ..api import to_input

    x, _ = to_input(model, image)
    if x.shape[0] != 1:
        raise InvalidParameterError(f"the inside views explain one image at a time; got a batch of {x.shape[0]} "
                                    "(loop over the images)")
    return x


@dataclass
class Stream:
    """One clean pass: ``embedded`` (1, N, D) input of block 0, ``outputs[l]`` (1, N, D) output of block l, the
    model's ``final`` :class:`Outputs`, the per-input ``context`` and the target ``bound`` on ``final``."""

    x: torch.Tensor
    embedded: torch.Tensor
    outputs: list
    final: Outputs
    context: Context
    bound: Bound

    def block_input(self, layer: int) -> torch.Tensor:
        return self.embedded if layer == 0 else self.outputs[layer - 1]


def stream(model, image, target=None) -> Stream:
    """One forward pass on the fused path, keeping the residual stream after every block (no attention matrix)."""
    x = single_input(model, image)
    with torch.inference_mode():
        t, ctx = model.adapter.embed(model.module, x)
        embedded, outs = t, []
        for i, bp in enumerate(model.blocks):
            t = block_fast(bp, t, ctx, i)
            outs.append(t)
        final = pool_outputs(model.pooling, t, model.num_prefix_tokens)
        bound = bind(model, target, final, x)
    return Stream(x, embedded, outs, final, ctx, bound)


def needed_classes(bound: Bound):
    """The logit columns the bound target reads: a list (possibly empty: an embedding target), or None (all)."""
    t = bound.target
    if isinstance(t, ClassProbability):
        return None  # a softmax needs every logit
    if isinstance(t, ClassLogit):
        return sorted({int(c) for c in bound.classes.tolist()})
    if isinstance(t, Contrast):
        return [int(t.a), int(t.b)]
    from ..text import _TextTarget

    if isinstance(t, (Similarity, _TextTarget)):
        return []
    return None


def _head(lin, e: torch.Tensor, cols, n_classes: int) -> torch.Tensor:
    """``lin(e)``, computing only the columns ``cols`` (the others stay 0) when the head is a plain linear map."""
    if cols is None or not _plain(lin):
        return lin(e)
    out = e.new_zeros(e.shape[0], n_classes)
    if cols:
        b = lin.bias[cols] if lin.bias is not None else None
        out[:, cols] = F.linear(e, lin.weight[cols], b)
    return out


def _probe_single(p, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The attention-pooling probe over a sequence of one token: its softmax is 1, so the output is the token's
    value projection (then the probe's own projection and MLP). x: (M, D); positions: (M,) token indices."""
    if p.pos_embed_name:
        x = x + getattr(p.owner, p.pos_embed_name).to(x.dtype)[positions]
    y = p.proj(p.v(x))
    if p.mlp is not None:
        y = y + p.mlp(p.norm(y) if p.norm is not None else y)
    return y


def token_outputs(model, tokens: torch.Tensor, cols=None, positions: torch.Tensor | None = None) -> Outputs:
    """What the pooling end would give if it read one token alone: (M, D) tokens -> :class:`Outputs` with M rows.

    Class-token and average pools read the normed token; DeiT's two tokens both read it; class token + patch
    average reads it twice; an attention-pooling probe attends to it alone. ``cols``: the logit columns needed
    (see :func:`needed_classes`); ``positions``: each token's index in the sequence (a probe's position table)."""
    pool = model.pooling
    x = pool.norm(tokens) if pool.norm is not None else tokens
    C = model.num_classes
    want_logits = pool.head is not None and cols != []
    if pool.kind == "dist":
        logits = (_head(pool.head, x, cols, C) + _head(pool.head_dist, x, cols, C)) / 2 if want_logits else None
        return Outputs(x, logits)
    if pool.kind == "token_avg":
        e = torch.cat([x, x], -1)
    elif pool.kind == "map":
        e = _probe_single(pool.probe, x, positions)
    else:
        e = x
    if pool.fc_norm is not None:
        e = pool.fc_norm(e)
    if pool.proj is not None:
        e = pool.proj(e)
    return Outputs(e, _head(pool.head, e, cols, C) if want_logits else None)


def num_registers(model) -> int:
    """Register tokens among the prefix tokens (timm ``num_reg_tokens`` or ``reg_token``, HF
    ``config.num_register_tokens``)."""
    m = model.module
    n = getattr(m, "num_reg_tokens", None)
    reg = getattr(m, "reg_token", None)
    if n is None and isinstance(reg, torch.Tensor):  # timm Eva: only the parameter (1, R, D)
        n = reg.shape[1]
    if n is None:
        cfg = getattr(m, "config", None)
        n = getattr(getattr(cfg, "vision_config", cfg), "num_register_tokens", 0) if cfg is not None else 0
    return int(n or 0)
