"""vit-explain-studio's library: explain Vision Transformer classifiers from timm and Hugging Face.

    import explainers
    model = explainers.load_model("deit_tiny_patch16_224", weights="path/to/weights")
    exp = explainers.explain(model, image, method="attention_rollout")
    exp.patch_map, exp.heatmap, exp.target, exp.probability
"""

from . import methods  # noqa: F401  (registers the methods)
from .api import Explanation, capture, explain, render
from .errors import (
    Cancelled,
    ExplainerError,
    ImageError,
    InvalidParameterError,
    ModelLoadError,
    UnsupportedModelError,
    WeightsUnavailableError,
)
from .images import load_image
from .inside import head_importance, logit_lens, token_norms
from .models import ViTModel, load_model
from .registry import METHODS, Capture, Method, Param, register

__version__ = "0.1.0"

__all__ = [
    "METHODS", "Cancelled", "Capture", "Explanation", "ExplainerError", "ImageError", "InvalidParameterError",
    "Method", "ModelLoadError", "Param", "UnsupportedModelError", "ViTModel", "WeightsUnavailableError",
    "capture", "explain", "head_importance", "load_image", "load_model", "logit_lens", "register", "render",
    "token_norms",
]
