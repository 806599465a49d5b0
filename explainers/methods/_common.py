"""Shared building blocks of the attention-family methods: traced passes, gradients, rollout products."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import UnsupportedModelError
from ..registry import Capture, Param
from ..targets import bind

__all__ = ["attention_capture", "gradient_capture", "rollout_row", "discard_lowest", "cls_row", "query_vector",
           "pooling_query", "new_capture", "START_LAYER", "DISCARD_RATIO", "LIBRAGRAD"]

START_LAYER = Param(
    "start_layer", "int", 0, "First block included in the rollout (0 = all blocks). Chefer et al.'s evaluation "
    "scripts used 1.", min=0, max=lambda m: (m.num_layers - 1) if m is not None else None, cheap=True)
LIBRAGRAD = Param(
    "libragrad", "bool", False, "LibraGrad (Mehri et al., CVPR 2025): the same method on a balanced backward pass: "
    "the normalisations' scale, the activations' gates and the attention weights are held constant for the "
    "gradient, a gated MLP's product gets half of it (explainers.models.rules). The forward pass, its values "
    "and the cost are unchanged.", added=True)
DISCARD_RATIO = Param(
    "discard_ratio", "float", 0.9, "Fraction of the lowest fused attention entries set to zero in each layer "
    "before rollout (jacobgil/vit-explain default 0.9).", min=0.0, max=0.99, step=0.01, cheap=True)


def new_capture(model, x, tr_or_out, bound, passes) -> Capture:
    """A :class:`Capture` with the clean pass's outputs and the bound target (its value per image kept)."""
    out = tr_or_out.outputs if hasattr(tr_or_out, "outputs") else tr_or_out
    with torch.no_grad():
        logits = out.logits.detach() if out.logits is not None else None
        emb = out.embedding.detach() if out.embedding is not None else None
        from ..models import Outputs

        scoreless = getattr(bound.target, "scoreless", False)  # targets.NoTarget: nothing to score
        score = None if scoreless else bound.score(Outputs(emb, logits)).detach().float()
    return Capture(method="", logits=logits, targets=bound.classes.detach(), grid=model.grid(x),
                   input_size=tuple(x.shape[-2:]), params={}, forward_passes=passes, target=bound,
                   target_scores=score, state={"prefix": model.num_prefix_tokens,
                                                    "pooling": getattr(getattr(model, "pooling", None), "kind", None)})


def pooling_query(model, tr, grads=None) -> torch.Tensor:
    """(B, N) weights of the tokens the pooling reads: e_0 for the class token, the mean of the patch rows for an
    average pool (prefix tokens and registers excluded), (e_0 + e_1)/2 for DeiT's two tokens, and for an
    attention-pooling probe its attention row (head and query mean; with ``grads``, the probe's gradient-weighted
    attention ``mean_h((∇A ⊙ A)^+)``, as the gradient methods weigh every attention layer)."""
    kind = model.pooling.kind
    N = tr.embedded.shape[1]
    B = tr.embedded.shape[0]
    P = model.num_prefix_tokens
    q = torch.zeros(B, N, device=tr.embedded.device, dtype=torch.float32)
    if kind == "token":
        q[:, 0] = 1.0
    elif kind == "dist":
        q[:, :2] = 0.5
    elif kind == "avg":
        q[:, P:] = 1.0 / (N - P)
    elif kind == "avg_all":
        q[:] = 1.0 / N
    elif kind == "token_avg":
        q[:, 0] = 0.5
        q[:, P:] = 0.5 / (N - P)
    elif kind == "map":
        a = tr.probe_attention.detach().float()  # (B, H, Q, N)
        w = (a * grads.float()).clamp(min=0) if grads is not None else a
        q = w.mean(dim=(1, 2))
    else:  # pragma: no cover
        raise UnsupportedModelError(f"pooling {kind!r} has no query row")
    return q


def attention_capture(model, x, target) -> Capture:
    """One traced forward; state['A'] = (L, B, H, N, N) attention probabilities, state['query'] the pooling's
    token weights (the row every attention-reading method starts from)."""
    with torch.inference_mode():
        tr = model.trace(x)
        bound = bind(model, target, tr.outputs, x)
        cap = new_capture(model, x, tr, bound, x.shape[0])
        cap.state["A"] = torch.stack(tr.attentions)
        cap.state["query"] = pooling_query(model, tr)
    return cap


