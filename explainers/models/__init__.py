"""Model backends: one wrapper, :class:`ViTModel`, over timm, Hugging Face and torchvision Vision Transformers,
with one small adapter file per model family (``timm_vit``, ``timm_eva``, ``timm_relbias``, ``hf_vit``,
``hf_clip``, ``torchvision_vit``) over the shared parts (:mod:`.parts`) and passes (:mod:`.blocks`)."""

from .adapters import ADAPTERS, adapter_for, wrap
from .blocks import Context, Outputs, Trace
from .core import Adapter, Preprocessing, ViTModel, resolve_device
from .loading import load_model, model_summary
from .parts import POOLINGS, BlockParts, Pooling

HeadParts = Pooling  # the name of earlier versions


def wrap_timm(model, name=None, device=None, weights_path=None) -> ViTModel:
    """Wrap an already built timm model."""
    return wrap(model, name, device, weights_path=weights_path)


def wrap_hf(model, name=None, device=None, proc=None, weights_path=None) -> ViTModel:
    """Wrap an already built Hugging Face model (``proc``: its image processor)."""
    return wrap(model, name, device, proc=proc, weights_path=weights_path)


__all__ = ["ADAPTERS", "Adapter", "BlockParts", "Context", "HeadParts", "Outputs", "POOLINGS", "Pooling",
           "Preprocessing", "Trace", "ViTModel", "adapter_for", "load_model", "model_summary", "resolve_device",
           "wrap", "wrap_hf", "wrap_timm"]
