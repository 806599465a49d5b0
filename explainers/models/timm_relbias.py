"""timm models whose attention adds a relative position bias: BEiT (``beit_*``, also BEiT-v2) and the
relative-position ViTs (``vit_relpos_*``, ``vit_srelpos_*``). The bias is defined for the grid the model was built
for, so these run at that input size only (their own forward does too)."""

from __future__ import annotations

import torch

from ..errors import UnsupportedModelError
from . import fast
from .blocks import Context
from .parts import QKV, BlockParts, LinearView, Pooling
from .timm_vit import TimmAdapter, real_or_none, timm_mlp, timm_scale

__all__ = ["TimmBeit", "TimmRelPos"]


class BeitBias:
    """BEiT: the block's own table (indexed by its window) plus the model's shared table, if any."""

    def __init__(self, attn, model):
        self.attn, self.model = attn, model

    def bias(self, grid, n_tokens) -> torch.Tensor:
        b = self.attn._get_rel_pos_bias() if self.attn.relative_position_bias_table is not None else 0.0
        if self.model.rel_pos_bias is not None:
            b = b + self.model.rel_pos_bias()
        return b


class RelPosBias:
    """vit_relpos: the block's ``rel_pos`` module (bias table or MLP over log-spaced offsets) or the shared one."""

    def __init__(self, attn, model):
        self.attn, self.model = attn, model

    def bias(self, grid, n_tokens) -> torch.Tensor:
        if self.attn.rel_pos is not None:
            return self.attn.rel_pos.get_bias()
        return self.model.shared_rel_pos.get_bias()


def _pooling(module) -> Pooling:
    head, fc_norm, norm = real_or_none(module.head), real_or_none(module.fc_norm), real_or_none(module.norm)
    if module.global_pool == "avg":
        return Pooling("avg", norm=norm, fc_norm=fc_norm, head=head)
    if module.global_pool == "token":
        return Pooling("token", norm=norm, fc_norm=fc_norm, head=head)
    raise UnsupportedModelError(f"global_pool={module.global_pool!r} is not supported")


class _FixedSizeTimm(TimmAdapter):
    any_size = False


    def _grid(self, module, x):
        ph, pw = module.patch_embed.patch_size
        return x.shape[-2] // ph, x.shape[-1] // pw


class TimmBeit(_FixedSizeTimm):
    family = "timm BEiT"

    @classmethod
    def matches(cls, module) -> bool:
        from timm.models.beit import Beit

        return isinstance(module, Beit)

    def parts(self, module):
        blocks = []
        for i, blk in enumerate(module.blocks):
            attn = blk.attn
            hd = attn.qkv.out_features // (3 * attn.num_heads)
            fused = LinearView(attn.qkv, bias_names=("q_bias", "k_bias", "v_bias"), bias_owner=attn) \
                if getattr(attn, "q_bias", None) is not None else attn.qkv
            blocks.append(BlockParts(
                norm1=blk.norm1, qkv=QKV(attn.num_heads, hd, fused=fused), proj=attn.proj, norm2=blk.norm2,
                mlp=timm_mlp(blk.mlp, f"block {i}"), num_heads=attn.num_heads, head_dim=hd, scale=float(attn.scale),
                ls1=timm_scale(blk, "gamma_1"), ls2=timm_scale(blk, "gamma_2"),
                rel_bias=BeitBias(attn, module) if (attn.relative_position_bias_table is not None
                                                    or module.rel_pos_bias is not None) else None))
        return blocks, _pooling(module), module.num_prefix_tokens, module.patch_embed.patch_size

    def embed(self, module, x):
        t = fast.patch_embed(module.patch_embed, x)
        t = torch.cat((module.cls_token.expand(t.shape[0], -1, -1), t), dim=1)
        if module.pos_embed is not None:
            t = t + module.pos_embed
        return t, Context(grid=self._grid(module, x))


class TimmRelPos(_FixedSizeTimm):
    family = "timm relative-position ViT"

    @classmethod
    def matches(cls, module) -> bool:
        from timm.models.vision_transformer_relpos import VisionTransformerRelPos

        return isinstance(module, VisionTransformerRelPos)

    def parts(self, module):
        blocks = []
        for i, blk in enumerate(module.blocks):
            if type(blk).__name__ != "RelPosBlock":
                raise UnsupportedModelError(
                    f"block {i}: {type(blk).__name__} normalises after the residual (post-norm); only pre-norm "
                    "blocks are supported")
            attn = blk.attn
            blocks.append(BlockParts(
                norm1=blk.norm1, qkv=QKV(attn.num_heads, attn.head_dim, fused=attn.qkv), proj=attn.proj,
                norm2=blk.norm2, mlp=timm_mlp(blk.mlp, f"block {i}"), num_heads=attn.num_heads,
                head_dim=attn.head_dim, scale=float(attn.scale), ls1=timm_scale(blk, "ls1"), ls2=timm_scale(blk, "ls2"),
                q_norm=real_or_none(attn.q_norm), k_norm=real_or_none(attn.k_norm),
                rel_bias=RelPosBias(attn, module) if (attn.rel_pos is not None or module.shared_rel_pos is not None)
                else None))
        return blocks, _pooling(module), module.num_prefix_tokens, module.patch_embed.patch_size

    def embed(self, module, x):
        t = fast.patch_embed(module.patch_embed, x)
        if module.cls_token is not None:
            t = torch.cat((module.cls_token.expand(t.shape[0], -1, -1), t), dim=1)
        return t, Context(grid=self._grid(module, x))
