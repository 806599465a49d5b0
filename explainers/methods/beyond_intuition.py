"""Beyond Intuition (Chen et al., TMLR 2023): token-wise (BT-T) and head-wise (BT-H) attention accumulation,
multiplied by the integrated gradient of the last block's attention.

Both accumulate ``R ← R + M_l R`` from ``R = I`` over the blocks ``start_layer..L-1`` of the clean pass:

* BT-T: ``M_l = mean_h(A_l) · diag(‖v_j W_projᵀ‖ / ‖z_j‖)``, the head-mean attention scaled, per key token j, by
  the norm of its value vector after the output projection (no bias) over the norm of the block's input token;
* BT-H: ``M_l = Σ_h I_h A_{l,h}`` with head weights ``I_h ∝ mean_ij |(A_hᵀ ∂y/∂A_h)_ij|`` summing to 1.

Then ``W = mean_h(max(0, (1/K) Σ_k ∂y/∂A_L(α_k x)))``, the last block's attention gradient averaged over the
``steps`` inputs ``α_k x`` (α from 0 to 1, both included: the path from the all-zero normalised input), and the map
is the pooling's row of ``W ⊙ R`` (``W ⊙ |R|`` for BT-T), as ``generate_ours_c`` / ``generate_ours`` of the
authors' code. Differences from that code and the comparison: ``docs/methods/recent.md``.
"""

from __future__ import annotations

import torch

from ..registry import Capture, Maps, Method, Param, register, report_progress
from ..targets import bind
from ._common import cls_row, new_capture, pooling_query
from ._perturb import BATCH_SIZE, auto_batch_size

__all__ = ["BeyondIntuitionToken", "BeyondIntuitionHead"]

PAPER = "Chen, Li, Zhang, Ma & Liu, Beyond Intuition: Rethinking Token Attributions inside Transformers, TMLR 2023"
PAPER_URL = "https://openreview.net/forum?id=rm0zIzlhcX"
PARAMS = (
    Param("start_layer", "int", 3, "First block (0-based) of the accumulation; the authors' start_layer=4 counts "
          "from 1, so it is block 3.", min=0, max=lambda m: (m.num_layers - 1) if m is not None else None),
    Param("steps", "int", 20, "Points of the path integral of the last block's attention gradient (batched "
          "forward+backward passes per image; the authors use 20).", min=1, max=512),
    BATCH_SIZE,
)


def attention_ig(model, x, bound, steps: int, batch_size: int, progress=None) -> torch.Tensor:
    """(B, H, N, N): the gradient of the target's value w.r.t. the last block's attention, averaged over the inputs
    ``α x`` with ``steps`` values of α evenly from 0 to 1 (both ends included), batched."""
    alphas = torch.linspace(0, 1, steps, device=x.device, dtype=x.dtype)
    out = []
    for b in range(x.shape[0]):
        sel = bound.select(b)
        total = None
        for lo in range(0, steps, batch_size):
            a = alphas[lo:lo + batch_size]
            with torch.enable_grad():
                xs = (a[:, None, None, None] * x[b:b + 1]).detach().requires_grad_(True)
                tr = model.trace(xs)
                (g,) = torch.autograd.grad(sel.value(tr.outputs).sum(), tr.attentions[-1])
            g = g.detach().float().sum(0)
            total = g if total is None else total + g
            report_progress(progress, b * steps + lo + len(a), x.shape[0] * steps)
        out.append(total / steps)
    return torch.stack(out)


def accumulate(mats: torch.Tensor) -> torch.Tensor:
    """(L, B, N, N) per-layer matrices M_l -> R = (I + M_{L-1}) ⋯ (I + M_0), i.e. R ← R + M_l R from R = I."""
    L, B, N, _ = mats.shape
    R = torch.eye(N, device=mats.device, dtype=mats.dtype).expand(B, N, N)
    for m in mats:
        R = R + m @ R
    return R


