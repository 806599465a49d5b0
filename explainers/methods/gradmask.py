"""GradMask: binary patch masks from the gradients of queries, keys and values (Marchetti et al.,
IJCNN 2025; DavideTraini/GradMask).

Spec and the reference code's quirks: ``shared/docs/METHODS.md`` section 5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import Capture, Maps, Method, Param, register
from ..targets import bind
from ._common import new_capture
from ._perturb import BATCH_SIZE, auto_batch_size, score_batches

__all__ = ["GradMask", "chunk_gradients", "threshold_masks"]


def chunk_gradients(grad: torch.Tensor, chunks: int) -> torch.Tensor:
    """(..., N, D) gradient of a projection's output -> (..., chunks, N): the features split into
    ``chunks`` consecutive groups (head-major, as the projection lays them out), summed per group and
    clamped at 0. With ``chunks`` = number of heads, one row per head."""
    parts = torch.tensor_split(grad, chunks, dim=-1)
    return torch.stack([p.sum(-1) for p in parts], dim=-2).clamp_min(0)


def threshold_masks(rows: torch.Tensor) -> torch.Tensor:
    """Binary masks: 1 where a row is at least its own mean. (R, n) -> (R, n) float."""
    return (rows >= rows.mean(-1, keepdim=True)).to(rows.dtype)


@register
class GradMask(Method):
    """GradMask (DavideTraini/GradMask).

    One forward and one backward of the target logit give ∂y_c/∂Q, ∂y_c/∂K and ∂y_c/∂V in every block
    but the last (whose patch-token query gradients are zero). Each gradient's features are split into
    ``masks_layer`` chunks, summed per chunk and clamped at 0; each resulting row over the patch tokens
    is thresholded at its mean into a binary patch mask. Every mask multiplies the normalised image
    (masked-out pixels = 0, the mean colour), is scored by the class probability, and the map is the
    score-weighted sum of the masks.

    Differences from the reference: the masked images run in batches (the reference pushes all
    3·(L−1)·m at once); class 0 can be explained; ``masks_layer`` need not divide the width (uneven
    chunks); ``normalize_coverage`` offers the coverage normalisation the reference left commented out.
    """

    name = "gradmask"
    display_name = "GradMask"
    paper = "Marchetti et al., GradMask, IJCNN 2025"
    paper_url = "https://github.com/DavideTraini/GradMask"
    cost = "1 forward + 1 backward + 3·(L-1)·masks_layer masked forwards"
    family = "perturbation"
    description = ("Turns the gradients of the attention queries, keys and values into binary patch masks "
                   "and sums the masks weighted by the class probability of the masked images.")
    params = (
        Param("masks_layer", "int", 4, "Chunks each Q/K/V gradient is split into (masks per projection "
              "and layer); the number of heads gives one mask per head.",
              min=1, max=lambda m: m.embed_dim if m is not None else None),
        Param("normalize_coverage", "bool", False, "Divide each patch's sum by the number of masks that "
              "keep it (the reference has this step commented out).", cheap=True),
        BATCH_SIZE,
    )

    def capture(self, model, x, target, params, progress=None) -> Capture:
        P = model.num_prefix_tokens
        m = params["masks_layer"]
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            tr = model.trace(xg, keep_activations=True)
            bound = bind(model, target, tr.outputs, x)
            y = bound.value(tr.outputs).sum()
            qkv = [a[key] for a in tr.acts[:-1] for key in ("q", "k", "v")]
            grads = torch.autograd.grad(y, qkv)
        clean = tr.outputs
        del qkv, y
        # (B, H, N, d) per projection -> (B, N, H*d) = the projection output's layout
        g = torch.stack([gr.transpose(1, 2).flatten(2) for gr in grads], 1)  # (B, R0, N, D)
        rows = chunk_gradients(g, m)[..., P:]  # (B, R0, m, n)
        B = x.shape[0]
        masks = threshold_masks(rows.reshape(B, -1, rows.shape[-1]))  # (B, R, n)
        R = masks.shape[1]
        grid = model.grid(x)
        H, W = x.shape[-2:]
        bs = auto_batch_size(model, requested=params["batch_size"])
        weights = []
        for b in range(B):
            xb = x[b:b + 1].detach()
            mb = masks[b].to(x.dtype)

            def make(start, stop, xb=xb, mb=mb):
                up = F.interpolate(mb[start:stop].view(-1, 1, *grid), size=(H, W), mode="nearest")
                return xb * up

            weights.append(score_batches(model, make, R, bound.select(b), bs, progress=progress, done=b * R,
                                         total=B * R))
        cap = new_capture(model, x, clean, bound, B * (1 + R))
        cap.state.update(masks=masks.detach(), weights=torch.stack(weights))
        return cap

    def reduce(self, cap, params) -> Maps:
        masks, w = cap.state["masks"].float(), cap.state["weights"].float()
        heat = torch.einsum("br,brn->bn", w, masks)
        if params["normalize_coverage"]:
            heat = heat / masks.sum(1).clamp_min(1.0)
        return Maps(heat.reshape(heat.shape[0], *cap.grid))
