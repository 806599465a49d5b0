"""The Grad-CAM family on the token map, with pytorch-grad-cam's recipe for ViTs: the target layer is the last
block's first LayerNorm, its output's prefix tokens (class, distillation, registers) are dropped and the
patch tokens are reshaped to the patch grid, giving D "channels" of gh × gw activations.

Grad-CAM (Selvaraju et al. 2017), Grad-CAM++ (Chattopadhay et al. 2018), LayerCAM (Jiang et al. 2021),
Score-CAM (Wang et al. 2020) and Eigen-CAM (Muhammad & Yeasin 2020), computed from the traced forward
(activations of ``trace(keep_activations=True)``, gradients by ``torch.autograd.grad``): no hooks, the
model is never changed. Checked against the ``grad-cam`` package on the same model (tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import Capture, Maps, Method, Param, register, report_progress
from ..targets import bind
from ._common import LIBRAGRAD, new_capture
from ._perturb import BATCH_SIZE, auto_batch_size

__all__ = ["GradCAM", "GradCAMPlusPlus", "LayerCAM", "ScoreCAM", "EigenCAM", "token_activations"]

GRADCAM_PAPER = ("Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based "
                 "Localization, ICCV 2017")
RECIPE = " (on the last block's first-norm tokens, as pytorch-grad-cam does for ViTs)"
RELU = Param("relu", "bool", True, "Clamp the map at zero (as Grad-CAM and pytorch-grad-cam do). Off = the "
             "signed map, useful when the clamped map is zero.", cheap=True)


def token_activations(model, x, target, gradients: bool):
    """Last block's first-norm output without prefix tokens (B, n, D), its gradient for the target's value
    (or None), the clean pass's outputs and the bound target."""
    P = model.num_prefix_tokens
    if not gradients:
        with torch.inference_mode():
            out, h1 = model.outputs_and_last_norm1(x)
            bound = bind(model, target, out, x)
            return h1[:, P:].float(), None, out, bound
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        tr = model.trace(xg, keep_activations=True)
        bound = bind(model, target, tr.outputs, x)
        h1 = tr.acts[-1]["h1"]
        (g,) = torch.autograd.grad(bound.value(tr.outputs).sum(), h1)
    return h1.detach()[:, P:].float(), g[:, P:].float(), tr.outputs, bound


def _capture(model, x, out, bound, passes, **state) -> Capture:
    cap = new_capture(model, x, out, bound, passes)
    cap.state.update(state)
    return cap


def _finish(cam: torch.Tensor, cap: Capture, relu: bool) -> Maps:
    """(B, n) -> Maps, with a warning where the ReLU leaves nothing."""
    warns = None
    if relu:
        cam = cam.clamp(min=0)
        warns = [["the map is zero everywhere for this image (all weighted activations negative); try relu=False"]
                 if float(row.max()) <= 0 else [] for row in cam]
    return Maps(cam.reshape(cam.shape[0], *cap.grid), warnings=warns)


class _GradientCAM(Method):
    family = "cam"
    cost = "1 forward + 1 backward"
    params = (RELU, LIBRAGRAD)
    signed, signed_unless = True, "relu"

    def capture(self, model, x, target, params, progress=None) -> Capture:
        A, G, out, bound = token_activations(model, x, target, gradients=True)
        return _capture(model, x, out, bound, x.shape[0], A=A, G=G)


@register
class GradCAM(_GradientCAM):
    """Grad-CAM: channel weights = the gradient's mean over the patch tokens; map = ReLU(Σ_c w_c A_c)."""

    name = "gradcam"
    display_name = "Grad-CAM (tokens)"
    paper, paper_url = GRADCAM_PAPER + RECIPE, "https://arxiv.org/abs/1610.02391"
    description = "Weights the last block's token features by their mean gradient for the class and sums them."

    def reduce(self, cap, params) -> Maps:
        A, G = cap.state["A"], cap.state["G"]
        return _finish((A * G.mean(1, keepdim=True)).sum(-1), cap, params["relu"])


@register
class GradCAMPlusPlus(_GradientCAM):
    """Grad-CAM++: channel weights Σ_ij α_ij ReLU(g_ij) with α = g² / (2g² + Σ_ij A · g³) (the closed form for
    an exponential output, as in the paper and pytorch-grad-cam)."""

    name = "gradcam_pp"
    display_name = "Grad-CAM++ (tokens)"
    paper = ("Chattopadhay et al., Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks, "
             "WACV 2018" + RECIPE)
    paper_url = "https://arxiv.org/abs/1710.11063"
    description = "Grad-CAM with per-location weights of the gradients (higher-order terms), for several objects."

    def reduce(self, cap, params) -> Maps:
        A, G = cap.state["A"], cap.state["G"]
        g2 = G * G
        denom = 2 * g2 + A.sum(1, keepdim=True) * g2 * G + 1e-6
        alpha = torch.where(G != 0, g2 / denom, torch.zeros_like(G))
        w = (alpha * G.clamp(min=0)).sum(1, keepdim=True)
        return _finish((A * w).sum(-1), cap, params["relu"])


