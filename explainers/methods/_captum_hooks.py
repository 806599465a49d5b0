"""captum's classes that act on activation *modules* (Guided Backprop, DeepLIFT), extended to the GELU-type
activations of ViTs and made safe on a model shared by several threads, for :mod:`.captum_baselines` (its models
other than the library's, whose MLPs carry the rules themselves: :mod:`explainers.models.rules`)."""

from __future__ import annotations

import functools
import threading

import torch
from torch import nn

_ACTIVATIONS = ("gelu", "silu", "swish", "mish", "hardswish", "relu", "elu", "sigmoid", "tanh", "softplus")


def is_activation(module: nn.Module) -> bool:
    """An element-wise activation module (GELU and its variants, SiLU, ReLU, ...): a leaf whose class name says so
    (timm, torch and Hugging Face activation classes alike; SwiGLU blocks have children and are excluded)."""
    return _activation_class(type(module)) and all(c is None for c in module._modules.values())


@functools.lru_cache(maxsize=512)
def _activation_class(cls: type) -> bool:
    name = cls.__name__.lower()
    return any(k in name for k in _ACTIVATIONS)


class ValueNet(nn.Module):
    """An ``nn.Module`` around a value function, holding the network as a child, so that captum's module hooks
    (which walk ``model.apply``) reach the network's activation modules."""

    def __init__(self, net: nn.Module, fn):
        super().__init__()
        self.net, self.fn = net, fn

    def forward(self, t):
        return self.fn(t)


# captum's guided backprop and DeepLIFT put hooks on the model's own modules, and a model may be shared by several
# threads (the app's sessions, a thread pool): these methods run one at a time, and their hooks act only on the
# passes of the thread that registered them (another thread's pass through a hooked module is left unchanged).
_HOOKED = threading.Lock()
_HOOK_NAMES = ("_forward_pre_hook", "_forward_pre_hook_ref", "_forward_hook", "_backward_hook")


def _owned(fn, owner: int):
    """``fn`` (a hook), a no-op (None: nothing changed) when called from a thread other than ``owner``."""

    def hook(*args, **kwargs):
        if threading.get_ident() != owner:
            return None
        return fn(*args, **kwargs)

    return hook


def _this_thread_only(cls):
    """``cls`` (a captum attribution class) with every hook a no-op outside the thread that made it: its hook
    methods, and every hook it registers on a module, captum's closures included (the closures of
    ``_register_backward_hook`` would register tensor hooks in another thread's pass, and fail in a no-grad one)."""

    def guard(name):
        inner = getattr(cls, name)

        def hook(self, *args, **kwargs):
            if threading.get_ident() != self._owner:
                return None
            return inner(self, *args, **kwargs)

        return hook

    body = {name: guard(name) for name in _HOOK_NAMES if hasattr(cls, name)}
    register = cls._register_hooks

    def _register_hooks(self, module, *args, **kwargs):
        kinds = (module._forward_pre_hooks, module._forward_hooks)
        before = [set(d) for d in kinds]
        register(self, module, *args, **kwargs)
        for d, old in zip(kinds, before):
            for key in set(d) - old:
                d[key] = _owned(d[key], self._owner)

    body["_register_hooks"] = _register_hooks

    def __init__(self, *args, **kwargs):
        cls.__init__(self, *args, **kwargs)
        self._owner = threading.get_ident()

    body["__init__"] = __init__
    return type(cls.__name__, (cls,), body)


class _GuidedBackprop:
    """captum's ``GuidedBackprop`` with its guided hook on every element-wise activation module (see the module
    docstring); ``hooked`` counts the modules it reached."""

    def __new__(cls, module):
        from captum._utils.common import _register_backward_hook
        from captum.attr import GuidedBackprop as CaptumGuidedBackprop

        class Guided(CaptumGuidedBackprop):
            hooked = 0

            def _register_hooks(self, m):
                if is_activation(m):
                    self.backward_hooks.extend(_register_backward_hook(m, self._backward_hook, self))
                    self.hooked += 1

        return _this_thread_only(Guided)(module)


def _rescale(m, grad_input: torch.Tensor, grad_output: torch.Tensor, eps: float) -> torch.Tensor:
    """captum's Rescale rule (``deep_lift.nonlinear``): the gradient entering the activation's input is
    ``grad_output * Δout / Δin``, or its plain gradient where ``|Δin| < eps``. The pass holds the images and then
    their baselines, so Δ is computed once for the B pairs and broadcast over both halves (captum concatenates two
    copies of each difference first: the same values, twice the element-wise work)."""
    x, x0 = m.input.chunk(2)
    y, y0 = m.output.chunk(2)
    d_in = x - x0
    slope = (y - y0).div_(d_in)
    flat = d_in.abs_() < eps
    pairs = (2, *slope.shape)
    return torch.where(flat, grad_input.view(pairs), grad_output.view(pairs) * slope).view_as(grad_output)


def _deeplift(module):
    from captum.attr import DeepLift as CaptumDeepLift
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR, nonlinear

    class ViTDeepLift(CaptumDeepLift):
        """captum's DeepLift with its Rescale rule (captum's ``nonlinear``) on GELU-type activation modules too."""

        def _is_non_linear(self, m):
            return type(m) in SUPPORTED_NON_LINEAR or is_activation(m)

        def _backward_hook(self, m, grad_input, grad_output):
            if SUPPORTED_NON_LINEAR.get(type(m), nonlinear) is not nonlinear:  # softmax, max-pooling: captum's
                return super()._backward_hook(m, grad_input, grad_output)
            if not self.satisfies_attribute_criteria(m):
                raise RuntimeError(f"DeepLIFT: the activation {type(m).__name__} is used more than once per pass")
            mult = _rescale(m, grad_input, grad_output, self.eps)
            del m.input, m.output
            return mult

    return _this_thread_only(ViTDeepLift)(module)
