"""Backward rules written into the forward pass as custom autograd functions, shared by the LRP methods that run
gradient x input through modified backward passes (:mod:`..methods.attnlrp`) and by LibraGrad.

* :func:`identity_rule`: an element-wise function whose backward is ``grad * f(x) / x`` (AttnLRP's identity rule;
  for GELU and SiLU this is ``grad * gate(x)`` with the gate held constant, LibraGrad's zero-order linearisation);
* :func:`uniform_rule`: an operand of a product whose gradient is divided by a factor (the uniform rule; LibraGrad's
  halving of a gated MLP's product);
* :func:`norm_rule`: a normalisation with its scale (standard deviation, root mean square) held constant.

Each keeps the module's exact forward values; only the backward changes.

**DeepLIFT** (:func:`deeplift_passes`, one per thread): a pass of the baselines records the input of every MLP
activation (:func:`activation`), and the images' gradient pass applies each one under the Rescale rule against
its recorded input (``grad * (f(x) - f(x0)) / (x - x0)``), so the input gradient is DeepLIFT's multiplier.

**Guided backprop** (:func:`guided_passes`, one per thread): every MLP activation passes back only the positive
part of the gradient entering its input (``relu(f'(x) * grad)``, captum's guided hook on the activation module).

**LibraGrad** (Mehri, Baghshah & Pilehvar, CVPR 2025) is a switch of the traced forward (:func:`libragrad`, one per
thread, so one shared model serves plain and balanced passes at once): while it is on, a gradient pass through
:meth:`ViTModel.trace <explainers.models.ViTModel.trace>` (and :meth:`~explainers.models.ViTModel.outputs`, which
then runs the traced path) uses the authors' "LX1" rules: the normalisations' scale held constant, GELU/SiLU gates
held constant, the queries and keys detached (the attention probabilities are constants for the backward, their
own gradient is still recorded), and a gated MLP's product halved ("DU"). The forward values are unchanged.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["identity_rule", "uniform_rule", "norm_rule", "libragrad", "libragrad_on", "balanced_pass",
           "LIBRAGRAD_PAPER", "LIBRAGRAD_URL", "deeplift_passes", "guided_passes", "activation", "rescale_active"]

LIBRAGRAD_PAPER = ("Mehri, Soleymani Baghshah & Pilehvar, LibraGrad: Balancing Gradient Flow for Universally Better "
                   "Vision Transformer Attributions, CVPR 2025")
LIBRAGRAD_URL = "https://arxiv.org/abs/2411.16760"

_local = threading.local()


@contextmanager
def _thread_state(name: str, value, default=None):
    """This thread's ``name`` set to ``value`` inside the block (yielded), restored after it."""
    before = getattr(_local, name, default)
    setattr(_local, name, value)
    try:
        yield value
    finally:
        setattr(_local, name, before)


@contextmanager
def libragrad(on: bool = True):
    """Turn LibraGrad's balanced backward on (or off) for the passes this thread runs inside the block."""
    with _thread_state("on", bool(on), default=False):
        yield


def libragrad_on() -> bool:
    """Whether this thread's gradient passes use LibraGrad's rules now."""
    return getattr(_local, "on", False)


def balanced_pass() -> bool:
    """Whether the pass being run now takes LibraGrad's rules: the switch is on and autograd records it."""
    return libragrad_on() and torch.is_grad_enabled()


class _Identity(torch.autograd.Function):
    """y = fn(x); backward ``grad * y / x`` (0 where x = 0): relevance passes element-wise unchanged."""

    @staticmethod
    def forward(ctx, x, fn):
        y = fn(x)
        if ctx.needs_input_grad[0]:  # one division and one selection (no zero/one tensors allocated)
            ctx.save_for_backward(torch.where(x == 0, 0.0, y / x))
        return y

    @staticmethod
    def backward(ctx, g):
        (ratio,) = ctx.saved_tensors
        return g * ratio, None


class _LayerNormRule(torch.autograd.Function):
    """LayerNorm's exact values (one ``native_layer_norm`` kernel, as the module computes them) with the backward
    of the standard deviation held constant: ``dx = (gw - mean(gw)) / std`` with ``gw = grad * weight``. This is
    lxt's ``layer_norm_forward`` (the std detached) without computing the normalisation twice."""

    @staticmethod
    def forward(ctx, x, shape, weight, bias, eps):
        y, _, rstd = torch.native_layer_norm(x, shape, weight, bias, eps)
        ctx.save_for_backward(rstd, weight)
        ctx.dims = tuple(range(-len(shape), 0))
        return y

    @staticmethod
    def backward(ctx, g):
        rstd, weight = ctx.saved_tensors
        gw = g * weight if weight is not None else g
        return (gw - gw.mean(ctx.dims, keepdim=True)) * rstd, None, None, None, None


class _Uniform(torch.autograd.Function):
    """Identity forward; backward divides the gradient (the uniform rule's share of a product's operand)."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g / ctx.factor, None


class _Rescale(torch.autograd.Function):
    """y = fn(x); backward ``grad * (fn(x) - fn(x0)) / (x - x0)`` (DeepLIFT's Rescale rule against the reference
    input ``x0`` of the same element), or ``grad * fn'(x)`` where ``|x - x0| < eps`` (as captum's ``nonlinear``)."""

    @staticmethod
    def forward(ctx, x, x0, fn, eps):
        y = fn(x)
        if ctx.needs_input_grad[0]:
            d = x - x0
            slope = (y - fn(x0)).div_(d)
            flat = d.abs_() < eps
            if bool(flat.any()):  # an element equal in both passes: the plain derivative there
                with torch.enable_grad():
                    xx = x.detach().requires_grad_(True)
                    (deriv,) = torch.autograd.grad(fn(xx).sum(), xx)
                slope = torch.where(flat, deriv, slope)
            ctx.save_for_backward(slope)
        return y

    @staticmethod
    def backward(ctx, g):
        (slope,) = ctx.saved_tensors
        return g * slope, None, None, None


class _PositiveGrad(torch.autograd.Function):
    """The identity; backward passes on only the positive part of the gradient (the guided rule)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g.clamp(min=0)


