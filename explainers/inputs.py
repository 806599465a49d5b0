"""Checks of an image tensor given directly as the model input (issue 17, item 5).

A tensor passed to :func:`explainers.explain` (or ``capture``) is taken as *already preprocessed*: float
values, normalised with the model's mean and std. :func:`check_input_tensor` refuses, with an
:class:`~explainers.errors.ImageError` naming the fix, what would otherwise be explained wrongly or crash:

* not a tensor, a meta tensor (no data), a sparse or quantised tensor;
* uint8, bool and other integer tensors: raw pixels are never silently normalised (the library cannot
  tell 0-255 from 0-1 from normalised values); the message says how to convert them;
* complex tensors; other shapes than (3, H, W) or (B, 3, H, W); an empty batch or no pixels;
* more than ``MAX_TENSOR_PIXELS`` per image or ``MAX_TENSOR_BATCH`` images: attention memory grows with the
  square of the number of patches (a 1x3x896x896 input cost 2.6-3.6 GB on DeiT-Tiny);
* NaN or infinite values (they would give NaN logits, a NaN probability and a meaningless target);
* finite values beyond ``MAX_TENSOR_ABS`` in magnitude (1e30 gave NaN logits, target 0 with probability NaN): a
  preprocessed image lies within about ±3, raw 0-255 pixels within 255.
"""

from __future__ import annotations

import torch

from .errors import ImageError

__all__ = ["MAX_TENSOR_PIXELS", "MAX_TENSOR_BATCH", "MAX_TENSOR_ABS", "check_input_tensor", "check_outputs"]

MAX_TENSOR_PIXELS = 518 * 518  # per image: 224, 384, 448 and DINOv2's 518 inputs pass
MAX_TENSOR_BATCH = 64  # images per call
MAX_TENSOR_ABS = 1e6  # |value|: far above any preprocessed image, far below what overflows float32 attention

_CONVERT = ("pass the image itself (a PIL image, numpy array, path or bytes) so the model's preprocessing "
            "is applied, or convert it: x = model.preprocess(PIL.Image.fromarray(array)) for one image, or "
            "((x.float() / 255) - mean) / std with mean and std from model.preprocessing")


def check_input_tensor(x, max_pixels: int | None = None, max_batch: int | None = None) -> torch.Tensor:
    """Return ``x`` unchanged when it is a usable model input (see the module docstring); raise
    :class:`ImageError` otherwise. ``max_pixels`` (H x W per image) and ``max_batch`` default to
    ``MAX_TENSOR_PIXELS`` and ``MAX_TENSOR_BATCH``."""
    max_pixels = MAX_TENSOR_PIXELS if max_pixels is None else max_pixels
    max_batch = MAX_TENSOR_BATCH if max_batch is None else max_batch
    if not isinstance(x, torch.Tensor):
        raise ImageError(f"expected an image tensor, got {type(x).__name__}")
    if x.is_meta:
        raise ImageError("the input is a meta tensor (a shape without data); create it on 'cpu' or 'cuda', "
                         "or pass the image itself")
    if x.layout != torch.strided:
        raise ImageError(f"the input tensor has layout {x.layout}; pass a dense tensor (x.to_dense())")
    if x.is_quantized:
        raise ImageError("the input tensor is quantised; pass a float tensor (x.dequantize())")
    if x.dtype == torch.bool or not (x.is_floating_point() or x.is_complex()):
        raise ImageError(f"the input tensor has dtype {x.dtype}: raw pixels are not a model input (they are "
                         f"never normalised silently); {_CONVERT}")
    if x.is_complex():
        raise ImageError(f"the input tensor has complex dtype {x.dtype}; pass a real float tensor")
    if x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise ImageError(f"expected an image tensor of shape (3, H, W) or (B, 3, H, W), got {tuple(x.shape)}")
    if x.dim() == 4 and x.shape[0] == 0:
        raise ImageError("the input batch is empty (0 images); pass at least one image")
    h, w = x.shape[-2:]
    if h == 0 or w == 0:
        raise ImageError(f"the input tensor has no pixels (shape {tuple(x.shape)})")
    if h * w > max_pixels:
        raise ImageError(
            f"the input tensor is {h}x{w} pixels per image, above the limit of {max_pixels:,} pixels "
            f"(e.g. {int(max_pixels ** 0.5)}x{int(max_pixels ** 0.5)}): memory grows with the square of the number "
            "of patches. Resize it, or pass the image itself so that model.preprocess() fits it to the model")
    batch = x.shape[0] if x.dim() == 4 else 1
    if batch > max_batch:
        raise ImageError(f"the input batch has {batch} images, above the limit of {max_batch} per call; "
                         "split it into smaller batches")
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ImageError(f"the input tensor contains {bad} NaN or infinite value(s); an explanation of it would be "
                         "meaningless. Replace them (torch.nan_to_num) or check the code that produced it")
    peak = float(x.detach().abs().max())
    if peak > MAX_TENSOR_ABS:
        raise ImageError(f"the input tensor has values up to {peak:.3g} in magnitude, above the limit of "
                         f"{MAX_TENSOR_ABS:.0e}: a preprocessed image lies within about ±3, and such values overflow "
                         f"the model's arithmetic (NaN outputs). {_CONVERT}")
    return x


def check_outputs(cap) -> None:
    """Refuse a capture whose clean outputs are not finite (NaN or infinite logits or target scores): its target
    and probability would be meaningless. Raised as an :class:`ImageError`: the input (or the weights) overflowed
    the model's arithmetic."""
    for what, t in (("logits", cap.logits), ("target scores", cap.target_scores)):
        if t is not None and not bool(torch.isfinite(t.detach()).all()):
            raise ImageError(f"the model's {what} for this input are not finite (NaN or infinite), so its prediction "
                             "and any explanation of it are meaningless; check the input's values (a preprocessed "
                             "image lies within about ±3) and the model's weights")
