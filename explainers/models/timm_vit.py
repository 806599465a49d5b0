"""timm ``VisionTransformer``: ViT, DeiT (distilled too), DeiT-3, DINOv2, register models, average-pool heads,
SigLIP (average pool or attention-pool probe), CLIP image towers (explained as embedding models), backbones.

Also the pieces every timm family shares: MLP variants, LayerScale, preprocessing and ImageNet labels."""

from __future__ import annotations

import math

from torch import nn

from ..errors import UnsupportedModelError
from . import fast
from .blocks import Context, Outputs
from .core import Adapter, Preprocessing
from .parts import QKV, BlockParts, LinearView, Mlp, Pooling, Probe, Scale

__all__ = ["TimmAdapter", "TimmViT", "timm_mlp", "timm_scale", "timm_preprocessing", "imagenet_labels", "real_or_none"]

CLASS_COUNTS = (1000, 11821, 21841, 21843, 11221)


def real_or_none(m):
    return None if m is None or isinstance(m, nn.Identity) else m


def timm_scale(block, name: str):
    """LayerScale as a module (``ls1``) or a parameter (``gamma_1``), or None."""
    obj = getattr(block, name, None)
    if obj is None or isinstance(obj, nn.Identity):
        return None
    if isinstance(obj, nn.Parameter):
        return Scale(owner=block, name=name)
    return Scale(module=obj)


def timm_mlp(mlp, where: str) -> Mlp:
    """timm ``Mlp``, ``GluMlp`` (fused SwiGLU) and ``SwiGLU`` as an :class:`Mlp`."""
    kind = type(mlp).__name__
    norm = real_or_none(getattr(mlp, "norm", None))
    if kind == "SwiGLU":
        return Mlp(fc1=None, act=mlp.act, fc2=mlp.fc2, mid_norm=norm, fc1_g=mlp.fc1_g, fc1_x=mlp.fc1_x)
    if kind == "GluMlp":
        if getattr(mlp, "chunk_dim", -1) not in (-1, 2):
            raise UnsupportedModelError(f"{where}: GluMlp split along dim {mlp.chunk_dim} is not supported")
        h = mlp.fc1.out_features // 2
        first, second = LinearView(mlp.fc1, rows=slice(0, h)), LinearView(mlp.fc1, rows=slice(h, 2 * h))
        g, x = (second, first) if getattr(mlp, "gate_last", False) else (first, second)
        return Mlp(fc1=None, act=mlp.act, fc2=mlp.fc2, mid_norm=norm, fc1_g=g, fc1_x=x)
    if kind == "Mlp" and all(hasattr(mlp, a) for a in ("fc1", "act", "fc2")):
        return Mlp(fc1=mlp.fc1, act=mlp.act, fc2=mlp.fc2, mid_norm=norm)
    raise UnsupportedModelError(f"{where}: MLP type {kind} is not supported (plain MLPs and SwiGLU are)")


def imagenet_labels(n: int) -> list[str]:
    if n in CLASS_COUNTS:
        try:
            from timm.data import ImageNetInfo, infer_imagenet_subset

            info = ImageNetInfo(infer_imagenet_subset(n) if n != 1000 else "imagenet-1k")
            return [info.index_to_description(i) for i in range(n)]
        except Exception:  # pragma: no cover - label files missing
            pass
    return [f"class {i}" for i in range(n)]


def timm_preprocessing(module) -> Preprocessing:
    import timm

    cfg = timm.data.resolve_model_data_config(module)
    H, W = module.patch_embed.img_size  # the size the position embeddings were made for
    if tuple(cfg["input_size"][1:]) != (H, W):
        cfg["crop_pct"] = 1.0
    crop_pct = cfg.get("crop_pct", 1.0) or 1.0
    arch = str((getattr(module, "pretrained_cfg", None) or {}).get("architecture", ""))
    if arch.startswith("deit_") and (H, W) == (224, 224):
        crop_pct = 0.875  # DeiT's own evaluation transform (resize 256, crop 224), not timm's 0.9: 70 vs 66 of 100
    if cfg.get("crop_mode", "center") == "squash":
        resize = (int(H / crop_pct), int(W / crop_pct))
    else:
        resize = int(math.floor(min(H, W) / crop_pct))
    return Preprocessing(input_size=(H, W), resize=resize, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                         interpolation=cfg.get("interpolation", "bicubic"))


def _check_attention(attn, where: str) -> None:
    if getattr(attn, "gate", None) is not None:
        raise UnsupportedModelError(f"{where}: gated attention (an output gate) is not supported")
    if not isinstance(getattr(attn, "qkv", None), nn.Linear):
        raise UnsupportedModelError(f"{where}: attention without a fused qkv Linear is not supported")


