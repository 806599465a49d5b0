"""Class targets given as numbers: which values mean a class index (:func:`class_index`) and how a target for a
batch is read (:func:`class_values`). Shared by the target objects (:mod:`explainers.targets`), the early check of
:func:`explainers.registry.check_target` and the metrics, so that they all accept and refuse the same values."""

from __future__ import annotations

import numbers
from decimal import Decimal

import torch

__all__ = ["class_index", "class_values"]


def class_index(v) -> int | None:
    """An integral class value as an int: int, numpy or 0-d tensor/array integer, an integer-valued float,
    ``Decimal`` or ``Fraction``; None for anything else (a bool, 1.5, NaN, text)."""
    if getattr(v, "ndim", None) == 0 and hasattr(v, "item") and not isinstance(v, (int, float)):
        v = v.item()  # numpy scalars, 0-d arrays and tensors
    if isinstance(v, bool):
        return None
    if isinstance(v, numbers.Integral) or (hasattr(v, "__index__") and not hasattr(v, "ndim")):
        return int(v)
    if isinstance(v, float):
        return int(v) if v.is_integer() else None
    if isinstance(v, Decimal):
        return int(v) if v.is_finite() and v == v.to_integral_value() else None
    if isinstance(v, numbers.Rational):
        return int(v) if v.denominator == 1 else None
    return None


def class_values(spec) -> list:
    """The class values of a target given as one value, a list/tuple, or a tensor or numpy array of any shape
    (one value per image of a batch), flattened; each is checked by :func:`class_index`."""
    if isinstance(spec, torch.Tensor) or (getattr(spec, "ndim", 0) and hasattr(spec, "reshape")):
        return list(spec.reshape(-1).tolist())
    if isinstance(spec, (list, tuple)):
        return list(spec)
    return [spec]
