"""Insertion and deletion curves (and their AUC) with named presets reproducing the published protocols.

A map is upsampled to the model input, its pixels are ranked (most relevant first, ties broken by raster
order, so the ranking is deterministic), and for each step fraction ``f``:

* deletion replaces the top ``f`` of the pixels with a baseline (most relevant removed first);
* insertion starts from the baseline and reveals the top ``f`` of the image.

The score is the softmax probability of the target class (or, for Chefer et al.'s test, top-1 accuracy).
All the steps of both curves go through the model in batches under ``torch.inference_mode()``; inputs that
coincide (the untouched image and the full baseline, the shared end points of the two curves) are computed
once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidParameterError
from .baselines import Baseline, make_baseline, resolve_baseline

__all__ = ["Preset", "PRESETS", "DEFAULT_PRESET", "Curves", "insertion_deletion", "perturb", "rank_pixels",
           "pixel_saliency", "trapezoid", "get_preset"]


def trapezoid(y, x) -> float:
    """Area under the piecewise-linear curve through the points (x, y) (np.trapezoid, spelled out)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("x and y must be 1-D arrays of the same length")
    if len(x) < 2:
        return 0.0
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


@dataclass(frozen=True)
class Preset:
    """One insertion/deletion protocol.

    fractions: the step grid (share of the pixels inserted / deleted at each point);
    baseline: what deleted pixels become (and what insertion starts from);
    score: "probability" (softmax of the target class) or "accuracy" (1 when the prediction is ``label``);
    auc: "trapezoid" (area on the [0, 1] x-axis), "notebook" (the Similarity-Graph/GradMask notebooks'
        sklearn ``auc``: insertion over the grid as is, deletion with a (0, 0) point prepended; x as a
        fraction, so the value is the notebooks' number / 100) or "chefer" (``np.trapz(y, x) * 100``);
    upsample: how a patch map is brought to the input size before ranking ("bilinear" or "nearest");
    counts: pixels per step: "round" (round(f n)), "floor" (int(f n)) or "step" (k * ceil(n / steps));
    negative: Chefer et al.'s negative test; the ``insertion`` curve then holds "least relevant removed
        first" at each removed fraction (higher is better), the ``deletion`` curve the positive test.
    """

    name: str
    title: str
    fractions: tuple[float, ...]
    baseline: Baseline
    score: str = "probability"
    auc: str = "trapezoid"
    upsample: str = "bilinear"
    counts: str = "round"
    negative: bool = False
    source: str = ""
    doc: str = ""

    @property
    def steps(self) -> int:
        return len(self.fractions) - 1

    @property
    def insertion_label(self) -> str:
        return "negative perturbation (least relevant removed first)" if self.negative else "insertion"

    @property
    def deletion_label(self) -> str:
        return "positive perturbation (most relevant removed first)" if self.negative else "deletion"

    def grid(self, steps: int | None = None) -> np.ndarray:
        """The step fractions; ``steps`` replaces them by ``steps`` equal steps over the same range."""
        if steps is None:
            return np.asarray(self.fractions, dtype=np.float64)
        steps = int(steps)
        if steps < 1:
            raise InvalidParameterError(f"steps must be >= 1, got {steps}")
        return np.linspace(self.fractions[0], self.fractions[-1], steps + 1)

    def pixel_counts(self, n: int, fractions: np.ndarray) -> np.ndarray:
        f = np.asarray(fractions, dtype=np.float64)
        if self.counts == "floor":
            k = np.floor(f * n + 1e-9)
        elif self.counts == "step":
            steps = len(f) - 1
            per = int(np.ceil(n / max(steps, 1)))
            k = np.round(f * steps) * per
        else:
            k = np.round(f * n)
        return np.clip(k, 0, n).astype(np.int64)

    def area(self, fractions: np.ndarray, scores: np.ndarray, curve: str) -> float:
        if self.auc == "chefer":
            return trapezoid(scores, fractions) * 100.0
        if self.auc == "notebook" and curve == "deletion" and fractions[0] > 0:
            return trapezoid(np.r_[0.0, scores], np.r_[0.0, fractions])
        return trapezoid(scores, fractions)

    def describe(self) -> dict:
        return {"name": self.name, "title": self.title, "fractions": [float(f) for f in self.fractions],
                "steps": self.steps, "baseline": self.baseline.name, "score": self.score, "auc": self.auc,
                "upsample": self.upsample, "counts": self.counts, "negative": self.negative,
                "source": self.source, "doc": self.doc}


