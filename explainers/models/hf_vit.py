"""Hugging Face ViT-style encoders: ViT, DeiT (distilled too), DINOv2 (with registers too), I-JEPA, BEiT and
Data2Vec-Vision (relative position bias), as classifiers or as headless base models."""

from __future__ import annotations

import inspect

from ..errors import UnsupportedModelError
from .blocks import Context, Outputs
from .core import Adapter, Preprocessing
from .hf_common import call_own, first_attr, hf_block, hf_labels, hf_preprocessing
from .parts import Pooling

__all__ = ["HFViT", "HFBeit"]

PREFIXES = ("ViT", "DeiT", "Dinov2", "Dinov2WithRegisters", "IJepa")


def _base(model):
    return getattr(model, model.base_model_prefix, None) if hasattr(model, "classifier") or hasattr(
        model, "cls_classifier") else model


def _kind(model) -> str:
    name = type(model).__name__
    for suffix in ("ForImageClassificationWithTeacher", "ForImageClassification", "Model"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return ""


class HFViT(Adapter):
    family = "Hugging Face ViT / DeiT / DINOv2 / I-JEPA"
    source = "hf"
    families = PREFIXES

    @classmethod
    def matches(cls, module) -> bool:
        return type(module).__module__.startswith("transformers.") and _kind(module) in cls.families

    def _layers(self, base):
        layers = first_attr(base, "layers", "encoder.layer", "encoder.layers")
        if layers is None:
            raise UnsupportedModelError(f"{type(base).__name__}: could not find the transformer layers")
        return layers

    def rel_bias(self, model, base, layer):
        return None

    def parts(self, model):
        base = _base(model)
        cfg = model.config
        heads = int(cfg.num_attention_heads)
        blocks = [hf_block(layer, i, heads, self.rel_bias(model, base, layer)) for i, layer in
                  enumerate(self._layers(base))]
        emb = base.embeddings
        n_prefix = (1 if getattr(emb, "cls_token", None) is not None else 0) + \
            (1 if getattr(emb, "distillation_token", None) is not None else 0) + \
            int(getattr(cfg, "num_register_tokens", 0) or 0)
        ps = cfg.patch_size if isinstance(cfg.patch_size, (tuple, list)) else (cfg.patch_size, cfg.patch_size)
        return blocks, self.pooling(model, base, n_prefix), n_prefix, ps

    def pooling(self, model, base, n_prefix) -> Pooling:
        norm = first_attr(base, "layernorm")
        if hasattr(model, "distillation_classifier"):
            return Pooling("dist", norm=norm, head=model.cls_classifier, head_dist=model.distillation_classifier)
        head = getattr(model, "classifier", None)
        if head is not None and not hasattr(head, "out_features"):
            raise UnsupportedModelError(f"{type(model).__name__}: the classifier is not a single linear layer")
        kind = _kind(model)
        if head is not None and kind.startswith("Dinov2"):
            return Pooling("token_avg", norm=norm, head=head)
        if kind == "IJepa":
            return Pooling("avg", norm=norm, head=head)
        return Pooling("token", norm=norm, head=head)

    def embed(self, model, x):
        emb = _base(model).embeddings
        takes = "interpolate_pos_encoding" in inspect.signature(emb.forward).parameters
        t = emb(x, interpolate_pos_encoding=True) if takes else emb(x)
        if isinstance(t, tuple):  # Data2Vec-Vision also returns the patch grid
            t = t[0]
        ph, pw = self._patch(model)
        return t, Context(grid=(x.shape[-2] // ph, x.shape[-1] // pw))

    def _patch(self, model):
        ps = model.config.patch_size
        return tuple(ps) if isinstance(ps, (tuple, list)) else (ps, ps)

    def patch_conv(self, model):
        return _base(model).embeddings.patch_embeddings.projection

    def own_outputs(self, model, x) -> Outputs:
        out = call_own(model.forward, x)
        if getattr(out, "logits", None) is not None:
            return Outputs(None, out.logits)
        pooled = self.pooling(model, _base(model), 0)
        h = out.last_hidden_state
        return Outputs(h[:, 0] if pooled.kind == "token" else h.mean(1), None)

    def preprocessing(self, model, proc=None) -> Preprocessing:
        size = model.config.image_size
        size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        return hf_preprocessing(proc, size)

    def labels(self, model, n):
        return hf_labels(model.config, n)


class HFBeit(HFViT):
    family = "Hugging Face BEiT / Data2Vec-Vision"
    families = ("Beit", "Data2VecVision")

    def rel_bias(self, model, base, layer):
        own = getattr(layer, "relative_position_bias", None) or first_attr(
            layer, "attention.attention.relative_position_bias")  # BEiT keeps it on the layer, Data2Vec deeper
        shared = getattr(base, "shared_position_bias", None) or first_attr(base, "encoder.relative_position_bias")
        return HFBeitBias(own, shared) if (own is not None or shared is not None) else None

    def pooling(self, model, base, n_prefix) -> Pooling:
        head = getattr(model, "classifier", None)
        pooler = getattr(base, "pooler", None)
        if pooler is not None and getattr(pooler, "layernorm", None) is not None:  # use_mean_pooling
            return Pooling("avg", norm=None, fc_norm=pooler.layernorm, head=head)
        return Pooling("token", norm=first_attr(base, "layernorm"), head=head)

    def own_outputs(self, model, x) -> Outputs:
        out = call_own(model.forward, x)
        if getattr(out, "logits", None) is not None:
            return Outputs(None, out.logits)
        return Outputs(out.pooler_output, None) if out.pooler_output is not None else Outputs(None, None)


class HFBeitBias:
    """The layer's own relative position bias plus the model's shared one, at the pass's grid (HF interpolates the
    tables to other grids)."""

    def __init__(self, own, shared):
        self.own, self.shared = own, shared

    def bias(self, grid, n_tokens):
        import torch

        b = 0.0
        # the bias depends on parameters only (no gradient reaches the input through it), and HF caches its index
        # tensor, which may have been made under inference mode: compute it outside autograd
        with torch.no_grad():
            for m in (self.own, self.shared):
                if m is not None:
                    b = b + m(tuple(grid), interpolate_pos_encoding=True, dim_size=n_tokens)
        return b
