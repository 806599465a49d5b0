"""Shared fixtures. Tests never reach the network: real weights come from ../shared/weights, other
architectures are randomly initialised."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The app's catch-all (vit_explain_studio.navigation.run) turns an unexpected error into a message for the visitor;
# under the tests it also re-raises, so that an AppTest or browser test checking for no exception still sees it
# (test_browser_errors.py turns it off to check what a visitor sees).
os.environ.setdefault("VIT_EXPLAIN_STRICT_ERRORS", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIT_EXPLAIN_SHARED", ROOT.parent / "shared"))
WEIGHTS = SHARED / "weights" / "deit_tiny_patch16_224"
VIT_WEIGHTS = SHARED / "weights" / "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
SAMPLES = ROOT / "vit_explain_studio" / "assets" / "samples"
VAL100 = SHARED / "images" / "imagenet-val100"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"missing test data {path}: the tests need ../shared beside the checkout")
    return path


@pytest.fixture(scope="session")
def deit_tiny():
    import explainers

    return explainers.load_model("deit_tiny_patch16_224", weights=_require(WEIGHTS), device="cpu")


@pytest.fixture(scope="session")
def vit_tiny():
    """ViT-Tiny AugReg: a second real classifier, normalised with mean = std = 0.5."""
    import explainers

    return explainers.load_model("vit_tiny_patch16_224", weights=_require(VIT_WEIGHTS), device="cpu")


@pytest.fixture(scope="session")
def deit_tiny_hf():
    import explainers

    return explainers.load_model("facebook/deit-tiny-patch16-224", weights=_require(WEIGHTS / "hf"), device="cpu")


@pytest.fixture(scope="session")
def cat_image():
    from PIL import Image

    return Image.open(_require(SAMPLES / "chelsea.png")).convert("RGB")


@pytest.fixture(scope="session")
def both_image():
    from PIL import Image

    return Image.open(_require(SAMPLES / "both.png")).convert("RGB")


@pytest.fixture(scope="session")
def val_boxes() -> dict:
    return json.loads(_require(VAL100 / "boxes.json").read_text())


def val_images(n: int) -> list[Path]:
    """The first ``n`` ImageNet validation images (sorted by name: deterministic)."""
    return sorted(_require(VAL100).glob("*.JPEG"))[:n]


def random_model(kind: str):
    """Randomly initialised models of other architectures (no download)."""
    import explainers

    torch.manual_seed(0)
    if kind == "deit_distilled":
        return explainers.load_model("deit_tiny_distilled_patch16_224", weights="random", device="cpu")
    if kind == "dinov2_reg":
        import timm

        name = "vit_small_patch14_reg4_dinov2"
        model = timm.create_model(name, pretrained=False, num_classes=10, img_size=224, global_pool="token",
                                  dynamic_img_size=True)
        return explainers.models.wrap_timm(model.eval(), name)
    if kind == "hf_vit":
        from transformers import ViTConfig, ViTForImageClassification

        cfg = ViTConfig(hidden_size=96, num_hidden_layers=4, num_attention_heads=4, intermediate_size=192,
                        image_size=224, patch_size=16, num_labels=10)
        model = ViTForImageClassification(cfg)
        return explainers.models.wrap_hf(model.eval(), "hf-vit-random")
    if kind == "hf_dinov2_reg":
        from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersForImageClassification

        cfg = Dinov2WithRegistersConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=224,
                                        patch_size=14, num_labels=10, num_register_tokens=4)
        return explainers.models.wrap_hf(Dinov2WithRegistersForImageClassification(cfg).eval(), "hf-dinov2-reg")
    if kind == "hf_deit_distilled":
        from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher

        cfg = DeiTConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
                         image_size=224, patch_size=16, num_labels=10)
        return explainers.models.wrap_hf(DeiTForImageClassificationWithTeacher(cfg).eval(), "hf-deit-distilled")
    raise ValueError(kind)
