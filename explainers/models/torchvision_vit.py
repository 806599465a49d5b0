"""torchvision ``VisionTransformer`` (``vit_b_16`` ...): attention through ``nn.MultiheadAttention``'s packed
in-projection, a class token, a learned position embedding (resampled for other input sizes on the library's
path; torchvision's own forward runs at the built size only)."""

from __future__ import annotations

import torch

from ..errors import UnsupportedModelError
from .blocks import Context, Outputs
from .core import Adapter, Preprocessing
from .parts import QKV, BlockParts, LinearView, Mlp, Pooling
from .timm_vit import imagenet_labels

__all__ = ["TorchvisionViT"]


class TorchvisionViT(Adapter):
    family = "torchvision ViT"
    source = "torchvision"

    @classmethod
    def matches(cls, module) -> bool:
        from torchvision.models.vision_transformer import VisionTransformer

        return isinstance(module, VisionTransformer)

    def parts(self, model):
        blocks = []
        for layer in model.encoder.layers:
            mha = layer.self_attention
            D, H = mha.embed_dim, mha.num_heads
            fused = LinearView(mha, "in_proj_weight", "in_proj_bias")
            mlp = layer.mlp
            blocks.append(BlockParts(norm1=layer.ln_1, qkv=QKV(H, D // H, fused=fused), proj=mha.out_proj,
                                     norm2=layer.ln_2, mlp=Mlp(fc1=mlp[0], act=mlp[1], fc2=mlp[3]), num_heads=H,
                                     head_dim=D // H, scale=(D // H) ** -0.5))
        heads = list(model.heads.children())
        if len(heads) != 1:
            raise UnsupportedModelError(
                "torchvision ViT with a pre-logits layer (representation_size) is not supported")
        pool = Pooling("token", norm=model.encoder.ln, head=heads[0])
        return blocks, pool, 1, (model.patch_size, model.patch_size)

    def embed(self, model, x):
        from timm.layers import resample_abs_pos_embed

        p = model.patch_size
        gh, gw = x.shape[-2] // p, x.shape[-1] // p
        t = model.conv_proj(x).flatten(2).transpose(1, 2)
        t = torch.cat([model.class_token.expand(t.shape[0], -1, -1), t], dim=1)
        pos = model.encoder.pos_embedding
        n = model.image_size // p
        if (gh, gw) != (n, n):
            pos = resample_abs_pos_embed(pos, new_size=(gh, gw), old_size=(n, n), num_prefix_tokens=1)
        return t + pos, Context(grid=(gh, gw))

    def patch_conv(self, model):
        return model.conv_proj

    def own_outputs(self, model, x) -> Outputs:
        if tuple(x.shape[-2:]) != (model.image_size, model.image_size):
            raise UnsupportedModelError("torchvision's own forward runs at its built input size only")
        return Outputs(None, model(x))

    def preprocessing(self, model, proc=None) -> Preprocessing:
        s = model.image_size  # torchvision's weights transforms: resize 256 (bilinear), crop 224, ImageNet mean/std
        return Preprocessing(input_size=(s, s), resize=int(s * 256 / 224), mean=(0.485, 0.456, 0.406),
                             std=(0.229, 0.224, 0.225), interpolation="bilinear")

    def labels(self, model, n):
        return imagenet_labels(n)
