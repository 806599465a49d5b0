"""The sampling baselines of benchmark studies, computed with captum and seeded: GradientSHAP (expected gradients),
LIME and KernelSHAP on the model's own patch grid.

LIME and KernelSHAP draw their patch subsets from a private ``torch.Generator`` seeded with the method's ``seed``,
handed to captum through its own extension points (LIME's ``perturb_func``; KernelSHAP's coalition generator,
overridden with the same draws): the same input and seed give the same map whatever other threads do, and nobody's
random state is touched. The draws are the ones captum makes after ``torch.manual_seed(seed)`` (a new generator
seeded alike yields the same sequence), so the maps equal captum's called directly after that seeding.

captum's GradientSHAP has no such hook (it draws from numpy's and torch's global generators): a run holds one lock
while it seeds them (inside ``torch.random.fork_rng``, numpy's state saved and restored), so one call is
reproducible and the caller's state is left as it was; a thread that draws from the global generators at the same
time still changes its samples.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager

import numpy as np
import torch

from ..metrics.baselines import Baseline, make_baseline
from ..registry import Capture, Maps, Param, register
from ._common import LIBRAGRAD
from ._perturb import BATCH_SIZE, auto_batch_size
from .captum_baselines import ABSOLUTE, _Signed, signed_unless_absolute
from .gradients import _capture, _clean, _value_fn

__all__ = ["GradientShap", "Lime", "KernelShap", "seeded", "patch_feature_mask", "lime_kernel",
           "shap_baselines", "half_subsets", "private_kernel_shap"]

_RNG_LOCK = threading.Lock()
SEED = Param("seed", "int", 0, "Seed of the random draws.", min=0, max=2**31 - 1)


@contextmanager
def seeded(seed: int, device: torch.device):
    """torch's and numpy's global generators seeded with ``seed`` for the block, restored after it."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with _RNG_LOCK, torch.random.fork_rng(devices=devices):
        state = np.random.get_state()
        try:
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            yield
        finally:
            np.random.set_state(state)


def shap_baselines(model, x: torch.Tensor, kind: str, seed: int) -> torch.Tensor:
    """(K, 3, H, W) the baseline distribution of GradientSHAP for one image ``x`` (1, 3, H, W)."""
    if kind == "references":
        names = ("zero", "black", "blur", "mean")
        return torch.cat([make_baseline(model, x, n) for n in names]).to(x.dtype)
    if kind == "noise":
        return torch.cat([make_baseline(model, x, Baseline("noise", seed=seed + i)) for i in range(8)]).to(x.dtype)
    return make_baseline(model, x, kind).to(x.dtype)


@register
class GradientShap(_Signed):
    """GradientSHAP / expected gradients (captum ``GradientShap``): the mean over ``samples`` draws of
    (x - x0) · ∇f(x0 + α (x - x0) + ε), the baseline x0 drawn uniformly from the stated distribution, α ~ U(0, 1)
    and ε ~ N(0, noise²). Its expectation is the IG attribution averaged over the baselines, so it adds up to
    f(x) - E[f(x0)] up to the sampling error."""

    name = "gradient_shap"
    display_name = "GradientSHAP (expected gradients)"
    paper = ("Lundberg & Lee, A Unified Approach to Interpreting Model Predictions, NeurIPS 2017; Erion et al., "
             "Improving performance of deep learning models with axiomatic attribution priors and expected "
             "gradients, Nature Machine Intelligence 2021")
    paper_url = "https://arxiv.org/abs/1705.07874"
    cost = "samples batched forward+backward passes"
    description = ("Integrated gradients averaged over random reference images and random points of the path: "
                   "an estimate of each pixel's Shapley value.")
    params = (
        Param("samples", "int", 32, "Random (baseline, point) draws, one forward+backward each.", min=1, max=1024),
        Param("baselines", "choice", "references", "The baseline distribution: the four reference images (0 in "
              "the normalised space, black, blurred, the image's mean colour) drawn with equal probability; "
              "8 images of Gaussian noise in the normalised space; or the blurred image alone.",
              choices=("references", "noise", "blur")),
        Param("noise", "float", 0.0, "Standard deviation of the Gaussian noise added to each sampled point "
              "(captum's stdevs, in the normalised space).", min=0.0, max=2.0, step=0.01),
        SEED, ABSOLUTE, BATCH_SIZE, LIBRAGRAD,
    )

    def capture(self, model, x, target, params, progress=None) -> Capture:
        from captum.attr import GradientShap as CaptumGradientShap

        out, bound = _clean(model, x, target)
        bs = auto_batch_size(model, requested=params["batch_size"])
        n = params["samples"]
        attrs = []
        for b in range(x.shape[0]):
            gs = CaptumGradientShap(_value_fn(model, bound.select(b)))
            base = shap_baselines(model, x[b:b + 1], params["baselines"], params["seed"])
            total = torch.zeros_like(x[b:b + 1])
            with seeded(params["seed"], x.device), torch.enable_grad():
                for start in range(0, n, bs):  # captum has no internal batch size: chunks, weighted by size
                    k = min(bs, n - start)
                    total += k * gs.attribute(x[b:b + 1].detach().clone().requires_grad_(True), baselines=base,
                                              n_samples=k, stdevs=params["noise"]).detach()
            attrs.append(total / n)
        return _capture(model, x, out, bound, x.shape[0] * (n + 1), attr=torch.cat(attrs))