class _BeyondIntuition(Method):
    paper, paper_url = PAPER, PAPER_URL
    family = "attention"
    signed = False  # attentions, norms and head weights are non-negative and the gradient is clamped at zero
    params = PARAMS

    def layer_matrices(self, model, x, target, start: int):
        """-> (M: (L-start, B, N, N) float, the clean pass's trace, the bound target, passes)."""
        raise NotImplementedError

    def capture(self, model, x, target, params, progress=None) -> Capture:
        M, tr, bound, passes = self.layer_matrices(model, x, target, params["start_layer"])
        bs = auto_batch_size(model, requested=params["batch_size"])
        G = attention_ig(model, x, bound, params["steps"], bs, progress)
        cap = new_capture(model, x, tr, bound, passes + x.shape[0] * params["steps"])
        R = accumulate(M)
        if self.name == "bt_token":
            R = R.abs()
        cap.state["relevance"] = G.clamp(min=0).mean(1) * R  # W ⊙ R, (B, N, N)
        cap.state["query"] = pooling_query(model, tr)
        return cap

    def reduce(self, cap, params) -> Maps:
        row = (cap.state["query"][:, :, None] * cap.state["relevance"]).sum(1)
        return Maps(cls_row(row, cap.state["prefix"], cap.grid))


@register
class BeyondIntuitionToken(_BeyondIntuition):
    """BT-T: head-mean attention scaled by each key token's value norm over its input norm, accumulated with the
    residual identity, times the integrated last-layer attention gradient."""

    name = "bt_token"
    display_name = "Beyond Intuition BT-T (token-wise)"
    cost = "1 forward + steps forward+backward passes (batched)"
    description = ("Attention weighted by how much each token's value vector grows it, accumulated over the "
                   "blocks, times the integrated gradient of the last attention.")

    def layer_matrices(self, model, x, target, start):
        with torch.inference_mode():
            tr = model.trace(x, keep_activations=True)
            bound = bind(model, target, tr.outputs, x)
            mats = []
            for i in range(start, model.num_layers):
                acts, bp = tr.acts[i], model.blocks[i]
                v = acts["v"]  # (B, H, N, d)
                vm = v.transpose(1, 2).reshape(v.shape[0], v.shape[2], -1)
                vproj = vm.float() @ bp.proj.weight.float().T
                order = vproj.norm(dim=-1) / acts["x"].float().norm(dim=-1)  # (B, N)
                mats.append(acts["a"].float().mean(1) * order[:, None, :])
        return torch.stack(mats), tr, bound, x.shape[0]


@register
class BeyondIntuitionHead(_BeyondIntuition):
    """BT-H: heads weighted by the mean magnitude of Aᵀ ∂y/∂A (normalised to sum 1), accumulated with the residual
    identity, times the integrated last-layer attention gradient."""

    name = "bt_head"
    display_name = "Beyond Intuition BT-H (head-wise)"
    cost = "1 forward+backward + steps forward+backward passes (batched)"
    description = ("Attention heads weighted by their gradient-weighted importance, accumulated over the blocks, "
                   "times the integrated gradient of the last attention.")

    def layer_matrices(self, model, x, target, start):
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            tr = model.trace(xg)
            bound = bind(model, target, tr.outputs, x)
            grads = torch.autograd.grad(bound.value(tr.outputs).sum(), tr.attentions[start:], allow_unused=True)
        mats = []
        for a, g in zip(tr.attentions[start:], grads):
            a = a.detach().float()
            g = torch.zeros_like(a) if g is None else g.float()
            ih = (a.transpose(-1, -2) @ g).abs().mean((-1, -2))  # (B, H)
            ih = ih / ih.sum(-1, keepdim=True).clamp(min=torch.finfo(ih.dtype).tiny)  # 0, not 0/0, without gradient
            mats.append((ih[:, :, None, None] * a).sum(1))
        return torch.stack(mats), tr, bound, x.shape[0] * 2
