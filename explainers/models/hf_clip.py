"""Hugging Face CLIP and SigLIP image towers: ``CLIPVisionModel`` (with projection too), the image side of
``CLIPModel``, ``CLIPForImageClassification``, ``SiglipVisionModel`` (attention-pool probe), the image side of
``SiglipModel``, ``SiglipForImageClassification``. Towers without a classifier are embedding models: explain them
with a similarity or text target (``explainers.targets``)."""

from __future__ import annotations

from .blocks import Context, Outputs
from .core import Adapter, Preprocessing
from .hf_common import call_own, hf_block, hf_labels, hf_preprocessing
from .parts import LinearView, Mlp, Pooling, Probe

__all__ = ["HFClip"]

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
NAMES = ("CLIPVisionModel", "CLIPVisionModelWithProjection", "CLIPModel", "CLIPForImageClassification",
         "SiglipVisionModel", "SiglipModel", "SiglipForImageClassification", "Siglip2VisionModel")


def vision_of(model):
    return model if hasattr(model, "encoder") and hasattr(model, "embeddings") else model.vision_model


def _siglip(model) -> bool:
    return type(model).__name__.startswith("Siglip")


def _hf_probe(head) -> Probe:
    mha = head.attention
    D = mha.embed_dim
    H = mha.num_heads
    return Probe(owner=head, latent_name="probe", q=LinearView(mha, "in_proj_weight", "in_proj_bias", slice(0, D)),
                 k=LinearView(mha, "in_proj_weight", "in_proj_bias", slice(D, 2 * D)),
                 v=LinearView(mha, "in_proj_weight", "in_proj_bias", slice(2 * D, 3 * D)), proj=mha.out_proj,
                 num_heads=H, head_dim=D // H, scale=(D // H) ** -0.5, norm=head.layernorm,
                 mlp=Mlp(fc1=head.mlp.fc1, act=head.mlp.activation_fn, fc2=head.mlp.fc2), pool="token")


class HFClip(Adapter):
    family = "Hugging Face CLIP / SigLIP image tower"
    source = "hf"

    @classmethod
    def matches(cls, module) -> bool:
        return type(module).__name__ in NAMES

    def parts(self, model):
        vis = vision_of(model)
        cfg = vis.config
        heads = int(cfg.num_attention_heads)
        blocks = [hf_block(layer, i, heads) for i, layer in enumerate(vis.encoder.layers)]
        n_prefix = 0 if _siglip(model) else 1
        return blocks, self.pooling(model, vis), n_prefix, (cfg.patch_size, cfg.patch_size)

    def pooling(self, model, vis) -> Pooling:
        name = type(model).__name__
        if name.endswith("ForImageClassification"):  # a linear classifier on the mean of the patch tokens
            if _siglip(model):
                return Pooling("avg", norm=vis.post_layernorm, head=model.classifier)
            return Pooling("avg", head=model.classifier)  # CLIP's last_hidden_state is before post_layernorm
        proj = getattr(model, "visual_projection", None)
        if _siglip(model):
            head = getattr(vis, "head", None)
            if head is not None:
                return Pooling("map", norm=vis.post_layernorm, probe=_hf_probe(head))
            return Pooling("avg", norm=vis.post_layernorm)
        return Pooling("token", fc_norm=vis.post_layernorm, proj=proj)

    def embed(self, model, x):
        vis = vision_of(model)
        t = vis.embeddings(x, interpolate_pos_encoding=True)
        if getattr(vis, "pre_layrnorm", None) is not None:
            t = vis.pre_layrnorm(t)
        p = vis.config.patch_size
        return t, Context(grid=(x.shape[-2] // p, x.shape[-1] // p))

    def patch_conv(self, model):
        return vision_of(model).embeddings.patch_embedding

    def own_outputs(self, model, x) -> Outputs:
        name = type(model).__name__
        if name.endswith("ForImageClassification"):  # its forward cannot interpolate: HF's two head lines, as written
            h = call_own(model.vision_model.forward, x).last_hidden_state
            return Outputs(None, model.classifier(h.mean(1) if _siglip(model) else h[:, 1:].mean(1)))
        if hasattr(model, "get_image_features"):
            out = call_own(model.get_image_features, x)
            return Outputs(out if not hasattr(out, "pooler_output") else out.pooler_output, None)
        out = call_own(model.forward, x)
        emb = getattr(out, "image_embeds", None)
        return Outputs(emb if emb is not None else out.pooler_output, None)

    def preprocessing(self, model, proc=None) -> Preprocessing:
        size = vision_of(model).config.image_size
        if _siglip(model):
            return hf_preprocessing(proc, (size, size))
        if proc is None:  # CLIP's own pipeline: shorter side to the input size (bicubic), centre crop, CLIP mean/std
            return Preprocessing(input_size=(size, size), resize=size, mean=CLIP_MEAN, std=CLIP_STD)
        return hf_preprocessing(proc, (size, size), CLIP_MEAN, CLIP_STD)

    def labels(self, model, n):
        return hf_labels(model.config, n)