def _timm_probe(ap) -> Probe:
    D = ap.kv.in_features
    return Probe(owner=ap, latent_name="latent", q=ap.q, k=LinearView(ap.kv, rows=slice(0, D)),
                 v=LinearView(ap.kv, rows=slice(D, 2 * D)), proj=ap.proj, num_heads=ap.num_heads,
                 head_dim=ap.head_dim, scale=float(ap.scale), norm=real_or_none(getattr(ap, "norm", None)),
                 mlp=timm_mlp(ap.mlp, "attention pool") if real_or_none(getattr(ap, "mlp", None)) else None,
                 q_norm=real_or_none(getattr(ap, "q_norm", None)), k_norm=real_or_none(getattr(ap, "k_norm", None)),
                 pos_embed_name="pos_embed" if getattr(ap, "pos_embed", None) is not None else None,
                 pool=getattr(ap, "pool", "token"))


def embedding_model(module) -> bool:
    """A CLIP/SigLIP image tower whose 'head' is the projection into the shared image-text space."""
    cfg = getattr(module, "pretrained_cfg", None) or {}
    name = f"{cfg.get('architecture', '')}.{cfg.get('tag', '')}".lower()
    head = real_or_none(getattr(module, "head", None))
    return (("clip" in name or "siglip" in name) and "ft_" not in name and head is not None
            and head.out_features == cfg.get("num_classes") and head.out_features not in CLASS_COUNTS)


class TimmAdapter(Adapter):
    """What every timm family reads the same way: patch embedding, preprocessing, labels, its own forward."""

    source = "timm"

    def patch_embed(self, module, x):
        p = fast.patch_embed(module.patch_embed, x)
        return p.reshape(p.shape[0], -1, p.shape[-1])

    def patch_conv(self, module):
        return module.patch_embed.proj

    def own_outputs(self, module, x) -> Outputs:
        emb = module.forward_head(module.forward_features(x), pre_logits=True)
        head = real_or_none(module.head)
        return Outputs(emb, head(emb) if head is not None else None)

    def preprocessing(self, module, proc=None) -> Preprocessing:
        return timm_preprocessing(module)

    def labels(self, module, n):
        return imagenet_labels(n)


class TimmViT(TimmAdapter):
    family = "timm ViT"

    @classmethod
    def matches(cls, module) -> bool:
        from timm.models.vision_transformer import VisionTransformer

        return isinstance(module, VisionTransformer)

    def parts(self, module):
        blocks = []
        for i, blk in enumerate(module.blocks):
            where = f"block {i}"
            if type(blk).__name__ != "Block":
                raise UnsupportedModelError(
                    f"{where}: block type {type(blk).__name__} is not supported (pre-norm blocks are; post-norm and "
                    "parallel blocks are not)")
            attn = blk.attn
            _check_attention(attn, where)
            blocks.append(BlockParts(
                norm1=blk.norm1, qkv=QKV(attn.num_heads, attn.head_dim, fused=attn.qkv), proj=attn.proj,
                norm2=blk.norm2, mlp=timm_mlp(blk.mlp, where), num_heads=attn.num_heads, head_dim=attn.head_dim,
                scale=float(attn.scale), ls1=timm_scale(blk, "ls1"), ls2=timm_scale(blk, "ls2"),
                q_norm=real_or_none(attn.q_norm), k_norm=real_or_none(attn.k_norm),
                attn_norm=real_or_none(getattr(attn, "norm", None))))
        return blocks, self.pooling(module), module.num_prefix_tokens, module.patch_embed.patch_size

    def pooling(self, module) -> Pooling:
        norm = real_or_none(module.norm)
        head = real_or_none(module.head)
        if getattr(module, "head_dist", None) is not None:
            return Pooling("dist", norm=norm, head=module.head, head_dist=module.head_dist)
        fc_norm = real_or_none(getattr(module, "fc_norm", None))
        proj = None
        if head is not None and embedding_model(module):
            head, proj = None, head
        if getattr(module, "attn_pool", None) is not None:
            return Pooling("map", norm=norm, fc_norm=fc_norm, head=head, proj=proj, probe=_timm_probe(module.attn_pool))
        pool = module.global_pool
        if pool == "token":
            kind = "token"
        elif pool == "avg":
            kind = "avg_all" if getattr(module, "pool_include_prefix", False) and module.num_prefix_tokens else "avg"
        else:
            raise UnsupportedModelError(
                f"global_pool={pool!r} is not supported: the class token, average pooling and attention pooling are")
        if kind == "token" and not module.num_prefix_tokens:
            raise UnsupportedModelError("class-token pooling on a model without a class token")
        return Pooling(kind, norm=norm, fc_norm=fc_norm, head=head, proj=proj)

    def supports_any_size(self, module) -> bool:
        return bool(getattr(module, "dynamic_img_size", False))

    def embed(self, module, x):
        t = module._pos_embed(fast.patch_embed(module.patch_embed, x))
        t = module.norm_pre(module.patch_drop(t))
        ph, pw = module.patch_embed.patch_size
        return t, Context(grid=(x.shape[-2] // ph, x.shape[-1] // pw))

    def own_outputs(self, module, x) -> Outputs:
        feats = module.forward_features(x)
        emb = module.forward_head(feats, pre_logits=True)
        head = real_or_none(module.head)
        if getattr(module, "head_dist", None) is not None:
            return Outputs(None, module.forward_head(feats))
        if head is not None and embedding_model(module):
            return Outputs(head(emb), None)
        return Outputs(emb, head(emb) if head is not None else None)
