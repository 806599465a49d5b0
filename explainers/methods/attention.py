"""Attention-based methods: Attention Rollout, Gradient Rollout, Chefer's rollout baseline, raw last-layer
attention, attention Grad-CAM, and Chefer et al.'s generic attention explainability (ICCV 2021).

Specs and the reference code's known bugs: ``shared/docs/METHODS.md`` sections 1 and 2.
"""

from __future__ import annotations

import torch

from ..registry import Capture, Maps, Method, Param, register
from ._common import (
    DISCARD_RATIO,
    LIBRAGRAD,
    START_LAYER,
    attention_capture,
    cls_row,
    discard_lowest,
    gradient_capture,
    query_vector,
    rollout_row,
)

REFERENCE_NORMALIZATION = Param(
    "reference_normalization", "bool", False,
    "Reproduce jacobgil/vit-explain's normalisation bug (issue #16): `a / a.sum(dim=-1)` without keepdim "
    "divides column j by the sum of row j. Off = the intended row normalisation.", cheap=True)

ABNAR = "Abnar & Zuidema, Quantifying Attention Flow in Transformers, ACL 2020"
ABNAR_URL = "https://arxiv.org/abs/2005.00928"
CHEFER21 = "Chefer, Gur & Wolf, Transformer Interpretability Beyond Attention Visualization, CVPR 2021"
CHEFER21_URL = "https://arxiv.org/abs/2012.09838"
CHEFER_GAE = ("Chefer, Gur & Wolf, Generic Attention-model Explainability for Interpreting Bi-Modal and "
              "Encoder-Decoder Transformers, ICCV 2021")
CHEFER_GAE_URL = "https://arxiv.org/abs/2103.15679"


def _fuse(A: torch.Tensor, how: str) -> torch.Tensor:
    """(L, B, H, N, N) -> (L, B, N, N) over heads."""
    if how == "mean":
        return A.mean(2)
    if how == "max":
        return A.amax(2)
    return A.amin(2)


@register
class AttentionRollout(Method):
    """Attention Rollout as in jacobgil/vit-explain: per layer, fuse heads, discard the lowest entries,
    add the identity for the residual ((A + I)/2), row-normalise, multiply through the layers, read the
    CLS row.

    Differences from the reference, by default: rows are normalised as intended (the reference divides by
    the wrong axis: ``reference_normalization=True`` reproduces it); the discard is applied to every image
    of a batch (the reference only edits batch element 0); ``start_layer`` skips early blocks (the
    reference always starts at 0). Like the reference, the discard never drops the (CLS, CLS) entry.
    """

    name = "attention_rollout"
    display_name = "Attention Rollout"
    paper, paper_url = ABNAR, ABNAR_URL
    cost = "1 forward"
    class_specific = False
    family = "attention"
    description = ("Multiplies the attention matrices of all layers (with the identity added for the "
                   "residual connections) to estimate how much each patch flows into the class token.")
    params = (
        Param("head_fusion", "choice", "mean", "How to combine the attention heads of a layer.",
              choices=("mean", "max", "min"), cheap=True),
        DISCARD_RATIO,
        START_LAYER,
        REFERENCE_NORMALIZATION,
    )

    def capture(self, model, x, target, params, progress=None) -> Capture:
        return attention_capture(model, x, target)

    def reduce(self, cap, params) -> Maps:
        A = cap.state["A"][params["start_layer"]:]
        fused = _fuse(A, params["head_fusion"])
        fused = discard_lowest(fused, params["discard_ratio"], protect_cls=True)  # every layer at once
        norm = "reference" if params["reference_normalization"] else "row"
        row = rollout_row(fused, identity="half", normalize=norm, row=query_vector(cap))
        return Maps(cls_row(row, cap.state["prefix"], cap.grid))


@register
class GradientRollout(Method):
    """Gradient Attention Rollout (jacobgil/vit-explain): per layer ``mean_h(A ⊙ ∂y_c/∂A)`` clamped at 0,
    discard, ``(·+I)/2``, normalise, multiply through the layers.

    By default each layer's attention is paired with the gradient of the *same* layer w.r.t. the attention
    probabilities. The reference pairs layer l with layer L+1-l (issue #6, forward vs backward hook
    order) and its legacy module hook actually returns the gradient w.r.t. the pre-softmax scores;
    ``reference_pairing=True`` reproduces both, for comparison with published numbers.
    """

    name = "gradient_rollout"
    display_name = "Gradient Rollout"
    paper = "jacobgil/vit-explain, class-specific extension of " + ABNAR
    paper_url = "https://github.com/jacobgil/vit-explain"
    cost = "1 forward + 1 backward"
    family = "attention"
    description = ("Weights each attention matrix by its gradient for the target class before rolling out, "
                   "so the map depends on the class being explained.")
    params = (
        DISCARD_RATIO,
        START_LAYER,
        Param("reference_pairing", "bool", False,
              "Reproduce the reference's pairing of layer l's attention with the reversed layer's gradient "
              "of the pre-softmax scores (jacobgil issue #6).", cheap=True),
        REFERENCE_NORMALIZATION,
        LIBRAGRAD,
    )

    def capture(self, model, x, target, params, progress=None) -> Capture:
        return gradient_capture(model, x, target, keep_scores=True)

    def reduce(self, cap, params) -> Maps:
        A = cap.state["A"]
        G = cap.state["GS"].flip(0) if params["reference_pairing"] else cap.state["G"]
        s = params["start_layer"]
        w = (A[s:] * G[s:]).mean(2).clamp(min=0)  # head mean, then clamp (as the reference)
        w = discard_lowest(w, params["discard_ratio"], protect_cls=False)
        norm = "reference" if params["reference_normalization"] else "row"
        row = rollout_row(w, identity="half", normalize=norm, row=query_vector(cap, gradient=True))
        return Maps(cls_row(row, cap.state["prefix"], cap.grid))


