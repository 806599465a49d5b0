"""Configuration read from the environment, the curated models, the page table and the sample gallery.

Environment variables (all optional):

``VIT_EXPLAIN_WEIGHTS``
    Local weights (file or folder, as accepted by ``explainers.load_model``) for the default model. With it
    the app needs no network. Relative paths are taken from the repository root.
``VIT_EXPLAIN_MODEL``
    The default model name (default ``deit_tiny_patch16_224``).
``VIT_EXPLAIN_ALLOWED_PATHS``
    Folders (separated by ``os.pathsep``) under which users may name local weights or model folders in the
    sidebar. Without it, local paths typed in the sidebar are refused (``VIT_EXPLAIN_WEIGHTS`` is always
    allowed).
``VIT_EXPLAIN_CACHE_MB``
    Memory budget of the shared capture cache (default 1024).
``VIT_EXPLAIN_RESULTS``
    The folder of the reference results the Benchmark page reads (its ``summary.json``; default ``results/``
    of the repository, else the copy inside the package).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# Relative paths (VIT_EXPLAIN_WEIGHTS, typed local weights) are taken from the repository root in a checkout
# (the folder of ``app.py``), else from the folder the server was started in (an installed app).
ROOT = PACKAGE.parent if (PACKAGE.parent / "app.py").is_file() else Path.cwd().resolve()
PAGES = PACKAGE / "app_pages"
SAMPLES = PACKAGE / "assets" / "samples"
ATTRIBUTION = SAMPLES / "ATTRIBUTION.md"
DEFAULT_SAMPLE = "both.png"  # the landing story: a dog and a cat, two classes
# The committed reference runs (benchmarks/run_reference.py) and their summary.json, read by the Benchmark page:
# results/ at the repository root in a checkout, else a copy shipped inside the package.
# VIT_EXPLAIN_RESULTS names another folder (with a summary.json).
RESULTS = (Path(os.environ["VIT_EXPLAIN_RESULTS"]).expanduser() if os.environ.get("VIT_EXPLAIN_RESULTS", "").strip()
           else next((p for p in (ROOT / "results", PACKAGE / "results") if (p / "summary.json").is_file()),
                     ROOT / "results"))


def resolve_path(path: str) -> Path:
    """A user or operator path: ~ expanded, relative paths taken from the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (ROOT / p)


def server_folders() -> list[str]:
    """Folders of this server that messages shown to users must not reveal (longest first)."""
    folders = {str(ROOT), str(ROOT.parent), str(PACKAGE), str(Path.home()), sys.prefix, sys.base_prefix}
    folders.update(str(r) for r in allowed_roots())
    return sorted((f for f in folders if len(f) > 1), key=len, reverse=True)


def scrub_paths(text: str) -> str:
    """``text`` with this server's folders replaced by "…" (error details shown in the app)."""
    for prefix in server_folders():
        text = text.replace(prefix, "…")
    return text


def default_model() -> str:
    return os.environ.get("VIT_EXPLAIN_MODEL", "").strip() or "deit_tiny_patch16_224"


def default_weights() -> str | None:
    """The local weights for the default model (``VIT_EXPLAIN_WEIGHTS``), or None for the hub."""
    w = os.environ.get("VIT_EXPLAIN_WEIGHTS", "").strip()
    return str(resolve_path(w).resolve()) if w else None


def allowed_roots() -> list[Path]:
    roots = [resolve_path(p).resolve() for p in os.environ.get("VIT_EXPLAIN_ALLOWED_PATHS", "").split(os.pathsep)
             if p.strip()]
    w = default_weights()
    if w:
        roots.append(Path(w))
    return roots


def cache_bytes() -> int:
    try:
        mb = float(os.environ.get("VIT_EXPLAIN_CACHE_MB", "1024"))
    except ValueError:
        mb = 1024.0
    return int(max(64.0, mb) * 2**20)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    params_m: float  # millions of parameters
    gflops: float  # per 224x224 image
    note: str

    @property
    def speed(self) -> str:
        """Expected CPU speed class (2 vCPUs, one image, a method with 1 forward + 1 backward)."""
        if self.gflops < 2:
            return "fast on CPU (< 1 s)"
        if self.gflops < 7:
            return "medium on CPU (1-3 s)"
        return "slow on CPU (3-10 s), quick on GPU"

    def label(self) -> str:
        return f"{self.name}  ·  {self.params_m:g}M params  ·  {self.speed}"


CURATED = (
    ModelInfo("deit_tiny_patch16_224", 5.7, 1.3, "DeiT-Tiny (timm), ImageNet-1k"),
    ModelInfo("deit_small_patch16_224", 22.1, 4.6, "DeiT-Small (timm), ImageNet-1k"),
    ModelInfo("deit_tiny_distilled_patch16_224", 5.9, 1.3, "DeiT-Tiny distilled: class + distillation token"),
    ModelInfo("vit_small_patch16_224.augreg_in21k_ft_in1k", 22.1, 4.6, "ViT-S/16 AugReg (timm)"),
    ModelInfo("deit_base_patch16_224", 86.6, 17.6, "DeiT-Base (timm), ImageNet-1k"),
    ModelInfo("vit_base_patch16_224.augreg2_in21k_ft_in1k", 86.6, 17.6, "ViT-B/16 (timm), the papers' model"),
    ModelInfo("facebook/deit-tiny-patch16-224", 5.7, 1.3, "DeiT-Tiny (Hugging Face)"),
    ModelInfo("google/vit-base-patch16-224", 86.6, 17.6, "ViT-B/16 (Hugging Face)"),
    ModelInfo("facebook/dinov2-small-imagenet1k-1-layer", 22.1, 6.1, "DINOv2-S/14 + linear head (Hugging Face)"),
)

