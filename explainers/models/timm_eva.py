"""timm ``Eva``: EVA-02 and the RoPE ViTs (``vit_*_rope_*``): rotary position embedding, SwiGLU MLPs, an inner
norm before the attention projection, q/k norms, LayerScale as ``gamma`` parameters, separate q/v biases."""

from __future__ import annotations

from ..errors import UnsupportedModelError
from . import fast
from .blocks import Context
from .parts import QKV, BlockParts, LinearView, Pooling
from .timm_vit import TimmAdapter, _timm_probe, real_or_none, timm_mlp, timm_scale

__all__ = ["TimmEva"]


def _qkv(attn, where: str) -> QKV:
    heads, hd = attn.num_heads, attn.head_dim
    if getattr(attn, "num_kv_heads", heads) != heads:
        raise UnsupportedModelError(f"{where}: grouped-query attention (fewer key/value heads) is not supported")
    if getattr(attn, "qkv", None) is not None:
        if getattr(attn, "q_bias", None) is not None:  # biases kept apart from the fused weight (k bias is zero)
            fused = LinearView(attn.qkv, bias_names=("q_bias", "k_bias", "v_bias"), bias_owner=attn)
        else:
            fused = attn.qkv
        return QKV(heads, hd, fused=fused)
    return QKV(heads, hd, q=attn.q_proj, k=attn.k_proj, v=attn.v_proj)


class TimmEva(TimmAdapter):
    family = "timm EVA / RoPE ViT"

    @classmethod
    def matches(cls, module) -> bool:
        from timm.models.eva import Eva

        return isinstance(module, Eva)

    def parts(self, module):
        blocks = []
        for i, blk in enumerate(module.blocks):
            where = f"block {i}"
            if type(blk).__name__ != "EvaBlock":
                raise UnsupportedModelError(f"{where}: block type {type(blk).__name__} (post-norm) is not supported")
            attn = blk.attn
            if getattr(attn, "gate", None) is not None:
                raise UnsupportedModelError(f"{where}: gated attention (an output gate) is not supported")
            blocks.append(BlockParts(
                norm1=blk.norm1, qkv=_qkv(attn, where), proj=attn.proj, norm2=blk.norm2, mlp=timm_mlp(blk.mlp, where),
                num_heads=attn.num_heads, head_dim=attn.head_dim, scale=float(attn.scale),
                ls1=timm_scale(blk, "gamma_1"), ls2=timm_scale(blk, "gamma_2"),
                q_norm=real_or_none(attn.q_norm), k_norm=real_or_none(attn.k_norm),
                rope=int(getattr(attn, "num_prefix_tokens", module.num_prefix_tokens))
                if module.rope is not None else -1,
                rope_half=bool(getattr(attn, "rotate_half", False)), attn_norm=real_or_none(attn.norm)))
        return blocks, self.pooling(module), module.num_prefix_tokens, module.patch_embed.patch_size

    def pooling(self, module) -> Pooling:
        norm, fc_norm, head = real_or_none(module.norm), real_or_none(module.fc_norm), real_or_none(module.head)
        if getattr(module, "attn_pool", None) is not None:
            return Pooling("map", norm=norm, fc_norm=fc_norm, head=head, probe=_timm_probe(module.attn_pool))
        pool = module.global_pool
        if pool == "token" and module.num_prefix_tokens:
            return Pooling("token", norm=norm, fc_norm=fc_norm, head=head)
        if pool == "avg":
            return Pooling("avg", norm=norm, fc_norm=fc_norm, head=head)
        raise UnsupportedModelError(f"global_pool={pool!r} is not supported: the class token and average pooling are")

    def supports_any_size(self, module) -> bool:
        return bool(getattr(module, "dynamic_img_size", False))

    def embed(self, module, x):
        t, rope = module._pos_embed(fast.patch_embed(module.patch_embed, x))
        t = module.norm_pre(t)
        ph, pw = module.patch_embed.patch_size
        return t, Context(grid=(x.shape[-2] // ph, x.shape[-1] // pw), rope=rope,
                          rope_per_block=bool(getattr(module, "rope_mixed", False)) and rope is not None)

