"""The family adapters, tried in order: adding a family is one file and one line here."""

from __future__ import annotations

from ..errors import UnsupportedModelError
from .core import ViTModel, resolve_device
from .hf_clip import HFClip
from .hf_vit import HFBeit, HFViT
from .open_clip_vit import OpenClipViT
from .timm_eva import TimmEva
from .timm_relbias import TimmBeit, TimmRelPos
from .timm_vit import TimmViT
from .torchvision_vit import TorchvisionViT

__all__ = ["ADAPTERS", "adapter_for", "wrap"]

ADAPTERS = [TimmViT, TimmEva, TimmBeit, TimmRelPos, HFViT, HFBeit, HFClip, TorchvisionViT, OpenClipViT]


def adapter_for(module):
    for cls in ADAPTERS:
        try:
            if cls.matches(module):
                return cls()
        except ImportError:  # pragma: no cover - an optional library missing
            continue
    raise UnsupportedModelError(
        f"{type(module).__name__} is not a supported Vision Transformer (supported: "
        f"{', '.join(a.family for a in ADAPTERS)}); ConvNets, Swin and other windowed-attention models are not")


def wrap(module, name: str | None = None, device=None, proc=None, weights_path=None, labels=None) -> ViTModel:
    """Wrap an already built model (timm, Hugging Face or torchvision) for the explainers."""
    adapter = adapter_for(module)
    device = next(module.parameters()).device if device is None else resolve_device(device)
    module.eval().to(device)
    if name is None:
        cfg = getattr(module, "pretrained_cfg", None) or {}
        name = cfg.get("architecture") or getattr(getattr(module, "config", None), "_name_or_path", "") \
            or type(module).__name__
    return ViTModel(module, adapter, name, device, proc=proc, weights_path=weights_path, labels=labels)
