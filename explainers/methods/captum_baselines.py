"""The standard attribution baselines of benchmark studies (LATEC, Quantus), computed with captum: Gradient x Input,
Guided Backprop and DeepLIFT
(GradientSHAP, LIME and KernelSHAP: :mod:`.captum_sampling`).

Every method calls captum's own class on a forward function that returns the explained target's value per input
(a class logit, a logit difference, a similarity), computed through the library's path (``model.outputs``). Two
captum classes act on activation *modules* and know ReLU-type networks only; ViTs use GELU (SiLU, QuickGELU):

* Guided Backprop: captum hooks ``nn.ReLU`` modules only, so on a GELU ViT it would return the plain gradient
  (saliency). Here captum's guided rule (the gradient entering the activation's input clamped at 0) is applied to
  every element-wise activation, GELU included: ``relu(GELU'(x) * grad)``: written into the library's MLPs
  (:func:`explainers.models.rules.guided_passes`), or as captum's own hook on the activation modules of any other
  model. A model whose activation is not a module gets the plain gradient, with a warning saying so.
* DeepLIFT: captum's Rescale rule (``grad * Δout / Δin``) covers ReLU, ELU, Sigmoid, Tanh, Softplus, Softmax
  modules; here it is applied to the GELU-type activations as well: written into the library's MLPs
  (:func:`explainers.models.rules.deeplift_passes`), or as captum's hook on the activation modules of any other
  model.
  LayerNorm, the attention softmax (a fused kernel) and the attention products have no DeepLIFT rule: they pass
  the plain gradient at the input, so the map does not sum exactly to f(x) - f(baseline); the gap is reported.
"""

from __future__ import annotations

import warnings

import torch

from ..metrics.baselines import make_baseline
from ..registry import Capture, Maps, Method, Param, register
from ._captum_hooks import _HOOKED, ValueNet, _deeplift, _GuidedBackprop, is_activation
from ._common import LIBRAGRAD
from .gradients import (
    CHANNELS,
    _capture,
    _clean,
    _reduce_channels,
    input_gradient,
    per_patch,
    stashing_value_fn,
)

__all__ = ["GradientXInput", "GuidedBackprop", "DeepLift", "is_activation", "ValueNet", "ABSOLUTE",
           "signed_unless_absolute"]

warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU", module="captum")
warnings.filterwarnings("ignore", message="Setting forward, backward hooks", module="captum")

ABSOLUTE = Param("absolute", "bool", False, "Rank by the magnitude of the attribution instead of its sign.",
                 cheap=True)
BASELINE = Param("baseline", "choice", "zero", "Reference input: 0 in the normalised space (the dataset-mean "
                 "colour, captum's default), a black or blurred image, or the image's mean colour.",
                 choices=("zero", "black", "blur", "mean"))
def signed_unless_absolute(params) -> bool:
    return not (params or {}).get("absolute", False)


class _Signed(Method):
    """A signed pixel attribution: channels summed, the patch value the sum of its pixels."""

    signed = True
    family = "attribution"

    def is_signed(self, params=None) -> bool:
        return signed_unless_absolute(params)

    def reduce(self, cap, params) -> Maps:
        pix = cap.state["attr"].float().sum(1)
        if params["absolute"]:
            pix = pix.abs()
        return Maps(per_patch(pix, cap.grid, "sum"), pixel_maps=pix, warnings=cap.state.get("warnings"))


@register
class GradientXInput(_Signed):
    """Gradient x Input (what captum's ``InputXGradient`` computes, checked against it): the input times the
    target's input gradient, summed over the colour channels; a patch's value is the sum over its pixels. One
    forward and one backward for the batch."""

    name = "gradient_x_input"
    display_name = "Gradient × Input"
    paper = ("Shrikumar, Greenside, Shcherbina & Kundaje, Not Just a Black Box: Learning Important Features "
             "Through Propagating Activation Differences, arXiv 2016")
    paper_url = "https://arxiv.org/abs/1605.01713"
    cost = "1 forward + 1 backward"
    description = "Each pixel's value times the class score's gradient: a first-order estimate of its contribution."
    params = (ABSOLUTE, LIBRAGRAD)

    def capture(self, model, x, target, params, progress=None) -> Capture:
        grad, out, bound = input_gradient(model, target, x)
        return _capture(model, x, out, bound, x.shape[0], attr=x * grad)