OTHER_MODEL = "Other: timm name, Hugging Face id or local folder…"


# -- pages ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PageSpec:
    """One explainer page: the methods it shows (registered names, or whole families)."""

    key: str
    title: str
    icon: str
    methods: tuple[str, ...]
    families: tuple[str, ...] = ()
    intro: str = ""

    def available(self) -> list[str]:
        """The page's methods that are registered in this installation (the page's order, then any other
        method of its families in registry order)."""
        from explainers import METHODS

        named = [n for n in self.methods if n in METHODS]
        return named + [n for n in METHODS if n not in named and METHODS[n].family in self.families]


EXPLAINER_PAGES = (
    PageSpec("attention", "Attention rollout", ":material/account_tree:",
             ("attention_rollout", "gradient_rollout", "legrad"),
             intro="Roll the attention matrices of all layers into one map; the gradient variant weights them "
                   "by their gradient for the target class."),
    PageSpec("chefer", "Transformer attribution (LRP)", ":material/bolt:",
             ("transformer_attribution", "lrp_full", "lrp_last_layer", "attention_last_layer", "attention_gradcam",
              "chefer_rollout"), families=("lrp",),
             intro="Chefer, Gur & Wolf (CVPR 2021): relevance propagation through the transformer, combined with "
                   "attention gradients; and the baselines of their evaluation."),
    PageSpec("generic_attention", "Generic attention", ":material/hub:", ("generic_attention", "bt_token", "bt_head"),
             intro="Chefer, Gur & Wolf (ICCV 2021): gradient-weighted attention accumulated through the layers; "
                   "Beyond Intuition (Chen et al., TMLR 2023): attention scaled by value norms (BT-T) or head "
                   "weights (BT-H), times the integrated gradient of the last attention."),
    PageSpec("vit_cx", "ViT-CX", ":material/scatter_plot:", ("vit_cx",),
             intro="Xie et al. (IJCAI 2023): masks from clustered patch embeddings, scored by their causal "
                   "effect on the prediction."),
    PageSpec("similarity_graph", "Similarity graph", ":material/share:", ("similarity_graph",),
             intro="Token subsets grown along cosine-similarity graphs of the patch embeddings, scored with "
                   "shortened forward passes."),
    PageSpec("gradmask", "GradMask", ":material/grid_view:", ("gradmask", "grad_mask"),
             intro="Binary masks from the gradients of the query, key and value projections, scored in one "
                   "batched forward."),
    PageSpec("gradients", "Gradients and CAM", ":material/gradient:",
             ("saliency", "integrated_gradients", "smoothgrad", "gradcam", "gradcam_pp", "layercam", "eigencam",
              "scorecam", "vit_reciprocam"), families=("gradient", "cam"),
             intro="Input gradients (saliency, integrated gradients, SmoothGrad) and class activation maps on the "
                   "last block's patch tokens; ViT-ReciproCAM (Byun & Lee 2023) reads the class probability of "
                   "one masked copy per patch, without gradients."),
    PageSpec("attribution", "Attribution baselines", ":material/tune:",
             ("gradient_x_input", "guided_backprop", "deeplift", "gradient_shap", "lime", "kernel_shap"),
             families=("attribution",),
             intro="The standard baselines of attribution benchmarks (LATEC, Quantus), computed with captum: "
                   "gradient × input, guided backprop, DeepLIFT, GradientSHAP, and LIME and KernelSHAP on the "
                   "model's patches."),
    PageSpec("masks", "RISE, TIS, occlusion", ":material/blur_on:", ("rise", "tis", "occlusion"),
             intro="Black-box methods: the prediction's change under random masks (RISE), token subsets (TIS) "
                   "or a sliding occluder."),
)


def page_spec(key: str) -> PageSpec:
    for spec in EXPLAINER_PAGES:
        if spec.key == key:
            return spec
    raise KeyError(key)


# -- sample gallery ------------------------------------------------------------------------------------------
def page(key: str) -> Path:
    """The script of the app page ``key`` (``app_pages/<key>.py`` inside this package)."""
    return PAGES / f"{key}.py"


def samples() -> list[Path]:
    """The bundled photos, the default one first."""
    files = sorted(SAMPLES.glob("*.png"))
    return sorted(files, key=lambda p: p.name != DEFAULT_SAMPLE)


def attributions() -> dict[str, str]:
    """file name -> "content — source (licence)" from the samples' ATTRIBUTION.md."""
    out: dict[str, str] = {}
    if not ATTRIBUTION.exists():
        return out
    for line in ATTRIBUTION.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("file", "") or set(cells[0]) <= set("-"):
            continue
        text = f"{cells[1]} — {cells[2]} ({cells[3]})"
        for name in re.findall(r"`([^`]+)`", cells[0]):
            out[name] = text
    return out