def _device_of(original_inp) -> torch.device:
    """The device of captum's input (a tensor, or a tuple of them)."""
    return original_inp.device if isinstance(original_inp, torch.Tensor) else original_inp[0].device


def half_subsets(gen: torch.Generator):
    """LIME's perturbation function (captum's default draw: each feature kept with probability 1/2) on ``gen``."""

    def perturb(original_inp, **kwargs) -> torch.Tensor:
        device = _device_of(original_inp)
        probs = torch.full((1, int(kwargs["num_interp_features"])), 0.5)
        return torch.bernoulli(probs, generator=gen).to(device=device).long()

    return perturb


def private_kernel_shap(forward_func, gen: torch.Generator):
    """captum's ``KernelShap`` drawing its coalitions from ``gen``: the same process as captum's generator (the
    all-present and all-absent coalitions first, then a size from the Shapley kernel's distribution and that many
    features chosen uniformly by the top values of a normal vector)."""
    from captum.attr import KernelShap

    class _KernelShap(KernelShap):
        def kernel_shap_perturb_generator(self, original_inp, **kwargs):
            device = _device_of(original_inp)
            n = int(kwargs["num_interp_features"])
            probs = kwargs["num_select_distribution"].probs.reshape(1, -1)
            yield torch.ones(1, n, device=device, dtype=torch.long)
            yield torch.zeros(1, n, device=device, dtype=torch.long)
            while True:
                k = int(torch.multinomial(probs, 1, True, generator=gen))
                vals = torch.randn(1, n, generator=gen)
                threshold = torch.kthvalue(vals, n - k).values.item()
                yield (vals > threshold).to(device=device).long()

    return _KernelShap(forward_func)