PRESETS: dict[str, Preset] = {}


def _add(p: Preset) -> Preset:
    PRESETS[p.name] = p
    return p


_add(Preset(
    name="standard", title="Blur baseline, 20 equal steps (default)",
    fractions=tuple(np.linspace(0.0, 1.0, 21).round(10)), baseline=Baseline("blur", 11, 5.0),
    source="the TIS benchmark's protocol (METHODS.md 6d) at 20 steps instead of 224",
    doc="Pixels ranked on the bilinearly upsampled map; deleted pixels replaced by a Gaussian blur of the image "
        "(kernel 11, sigma 5, as TIS); score = softmax probability of the explained class; AUC by the trapezoid "
        "rule on a [0, 1] x-axis including both end points. The default: the blur baseline keeps the perturbed "
        "images close to natural ones (a black or grey square is itself evidence to a ViT), the [0, 1] AUC is "
        "the RISE/ViT-CX convention, and 21 points (40 forward passes, the two shared end points computed once) "
        "cost 11x less than TIS's 224 steps; on DeiT-Tiny even halving them to 10 steps moves an AUC by 0.006 on "
        "average and a method's mean by at most 0.002 (README)."))
_add(Preset(
    name="tis", title="TIS benchmark: 224 steps, blur baseline",
    fractions=tuple(np.arange(225) / 224.0), baseline=Baseline("blur", 11, 5.0), counts="step",
    source="aenglebert/Transformer_Input_Sampling (METHODS.md 6d)",
    doc="224 steps of ceil(n/224) pixels (224 pixels per step at 224x224), pixel ranking of the bilinearly "
        "resized map, blur baseline (kernel 11, sigma 5) on the normalised image, score = softmax of the target, "
        "AUC = trapezoid on [0, 1] (the mean of the per-step scores up to the end points). TIS scores the "
        "ground-truth class; here the class is whatever ``target`` is given (the evaluation explains and "
        "scores the predicted class)."))
_add(Preset(
    name="chefer", title="Chefer et al. CVPR'21 positive/negative perturbation",
    fractions=tuple(np.round(np.arange(10) / 10.0, 10)), baseline=Baseline("black"), score="accuracy",
    auc="chefer", counts="floor", negative=True,
    source="hila-chefer/Transformer-Explainability, pertubation_eval_from_hdf5.py (METHODS.md 6a)",
    doc="Removed fractions 0, 0.1, ..., 0.9 of the pixels of the bilinearly upsampled map; removed pixels are "
        "set to black (0 in [0, 1] pixel space, then normalised); score = top-1 accuracy against ``label`` (the "
        "ground-truth class when given, else the target), so dataset means are accuracies; AUC = "
        "np.trapz(y, x) * 100. The 'insertion' curve is the negative test (least relevant removed first, "
        "higher is better), the 'deletion' curve the positive test (most relevant first, lower is better)."))
_add(Preset(
    name="notebook", title="Similarity-Graph / GradMask notebooks",
    fractions=(0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), baseline=Baseline("zero"),
    auc="notebook", upsample="nearest", counts="floor",
    source="lucav48/ViT-Similarity-Graph and DavideTraini/GradMask notebooks (METHODS.md 6c)",
    doc="Percentages 1, 5, 10, 20, ..., 100 of the pixels of the nearest-upsampled map; baseline 'black' = 0 "
        "in the normalised space (the normalisation's mean colour); score = softmax of the explained class; "
        "AUC = sklearn.metrics.auc over the grid for insertion (no 0 point) and with a (0, 0) point prepended "
        "for deletion, x as a fraction (the notebooks' x is in percent: their numbers are 100x these)."))

DEFAULT_PRESET = "standard"


def get_preset(preset) -> Preset:
    if preset is None:
        return PRESETS[DEFAULT_PRESET]
    if isinstance(preset, Preset):
        return preset
    try:
        return PRESETS[str(preset)]
    except KeyError:
        raise InvalidParameterError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}") from None


@dataclass
class Curves:
    """Insertion and deletion scores at each step fraction, and their areas under the curve."""

    fractions: np.ndarray
    insertion: np.ndarray
    deletion: np.ndarray
    insertion_auc: float
    deletion_auc: float
    preset: str
    baseline: str
    score: str = "probability"
    insertion_label: str = "insertion"
    deletion_label: str = "deletion"
    forward_passes: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"fractions": self.fractions.tolist(), "insertion": self.insertion.tolist(),
                "deletion": self.deletion.tolist(), "insertion_auc": self.insertion_auc,
                "deletion_auc": self.deletion_auc, "preset": self.preset, "baseline": self.baseline,
                "score": self.score, "forward_passes": self.forward_passes, "seconds": self.seconds}