@register
class LayerCAM(_GradientCAM):
    """LayerCAM: map = ReLU(Σ_c ReLU(g_c) ⊙ A_c), each location weighted by its own positive gradient."""

    name = "layercam"
    display_name = "LayerCAM (tokens)"
    paper = ("Jiang et al., LayerCAM: Exploring Hierarchical Class Activation Maps for Localization, IEEE TIP 2021"
             + RECIPE)
    paper_url = "https://ieeexplore.ieee.org/document/9462463"
    description = "Weights every token feature by its own positive gradient for the class."

    def reduce(self, cap, params) -> Maps:
        A, G = cap.state["A"], cap.state["G"]
        return _finish((A * G.clamp(min=0)).sum(-1), cap, params["relu"])


@register
class EigenCAM(Method):
    """Eigen-CAM: the token features (centred over the patch tokens) projected on their first principal
    direction. Class-agnostic, no gradient. The sign of a principal direction is arbitrary: by default it is
    chosen so that the largest magnitude is positive (the correction of Seg-Eigen-CAM, Chung & Ying 2025);
    ``sign_correction=False`` keeps the SVD's own sign, as pytorch-grad-cam's ``EigenCAM`` does."""

    name = "eigencam"
    display_name = "Eigen-CAM (tokens)"
    paper = ("Muhammad & Yeasin, Eigen-CAM: Class Activation Map using Principal Components, IJCNN 2020"
             + RECIPE)
    paper_url = "https://arxiv.org/abs/2008.00299"
    cost = "1 forward"
    class_specific = False
    family = "cam"
    description = "The first principal component of the last block's token features, as a map."
    signed, signed_unless = True, "relu"  # the SVD projection has either sign
    params = (
        Param("sign_correction", "bool", True, "Flip the projection when its most negative value is larger in "
              "magnitude than its maximum (off = the raw SVD sign, as pytorch-grad-cam).", cheap=True),
        RELU,
    )

    def capture(self, model, x, target, params, progress=None) -> Capture:
        A, _, out, bound = token_activations(model, x, target, gradients=False)
        R = A.double() - A.double().mean(1, keepdim=True)
        _, _, Vh = torch.linalg.svd(R, full_matrices=False)
        proj = (R @ Vh[:, 0, :, None])[..., 0].float()
        return _capture(model, x, out, bound, x.shape[0], proj=proj)

    def reduce(self, cap, params) -> Maps:
        proj = cap.state["proj"]
        if params["sign_correction"]:
            flip = proj.amin(1, keepdim=True).abs() > proj.amax(1, keepdim=True).abs()
            proj = torch.where(flip, -proj, proj)
        return _finish(proj, cap, params["relu"])


@register
class ScoreCAM(Method):
    """Score-CAM (Algorithm 1 of the paper, as pytorch-grad-cam): each of the D token-feature maps is
    bilinearly upsampled to the input (corner-aligned), min-max scaled, and multiplies the input; the class
    logits of these D masked images, softmaxed over the channels, weight the feature maps; ReLU of the sum.
    The masked images run in batches under ``torch.inference_mode()``."""

    name = "scorecam"
    display_name = "Score-CAM (tokens)"
    paper = ("Wang et al., Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks, "
             "CVPR workshops 2020" + RECIPE)
    paper_url = "https://arxiv.org/abs/1910.01279"
    cost = "1 forward + D masked forwards (D = embedding width), batched"
    family = "cam"
    description = "Weights the token feature maps by the class score of the image masked with each of them."
    params = (RELU, BATCH_SIZE)
    signed, signed_unless = True, "relu"

    def capture(self, model, x, target, params, progress=None) -> Capture:
        A, _, out, bound = token_activations(model, x, target, gradients=False)
        B, n, D = A.shape
        H, W = x.shape[-2:]
        bs = auto_batch_size(model, requested=params["batch_size"])
        scores = torch.empty(B, D, device=A.device)
        with torch.inference_mode():
            for b in range(B):
                sel = bound.select(b)
                maps = A[b].T.reshape(D, 1, *model.grid(x))
                for start in range(0, D, bs):
                    stop = min(D, start + bs)
                    up = F.interpolate(maps[start:stop], size=(H, W), mode="bilinear", align_corners=True)
                    lo = up.amin((2, 3), keepdim=True)
                    up = (up - lo) / (up.amax((2, 3), keepdim=True) - lo + 1e-8)
                    # the class logit (Score-CAM's softmax over channels follows), or a target's value
                    scores[b, start:stop] = sel.value(model.outputs(x[b:b + 1] * up.to(x.dtype))).float()
                    report_progress(progress, b * D + stop, B * D)
        return _capture(model, x, out, bound, B * (D + 1), A=A, weights=scores.softmax(-1))

    def reduce(self, cap, params) -> Maps:
        cam = (cap.state["A"] * cap.state["weights"][:, None, :]).sum(-1)
        return _finish(cam, cap, params["relu"])