def patch_feature_mask(model, x: torch.Tensor) -> torch.Tensor:
    """(1, 1, H, W) long: each pixel's patch index on the model's own grid (row-major), pixels past the last full
    patch joined to the last row or column."""
    H, W = x.shape[-2:]
    gh, gw = model.grid(x)
    ph, pw = model.patch_size
    rows = (torch.arange(H) // ph).clamp(max=gh - 1)
    cols = (torch.arange(W) // pw).clamp(max=gw - 1)
    return (rows[:, None] * gw + cols[None, :]).reshape(1, 1, H, W).to(x.device)


def lime_kernel(width: float):
    """The lime package's image kernel: sqrt(exp(-d² / width²)) with d the cosine distance between the sample's
    binary vector of kept patches and the all-ones vector of the original image."""

    def similarity(original, perturbed, interpretable, **kwargs):
        z = interpretable.float().reshape(-1)
        norm = float(z.norm())
        d = 1.0 - (float(z.sum()) / (norm * math.sqrt(z.numel())) if norm > 0 else 0.0)
        return math.sqrt(math.exp(-(d * d) / (width * width)))

    return similarity


class _Patches(_Signed):
    """A surrogate fitted on patch-level masks: the features are the model's patches, an absent patch shows the
    blurred image (``baseline``), the target's value is read on each masked image."""

    family = "attribution"
    cost = "samples forward passes (batched) + 1"

    def _explain(self, model, x, fn, params, gen: torch.Generator):
        raise NotImplementedError

    def capture(self, model, x, target, params, progress=None) -> Capture:
        out, bound = _clean(model, x, target)
        maps = []
        gh, gw = model.grid(x)
        for b in range(x.shape[0]):
            gen = torch.Generator().manual_seed(params["seed"])  # private: other threads' draws cannot change it
            with torch.inference_mode():
                coef = self._explain(model, x[b:b + 1].detach(), _value_fn(model, bound.select(b)), params, gen)
            maps.append(coef.float().reshape(1, gh, gw))
        return _capture(model, x, out, bound, x.shape[0] * (params["samples"] + 1), coef=torch.cat(maps))

    def reduce(self, cap, params) -> Maps:
        m = cap.state["coef"]
        return Maps(m.abs() if params["absolute"] else m)

    def is_signed(self, params=None) -> bool:
        return signed_unless_absolute(params)


PATCH_BASELINE = Param("baseline", "choice", "blur", "What an absent patch shows: the blurred image (Gaussian, "
                       "kernel 11, sigma 5), 0 in the normalised space, black, or the image's mean colour.",
                       choices=("blur", "zero", "black", "mean"))


@register
class Lime(_Patches):
    """LIME (captum ``Lime``) on the patch grid: ``samples`` random subsets of patches (each kept with probability
    1/2, captum's default draw), a ridge regression (alpha 1, as the lime package) of the target's value on the
    binary vectors, weighted by the lime package's image kernel (cosine distance, width 0.25). The map is the
    regression's coefficients: signed."""

    name = "lime"
    display_name = "LIME (patches)"
    paper = ('Ribeiro, Singh & Guestrin, "Why Should I Trust You?": Explaining the Predictions of Any '
             "Classifier, KDD 2016")
    paper_url = "https://arxiv.org/abs/1602.04938"
    description = "Fits a weighted linear model of the class score on random subsets of the image's patches."
    params = (
        Param("samples", "int", 256, "Random patch subsets (forward passes).", min=2, max=10000),
        PATCH_BASELINE,
        Param("kernel_width", "float", 0.25, "Width of the exponential kernel on the cosine distance.",
              min=0.01, max=10.0, step=0.01),
        Param("alpha", "float", 1.0, "Ridge penalty of the surrogate.", min=0.0, max=100.0, step=0.1),
        SEED, ABSOLUTE, BATCH_SIZE,
    )

    def _explain(self, model, x, fn, params, gen):
        from captum._utils.models.linear_model import SkLearnRidge
        from captum.attr import Lime as CaptumLime

        lime = CaptumLime(fn, interpretable_model=SkLearnRidge(alpha=params["alpha"]),
                          similarity_func=lime_kernel(params["kernel_width"]), perturb_func=half_subsets(gen))
        return lime.attribute(x, baselines=make_baseline(model, x, params["baseline"]).to(x.dtype),
                              feature_mask=patch_feature_mask(model, x), n_samples=params["samples"],
                              perturbations_per_eval=auto_batch_size(model, requested=params["batch_size"]),
                              return_input_shape=False)


@register
class KernelShap(_Patches):
    """KernelSHAP (captum ``KernelShap``) on the patch grid: patch coalitions drawn from the Shapley kernel's
    distribution of sizes, a linear regression weighted by the Shapley kernel. The coefficients estimate each
    patch's Shapley value of the target's value (absent patches show the baseline): signed, adding up to about
    f(x) - f(baseline)."""

    name = "kernel_shap"
    display_name = "KernelSHAP (patches)"
    paper = "Lundberg & Lee, A Unified Approach to Interpreting Model Predictions, NeurIPS 2017"
    paper_url = "https://arxiv.org/abs/1705.07874"
    description = "Estimates each patch's Shapley value from the class score on random coalitions of patches."
    params = (
        Param("samples", "int", 256, "Random coalitions (forward passes).", min=2, max=10000),
        PATCH_BASELINE, SEED, ABSOLUTE, BATCH_SIZE,
    )

    def _explain(self, model, x, fn, params, gen):
        return private_kernel_shap(fn, gen).attribute(
            x, baselines=make_baseline(model, x, params["baseline"]).to(x.dtype),
            feature_mask=patch_feature_mask(model, x), n_samples=params["samples"],
            perturbations_per_eval=auto_batch_size(model, requested=params["batch_size"]), return_input_shape=False)