class _GuidedPasses:
    """This thread's guided passes: ``applied`` counts the activations the rule was put on."""

    def __init__(self):
        self.applied = 0

    def apply(self, fn, x: torch.Tensor) -> torch.Tensor:
        self.applied += 1
        return fn(_PositiveGrad.apply(x)) if x.requires_grad else fn(x)


class _DeepLiftPasses:
    """This thread's DeepLIFT passes: :meth:`reference` records the input of every activation the forward applies,
    in order; :meth:`attributed` then applies each activation under the Rescale rule against its recorded input."""

    def __init__(self, eps: float):
        self.eps, self.refs, self.next, self.recording = eps, [], 0, False

    @contextmanager
    def reference(self):
        self.recording = True
        try:
            yield
        finally:
            self.recording = False

    @contextmanager
    def attributed(self):
        self.next = 0
        yield
        if self.next != len(self.refs):
            raise RuntimeError(f"DeepLIFT: {len(self.refs)} activations in the reference pass, {self.next} in the "
                               "image's pass")

    def apply(self, fn, x: torch.Tensor) -> torch.Tensor:
        if self.recording:
            self.refs.append(x.detach())
            return fn(x)
        if self.next >= len(self.refs) or self.refs[self.next].shape != x.shape:
            raise RuntimeError("DeepLIFT: the image's pass applies other activations than the reference pass")
        x0 = self.refs[self.next]
        self.next += 1
        return _Rescale.apply(x, x0, fn, self.eps)


@contextmanager
def deeplift_passes(eps: float = 1e-10):
    """DeepLIFT's Rescale rule on every activation of this thread's passes inside the block (one shared model
    serves other threads unchanged): run the reference input under ``passes.reference()``, then the image (the
    same batch size) under ``passes.attributed()``; its input gradient is DeepLIFT's multiplier."""
    with _thread_state("deeplift", _DeepLiftPasses(eps)) as passes:
        yield passes


@contextmanager
def guided_passes():
    """Guided backprop's rule on every activation of this thread's passes inside the block (other threads'
    passes through the same shared model are unchanged): the gradient leaving an activation towards its input is
    ``relu(f'(x) * grad)``. Yields the state; its ``applied`` counts the activations reached."""
    with _thread_state("guided", _GuidedPasses()) as passes:
        yield passes


def rescale_active() -> bool:
    """Whether this thread is inside :func:`deeplift_passes` (the forward then keeps every activation a call)."""
    return getattr(_local, "deeplift", None) is not None


def activation(fn, x: torch.Tensor) -> torch.Tensor:
    """An MLP's activation ``fn(x)``, under DeepLIFT's or guided backprop's rule when this thread runs them."""
    passes = getattr(_local, "deeplift", None) or getattr(_local, "guided", None)
    return fn(x) if passes is None else passes.apply(fn, x)


def identity_rule(fn, x: torch.Tensor) -> torch.Tensor:
    """An element-wise function under the identity rule (AttnLRP Eq. 9)."""
    return _Identity.apply(x, fn)


def uniform_rule(x: torch.Tensor, factor: float) -> torch.Tensor:
    """An operand of a product under the uniform rule (AttnLRP Eq. 7): its relevance divided by ``factor``."""
    return _Uniform.apply(x, factor)


def norm_rule(m: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    """A normalisation module with its scale held constant (values are exactly the module's own)."""
    if m is None:
        return x
    name = type(m).__name__.lower()
    if isinstance(m, nn.LayerNorm) or name in ("layernorm", "layernorm2d", "layernormfp32"):
        shape = tuple(getattr(m, "normalized_shape", (x.shape[-1],)))
        if name in ("layernorm", "layernormfp32") and x.dtype in (torch.float32, torch.float64) and x.dim() >= 2:
            w, b = getattr(m, "weight", None), getattr(m, "bias", None)
            w = w.detach().to(x.dtype) if isinstance(w, torch.Tensor) else None
            b = b.detach().to(x.dtype) if isinstance(b, torch.Tensor) else None
            return _LayerNormRule.apply(x, list(shape), w, b, m.eps)
        y = m(x)
        dims = tuple(range(-len(shape), 0))
        mean = x.mean(dims, keepdim=True)
        std = ((x - mean).pow(2).mean(dims, keepdim=True) + m.eps).sqrt()
        s = (x - mean) / std.detach()
    elif "rms" in name:
        y = m(x)
        eps = getattr(m, "eps", None) or getattr(m, "variance_epsilon", None) or torch.finfo(x.dtype).eps
        s = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps).detach()
    else:
        return identity_rule(m, x)
    w, b = getattr(m, "weight", None), getattr(m, "bias", None)
    s = s * w if isinstance(w, torch.Tensor) else s
    s = s + b if isinstance(b, torch.Tensor) else s
    return y.detach() + (s - s.detach())  # the module's exact values, the rule's gradient