def _bind_before_hooks(model, x, target, box: dict) -> int:
    """Bind a target whose binding runs the model (a similarity to a reference) in a clean pass before captum's
    hooks are set, into ``box``; the images that pass took (0 for the other targets, bound in the hooked pass)."""
    from ..targets import Similarity, as_target

    if not isinstance(as_target(target), Similarity):
        return 0
    box["out"], box["bound"] = _clean(model, x, target)
    return x.shape[0]


@register
class GuidedBackprop(Method):
    """Guided Backpropagation (captum ``GuidedBackprop``): the input gradient with only positive gradients passed
    back through each activation. captum applies the rule to ``nn.ReLU`` modules only; ViTs use GELU, so the rule
    is applied to the GELU-type activations too (``relu(GELU'(x) · grad)``, see the module notes): written into the
    library's MLPs (:func:`_guided_rules`), or captum's own hook on every activation module of any other model; the
    two agree (tests/test_captum_baselines.py). The channels of the guided gradient's magnitude are reduced as in
    ``saliency``."""

    name = "guided_backprop"
    display_name = "Guided Backprop"
    paper = ("Springenberg, Dosovitskiy, Brox & Riedmiller, Striving for Simplicity: The All Convolutional Net, "
             "ICLR workshop 2015")
    paper_url = "https://arxiv.org/abs/1412.6806"
    cost = "1 forward + 1 modified backward"
    family = "attribution"
    description = "The input gradient with negative gradients stopped at every activation: sharp, edge-like maps."
    params = (CHANNELS,)

    def capture(self, model, x, target, params, progress=None) -> Capture:
        box: dict = {}
        passes = _bind_before_hooks(model, x, target, box) + x.shape[0]
        found = _guided_rules(model, x, target, box)
        if found is None:  # a model whose activations are not the library's MLPs: captum's hooks on the modules
            passes += x.shape[0]
            found = _guided_hooks(model, x, target, box)
        cap = _capture(model, x, box["out"], box["bound"], passes, grad=found[0])
        cap.state["hooked"] = found[1]
        return cap

    def reduce(self, cap, params) -> Maps:
        pix = _reduce_channels(cap.state["grad"].float(), params["channels"])
        warn = [] if cap.state["hooked"] else [
            "this model's activations are not modules: no guided rule applied, the map is the plain gradient"]
        return Maps(per_patch(pix, cap.grid), pixel_maps=pix, warnings=[warn] * pix.shape[0])


def _guided_rules(model, x, target, box):
    """(input gradient, activations reached) with the guided rule written into the library's MLPs
    (:func:`explainers.models.rules.guided_passes`): one gradient pass, the same values as captum's guided hook on
    every activation module without a hook's bookkeeping. None when the pass applied no activation through those
    MLPs."""
    from ..models.rules import guided_passes

    with guided_passes() as guided, torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        values = stashing_value_fn(model, target, x, box)(xg)
        if not guided.applied:
            return None
        (grad,) = torch.autograd.grad(values.sum(), xg)
    return grad.detach(), guided.applied


def _guided_hooks(model, x, target, box):
    """(input gradient, activation modules hooked) with captum's ``GuidedBackprop`` and its guided hook on every
    activation module (:class:`_GuidedBackprop`)."""
    gbp = _GuidedBackprop(ValueNet(model.module, stashing_value_fn(model, target, x, box)))
    with _HOOKED, torch.enable_grad():
        grad = gbp.attribute(x.detach().clone().requires_grad_(True))
    return grad, gbp.hooked


