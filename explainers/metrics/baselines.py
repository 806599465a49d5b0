"""Baselines for the perturbation curves: what a removed pixel is replaced with.

All baselines are built in the model-input (normalised) space, from the model input ``x`` (1, 3, H, W):

* ``black``: a black image, 0 in pixel space (normalised with the model's mean/std: -mean/std);
* ``zero``: 0 in the *normalised* space, i.e. the normalisation mean colour (what the Similarity-Graph and
  GradMask notebooks call "black");
* ``blur``: ``torchvision.transforms.functional.gaussian_blur`` of the image (kernel, sigma);
* ``mean``: the image's own mean colour (per channel);
* ``noise``: seeded standard normal noise in the normalised space (deterministic for a given seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InvalidParameterError

__all__ = ["Baseline", "BASELINES", "make_baseline", "resolve_baseline"]

KINDS = ("black", "zero", "blur", "mean", "noise")


@dataclass(frozen=True)
class Baseline:
    kind: str = "blur"
    kernel_size: int = 11
    sigma: float = 5.0
    seed: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InvalidParameterError(f"unknown baseline {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.kind == "blur" and (self.kernel_size < 1 or self.kernel_size % 2 == 0 or self.sigma <= 0):
            raise InvalidParameterError("a blur baseline needs an odd kernel_size >= 1 and sigma > 0")

    @property
    def name(self) -> str:
        if self.kind == "blur":
            return f"blur(k={self.kernel_size}, sigma={self.sigma:g})"
        if self.kind == "noise":
            return f"noise(seed={self.seed})"
        return self.kind

    def __call__(self, x: torch.Tensor, mean=None, std=None) -> torch.Tensor:
        """The baseline image for the model input ``x`` (B, 3, H, W), same shape, dtype and device."""
        if self.kind == "zero":
            return torch.zeros_like(x)
        if self.kind == "black":
            if mean is None or std is None:
                raise InvalidParameterError("the black baseline needs the model's normalisation mean and std")
            m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            return ((0.0 - m) / s).expand_as(x).clone()
        if self.kind == "blur":
            from torchvision.transforms.functional import gaussian_blur

            return gaussian_blur(x, kernel_size=[self.kernel_size] * 2, sigma=[float(self.sigma)] * 2)
        if self.kind == "mean":
            return x.mean(dim=(-2, -1), keepdim=True).expand_as(x).clone()
        g = torch.Generator(device="cpu").manual_seed(int(self.seed))
        return torch.randn(x.shape, generator=g, dtype=torch.float32).to(device=x.device, dtype=x.dtype)


BASELINES = {
    "black": Baseline("black"),
    "zero": Baseline("zero"),
    "blur": Baseline("blur", 11, 5.0),
    "mean": Baseline("mean"),
    "noise": Baseline("noise", seed=0),
}


def resolve_baseline(spec) -> Baseline:
    """A :class:`Baseline`, or a name from :data:`BASELINES`, or ``"blur:K:SIGMA"`` / ``"noise:SEED"``."""
    if isinstance(spec, Baseline):
        return spec
    if not isinstance(spec, str):
        raise InvalidParameterError(f"baseline must be a name or a Baseline, got {type(spec).__name__}")
    name, *args = spec.strip().lower().split(":")
    try:
        if name == "blur" and args:
            return Baseline("blur", int(args[0]), float(args[1]) if len(args) > 1 else 5.0)
        if name == "noise" and args:
            return Baseline("noise", seed=int(args[0]))
    except ValueError:
        raise InvalidParameterError(f"cannot read baseline {spec!r} (e.g. 'blur:11:5' or 'noise:0')") from None
    if name not in BASELINES or args:
        raise InvalidParameterError(f"unknown baseline {spec!r}; choose one of {', '.join(BASELINES)}")
    return BASELINES[name]


def make_baseline(model, x: torch.Tensor, spec) -> torch.Tensor:
    """The baseline image for model input ``x`` (normalisation read from ``model.preprocessing``)."""
    b = resolve_baseline(spec)
    pre = getattr(model, "preprocessing", None)
    return b(x, getattr(pre, "mean", None), getattr(pre, "std", None))