@register
class CheferRollout(Method):
    """The rollout baseline of Chefer et al.'s evaluation (``Baselines.generate_rollout``): raw attention,
    head mean, ``+I``, row-normalised, product from ``start_layer``, CLS row."""

    name = "chefer_rollout"
    display_name = "Rollout (Chefer baseline)"
    paper, paper_url = CHEFER21 + " (baseline)", CHEFER21_URL
    cost = "1 forward"
    class_specific = False
    family = "attention"
    description = "Attention rollout exactly as the baseline in Chefer et al.'s evaluation code."
    params = (START_LAYER,)

    def capture(self, model, x, target, params, progress=None) -> Capture:
        return attention_capture(model, x, target)

    def reduce(self, cap, params) -> Maps:
        fused = cap.state["A"][params["start_layer"]:].mean(2)
        row = rollout_row(fused, identity="add", normalize="row", row=query_vector(cap))
        return Maps(cls_row(row, cap.state["prefix"], cap.grid))


@register
class AttentionLastLayer(Method):
    """Raw attention of the last block, head mean, CLS row (Chefer et al.'s "raw attention" baseline)."""

    name = "attention_last_layer"
    display_name = "Raw attention (last layer)"
    paper, paper_url = CHEFER21 + " (baseline)", CHEFER21_URL
    cost = "1 forward"
    class_specific = False
    family = "attention"
    description = "What the class token attends to in the last block, averaged over heads."
    params = ()

    def capture(self, model, x, target, params, progress=None) -> Capture:
        return attention_capture(model, x, target)

    def reduce(self, cap, params) -> Maps:
        q = query_vector(cap)
        if cap.state.get("pooling") == "map":  # the probe's attention is the last attention the pooled vector sees
            row = q
        else:
            row = (q[:, None, :] @ cap.state["A"][-1].mean(1).float())[:, 0]
        return Maps(cls_row(row, cap.state["prefix"], cap.grid))


@register
class AttentionGradCAM(Method):
    """Grad-CAM on the last block's attention (Chefer et al.'s baseline): per head, the CLS row of A_L
    weighted by the spatial mean of its gradient; head mean; ReLU.

    With few heads (DeiT-Tiny has 3) the weighted mean is often negative everywhere; the ReLU then gives a
    zero map. The reference divides 0 by 0 (NaN); here the map stays zero and carries a warning, and
    ``relu=False`` keeps the signed map instead.
    """

    name = "attention_gradcam"
    display_name = "Attention Grad-CAM"
    paper = CHEFER21 + " (baseline, after Selvaraju et al. Grad-CAM, ICCV 2017)"
    paper_url = CHEFER21_URL
    cost = "1 forward + 1 backward"
    family = "attention"
    description = "Grad-CAM applied to the last layer's attention heads."
    params = (Param("relu", "bool", True, "Clamp the weighted head mean at zero (Grad-CAM's ReLU).", cheap=True),
              LIBRAGRAD)
    signed, signed_unless = True, "relu"

    def capture(self, model, x, target, params, progress=None) -> Capture:
        cap = gradient_capture(model, x, target)
        # keep only the last layer
        cap.state["A"] = cap.state["A"][-1:]
        cap.state["G"] = cap.state["G"][-1:]
        return cap

    def reduce(self, cap, params) -> Maps:
        p = cap.state["prefix"]
        q = query_vector(cap)[:, None, None, :]  # the pooling's row(s) of the last attention, per head
        a = (q @ cap.state["A"][-1].float())[:, :, 0, p:]  # (B, H, n)
        g = (q @ cap.state["G"][-1].float())[:, :, 0, p:]
        w = g.mean(-1, keepdim=True)
        m = (w * a).mean(1)
        warns = None
        if params["relu"]:
            m = m.clamp(min=0)
            warns = [["attention Grad-CAM is zero everywhere for this image (all weighted heads negative); "
                      "try relu=False"] if float(row.max()) <= 0 else [] for row in m]
        return Maps(m.reshape(m.shape[0], *cap.grid), warnings=warns)


@register
class GenericAttention(Method):
    """Chefer et al. ICCV 2021 generic attention explainability (rules 5 and 6): ``R = I``; for each
    layer ``Ā = mean_h((∇A ⊙ A)^+)`` and ``R ← R + Ā R``; map = CLS row of R. No LRP."""

    name = "generic_attention"
    display_name = "Generic Attention Explainability"
    paper, paper_url = CHEFER_GAE, CHEFER_GAE_URL
    cost = "1 forward + 1 backward"
    family = "attention"
    description = ("Accumulates gradient-weighted attention (positive part, head mean) through the layers "
                   "with the residual kept as an identity.")
    params = (LIBRAGRAD,)

    def capture(self, model, x, target, params, progress=None) -> Capture:
        return gradient_capture(model, x, target)

    def reduce(self, cap, params) -> Maps:
        w = (cap.state["G"] * cap.state["A"]).clamp(min=0).mean(2)
        row = rollout_row(w, identity="add", normalize=None, row=query_vector(cap, gradient=True))
        return Maps(cls_row(row, cap.state["prefix"], cap.grid))
