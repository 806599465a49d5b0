"""ViT-ReciproCAM (Byun & Lee 2023): gradient-free class activation maps from token-masked copies of one block's
first-norm output.

One traced forward records the input ``x`` of block ``l = L - blocks_from_end`` (the second-to-last block by
default) and its first LayerNorm's output ``h = norm1(x)``. For each patch ``k`` a copy of ``h`` keeps the patch
token ``k`` (with ``gaussian``, its 3 × 3 neighbourhood weighted by the kernel [1 2 1; 2 4 2; 1 2 1] / 16, cut at
the border) and the prefix tokens (with ``keep_prefix``), every other token set to zero. The copies run, in
batches, through the rest of block ``l`` (attention over the masked ``h``, added to the unmasked residual ``x``,
as the reference's hook on ``norm1`` does) and the blocks after it; the map at patch ``k`` is the target's score
(the class probability) of copy ``k``. Spec and the reference's quirks: ``docs/methods/recent.md``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.blocks import block_fast, pool_outputs
from ..registry import Capture, Maps, Method, Param, register
from ..targets import bind
from ._common import new_capture
from ._perturb import BATCH_SIZE, auto_batch_size, score_batches

__all__ = ["ViTReciproCAM", "token_masks"]

KERNEL = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16.0


def token_masks(grid: tuple[int, int], gaussian: bool) -> torch.Tensor:
    """(n, gh, gw): mask ``k`` is the one-hot of patch ``k``, or with ``gaussian`` the 3 × 3 kernel centred on it
    (truncated, not renormalised, at the border)."""
    gh, gw = grid
    n = gh * gw
    eye = torch.eye(n).reshape(n, 1, gh, gw)
    if not gaussian:
        return eye[:, 0]
    return F.conv2d(eye, KERNEL.reshape(1, 1, 3, 3), padding=1)[:, 0]


def _partial_run(model, x_res: torch.Tensor, ctx, start: int):
    """masked first-norm outputs (b, N, D) -> Outputs of block ``start`` (residual ``x_res``) and the rest."""

    def run(h: torch.Tensor):
        t = block_fast(model.blocks[start], x_res.expand(h.shape[0], -1, -1).contiguous(), ctx, start, h=h)
        for i in range(start + 1, model.num_layers):
            t = block_fast(model.blocks[i], t, ctx, i)
        return pool_outputs(model.pooling, t, model.num_prefix_tokens)

    return run


@register
class ViTReciproCAM(Method):
    """ViT-ReciproCAM: the class probability of the model when one block's first-norm output keeps a single patch
    token (and its Gaussian-weighted neighbours); one masked copy per patch, through the last blocks only."""

    name = "vit_reciprocam"
    display_name = "ViT-ReciproCAM"
    paper = ("Byun & Lee, ViT-ReciproCAM: Gradient and Attention-Free Visual Explanations for Vision Transformer, "
             "arXiv 2023")
    paper_url = "https://arxiv.org/abs/2310.02588"
    cost = ("1 forward + 1 batched partial forward (the last blocks_from_end blocks) of one masked copy per patch: "
            "about patches × blocks_from_end / layers forwards")
    family = "cam"
    signed = False  # a probability (or a target's score) of each masked copy
    description = ("Keeps one patch token (and its neighbours) in the second-to-last block and reads the class "
                   "probability: gradient-free, one masked copy per patch through the last two blocks.")
    params = (
        Param("gaussian", "bool", True, "Keep each patch's 3 × 3 neighbourhood weighted by a Gaussian kernel (the "
              "reference's default); off = the patch token alone."),
        Param("keep_prefix", "bool", True, "Keep the class token (and any other prefix token) in every masked "
              "copy (the reference's cls_token=True)."),
        Param("blocks_from_end", "int", 2, "Mask the first-norm output of block L − this (2 = the second-to-last "
              "block, the paper's choice; 1, the last block, leaves the class token no attention layer to "
              "gather the kept patch).", min=1, max=lambda m: m.num_layers if m is not None else None),
        BATCH_SIZE,
    )

    def capture(self, model, x, target, params, progress=None) -> Capture:
        start = model.num_layers - params["blocks_from_end"]
        with torch.inference_mode():
            tr = model.trace(x)
            bound = bind(model, target, tr.outputs, x)
            cap = new_capture(model, x, tr, bound, x.shape[0])
            grid, P = model.grid(x), model.num_prefix_tokens
            masks = token_masks(grid, params["gaussian"]).to(x.device, tr.block_inputs[start].dtype)
            n = masks.shape[0]
            masks = masks.reshape(n, -1, 1)
            keep = torch.ones(n, P, 1, device=x.device, dtype=masks.dtype) * float(params["keep_prefix"])
            masks = torch.cat([keep, masks], dim=1)  # (n, N, 1)
            bs = auto_batch_size(model, requested=params["batch_size"])
            scores = []
            for b in range(x.shape[0]):
                xs = tr.block_inputs[start][b:b + 1]
                h = model.blocks[start].norm1(xs)

                def make(lo, hi, h=h):
                    return h * masks[lo:hi]

                scores.append(score_batches(model, make, n, bound.select(b), bs, run=_partial_run(
                    model, xs, tr.context, start), progress=progress, done=b * n, total=x.shape[0] * n))
        cap.state["scores"] = torch.stack(scores).float()
        cap.forward_passes = x.shape[0] * (1 + n)
        cap.state["forward_equivalents"] = 1 + n * params["blocks_from_end"] / model.num_layers
        return cap

    def reduce(self, cap, params) -> Maps:
        s = cap.state["scores"]
        return Maps(s.reshape(s.shape[0], *cap.grid))
