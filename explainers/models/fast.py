"""Fused linear layers for the masked passes on the CPU (oneDNN, the kernels ``torch.compile`` itself emits).

The perturbation methods and metrics push hundreds of masked images through :meth:`ViTModel.outputs` under
``torch.inference_mode()``. On the CPU the plain path spends a third of its time outside the matrix products:
``addmm`` first copies the bias into the whole output, and GELU and the residual additions each read and write
the (B, N, hidden) activations again. oneDNN's ``mkldnn._linear_pointwise`` does the bias, the exact (erf) GELU
and the residual addition inside the matrix product's epilogue. The results are the same up to float rounding
(about 1e-6 relative on DeiT-Tiny); the weights are read from the model on every call, never copied, prepacked or
changed, so one model can be shared by threads and a randomised copy runs its own weights.

Used only where it applies: a CPU float32 input, autograd off (gradient passes keep the differentiable ops),
plain linear layers (``nn.Linear``, :class:`~.parts.LinearView`), oneDNN present and checked once against
``F.linear``. Anything else runs the plain ops. ``FUSED_CPU = False`` (or the environment variable
``VIT_EXPLAIN_FUSED_CPU=0``) turns it off, which the pass benchmark uses to time the plain path.

``torch.compile`` was measured too (``benchmarks/bench_passes.py``'s README section): on a 2-core CPU it takes
minutes to compile DeiT-Tiny, again for every new batch size, and did not beat these fused kernels.
"""

from __future__ import annotations

import functools
import os
import threading

import torch
import torch.nn.functional as F
from torch import nn

from .parts import LinearView
from .rules import rescale_active

__all__ = ["FUSED_CPU", "fused_available", "use_fused", "linear", "linear_add", "mlp_add", "qkv", "patch_embed"]

FUSED_CPU = os.environ.get("VIT_EXPLAIN_FUSED_CPU", "1") != "0"

_state: dict = {}
_lock = threading.Lock()


@functools.cache
def _op(name: str):
    """oneDNN's fused linear (``"unary"``) or fused linear + addition (``"binary"``), looked up once."""
    try:
        pw = torch.ops.mkldnn._linear_pointwise
        return pw.binary if name == "binary" else pw.default
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return None


def fused_available() -> bool:
    """Whether oneDNN's fused linear works here: checked once (against ``F.linear``) and remembered."""
    ok = _state.get("ok")
    if ok is not None:
        return ok
    with _lock:
        if "ok" not in _state:
            _state["ok"] = _probe()
        return _state["ok"]


def _probe() -> bool:
    if not torch.backends.mkldnn.is_available() or _op("unary") is None or _op("binary") is None:
        return False
    g = torch.Generator().manual_seed(0)
    x, w, b, r = (torch.randn(s, generator=g) for s in ((2, 5, 8), (6, 8), (6,), (2, 5, 6)))
    try:
        with torch.inference_mode():
            y = _op("unary")(x, w, b, "gelu", [], "none")
            z = _op("binary")(x, r, w, b, "add")
    except Exception:  # noqa: BLE001 - any failure of the private op means: use the plain path
        return False
    ref = F.linear(x, w, b)
    return bool(torch.allclose(y, F.gelu(ref), atol=1e-5) and torch.allclose(z, ref + r, atol=1e-5))


def use_fused(x: torch.Tensor) -> bool:
    """Whether a pass on ``x`` takes the fused kernels (CPU float32, no autograd, not in DeepLIFT's passes,
    oneDNN works)."""
    return (FUSED_CPU and x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not rescale_active() and fused_available())


def _plain(lin) -> bool:
    """A linear map computed exactly as ``F.linear(x, lin.weight, lin.bias)`` (a module with hooks runs itself)."""
    if isinstance(lin, LinearView):
        return True
    return (isinstance(lin, nn.Linear) and type(lin).forward is nn.Linear.forward and not lin._forward_hooks
            and not lin._forward_pre_hooks)


def _wb(lin):
    w, b = lin.weight, lin.bias
    return w.contiguous(), (b.contiguous() if b is not None else None)


