"""open_clip's ``VisionTransformer`` image tower (OpenAI CLIP, LAION / DataComp OpenCLIP ViTs), wrapped with the
whole ``CLIP`` model so that the text tower is at hand for text prompts (:mod:`explainers.text`).

Blocks: ``ResidualAttentionBlock`` (``nn.MultiheadAttention`` with a packed in-projection, optional LayerScale),
pre-norm ``ln_pre``, class-token or average pooling, ``ln_post`` and the ``proj`` matrix into the image-text space.
open_clip models whose image tower is a timm model (its SigLIP ports) or a CoCa attention pooler are refused.
Loading: ``open_clip:ViT-B-16/openai`` (a model name and a pretrained tag) or ``hf-hub:timm/...``."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelLoadError, UnsupportedModelError
from .blocks import Context, Outputs
from .core import Adapter, Preprocessing
from .parts import QKV, BlockParts, LinearView, Mlp, Pooling, Scale

__all__ = ["OpenClipViT", "load_open_clip", "PREFIXES"]

PREFIXES = ("open_clip:", "hf-hub:")


class ProjView:
    """``x @ proj`` for a (in, out) parameter, read on each call: a linear map with weight ``proj.T``."""

    def __init__(self, owner, name: str = "proj"):
        self.owner, self.name = owner, name

    @property
    def weight(self) -> torch.Tensor:
        return getattr(self.owner, self.name).T

    bias = None

    @property
    def out_features(self) -> int:
        return getattr(self.owner, self.name).shape[1]

    @property
    def in_features(self) -> int:
        return getattr(self.owner, self.name).shape[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x @ getattr(self.owner, self.name)


def visual_of(module):
    return getattr(module, "visual", module)


def _real(m):
    return None if m is None or isinstance(m, torch.nn.Identity) else m


class OpenClipViT(Adapter):
    family = "open_clip CLIP image tower"
    source = "open_clip"
    any_size = False  # open_clip's own forward runs at the built input size only

    @classmethod
    def matches(cls, module) -> bool:
        from open_clip.transformer import VisionTransformer

        return isinstance(visual_of(module), VisionTransformer) or type(visual_of(module)).__name__ == "TimmModel"

    def parts(self, module):
        vis = visual_of(module)
        if type(vis).__name__ == "TimmModel":
            raise UnsupportedModelError(
                "this open_clip model's image tower is a timm model (open_clip's SigLIP ports); load its Hugging Face "
                "version instead (e.g. google/siglip-base-patch16-224)")
        if vis.attn_pool is not None:
            raise UnsupportedModelError("open_clip towers with an attention pooler (CoCa) are not supported")
        blocks = []
        for i, blk in enumerate(vis.transformer.resblocks):
            mha = getattr(blk, "attn", None)
            if type(blk).__name__ != "ResidualAttentionBlock" or not isinstance(mha, torch.nn.MultiheadAttention):
                raise UnsupportedModelError(
                    f"block {i}: {type(blk).__name__} is not supported (open_clip's ResidualAttentionBlock with "
                    "nn.MultiheadAttention is)")
            D, H = mha.embed_dim, mha.num_heads
            mlp = blk.mlp
            ls1, ls2 = _real(blk.ls_1), _real(blk.ls_2)
            blocks.append(BlockParts(
                norm1=blk.ln_1, qkv=QKV(H, D // H, fused=LinearView(mha, "in_proj_weight", "in_proj_bias")),
                proj=mha.out_proj, norm2=blk.ln_2, mlp=Mlp(fc1=mlp.c_fc, act=mlp.gelu, fc2=mlp.c_proj),
                num_heads=H, head_dim=D // H, scale=(D // H) ** -0.5,
                ls1=Scale(module=ls1) if ls1 is not None else None, ls2=Scale(module=ls2) if ls2 is not None else None))
        proj = ProjView(vis) if getattr(vis, "proj", None) is not None else None
        if vis.pool_type == "tok":  # LayerNorm per token: before or after taking the class token is the same
            pool = Pooling("token", fc_norm=vis.ln_post, proj=proj)
        elif vis.pool_type == "avg":
            pool = Pooling("avg", fc_norm=vis.ln_post, proj=proj) if vis.final_ln_after_pool else \
                Pooling("avg", norm=vis.ln_post, proj=proj)
        else:
            raise UnsupportedModelError(f"open_clip pool_type={vis.pool_type!r} is not supported (tok and avg are)")
        return blocks, pool, 1, tuple(vis.patch_size)

    def embed(self, module, x):
        vis = visual_of(module)
        t = vis.conv1(x).flatten(2).transpose(1, 2)
        cls = vis.class_embedding.to(t.dtype).expand(t.shape[0], 1, -1)
        t = torch.cat([cls, t], dim=1) + vis.positional_embedding.to(t.dtype)
        t = vis.ln_pre(t)
        ph, pw = vis.patch_size
        return t, Context(grid=(x.shape[-2] // ph, x.shape[-1] // pw))

    def patch_conv(self, module):
        return visual_of(module).conv1

    def own_outputs(self, module, x) -> Outputs:
        vis = visual_of(module)
        if tuple(x.shape[-2:]) != tuple(vis.image_size):
            raise UnsupportedModelError("open_clip's own forward runs at its built input size only")
        return Outputs(module.encode_image(x) if hasattr(module, "encode_image") else vis(x), None)

    def preprocessing(self, module, proc=None) -> Preprocessing:
        vis = visual_of(module)
        cfg = getattr(vis, "preprocess_cfg", None) or {}
        size = tuple(cfg.get("size", vis.image_size))
        size = (size[0], size[0]) if len(size) == 1 else size
        mean = tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
        std = tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
        resize = size if cfg.get("resize_mode") == "squash" else min(size)
        return Preprocessing(input_size=size, resize=resize, mean=mean, std=std,
                             interpolation=cfg.get("interpolation", "bicubic"))


def split_name(name: str) -> tuple[str, str | None]:
    """``open_clip:ViT-B-16/openai`` -> ("ViT-B-16", "openai"); ``hf-hub:org/repo`` -> (the name, None)."""
    if name.startswith("hf-hub:"):
        return name, None
    base = name.removeprefix("open_clip:")
    arch, _, tag = base.partition("/")
    return arch, (tag or None)


def load_open_clip(name: str, weights, device, limit: int | None = None):
    """Build an open_clip model by name (the whole CLIP: image and text towers) and wrap its image tower.
    limit: the operator's parameter limit, checked on the meta device before anything is built or downloaded."""
    from .._extras import require
    from ..errors import WeightsUnavailableError

    open_clip = require("open_clip", f"{name} (an open_clip model)")
    from .adapters import wrap
    from .guards import check_size, need_hub

    arch, tag = split_name(name)
    if not name.startswith("hf-hub:") and arch not in open_clip.list_models():
        raise ModelLoadError(f"unknown open_clip model {arch!r}; open_clip.list_models() lists them "
                             "(e.g. open_clip:ViT-B-16/openai)")
    pretrained, weights_path = tag, None
    if weights == "random":
        pretrained = None
    elif weights is not None:
        weights_path = Path(weights)
        if not weights_path.is_file():
            raise ModelLoadError(f"open_clip weights must be a checkpoint file; {weights_path.name!r} is not one")
        pretrained = str(weights_path)
    elif tag is None and not name.startswith("hf-hub:"):
        raise ModelLoadError(f"{name!r} names no pretrained tag: use open_clip:{arch}/<tag> (tags: "
                             f"{', '.join(open_clip.list_pretrained_tags_by_model(arch)[:6]) or 'none'}), "
                             "weights=<checkpoint file>, or weights='random'")
    if name.startswith("hf-hub:"):
        need_hub(name)  # even its configuration comes from the hub
    check_size(name, lambda: open_clip.create_model(arch, pretrained=None, device="meta"), limit)
    if pretrained is not None and weights_path is None:
        need_hub(name)
    try:
        module = open_clip.create_model(arch, pretrained=pretrained, device="cpu")
    except RuntimeError as e:
        raise ModelLoadError(f"could not build open_clip model {name!r}: {str(e)[:200]}") from None
    except Exception as e:  # hub download failures
        raise WeightsUnavailableError(
            f"could not download the open_clip weights of {name!r} ({type(e).__name__}: {str(e)[:200]}); offline, "
            "pass weights=<the checkpoint file> (command line: --weights PATH)") from None
    return wrap(module, name, device, weights_path=weights_path)

