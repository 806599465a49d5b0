"""Pieces the Hugging Face adapters share: finding sub-modules by their (version-dependent) names, one encoder
layer as :class:`BlockParts`, preprocessing from an image processor, labels, and calling the model's own forward."""

from __future__ import annotations

import inspect

from torch import nn

from ..errors import UnsupportedModelError
from .core import Preprocessing
from .parts import QKV, BlockParts, Mlp, Scale

__all__ = ["first_attr", "hf_block", "hf_preprocessing", "hf_labels", "call_own"]


def first_attr(obj, *names):
    for n in names:
        cur = obj
        for part in n.split("."):
            cur = getattr(cur, part, None)
            if cur is None:
                break
        if cur is not None:
            return cur
    return None


def _scale(layer, *names):
    for n in names:
        v = getattr(layer, n, None)
        if isinstance(v, nn.Parameter):
            return Scale(owner=layer, name=n)
        if isinstance(v, nn.Module) and not isinstance(v, nn.Identity):
            return Scale(module=v)
    return None


def hf_block(layer, i: int, heads: int, rel_bias=None) -> BlockParts:
    attn = first_attr(layer, "attention.attention", "attention", "self_attn")
    q = first_attr(attn, "q_proj", "query")
    k = first_attr(attn, "k_proj", "key")
    v = first_attr(attn, "v_proj", "value")
    proj = first_attr(attn, "o_proj", "out_proj", "output.dense") or first_attr(layer, "attention.output.dense")
    norm1 = first_attr(layer, "layernorm_before", "norm1", "layer_norm1")
    norm2 = first_attr(layer, "layernorm_after", "norm2", "layer_norm2")
    fc1 = first_attr(layer, "mlp.fc1", "intermediate.dense")
    fc2 = first_attr(layer, "mlp.fc2", "output.dense")
    act = first_attr(layer, "mlp.activation_fn", "mlp.activation", "intermediate.intermediate_act_fn")
    missing = [n for n, m in dict(q=q, k=k, v=v, proj=proj, norm1=norm1, norm2=norm2, fc1=fc1, fc2=fc2, act=act).items()
               if m is None]
    if missing:
        gated = first_attr(layer, "mlp.weights_in", "mlp.fc1_g", "mlp.gate_proj") is not None
        raise UnsupportedModelError(
            f"layer {i} ({type(layer).__name__}): not a standard pre-norm ViT layer (no {', '.join(missing)})"
            + ("; its gated (SwiGLU) MLP is supported in timm's EVA models, not in this Hugging Face class"
               if gated else ""))
    hd = q.out_features // heads
    return BlockParts(norm1=norm1, qkv=QKV(heads, hd, q=q, k=k, v=v), proj=proj, norm2=norm2,
                      mlp=Mlp(fc1=fc1, act=act, fc2=fc2), num_heads=heads, head_dim=hd,
                      scale=float(getattr(attn, "scaling", None) or getattr(attn, "scale", None) or hd ** -0.5),
                      ls1=_scale(layer, "layer_scale1", "lambda_1"), ls2=_scale(layer, "layer_scale2", "lambda_2"),
                      rel_bias=rel_bias)


def hf_preprocessing(proc, size, default_mean=(0.5, 0.5, 0.5), default_std=(0.5, 0.5, 0.5)) -> Preprocessing:
    mean, std = tuple(default_mean), tuple(default_std)
    resize = size
    crop = size
    interp = "bilinear"
    if proc is not None:
        mean = tuple(getattr(proc, "image_mean", None) or mean)
        std = tuple(getattr(proc, "image_std", None) or std)
        s = getattr(proc, "size", None) or {}
        s = dict(s) if not isinstance(s, int) else {"shortest_edge": s}
        cs = getattr(proc, "crop_size", None)
        if "height" in s and "width" in s:
            resize = (int(s["height"]), int(s["width"]))
        elif "shortest_edge" in s:
            resize = int(s["shortest_edge"])
        if bool(getattr(proc, "do_center_crop", False)) and cs:
            cs = dict(cs)
            crop = (int(cs["height"]), int(cs["width"]))
        elif isinstance(resize, tuple):
            crop = resize
        resample = getattr(proc, "resample", None)
        interp = {3: "bicubic", 2: "bilinear", 0: "nearest"}.get(int(resample) if resample is not None else 2,
                                                                "bilinear")
    return Preprocessing(input_size=tuple(crop), resize=resize, mean=mean, std=std, interpolation=interp)


def hf_labels(config, n: int) -> list[str]:
    from .timm_vit import imagenet_labels

    id2label = getattr(config, "id2label", None) or {}
    labels = [str(id2label.get(i, id2label.get(str(i), f"class {i}"))) for i in range(n)]
    if n and all(lab.startswith("LABEL_") or lab.startswith("class ") for lab in labels):
        return imagenet_labels(n)
    return labels


def call_own(fn, x):
    """Call an HF forward with ``interpolate_pos_encoding=True`` when it takes that argument."""
    params = inspect.signature(fn).parameters
    if "interpolate_pos_encoding" in params:
        return fn(pixel_values=x, interpolate_pos_encoding=True)
    return fn(pixel_values=x)
