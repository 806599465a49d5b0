"""Shared building blocks of the attention-family methods: traced passes, gradients, rollout products."""

from __future__ import annotations

import torch

from ..registry import Capture, Param, resolve_targets

__all__ = ["attention_capture", "gradient_capture", "rollout_row", "discard_lowest", "cls_row",
           "START_LAYER", "DISCARD_RATIO"]

START_LAYER = Param(
    "start_layer", "int", 0, "First block included in the rollout (0 = all blocks). Chefer et al.'s evaluation "
    "scripts used 1.", min=0, max=lambda m: (m.num_layers - 1) if m is not None else None, cheap=True)
DISCARD_RATIO = Param(
    "discard_ratio", "float", 0.9, "Fraction of the lowest fused attention entries set to zero in each layer "
    "before rollout (jacobgil/vit-explain default 0.9).", min=0.0, max=0.99, step=0.01, cheap=True)


def _base_capture(model, x, tr, targets, passes) -> Capture:
    return Capture(method="", logits=tr.logits.detach(), targets=targets.detach(), grid=model.grid(x),
                   input_size=tuple(x.shape[-2:]), params={}, forward_passes=passes)


def attention_capture(model, x, target) -> Capture:
    """One traced forward; state['A'] = (L, B, H, N, N) attention probabilities."""
    with torch.inference_mode():
        tr = model.trace(x)
        targets = resolve_targets(tr.logits, target)
        cap = _base_capture(model, x, tr, targets, x.shape[0])
        cap.state["A"] = torch.stack(tr.attentions)
    cap.state["prefix"] = model.num_prefix_tokens
    return cap


def gradient_capture(model, x, target, keep_scores: bool = False) -> Capture:
    """One traced forward and one backward of the target logits.

    state['A'] = attention probabilities, state['G'] = ∂y_c/∂A (same layer), and with keep_scores
    state['GS'] = ∂y_c/∂S, the gradient w.r.t. the pre-softmax scores (what jacobgil's hook really saw).
    Each image's gradient is of its own target logit (the batch elements are independent).
    """
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)  # attentions need grad even if params are frozen
        tr = model.trace(xg, keep_scores=keep_scores)
        targets = resolve_targets(tr.logits.detach(), target)
        y = tr.logits.gather(1, targets[:, None]).sum()
        inputs = list(tr.attentions) + (list(tr.scores) if keep_scores else [])
        grads = torch.autograd.grad(y, inputs)
    L = len(tr.attentions)
    cap = _base_capture(model, x, tr, targets, x.shape[0])
    cap.state["A"] = torch.stack([a.detach() for a in tr.attentions])
    cap.state["G"] = torch.stack(grads[:L])
    if keep_scores:
        cap.state["GS"] = torch.stack(grads[L:])
    cap.state["prefix"] = model.num_prefix_tokens
    return cap


def discard_lowest(fused: torch.Tensor, ratio: float, protect_cls: bool) -> torch.Tensor:
    """Zero the ``int(N*N*ratio)`` smallest entries of each (N, N) matrix of a batch (jacobgil's discard).

    protect_cls keeps the (0, 0) entry, as the reference's ``indices != 0`` filter does.
    """
    B, N, _ = fused.shape
    k = int(N * N * ratio)
    if k <= 0:
        return fused
    flat = fused.reshape(B, N * N)
    # k-th smallest value by selection (O(N²), ~6x faster than topk for k ≈ 0.9·N²); ties at the threshold
    # are dropped in index order so that exactly k entries go, as with a stable sort
    thr = flat.kthvalue(k, dim=-1, keepdim=True).values
    below = flat < thr
    at = flat == thr
    drop = below | (at & (at.cumsum(-1) <= k - below.sum(-1, keepdim=True)))
    if protect_cls:
        drop[:, 0] = False
    flat = flat.masked_fill(drop, 0.0)
    return flat.view(B, N, N)


def rollout_row(mats: torch.Tensor, identity: str = "half", normalize: str | None = "row", row: int = 0):
    """Row ``row`` of the rollout product ``R = M'_L ⋯ M'_1`` for a stack of (L, B, N, N) matrices.

    identity: "half" -> M' = (M + I)/2 (Abnar & Zuidema, jacobgil); "add" -> M' = M + I (Chefer);
    normalize: "row" -> divide each row by its sum; "reference" -> jacobgil's broadcast bug
    (``a / a.sum(-1)`` divides column j by the sum of row j); None -> no normalisation.
    Only one row of the product is needed, so it is computed as a vector-matrix chain (O(L·N²)).
    """
    L, B, N, _ = mats.shape
    eye = torch.eye(N, device=mats.device, dtype=mats.dtype)
    v = torch.zeros(B, 1, N, device=mats.device, dtype=mats.dtype)
    v[:, 0, row] = 1.0
    for layer in range(L - 1, -1, -1):
        a = mats[layer]
        a = (a + eye) / 2 if identity == "half" else (a + eye if identity == "add" else a)
        if normalize == "row":
            a = a / a.sum(-1, keepdim=True)
        elif normalize == "reference":
            a = a / a.sum(-1)[:, None, :]
        v = v @ a
    return v[:, 0]


def cls_row(vec: torch.Tensor, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """(B, N) token relevances -> (B, gh, gw) patch map (prefix tokens dropped)."""
    B = vec.shape[0]
    return vec[:, prefix:].reshape(B, *grid)
