"""Input-gradient and occlusion baselines: Saliency (Simonyan et al. 2014), Integrated Gradients (Sundararajan et
al. 2017), SmoothGrad (Smilkov et al. 2017) and Occlusion (Zeiler & Fergus 2014). Integrated gradients, SmoothGrad
and occlusion are computed with captum, the field's reference library; saliency is the one ``torch.autograd.grad``
call that captum's ``Saliency`` wraps, made directly (:func:`input_gradient`: captum's bookkeeping around it made
ours slower than captum called directly), and checked against captum.

captum differentiates a forward function that returns the explained target's value (a class logit, a logit
difference, a similarity) per input, computed through the library's own path (``model.outputs``, any input size
the position embedding resamples to), one image at a time so that each image's target stays its own. These
methods work at pixel level: ``pixel_maps`` is the pixel attribution, ``patch_maps`` its sum (IG) or mean
per patch.
"""

from __future__ import annotations

import torch

from ..metrics.baselines import make_baseline
from ..registry import Capture, Maps, Method, Param, register
from ..targets import bind
from ._common import LIBRAGRAD, new_capture
from ._perturb import BATCH_SIZE, auto_batch_size

__all__ = ["Saliency", "IntegratedGradients", "SmoothGrad", "Occlusion", "per_patch", "stashing_value_fn",
           "input_gradient"]


CHANNELS = Param("channels", "choice", "max", "How the colour channels of |gradient| become one pixel value: "
                 "the maximum (Simonyan et al.) or the sum.", choices=("max", "sum"), cheap=True)


def _clean(model, x, target):
    """The clean pass's outputs and the bound target."""
    with torch.inference_mode():
        out = model.outputs(x)
    return out, bind(model, target, out, x)


def _value_fn(model, sel):
    """x -> (N,) the target's value for inputs that are all versions of one image (``sel = bound.select(b)``)."""
    return lambda t: sel.value(model.outputs(t))


def stashing_value_fn(model, target, x, box: dict, references: bool = False):
    """x -> (B,) the target's value for the batch ``x`` itself, the outputs of its first call detached into
    ``box["out"]`` and the target bound against them in ``box["bound"]``: the clean pass and the gradient pass are
    one forward (captum's ``Saliency`` called directly does one forward and one backward; so do we).

    With ``references``, a call's batch is the B images followed by B references (captum's ``DeepLift`` runs
    ``cat(inputs, baselines)``): the target is bound against the images' rows, both halves are valued with it, and
    the (2B,) values are kept in ``box["values"]``. A target already bound in ``box`` is kept."""
    from ..models import Outputs

    def each(out, f):  # f applied to the outputs' tensors
        return Outputs(*(None if v is None else f(v) for v in (out.embedding, out.logits)))

    def fn(t):
        out = model.outputs(t)
        B = x.shape[0]
        parts = [each(out, lambda v: v[:B]), each(out, lambda v: v[B:])] if references else [out]
        if "bound" not in box:
            clean = each(parts[0], torch.Tensor.detach)
            box["out"], box["bound"] = clean, bind(model, target, clean, x)
        values = torch.cat([box["bound"].value(p) for p in parts])
        box["values"] = values.detach()
        return values

    return fn


def input_gradient(model, target, x: torch.Tensor):
    """(∂value/∂x, clean outputs, bound target) of the whole batch in one forward and one backward: what captum's
    ``Saliency`` and ``InputXGradient`` compute (``torch.autograd.grad`` of the summed values, each image's value
    depending on its own input only), without captum's bookkeeping around that one call (about 1 ms of a 50 ms
    DeiT-Tiny pass); both methods are checked against captum called directly (tests/test_captum_baselines.py)."""
    box: dict = {}
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)  # a new leaf on the same storage: nothing is copied
        (grad,) = torch.autograd.grad(stashing_value_fn(model, target, x, box)(xg).sum(), xg)
    return grad, box["out"], box["bound"]