def _gelu_algorithm(act) -> str | None:
    """oneDNN's name of ``act`` when it is a GELU the epilogue computes the same way, else None."""
    if type(act) is nn.GELU:
        return act.approximate  # "none" (erf) or "tanh"
    if type(act).__name__ == "GELUActivation" and getattr(act, "act", None) is F.gelu:  # Hugging Face's "gelu"
        return "none"
    return None


def linear(lin, x: torch.Tensor, fused: bool) -> torch.Tensor:
    if fused and _plain(lin):
        return _op("unary")(x.contiguous(), *_wb(lin), "none", [], "")
    return lin(x)


def linear_add(lin, x: torch.Tensor, residual: torch.Tensor, fused: bool) -> torch.Tensor:
    """``residual + lin(x)``, the addition fused into the product where possible."""
    if fused and _plain(lin) and residual.is_contiguous():
        return _op("binary")(x.contiguous(), residual, *_wb(lin), "add")
    return residual + lin(x)


def mlp_add(m, h: torch.Tensor, residual: torch.Tensor | None, fused: bool) -> torch.Tensor:
    """``m(h)`` (a :class:`~.parts.Mlp`), plus ``residual`` when given; GELU and the addition fused."""
    if not fused or m.gated:
        y = m(h)
        return y if residual is None else residual + y
    algo = _gelu_algorithm(m.act)
    if algo is not None and _plain(m.fc1):
        g = _op("unary")(h.contiguous(), *_wb(m.fc1), "gelu", [], algo)
    else:
        g = m.act(linear(m.fc1, h, fused))
    if m.mid_norm is not None:
        g = m.mid_norm(g)
    return linear(m.fc2, g, fused) if residual is None else linear_add(m.fc2, g, residual, fused)


def qkv(p, h: torch.Tensor, fused: bool):
    """A :class:`~.parts.QKV` projection -> q, k, v (B, heads, N, head_dim), the products fused where possible."""
    if not fused:
        return p(h)
    B, N, _ = h.shape
    if p.fused is not None:
        t = linear(p.fused, h, fused).reshape(B, N, 3, p.heads, p.head_dim).permute(2, 0, 3, 1, 4)
        return t[0], t[1], t[2]
    shape = (B, N, p.heads, p.head_dim)
    return tuple(linear(m, h, fused).reshape(shape).transpose(1, 2) for m in (p.q, p.k, p.v))


def _patchify_conv(conv) -> bool:
    """A convolution whose kernel tiles the image (kernel = stride, no padding, dilation or groups)."""
    return (type(conv) is nn.Conv2d and tuple(conv.kernel_size) == tuple(conv.stride) and tuple(conv.padding) == (0, 0)
            and tuple(conv.dilation) == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


def patch_embed(pe, x: torch.Tensor) -> torch.Tensor:
    """timm's ``PatchEmbed`` (``pe``) on ``x``, its convolution written as one matrix product over the patches.

    A patchify convolution is a linear map of each patch; as a matrix product its backward into the pixels is one
    more product, where the convolution's backward kernel costs about three times as much on the CPU (DeiT-Tiny,
    224 px: 2.6 ms against 0.8 ms forward+backward, a twentieth of a whole saliency pass). The values equal the
    convolution's up to float rounding. Anything else (another embedding class, a padded or cropped size, a size
    the module refuses, channels-first output) runs the module itself, with its own checks."""
    conv = getattr(pe, "proj", None)
    B, C, H, W = x.shape
    if type(pe).__name__ != "PatchEmbed" or not _patchify_conv(conv):
        return pe(x)
    kh, kw = conv.kernel_size
    strict = getattr(pe, "strict_img_size", False) and getattr(pe, "img_size", None) is not None
    fmt = getattr(getattr(pe, "output_fmt", None), "value", "NCHW")
    if H % kh or W % kw or (strict and (H, W) != tuple(pe.img_size)) or not (pe.flatten or fmt == "NHWC"):
        return pe(x)
    gh, gw = H // kh, W // kw
    patches = x.reshape(B, C, gh, kh, gw, kw).permute(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, C * kh * kw)
    y = F.linear(patches, conv.weight.reshape(conv.out_channels, -1), conv.bias)
    return pe.norm(y if pe.flatten else y.reshape(B, gh, gw, -1))
