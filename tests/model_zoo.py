"""Small randomly initialised models of every supported family (no download), with their 1-D parameters (biases,
norm weights, LayerScale) perturbed by N(0, 0.1) so that outputs are far from zero and a traced-versus-own forward
check means something. Shared by the family matrix tests and ``benchmarks/bench_methods.py --model``."""

from __future__ import annotations

import torch

SMALL = dict(depth=2, embed_dim=64, num_heads=2)
# the cheapest settings of the mask-based methods (the maps' content is tested elsewhere)
FAST = {"vit_cx": {"distance_threshold": 0.3}, "gradmask": {"masks_layer": 1}, "similarity_graph": {"masks_layer": 1},
        "rise": {"masks": 16}, "tis": {"masks": 8}, "integrated_gradients": {"steps": 4},
        "smoothgrad": {"samples": 2}, "gradient_shap": {"samples": 2}, "lime": {"samples": 8},
        "kernel_shap": {"samples": 8}, "bt_token": {"steps": 2, "start_layer": 1},
        "bt_head": {"steps": 2, "start_layer": 1}}


def fast_params(method: str) -> dict:
    import explainers

    names = {p.name for p in explainers.METHODS[method].params}
    return {k: v for k, v in FAST.get(method, {}).items() if k in names}


def perturb(module, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            # biases, norms, LayerScale, scales; relative position tables (zero at initialisation: a bias that
            # the traced pass ignored would go unnoticed)
            if "relative_position" in name or "rel_pos" in name:
                p.add_(torch.randn(p.shape, generator=g) * 3)  # large enough to change the attention visibly
            elif p.dim() <= 1:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return module.eval()


def _timm(name, **kw):
    import timm

    torch.manual_seed(0)
    args = {**SMALL, **kw}
    try:
        return timm.create_model(name, pretrained=False, dynamic_img_size=True, **args)
    except TypeError:
        return timm.create_model(name, pretrained=False, **args)


def _hf(cfg_cls, model_cls, **kw):
    torch.manual_seed(0)
    base = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, image_size=224,
                patch_size=16)
    return model_cls(cfg_cls(**{**base, **kw}))


def _hf_clip(kind):
    import transformers as T

    torch.manual_seed(0)
    vis = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, image_size=224,
               patch_size=16, projection_dim=32)
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=1000)
    if kind == "clip_vision":
        return T.CLIPVisionModelWithProjection(T.CLIPVisionConfig(**vis))
    if kind == "clip":
        return T.CLIPModel(T.CLIPConfig(vision_config=vis, text_config=text, projection_dim=32))
    if kind == "clip_cls":
        return T.CLIPForImageClassification(T.CLIPConfig(vision_config=vis, text_config=text, num_labels=10))
    vis.pop("projection_dim")
    if kind == "siglip_vision":
        return T.SiglipVisionModel(T.SiglipVisionConfig(**vis))
    if kind == "siglip":
        return T.SiglipModel(T.SiglipConfig(vision_config=vis, text_config=text))
    if kind == "siglip_cls":
        return T.SiglipForImageClassification(T.SiglipConfig(vision_config=vis, text_config=text, num_labels=10))
    raise ValueError(kind)


def _torchvision():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(image_size=224, patch_size=16, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128,
                             num_classes=10)


def _hf_family(name):
    import transformers as T

    return {
        "hf_vit": lambda: _hf(T.ViTConfig, T.ViTForImageClassification, num_labels=10),
        "hf_vit_backbone": lambda: _hf(T.ViTConfig, T.ViTModel, add_pooling_layer=False),
        "hf_deit_distilled": lambda: _hf(T.DeiTConfig, T.DeiTForImageClassificationWithTeacher, num_labels=10),
        "hf_dinov2": lambda: _hf(T.Dinov2Config, T.Dinov2ForImageClassification, num_labels=10, patch_size=14),
        "hf_dinov2_reg": lambda: _hf(T.Dinov2WithRegistersConfig, T.Dinov2WithRegistersForImageClassification,
                                     num_labels=10, patch_size=14, num_register_tokens=4),
        "hf_ijepa": lambda: _hf(T.IJepaConfig, T.IJepaForImageClassification, num_labels=10),
        "hf_beit": lambda: _hf(T.BeitConfig, T.BeitForImageClassification, num_labels=10,
                               use_relative_position_bias=True, use_mean_pooling=True, layer_scale_init_value=0.1),
        "hf_data2vec": lambda: _hf(T.Data2VecVisionConfig, T.Data2VecVisionForImageClassification, num_labels=10,
                                   use_relative_position_bias=True, use_mean_pooling=True,
                                   layer_scale_init_value=0.1),
    }[name]()


