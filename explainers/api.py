"""The public verbs: :func:`explain`, and its two halves :func:`capture` and :func:`render`."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InvalidParameterError
from .identity import model_identity
from .images import load_image
from .inputs import check_input_tensor, check_outputs
from .models.rules import libragrad
from .registry import METHODS, Capture, check_target
from .targets import NoTarget
from .viz import check_clip, check_cmap, check_scale, default_cmap, default_scale, scale_map, value_range

__all__ = ["Explanation", "explain", "capture", "render", "to_input", "upsample", "is_signed"]


@dataclass
class Explanation:
    """One image's explanation.

    patch_map: (grid_h, grid_w) float32, the method's raw map (for pixel-level methods such as
        ``lrp_full``, the pixel relevance summed per patch).
    heatmap: (H, W) float32 at the model input size, min-max scaled to [0, 1] (all zeros when the map is
        constant; see ``warnings``). Its order is the raw map's (most positive first): the metrics rank it.
    raw_heatmap: (H, W) float32, the raw map at the model input size, sign kept (upsampled patch map, or the
        pixel map of a pixel-level method).
    signed: whether the raw map can be negative (the method with these parameters, or a contrast target).
    scale, clip, cmap: how the map is drawn (:mod:`explainers.viz`): a scaling of :data:`viz.SCALES`, an outlier
        clip at a percentile of ``|values|`` and a colour map. By default a signed map is drawn ``symmetric`` with
        ``bwr`` (red for the target, blue against, white at 0), an unsigned one ``minmax`` with ``jet``.
        :meth:`display` gives the colour positions; :meth:`with_display` another choice. Drawing never changes a
        metric.
    """

    method: str
    patch_map: np.ndarray
    heatmap: np.ndarray
    target: int  # the class the map is about; -1 for a target that is not a class (similarity, custom)
    probability: float  # the target's score on the image: the class probability, or the similarity / value
    label: str  # the target in words ("tabby cat", "bull mastiff rather than tiger cat", "similarity to ...")
    params: dict
    seconds: float
    warnings: list[str] = field(default_factory=list)
    top5: list[tuple[int, str, float]] = field(default_factory=list)
    raw_heatmap: np.ndarray | None = None
    signed: bool = False
    scale: str = ""
    clip: float = 0.0
    cmap: str = ""

    def __post_init__(self):
        if self.raw_heatmap is None:
            self.raw_heatmap = self.heatmap
        self.scale = check_scale(self.scale or default_scale(self.signed))
        self.clip = check_clip(self.clip)
        self.cmap = check_cmap(self.cmap or default_cmap(self.scale))

    def with_display(self, scale: str | None = None, clip: float | None = None, cmap: str | None = None):
        """This explanation drawn another way (a new scaling picks its default colour map unless ``cmap`` is
        given); the maps themselves are shared, not copied."""
        scale = scale or self.scale
        cmap = cmap or (self.cmap if scale == self.scale else default_cmap(scale))
        return dataclasses.replace(self, scale=scale, clip=self.clip if clip is None else clip, cmap=cmap)

    def display(self, scale: str | None = None, clip: float | None = None) -> np.ndarray:
        """(H, W) colour positions in [0, 1] of the raw map under the scaling (default: this one's)."""
        return scale_map(self.raw_heatmap, scale or self.scale, self.clip if clip is None else clip)

    def display_range(self, scale: str | None = None, clip: float | None = None) -> tuple[float, float]:
        """The raw values drawn with the first and the last colour."""
        return value_range(self.raw_heatmap, scale or self.scale, self.clip if clip is None else clip)

    def display_dict(self) -> dict:
        lo, hi = self.display_range()
        return {"scale": self.scale, "clip_percentile": self.clip, "colour_map": self.cmap, "range": [lo, hi]}

    def to_dict(self) -> dict:
        return {"method": self.method, "target": self.target, "label": self.label,
                "probability": self.probability, "params": self.params, "seconds": self.seconds,
                "warnings": list(self.warnings), "top5": [list(t) for t in self.top5],
                "grid": list(self.patch_map.shape), "signed": self.signed, "display": self.display_dict()}


def to_input(model, image) -> tuple[torch.Tensor, bool]:
    """PIL image / path / bytes / (3,H,W) or (B,3,H,W) tensor -> (model input batch, was_batch)."""
    if isinstance(image, torch.Tensor):
        image = check_input_tensor(image)  # NaN/Inf, integer dtypes, empty or oversized batches: refused
        if image.dim() == 3:
            return model.check_input(image.unsqueeze(0)), False
        x = model.check_input(image)
        return x, x.shape[0] > 1
    return model.preprocess(load_image(image)), False  # load_image also takes numpy arrays


def upsample(patch_maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, gh, gw) -> (B, H, W) bilinear (as Chefer et al. and jacobgil's visualisation)."""
    return F.interpolate(patch_maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def _minmax(m: torch.Tensor) -> tuple[torch.Tensor, bool]:
    lo, hi = m.min(), m.max()
    if not torch.isfinite(hi - lo) or float(hi - lo) <= 1e-12 * max(1.0, float(hi.abs())):
        return torch.zeros_like(m), False
    return (m - lo) / (hi - lo), True


def is_signed(method: str, params: dict | None = None, target=None) -> bool:
    """Whether ``method``'s raw map with these parameters and this target can be negative: the method's own
    declaration, or a signed target (a contrast: evidence for one class rather than another) of a method whose
    map follows the target."""
    m = METHODS[method]
    return bool(m.is_signed(params) or (m.class_specific and getattr(target, "signed", False)))


def capture(model, image, method: str = "attention_rollout", target=None, progress=None, **params) -> Capture:
    """Run the model-dependent part of a method (forward/backward/masked passes). The result is reused
    by :func:`render` for any change of the method's cheap parameters."""
    m = METHODS[method]
    full = m.validate(params, model)
    heavy, _ = m.split(full)
    if target is None and not m.class_specific and not model.num_classes:
        target = NoTarget()  # a class-agnostic method on a model without classes needs no target
    check_target(target, model.num_classes)
    x, _ = to_input(model, image)
    t0 = time.perf_counter()
    with libragrad(bool(heavy.get("libragrad", False))):  # the LibraGrad wrapper (methods offering it)
        cap = m.capture(model, x, target, heavy, progress)
    cap.seconds = time.perf_counter() - t0
    check_outputs(cap)
    cap.method = m.name
    cap.params = heavy
    cap.x = x.detach().cpu()
    cap.model_name, cap.model_identity = str(getattr(model, "name", "")), model_identity(model)
    return cap


def render(cap: Capture, model=None, batch: bool | None = None, **params):
    """Finish an explanation from a :class:`Capture` with (possibly new) cheap parameters. No model call.

    Returns one :class:`Explanation` per image: a list for a batch of several images, else a single one.
    """
    m = METHODS[cap.method]
    if model is not None and cap.model_identity and model_identity(model) != cap.model_identity:
        raise InvalidParameterError(
            f"this capture was made with another model ({cap.model_name!r}); render it with the model that made it, "
            f"or capture again with this one ({getattr(model, 'name', '')!r})")
    full = m.validate({**cap.params, **params}, model)
    heavy, cheap = m.split(full)
    if heavy != cap.params:
        changed = sorted(k for k in heavy if heavy[k] != cap.params.get(k))
        raise InvalidParameterError(
            f"parameters {', '.join(changed)} need a new capture (they change the model passes)")
    t0 = time.perf_counter()
    maps = m.reduce(cap, cheap)
    pm = maps.patch_maps.detach().float().cpu()
    if maps.pixel_maps is not None:
        px = maps.pixel_maps.detach().float().cpu()
    else:
        px = upsample(pm, cap.input_size)
    probs = cap.logits.detach().float().softmax(-1).cpu() if cap.logits is not None else None
    scores = cap.target_scores.detach().float().cpu() if cap.target_scores is not None else None
    reduce_s = time.perf_counter() - t0
    B = pm.shape[0]
    labels = getattr(model, "labels", None)
    bound = cap.target
    signed = is_signed(cap.method, full, bound.target if bound is not None else None)
    out = []
    for b in range(B):
        warns = list(maps.warnings[b]) if maps.warnings else []
        p = pm[b]
        bad = ~torch.isfinite(p)
        if bad.any():
            warns.append(f"{int(bad.sum())} non-finite map values were set to 0")
            p = torch.where(bad, torch.zeros_like(p), p)
        raw = torch.nan_to_num(px[b], nan=0.0, posinf=0.0, neginf=0.0)
        hm, ok = _minmax(raw)
        if not ok:
            warns.append("the map is constant: it carries no information for this image/target")
        t = int(cap.targets[b])
        top5 = []
        if probs is not None:
            top = torch.topk(probs[b], k=min(5, probs.shape[1]))
            top5 = [(int(i), labels[int(i)] if labels else str(int(i)), float(v))
                    for v, i in zip(top.values, top.indices)]
        if bound is not None:
            label = bound.labels[b]
        else:
            label = labels[t] if (labels and t >= 0) else str(t)
        prob = float(scores[b]) if scores is not None else (float(probs[b, t]) if probs is not None and t >= 0 else
                                                            float("nan"))
        out.append(Explanation(
            method=cap.method, patch_map=p.numpy().astype(np.float32), heatmap=hm.numpy().astype(np.float32),
            target=t, probability=prob, label=label, params=full,
            seconds=(cap.seconds + reduce_s) / B, warnings=warns, top5=top5,
            raw_heatmap=raw.numpy().astype(np.float32), signed=signed))
    if batch is None:
        batch = B > 1
    return out if batch else out[0]


def explain(model, image, method: str = "attention_rollout", target=None, progress=None, *, scale=None, clip=0.0,
            cmap=None, **params):
    """Explain ``model``'s prediction for ``image`` with ``method``.

    image: a PIL image, a path, bytes, or a tensor (3, H, W) / (B, 3, H, W) already preprocessed.
    target: None (the predicted class; on a model without classes, none for class-agnostic methods: docs/targets.md),
        a class index, one index per image of a batch, or a target object from
        :mod:`explainers.targets` (class probability, contrast of two classes, similarity to an embedding, another
        image or a region, any function of the outputs).
    progress: optional ``callback(done, total)`` for long methods; return False (or raise
        :class:`explainers.Cancelled`) to cancel.
    scale, clip, cmap: how the map is drawn (see :class:`Explanation`; default: by its sign); metrics ignore them.
    params: the method's parameters (see ``explainers.METHODS[method].params``).

    Returns an :class:`Explanation`, or a list of them for a batch of more than one image.
    """
    cap = capture(model, image, method, target, progress, **params)
    m = METHODS[method]
    _, cheap = m.split(m.validate(params, model))
    out = render(cap, model, **cheap)
    if scale is None and clip == 0.0 and cmap is None:
        return out
    return [e.with_display(scale, clip, cmap) for e in out] if isinstance(out, list) else \
        out.with_display(scale, clip, cmap)