def per_patch(pix: torch.Tensor, grid: tuple[int, int], how: str = "mean") -> torch.Tensor:
    """(B, H, W) pixel map -> (B, gh, gw) patch map (sum or mean over each patch)."""
    B, H, W = pix.shape
    gh, gw = grid
    out = pix.reshape(B, gh, H // gh, gw, W // gw).sum((2, 4))
    return out if how == "sum" else out / ((H // gh) * (W // gw))


def _reduce_channels(grad: torch.Tensor, how: str) -> torch.Tensor:
    g = grad.abs()
    return g.amax(1) if how == "max" else g.sum(1)


def _capture(model, x, out, bound, passes, **state) -> Capture:
    cap = new_capture(model, x, out, bound, passes)
    cap.state.update({k: v.detach() for k, v in state.items()})
    return cap


@register
class Saliency(Method):
    """Gradient of the target logit w.r.t. the input pixels (captum ``Saliency``), reduced over the colour
    channels by the maximum of the absolute value (Simonyan et al.) or the sum."""

    name = "saliency"
    display_name = "Saliency (input gradient)"
    paper = "Simonyan, Vedaldi & Zisserman, Deep Inside Convolutional Networks, ICLR workshop 2014"
    paper_url = "https://arxiv.org/abs/1312.6034"
    cost = "1 forward + 1 backward"
    family = "gradient"
    description = "How much each pixel's value changes the class score: the magnitude of the input gradient."
    params = (CHANNELS, LIBRAGRAD)

    def capture(self, model, x, target, params, progress=None) -> Capture:
        grad, out, bound = input_gradient(model, target, x)
        return _capture(model, x, out, bound, x.shape[0], grad=grad)

    def reduce(self, cap, params) -> Maps:
        pix = _reduce_channels(cap.state["grad"].float(), params["channels"])
        return Maps(per_patch(pix, cap.grid), pixel_maps=pix)


@register
class IntegratedGradients(Method):
    """Integrated Gradients (captum ``IntegratedGradients``, Gauss-Legendre quadrature): the input minus the
    baseline times the path integral of the target logit's gradient. The attributions of a pixel's channels
    are summed; a patch's value is the sum over its pixels, so the map adds up to f(x) − f(baseline)
    (completeness) up to the quadrature error, reported as a warning when above 5 %."""

    name = "integrated_gradients"
    display_name = "Integrated Gradients"
    paper = "Sundararajan, Taly & Yan, Axiomatic Attribution for Deep Networks, ICML 2017"
    paper_url = "https://arxiv.org/abs/1703.01365"
    cost = "steps batched forward+backward passes"
    family = "gradient"
    description = ("Accumulates the gradients along the straight path from a baseline image to the input; "
                   "the attributions add up to the change of the class score.")
    signed, signed_unless = True, "absolute"  # gradient x (input - baseline): either sign
    params = (
        Param("steps", "int", 50, "Points of the path integral (forward+backward passes per image).",
              min=2, max=1024),
        Param("baseline", "choice", "zero", "Start of the path: 0 in the normalised space (the dataset-mean "
              "colour), a black or blurred image, or the image's mean colour.",
              choices=("zero", "black", "blur", "mean")),
        Param("absolute", "bool", False, "Rank by the magnitude of the attribution instead of its sign.",
              cheap=True),
        BATCH_SIZE,
        LIBRAGRAD,
    )

    def capture(self, model, x, target, params, progress=None) -> Capture:
        from captum.attr import IntegratedGradients as CaptumIG

        out, bound = _clean(model, x, target)
        base = make_baseline(model, x, params["baseline"]).to(x.dtype)
        bs = auto_batch_size(model, requested=params["batch_size"])
        attrs, deltas, changes = [], [], []
        for b in range(x.shape[0]):
            fn = _value_fn(model, bound.select(b))
            with torch.enable_grad():
                xg = x[b:b + 1].detach().clone().requires_grad_(True)
                attr, delta = CaptumIG(fn).attribute(xg, baselines=base[b:b + 1], n_steps=params["steps"],
                                                     internal_batch_size=bs, return_convergence_delta=True)
            with torch.inference_mode():
                changes.append((fn(x[b:b + 1]) - fn(base[b:b + 1])).float())
            attrs.append(attr)
            deltas.append(delta.float())
        return _capture(model, x, out, bound, x.shape[0] * (params["steps"] + 3), attr=torch.cat(attrs),
                        delta=torch.cat(deltas), change=torch.cat(changes))

    def reduce(self, cap, params) -> Maps:
        pix = cap.state["attr"].float().sum(1)
        warns = [[f"the attributions miss f(x) - f(baseline) = {float(c):.3g} by {float(d):.3g}: use more steps"]
                 if abs(float(d)) > 0.05 * max(abs(float(c)), 1e-6) else []
                 for d, c in zip(cap.state["delta"], cap.state["change"])]
        if params["absolute"]:
            pix = pix.abs()
        return Maps(per_patch(pix, cap.grid, "sum"), pixel_maps=pix, warnings=warns)


@register
class SmoothGrad(Method):
    """SmoothGrad (captum ``Saliency`` on noisy copies, NoiseTunnel's smoothgrad): the target's input gradient
    averaged over ``samples`` copies of the image with Gaussian noise of standard deviation ``noise`` × (max − min
    of the image); the channels of the mean gradient's magnitude are reduced as in ``saliency``. The noise comes
    from a private generator seeded with ``seed`` (NoiseTunnel draws from the global RNG, which other threads may
    reseed): the same input and seed give the same map, also with many threads."""

    name = "smoothgrad"
    display_name = "SmoothGrad"
    paper = "Smilkov et al., SmoothGrad: removing noise by adding noise, ICML workshop 2017"
    paper_url = "https://arxiv.org/abs/1706.03825"
    cost = "samples batched forward+backward passes"
    family = "gradient"
    description = "Averages the input gradient over noisy copies of the image, which removes much of its noise."
    params = (
        Param("samples", "int", 50, "Noisy copies of the image (forward+backward passes).", min=1, max=1024),
        Param("noise", "float", 0.15, "Noise standard deviation as a fraction of the image's value range "
              "(Smilkov et al.: 10-20 %).", min=0.0, max=1.0, step=0.01),
        Param("seed", "int", 0, "Seed of the noise.", min=0, max=2**31 - 1),
        CHANNELS,
        BATCH_SIZE,
        LIBRAGRAD,
    )

    def capture(self, model, x, target, params, progress=None) -> Capture:
        from captum.attr import Saliency as CaptumSaliency

        out, bound = _clean(model, x, target)
        bs = auto_batch_size(model, requested=params["batch_size"])
        n = params["samples"]
        grads = []
        for b in range(x.shape[0]):
            sal = CaptumSaliency(_value_fn(model, bound.select(b)))
            xb = x[b:b + 1].detach()
            sd = params["noise"] * float(xb.max() - xb.min())
            # NoiseTunnel's smoothgrad, with the noise from a private seeded generator: captum's own draws come
            # from the global RNG, which other threads (and callers) may reseed mid-run
            g = torch.Generator().manual_seed(int(params["seed"]))
            noisy = xb + torch.randn((n, *xb.shape[1:]), generator=g).to(xb.device, xb.dtype) * sd
            total = torch.zeros_like(xb)
            with torch.enable_grad():
                for start in range(0, n, bs):
                    chunk = noisy[start:start + bs].clone().requires_grad_(True)
                    total += sal.attribute(chunk, abs=False).sum(0, keepdim=True)
            grads.append(total / n)
        return _capture(model, x, out, bound, x.shape[0] * (params["samples"] + 1), grad=torch.cat(grads))

    def reduce(self, cap, params) -> Maps:
        pix = _reduce_channels(cap.state["grad"].float(), params["channels"])
        return Maps(per_patch(pix, cap.grid), pixel_maps=pix)


@register
class Occlusion(Method):
    """Occlusion (captum ``Occlusion``): a ``window``-pixel square of the baseline slides over the image with
    ``stride``; each pixel gets the mean drop of the class probability (or logit) over the windows that
    cover it. Window and stride default to the patch size (one occluded patch per pass)."""

    name = "occlusion"
    display_name = "Occlusion"
    paper = "Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014"
    paper_url = "https://arxiv.org/abs/1311.2901"
    cost = "1 forward per window position (the patch count by default), batched"
    family = "perturbation"
    description = "Covers each region of the image in turn and records how much the class score drops."
    signed = True  # the score drop: negative where covering the window raises the score
    params = (
        Param("window", "int", 0, "Side of the occluding square in pixels (0 = the patch size).", min=0, max=512),
        Param("stride", "int", 0, "Step between windows in pixels (0 = the window size).", min=0, max=512),
        Param("baseline", "choice", "zero", "What covers the window: 0 in the normalised space (the dataset-mean "
              "colour), black, a blurred copy or the image's mean colour.",
              choices=("zero", "black", "blur", "mean")),
        Param("score", "choice", "probability", "The score whose drop is recorded: the softmax probability of "
              "the class (Zeiler & Fergus) or its logit.", choices=("probability", "logit")),
        BATCH_SIZE,
    )

    def capture(self, model, x, target, params, progress=None) -> Capture:
        from captum.attr import Occlusion as CaptumOcclusion

        from ..errors import InvalidParameterError

        H, W = x.shape[-2:]
        win = params["window"] or min(model.patch_size)
        stride = params["stride"] or win
        if stride > win:
            raise InvalidParameterError(f"occlusion stride {stride} is larger than the window {win}: pixels between "
                                        "windows would never be occluded; use a stride up to the window size")
        if win > min(H, W):
            raise InvalidParameterError(f"occlusion window {win} is larger than the input {H}x{W}; use a smaller "
                                        "window")
        out, bound = _clean(model, x, target)
        base = make_baseline(model, x, params["baseline"]).to(x.dtype)
        bs = auto_batch_size(model, requested=params["batch_size"])
        attrs = []
        for b in range(x.shape[0]):
            sel = bound.select(b)  # its score: the class probability for class targets; its value: the logit

            def forward(t, sel=sel):
                o = model.outputs(t)
                return (sel.score(o) if params["score"] == "probability" else sel.value(o)).float()

            with torch.inference_mode():
                attrs.append(CaptumOcclusion(forward).attribute(
                    x[b:b + 1].detach(), sliding_window_shapes=(3, win, win), strides=(3, stride, stride),
                    baselines=base[b:b + 1], perturbations_per_eval=bs))
        windows = ((H - win) // stride + 1) * ((W - win) // stride + 1)
        return _capture(model, x, out, bound, x.shape[0] * (windows + 2), attr=torch.cat(attrs).float().mean(1))

    def reduce(self, cap, params) -> Maps:
        pix = cap.state["attr"]
        return Maps(per_patch(pix, cap.grid), pixel_maps=pix)
