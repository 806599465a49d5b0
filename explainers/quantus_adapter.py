"""Use the explainers from Quantus (Hedström et al., JMLR 2023): pass :func:`explain_func` as ``explain_func``.

    import quantus
    from explainers.quantus_adapter import LogitsModule, explain_func

    model = explainers.load_model("deit_tiny_patch16_224", weights=...)
    net = LogitsModule(model)                     # a torch module returning logits (what Quantus calls)
    x = model.preprocess(image).numpy()           # Quantus's x_batch: the model input, (N, 3, H, W)
    metric = quantus.RandomLogit(num_classes=model.num_classes)
    metric(model=net, x_batch=x, y_batch=y, explain_func=explain_func,
           explain_func_kwargs={"method": "chefer_rollout"})

Quantus calls ``explain_func(model=<torch module>, inputs=<array>, targets=<array>, **explain_func_kwargs)`` and
expects one map per input; :func:`explain_func` returns them as ``(N, 1, H, W)`` float32 arrays at the input
size. The torch module may be a :class:`LogitsModule`, a timm / Hugging Face / torchvision ViT, or an
:class:`explainers.ViTModel`; it is wrapped on each call, so a module Quantus has randomised in place (MPRT) is
explained as it is now. ``output="heatmap"`` (default) gives ``Explanation.heatmap`` (min-max scaled to [0, 1]);
``output="raw"`` the method's raw map, bilinearly upsampled (signed, unscaled).
"""

from __future__ import annotations

import weakref

import numpy as np
import torch
from torch import nn

from .errors import InvalidParameterError

__all__ = ["explain_func", "LogitsModule"]

_WRAPPERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class LogitsModule(nn.Module):
    """A torch module around an explainers model whose ``forward`` returns the logits tensor (Quantus calls
    ``model(x)``; Hugging Face models return an output object). Holds only the underlying torch model, so
    Quantus can deep-copy and randomise it."""

    def __init__(self, model):
        super().__init__()
        self.inner = model.module if hasattr(model, "trace") else model
        self.name = getattr(model, "name", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out.logits if hasattr(out, "logits") else out


def _wrapper(model):
    if hasattr(model, "trace") and hasattr(model, "blocks"):
        return model
    name = None
    if isinstance(model, LogitsModule):
        name, model = model.name, model.inner
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(f"model must be a torch module or an explainers model, got {type(model).__name__}")
    vit = _WRAPPERS.get(model)
    if vit is None:
        from .models import wrap

        vit = wrap(model, name)
        _WRAPPERS[model] = vit
    return vit


def explain_func(model, inputs, targets=None, method: str = "attention_rollout", output: str = "heatmap",
                 device=None, **params) -> np.ndarray:
    """Quantus-style explanation function: one ``(N, 1, H, W)`` float32 map per input of ``inputs``
    (array or tensor, (N, 3, H, W) model input), for ``targets`` (array of N classes, an int, or None for the
    predicted class). ``method`` and ``params`` are those of :func:`explainers.explain`; ``device`` (which
    Quantus passes along) is ignored: the maps are computed where the model lives."""
    from .api import explain, upsample

    if output not in ("heatmap", "raw"):
        raise InvalidParameterError(f"output must be 'heatmap' or 'raw', got {output!r}")
    vit = _wrapper(model)
    x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs)
    if x.dim() == 3:
        x = x[None]
    n = x.shape[0]
    if targets is None:
        ts = [None] * n
    else:
        ts = np.broadcast_to(np.asarray(targets).reshape(-1), (n,)).tolist()
    out = np.empty((n, 1, *x.shape[-2:]), dtype=np.float32)
    for i in range(n):
        exp = explain(vit, x[i:i + 1].float(), method, target=None if ts[i] is None else int(ts[i]), **params)
        if output == "heatmap":
            out[i, 0] = exp.heatmap
        else:
            out[i, 0] = upsample(torch.from_numpy(exp.patch_map)[None], tuple(x.shape[-2:]))[0].numpy()
    return out