# ------------------------------------------------------------------------------------------------------------
def pixel_saliency(saliency, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """A map of any resolution (patch grid or pixel map; numpy or torch; extra leading 1-dims allowed)
    -> float32 (H, W) tensor on the CPU at ``size``. Non-finite values become the map's minimum."""
    s = torch.as_tensor(np.asarray(saliency) if not isinstance(saliency, torch.Tensor) else saliency)
    s = s.detach().float().cpu()
    while s.dim() > 2 and s.shape[0] == 1:
        s = s[0]
    if s.dim() != 2 or s.numel() == 0:
        raise InvalidParameterError(f"saliency must be a 2-D map, got shape {tuple(s.shape)}")
    finite = torch.isfinite(s)
    if not finite.all():
        fill = float(s[finite].min()) if finite.any() else 0.0
        s = torch.where(finite, s, torch.full_like(s, fill))
    H, W = int(size[0]), int(size[1])
    if tuple(s.shape) != (H, W):
        if mode == "nearest":
            s = F.interpolate(s[None, None], size=(H, W), mode="nearest")[0, 0]
        else:
            s = F.interpolate(s[None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0]
    return s


def rank_pixels(saliency, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """(H, W) long tensor: each pixel's rank, 0 = most relevant. Ties keep raster order (deterministic)."""
    s = pixel_saliency(saliency, size, mode).flatten()
    order = torch.argsort(s, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank.view(int(size[0]), int(size[1]))


def _as_batch(model, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InvalidParameterError("x must be the model input tensor (model.preprocess(image))")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1:
        raise InvalidParameterError(f"x must be one model input (1, 3, H, W), got {tuple(x.shape)}")
    dev = getattr(model, "device", x.device)
    return x.detach().to(dev)


def perturb(model, x: torch.Tensor, saliency, fraction: float, kind: str = "deletion", baseline=None,
            preset=None) -> torch.Tensor:
    """The model input at one step of a curve: ``kind="deletion"`` replaces the top ``fraction`` of the pixels
    with the baseline, ``"insertion"`` shows only the top ``fraction`` on the baseline. Returns (1, 3, H, W)
    in the model's normalised space (``model.to_pixels`` makes it displayable)."""
    p = get_preset(preset)
    if kind not in ("insertion", "deletion"):
        raise InvalidParameterError(f"kind must be 'insertion' or 'deletion', got {kind!r}")
    if not 0.0 <= float(fraction) <= 1.0:
        raise InvalidParameterError(f"fraction must be in [0, 1], got {fraction}")
    x = _as_batch(model, x)
    H, W = x.shape[-2:]
    rank = rank_pixels(saliency, (H, W), p.upsample).to(x.device)
    base = make_baseline(model, x, p.baseline if baseline is None else baseline)
    k = int(p.pixel_counts(H * W, np.array([float(fraction)]))[0])
    top = (rank < k)[None, None]
    with torch.inference_mode():
        return torch.where(top, base, x) if kind == "deletion" else torch.where(top, x, base)


def _outputs(model, x):
    """The library's outputs; a constructed model with only ``forward`` (logits) works too."""
    if hasattr(model, "outputs"):
        return model.outputs(x)
    from ..models import Outputs

    return Outputs(None, model.forward(x))


def _scores(out, score: str, bound, label) -> torch.Tensor:
    if score == "accuracy":
        return (out.logits.argmax(-1) == label).double()
    return bound.score(out).double()


def insertion_deletion(model, x: torch.Tensor, saliency, target: int, preset=None, steps: int | None = None,
                       baseline=None, batch_size: int | None = None, label: int | None = None) -> Curves:
    """Insertion and deletion curves of ``saliency`` for ``target`` on model input ``x`` (1, 3, H, W).

    target: a class index (its softmax probability is scored) or a target object of :mod:`explainers.targets`
    (its score: the class probability for class targets, the similarity for a similarity target).

    saliency: the map, any resolution (patch grid or pixel map), in the model-input frame.
    preset: a name in :data:`PRESETS` (default :data:`DEFAULT_PRESET`) or a :class:`Preset`.
    steps: override the preset's number of steps (equal steps over the same range).
    baseline: override the preset's baseline (a name in ``BASELINES`` or a :class:`Baseline`).
    batch_size: perturbed images per forward pass (default 32).
    label: for accuracy-scored presets, the class counted as correct (default: ``target``).
    """
    t0 = time.perf_counter()
    p = get_preset(preset)
    base_spec = p.baseline if baseline is None else resolve_baseline(baseline)
    x = _as_batch(model, x)
    from ..targets import Target, bind, class_bound, class_index, class_values

    if isinstance(target, Target) or (callable(target) and not isinstance(target, torch.Tensor)):
        with torch.inference_mode():
            bound = bind(model, target, _outputs(model, x), x).select(0)
        cls = int(bound.classes[0])
        if label is None and p.score == "accuracy":
            if cls < 0:
                raise InvalidParameterError(f"the {p.name} preset scores accuracy, which needs a class target")
            label = cls
    else:
        values = class_values(target)
        index = class_index(values[0]) if len(values) == 1 else None
        if index is None:
            raise InvalidParameterError(f"target must be a class index or a target object; got {target!r}")
        target = index
        n_cls = getattr(model, "num_classes", None)
        if target < 0 or (n_cls is not None and target >= n_cls):
            raise InvalidParameterError(f"target {target} is outside the model's classes")
        bound = class_bound(target, x.device)
        label = target if label is None else label
    label = None if label is None else int(label)
    H, W = x.shape[-2:]
    n = H * W
    fr = p.grid(steps)
    ks = p.pixel_counts(n, fr)
    rank = rank_pixels(saliency, (H, W), p.upsample).to(x.device).view(1, 1, H, W)
    bs = int(batch_size or 32)
    if bs < 1:
        raise InvalidParameterError("batch_size must be >= 1")

    # Every point as (source of the top pixels, number of top pixels); canonical keys share end points.
    def key(curve: str, k: int):
        if curve == "ins":  # top k pixels of the image, the rest baseline
            return "img" if k >= n else ("base" if k <= 0 else ("ins", k))
        return "base" if k >= n else ("img" if k <= 0 else ("del", k))  # top k pixels from the baseline

    ins_keys = [key("ins", int(n - k) if p.negative else int(k)) for k in ks]
    del_keys = [key("del", int(k)) for k in ks]
    unique = list(dict.fromkeys(ins_keys + del_keys))
    # Each input keeps the image where lo <= rank < hi and shows the baseline elsewhere: one batched select
    # per chunk, written into buffers allocated once (fresh multi-MB tensors per step cost page faults).
    spans = []
    for kk in unique:
        if kk == "img":
            spans.append((0, n))
        elif kk == "base":
            spans.append((0, 0))
        else:
            spans.append((0, kk[1]) if kk[0] == "ins" else (kk[1], n))
    span = torch.tensor(spans, dtype=rank.dtype, device=x.device).view(-1, 2, 1, 1, 1)
    scores: dict = {}
    with torch.inference_mode():
        base = make_baseline(model, x, base_spec)
        m = min(bs, len(unique))
        buf = torch.empty((m, *x.shape[1:]), dtype=x.dtype, device=x.device)
        keep = torch.empty((m, 1, H, W), dtype=torch.bool, device=x.device)
        below = torch.empty_like(keep)
        for start in range(0, len(unique), bs):
            b = min(bs, len(unique) - start)
            torch.ge(rank, span[start:start + b, 0], out=keep[:b])
            torch.lt(rank, span[start:start + b, 1], out=below[:b])
            keep[:b] &= below[:b]
            torch.where(keep[:b], x, base, out=buf[:b])
            out = _outputs(model, buf[:b])
            for kk, s in zip(unique[start:start + b], _scores(out, p.score, bound, label).cpu().tolist()):
                scores[kk] = s
    ins = np.array([scores[k] for k in ins_keys], dtype=np.float64)
    dele = np.array([scores[k] for k in del_keys], dtype=np.float64)
    return Curves(fractions=fr, insertion=ins, deletion=dele, insertion_auc=p.area(fr, ins, "insertion"),
                  deletion_auc=p.area(fr, dele, "deletion"), preset=p.name, baseline=base_spec.name,
                  score=p.score, insertion_label=p.insertion_label, deletion_label=p.deletion_label,
                  forward_passes=len(unique), seconds=time.perf_counter() - t0)