def gradient_capture(model, x, target, keep_scores: bool = False) -> Capture:
    """One traced forward and one backward of the target's value.

    state['A'] = attention probabilities, state['G'] = ∂y/∂A (same layer), and with keep_scores
    state['GS'] = ∂y/∂S, the gradient w.r.t. the pre-softmax scores (what jacobgil's hook really saw);
    state['query'] / state['gquery']: the pooling's token weights, plain and gradient-weighted (they differ only for
    an attention-pooling probe). Each image's gradient is of its own target (the batch elements are independent).
    """
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)  # attentions need grad even if params are frozen
        tr = model.trace(xg, keep_scores=keep_scores)
        bound = bind(model, target, tr.outputs, x)
        y = bound.value(tr.outputs).sum()
        inputs = list(tr.attentions) + (list(tr.scores) if keep_scores else [])
        probe = tr.probe_attention is not None
        grads = torch.autograd.grad(y, inputs + ([tr.probe_attention] if probe else []), allow_unused=True)
    grads = [torch.zeros_like(i) if g is None else g for g, i in zip(grads, inputs + ([tr.probe_attention] * probe))]
    L = len(tr.attentions)
    cap = new_capture(model, x, tr, bound, x.shape[0])
    cap.state["A"] = torch.stack([a.detach() for a in tr.attentions])
    cap.state["G"] = torch.stack(grads[:L])
    if keep_scores:
        cap.state["GS"] = torch.stack(grads[L:2 * L])
    cap.state["query"] = pooling_query(model, tr)
    cap.state["gquery"] = pooling_query(model, tr, grads[-1]) if probe else cap.state["query"]
    return cap


def query_vector(cap, gradient: bool = False) -> torch.Tensor:
    return cap.state["gquery" if gradient else "query"]


def discard_lowest(fused: torch.Tensor, ratio: float, protect_cls: bool) -> torch.Tensor:
    """Zero the ``int(N*N*ratio)`` smallest entries of each (N, N) matrix of a batch (jacobgil's discard).

    fused: (..., N, N), e.g. (layers, images, N, N) at once. protect_cls keeps the (0, 0) entry, as the
    reference's ``indices != 0`` filter does.
    """
    shape = fused.shape
    N = shape[-1]
    k = int(N * N * ratio)
    if k <= 0:
        return fused
    flat = fused.reshape(-1, N * N)
    # k-th smallest value by selection (O(N²)): numpy's introselect on the CPU (~8x faster than torch's
    # kthvalue for DeiT's 12 x 197² entries, the same value), kthvalue elsewhere. Ties at the threshold are
    # dropped in index order so that exactly k entries go, as with a stable sort
    if flat.device.type == "cpu" and flat.dtype in (torch.float32, torch.float64):
        thr = torch.from_numpy(np.partition(flat.detach().numpy(), k - 1, axis=-1)[:, k - 1:k].copy())
    else:
        thr = flat.kthvalue(k, dim=-1, keepdim=True).values
    below = flat < thr
    at = flat == thr
    drop = below | (at & (at.cumsum(-1) <= k - below.sum(-1, keepdim=True)))
    if protect_cls:
        drop[:, 0] = False
    flat = flat.masked_fill(drop, 0.0)
    return flat.view(shape)


def rollout_row(mats: torch.Tensor, identity: str = "half", normalize: str | None = "row", row=0):
    """Row ``row`` of the rollout product ``R = M'_L ⋯ M'_1`` for a stack of (L, B, N, N) matrices; ``row`` may
    be a (B, N) weight vector instead of an index (the pooling's query: ``q R``).

    identity: "half" -> M' = (M + I)/2 (Abnar & Zuidema, jacobgil); "add" -> M' = M + I (Chefer);
    normalize: "row" -> divide each row by its sum; "reference" -> jacobgil's broadcast bug
    (``a / a.sum(-1)`` divides column j by the sum of row j); None -> no normalisation.
    Only one row of the product is needed, so it is computed as a vector-matrix chain (O(L·N²)).
    """
    L, B, N, _ = mats.shape
    eye = torch.eye(N, device=mats.device, dtype=mats.dtype)
    if isinstance(row, torch.Tensor):
        v = row.to(mats.device, mats.dtype).reshape(B, 1, N).clone()
    else:
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