def _gap_warnings(deltas, changes) -> list[list[str]]:
    return [[f"the attributions miss f(x) - f(baseline) = {float(c):.3g} by {float(d):.3g} (no DeepLIFT rule for "
             "LayerNorm and attention)"] if abs(float(d)) > 0.05 * max(abs(float(c)), 1e-6) else []
            for d, c in zip(deltas, changes)]


@register
class DeepLift(_Signed):
    """DeepLIFT, Rescale rule (captum ``DeepLift``'s multipliers): (x - x0) times the gradient with each
    activation's derivative replaced by the secant ``Δout / Δin`` between the input and the baseline. captum has the
    rule for ReLU-type modules; it is applied to GELU-type activations here as well. On the library's models the rule
    is written into the MLPs (:func:`_deeplift_rules`: a pass of the baselines, then one gradient pass of the
    images); on any other model captum's ``DeepLift`` hooks the activation modules (:func:`_deeplift_hooks`); the
    two agree (tests/test_captum_baselines.py), and the first equals captum called directly on ReLU ViTs.
    LayerNorm and attention keep the plain gradient (no DeepLIFT rule exists for them), so completeness is
    approximate: the gap is kept and warned about above 5 %."""

    name = "deeplift"
    display_name = "DeepLIFT (Rescale)"
    paper = ("Shrikumar, Greenside & Kundaje, Learning Important Features Through Propagating Activation "
             "Differences, ICML 2017")
    paper_url = "https://arxiv.org/abs/1704.02685"
    cost = "1 forward of the baseline + 1 forward and backward of the image"
    description = ("Compares the network's activations on the image with those on a reference image and "
                   "propagates the differences back to the pixels.")
    params = (BASELINE, ABSOLUTE)

    def capture(self, model, x, target, params, progress=None) -> Capture:
        box, B = {}, x.shape[0]
        passes = _bind_before_hooks(model, x, target, box)
        base = make_baseline(model, x, params["baseline"]).to(x.dtype)
        found = _deeplift_rules(model, x, base, target, box)
        if found is None:  # a model whose activations are not the library's MLPs: captum's hooks on the modules
            found = _deeplift_hooks(model, x, base, target, box)
        attr, change = found
        cap = _capture(model, x, box["out"], box["bound"], passes + 2 * B, attr=attr)
        cap.state["warnings"] = _gap_warnings((attr.sum(dim=(1, 2, 3)) - change).float(), change)
        return cap


def _deeplift_rules(model, x, base, target, box):
    """(attribution, f(x) - f(baseline)) through the Rescale rule written into the library's MLPs
    (:func:`explainers.models.rules.deeplift_passes`): a no-grad pass of the baselines records each activation's
    input, then one gradient pass of the images applies the secant against it. The same multipliers as captum's
    hooks on the activation modules, with the backward over the B images instead of captum's 2B-row batch of images
    and baselines. None when the model applied no activation through those MLPs."""
    from ..models.rules import deeplift_passes

    with deeplift_passes() as dl:
        with dl.reference(), torch.no_grad():
            ref = model.outputs(base)
        if not dl.refs:
            return None
        with dl.attributed(), torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            values = stashing_value_fn(model, target, x, box)(xg)
            (grad,) = torch.autograd.grad(values.sum(), xg)
    return ((x - base) * grad).detach(), values.detach() - box["bound"].value(ref)


def _deeplift_hooks(model, x, base, target, box):
    """(attribution, f(x) - f(baseline)) with captum's ``DeepLift`` and its Rescale hook on every activation
    module: one pass of the images and their baselines, as captum batches them."""
    B = x.shape[0]
    deeplift = _deeplift(ValueNet(model.module, stashing_value_fn(model, target, x, box, references=True)))
    with _HOOKED, torch.enable_grad():
        attr = deeplift.attribute(x.detach().clone().requires_grad_(True), baselines=base).detach()
    return attr, box["values"][:B] - box["values"][B:]