# name -> (builder, pooling); DESCRIPTIONS: what each row stands for in docs/models.md's support table
FAMILIES = {
    "timm_deit": (lambda: _timm("deit_tiny_patch16_224", num_classes=10), "token"),
    "timm_deit_distilled": (lambda: _timm("deit_tiny_distilled_patch16_224", num_classes=10), "dist"),
    "timm_deit3": (lambda: _timm("deit3_small_patch16_224", num_classes=10), "token"),
    "timm_gap": (lambda: _timm("vit_medium_patch16_gap_256", num_classes=10), "avg"),
    "timm_reg_gap": (lambda: _timm("vit_little_patch16_reg4_gap_256", num_classes=10), "avg"),
    "timm_dinov2_reg": (lambda: _timm("vit_small_patch14_reg4_dinov2", num_classes=10, img_size=224), "token"),
    "timm_siglip_gap": (lambda: _timm("vit_base_patch16_siglip_gap_224", num_classes=10), "avg"),
    "timm_siglip_map": (lambda: _timm("vit_base_patch16_siglip_224", num_classes=10), "map"),
    "timm_clip_tower": (lambda: _timm("vit_base_patch16_clip_224.openai"), "token"),
    "timm_backbone": (lambda: _timm("vit_small_patch16_224", num_classes=0), "token"),
    "timm_qknorm": (lambda: _timm("vit_small_patch16_224", num_classes=10, qk_norm=True, init_values=0.1), "token"),
    "timm_eva02": (lambda: _timm("eva02_tiny_patch14_224.mim_in22k", num_classes=10), "avg"),
    "timm_rope": (lambda: _timm("vit_base_patch16_rope_reg1_gap_256", num_classes=10), "avg"),
    "timm_beit": (lambda: _timm("beit_base_patch16_224", num_classes=10), "avg"),
    "timm_relpos": (lambda: _timm("vit_relpos_base_patch16_224", num_classes=10), "avg"),
    "hf_vit": (lambda: _hf_family("hf_vit"), "token"),
    "hf_vit_backbone": (lambda: _hf_family("hf_vit_backbone"), "token"),
    "hf_deit_distilled": (lambda: _hf_family("hf_deit_distilled"), "dist"),
    "hf_dinov2": (lambda: _hf_family("hf_dinov2"), "token_avg"),
    "hf_dinov2_reg": (lambda: _hf_family("hf_dinov2_reg"), "token_avg"),
    "hf_ijepa": (lambda: _hf_family("hf_ijepa"), "avg"),
    "hf_beit": (lambda: _hf_family("hf_beit"), "avg"),
    "hf_data2vec": (lambda: _hf_family("hf_data2vec"), "avg"),
    "hf_clip_vision": (lambda: _hf_clip("clip_vision"), "token"),
    "hf_clip": (lambda: _hf_clip("clip"), "token"),
    "hf_clip_cls": (lambda: _hf_clip("clip_cls"), "avg"),
    "hf_siglip_vision": (lambda: _hf_clip("siglip_vision"), "map"),
    "hf_siglip": (lambda: _hf_clip("siglip"), "map"),
    "hf_siglip_cls": (lambda: _hf_clip("siglip_cls"), "avg"),
    "torchvision_vit": (lambda: _torchvision(), "token"),
}


def build(name: str, seed: int = 0):
    """The wrapped random model of family ``name`` (see :data:`FAMILIES`)."""
    import explainers

    module = perturb(FAMILIES[name][0](), seed)
    return explainers.models.wrap(module, name, device="cpu")


DESCRIPTIONS = {
    "timm_deit": "timm ViT / DeiT (`deit_tiny_patch16_224`)",
    "timm_deit_distilled": "timm DeiT distilled (`deit_tiny_distilled_patch16_224`)",
    "timm_deit3": "timm DeiT-3, LayerScale (`deit3_small_patch16_224`)",
    "timm_gap": "timm average-pool head (`vit_medium_patch16_gap_256`)",
    "timm_reg_gap": "timm registers + average pool (`vit_little_patch16_reg4_gap_256`)",
    "timm_dinov2_reg": "timm DINOv2 with registers (`vit_small_patch14_reg4_dinov2`)",
    "timm_siglip_gap": "timm SigLIP, average pool (`vit_base_patch16_siglip_gap_224`)",
    "timm_siglip_map": "timm SigLIP, attention-pool probe (`vit_base_patch16_siglip_224`)",
    "timm_clip_tower": "timm CLIP image tower, embedding (`vit_base_patch16_clip_224.openai`)",
    "timm_backbone": "timm headless backbone (`num_classes=0`)",
    "timm_qknorm": "timm q/k norms + LayerScale (`qk_norm=True`)",
    "timm_eva02": "timm EVA-02: RoPE, SwiGLU (`eva02_tiny_patch14_224`)",
    "timm_rope": "timm RoPE ViT (`vit_base_patch16_rope_reg1_gap_256`)",
    "timm_beit": "timm BEiT, relative position bias (`beit_base_patch16_224`)",
    "timm_relpos": "timm relative-position ViT (`vit_relpos_base_patch16_224`)",
    "hf_vit": "HF `ViTForImageClassification`",
    "hf_vit_backbone": "HF `ViTModel` (headless)",
    "hf_deit_distilled": "HF `DeiTForImageClassificationWithTeacher`",
    "hf_dinov2": "HF `Dinov2ForImageClassification`",
    "hf_dinov2_reg": "HF `Dinov2WithRegistersForImageClassification`",
    "hf_ijepa": "HF `IJepaForImageClassification`",
    "hf_beit": "HF `BeitForImageClassification`",
    "hf_data2vec": "HF `Data2VecVisionForImageClassification`",
    "hf_clip_vision": "HF `CLIPVisionModelWithProjection`",
    "hf_clip": "HF `CLIPModel` (image side)",
    "hf_clip_cls": "HF `CLIPForImageClassification`",
    "hf_siglip_vision": "HF `SiglipVisionModel` (probe)",
    "hf_siglip": "HF `SiglipModel` (image side)",
    "hf_siglip_cls": "HF `SiglipForImageClassification`",
    "torchvision_vit": "torchvision `VisionTransformer` (`vit_b_16`)",
}
