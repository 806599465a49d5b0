"""What an explanation explains: a target object maps the model's outputs to one number per image.

``target`` may be, everywhere in the library (``explain``, ``capture``, the metrics, ``evaluate``):

* None: the predicted class's logit; on a model without classes, a class-agnostic method (attention rollout, raw
  attention, Eigen-CAM) explains :class:`NoTarget` and every other method asks for a target (a similarity or text
  target);
* an int, or one int per image of a batch (a list, tuple, tensor or numpy array): that class's logit; any integral
  number is taken (numpy and 0-d tensor integers, ``5.0``, ``Decimal(5)``, ``Fraction(5, 1)``; ``True`` and ``1.5``
  are refused);
* :class:`ClassLogit`, :class:`ClassProbability`: one class, by its logit or its softmax probability;
* :class:`Contrast`: ``logit(a) - logit(b)``, "why a rather than b";
* :class:`Similarity`: cosine similarity of the pooled embedding to a reference embedding, given as a tensor,
  another image (``Similarity.to_image``) or a region of patches of the same image (``Similarity.to_region``): the
  embedding the model computes from the region's tokens alone, so headless backbones (DINOv2, MAE, CLIP towers)
  can be explained without a made-up classifier;
* :class:`Callable`: any function of :class:`explainers.models.Outputs` returning one value per image.

Gradient and attention methods differentiate :meth:`Bound.value`; the mask-based methods and the perturbation
metrics score masked inputs with :meth:`Bound.score`, which is the class probability for class targets (their
published definitions) and the value itself for the others.
"""

from __future__ import annotations

from collections.abc import Callable as _Callable
from dataclasses import dataclass

import torch

from .class_values import class_index, class_values
from .errors import InvalidParameterError

__all__ = ["Target", "ClassLogit", "ClassProbability", "Contrast", "Similarity", "Callable", "Bound", "bind",
           "as_target", "class_bound", "class_index", "class_values", "NoTarget"]


class Target:
    """Base class: :meth:`bind` resolves what depends on the image (the predicted class, a region's embedding)."""

    class_specific = True
    signed = False  # a contrast (evidence for one thing rather than another): its maps are signed

    def bind(self, model, outputs, x=None) -> Bound:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self, model) -> str:
        return repr(self)


@dataclass
class Bound:
    """A target resolved for one batch: ``value``/``score`` map :class:`Outputs` to (B,) tensors.

    classes: (B,) long, the class each image's map is about (-1 when there is none); label: text per image."""

    target: Target
    classes: torch.Tensor
    labels: list
    _value: object
    _score: object

    def value(self, out) -> torch.Tensor:
        return self._value(out)

    def score(self, out) -> torch.Tensor:
        return self._score(out)

    def select(self, b: int) -> Bound:
        """The target of image ``b``, broadcast over any batch of masked versions of that image."""
        sub = self.target.per_image(self, b) if hasattr(self.target, "per_image") else self
        return sub


def _need_logits(model, out, what: str):
    if out.logits is None:
        raise InvalidParameterError(
            f"{getattr(model, 'name', 'this model')} has no classifier (it is a backbone or an image-text tower), so "
            f"{what} has no meaning; explain a similarity target (explainers.targets.Similarity.to_region(...) or "
            "to_image(...)), a text prompt for CLIP/SigLIP, or load the model with num_classes=N")
    return out.logits


def _check_class(model, c) -> int:
    i = class_index(c)
    if i is None:
        raise InvalidParameterError(f"target class must be an integer; got {c!r}")
    n = getattr(model, "num_classes", 0)
    if not 0 <= i < n:
        raise InvalidParameterError(f"target class {i} is outside this model's classes (0..{n - 1})")
    return i


def _class_list(model, spec, out) -> torch.Tensor:
    logits = _need_logits(model, out, "a class target")
    B = logits.shape[0]
    if spec is None:
        return logits.detach().argmax(-1)
    cls = [_check_class(model, v) for v in class_values(spec)]
    if len(cls) == 1 and B > 1:
        cls = cls * B
    if len(cls) != B:
        raise InvalidParameterError(f"got {len(cls)} targets for {B} images")
    return torch.tensor(cls, device=logits.device, dtype=torch.long)


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    if idx.numel() == 1 or t.shape[0] != idx.shape[0]:
        return t[:, idx.reshape(-1)[0]] if idx.numel() >= 1 else t[:, 0]
    return t.gather(1, idx[:, None])[:, 0]


class ClassLogit(Target):
    """The logit of class ``index`` (None: each image's predicted class)."""

    def __init__(self, index=None):
        self.index = index

    def __repr__(self):
        return f"ClassLogit({self.index})"

    def bind(self, model, outputs, x=None) -> Bound:
        cls = _class_list(model, self.index, outputs)
        labels = [model.labels[int(c)] for c in cls]

        def value(out, cls=cls):
            return _gather(out.logits, cls)

        def score(out, cls=cls):
            return _gather(out.logits.double().softmax(-1), cls)

        return Bound(self, cls, labels, value, score)

    def per_image(self, bound: Bound, b: int) -> Bound:
        c = bound.classes[b:b + 1]
        return Bound(self, c, bound.labels[b:b + 1], lambda out, c=c: _gather(out.logits, c),
                     lambda out, c=c: _gather(out.logits.double().softmax(-1), c))


class ClassProbability(ClassLogit):
    """The softmax probability of class ``index`` (None: the predicted class)."""

    def __repr__(self):
        return f"ClassProbability({self.index})"

    def bind(self, model, outputs, x=None) -> Bound:
        b = super().bind(model, outputs, x)
        b._value = b._score
        return b

    def per_image(self, bound, b):
        sub = super().per_image(bound, b)
        sub._value = sub._score
        return sub


class Contrast(Target):
    """``logit(a) - logit(b)``: evidence for class ``a`` rather than ``b`` (masked inputs: ``p(a) - p(b)``)."""

    signed = True

    def __init__(self, a, b):
        self.a, self.b = a, b

    def __repr__(self):
        return f"Contrast({self.a}, {self.b})"

    def bind(self, model, outputs, x=None) -> Bound:
        logits = _need_logits(model, outputs, "a contrast of two classes")
        a, b = _check_class(model, self.a), _check_class(model, self.b)
        if a == b:
            raise InvalidParameterError(f"a contrast needs two different classes; got {a} twice")
        B = logits.shape[0]
        cls = torch.full((B,), a, dtype=torch.long, device=logits.device)
        label = f"{model.labels[a]} rather than {model.labels[b]}"
        return Bound(self, cls, [label] * B, lambda out: out.logits[:, a] - out.logits[:, b],
                     lambda out: (lambda p: p[:, a] - p[:, b])(out.logits.double().softmax(-1)))


def _cos(e: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(e, ref.to(e.dtype).expand_as(e), dim=-1)


class Similarity(Target):
    """Cosine similarity of the image's pooled embedding to a reference embedding (E,) or one per image (B, E).

    ``Similarity.to_image(model, image)``: the reference is another image's embedding.
    ``Similarity.to_region(mask)``: the reference is the embedding the model computes from the region's patch
    tokens alone (``mask``: (gh, gw) booleans on the patch grid, or a (top, left, bottom, right) box in patches)."""

    class_specific = False

    def __init__(self, reference: torch.Tensor | None = None, region=None, name: str = ""):
        if reference is None and region is None:
            raise InvalidParameterError("Similarity needs a reference embedding or a region")
        self.reference, self.region, self.name = reference, region, name

    def __repr__(self):
        return f"Similarity({self.name or ('region' if self.region is not None else 'embedding')})"

    @classmethod
    def to_image(cls, model, image, name: str = "the reference image") -> Similarity:
        from .api import to_input

        x, _ = to_input(model, image)
        with torch.inference_mode():
            ref = model.outputs(x).embedding[0].detach().clone()
        return cls(reference=ref, name=name)

    @classmethod
    def to_region(cls, region, name: str = "") -> Similarity:
        return cls(region=region, name=name or "the selected region")

    def _region_mask(self, grid) -> torch.Tensor:
        r = self.region
        if isinstance(r, (tuple, list)) and len(r) == 4 and all(isinstance(v, int) for v in r):
            t, lft, btm, rgt = r
            m = torch.zeros(grid, dtype=torch.bool)
            m[max(0, t):btm, max(0, lft):rgt] = True
        else:
            m = torch.as_tensor(r).bool()
        if tuple(m.shape) != tuple(grid):
            raise InvalidParameterError(f"the region mask has shape {tuple(m.shape)}; this input's grid is {grid}")
        if not m.any():
            raise InvalidParameterError("the region is empty: select at least one patch")
        return m

    def bind(self, model, outputs, x=None) -> Bound:
        e = outputs.embedding
        if self.reference is not None:
            ref = torch.as_tensor(self.reference).to(e.device, e.dtype)
            if ref.shape[-1] != e.shape[-1]:
                raise InvalidParameterError(
                    f"the reference embedding has {ref.shape[-1]} dimensions; this model's embedding has {e.shape[-1]}")
        else:
            if x is None:
                raise InvalidParameterError("a region target needs the model input")
            mask = self._region_mask(model.grid(x)).reshape(-1).to(x.device)
            keep = mask.nonzero()[:, 0]
            with torch.inference_mode():
                tokens = model.embed(x.detach())
                P = model.num_prefix_tokens
                sub = torch.cat([tokens[:, :P], tokens[:, P:][:, keep]], 1)
                ref = model.forward_tokens(sub, keep=keep.expand(x.shape[0], -1), full=True).embedding.detach()
            ref = ref.clone()
        B = e.shape[0]
        label = f"similarity to {self.name or 'the reference'}"
        cls = torch.full((B,), -1, dtype=torch.long, device=e.device)

        def value(out, ref=ref):
            r = ref if (ref.dim() == 1 or ref.shape[0] == out.embedding.shape[0]) else ref[:1]
            return _cos(out.embedding, r)

        bound = Bound(self, cls, [label] * B, value, value)
        bound.reference = ref
        return bound

    def per_image(self, bound, b):
        ref = bound.reference
        r = ref if ref.dim() == 1 else ref[b]
        return Bound(self, bound.classes[b:b + 1], bound.labels[b:b + 1], lambda out: _cos(out.embedding, r),
                     lambda out: _cos(out.embedding, r))


class Callable(Target):
    """Any function ``fn(outputs) -> (B,)`` of :class:`explainers.models.Outputs` (``.embedding``, ``.logits``)."""

    class_specific = False

    def __init__(self, fn: _Callable, name: str = "a custom target"):
        if not callable(fn):
            raise InvalidParameterError("Callable target needs a function of the model outputs")
        self.fn, self.name = fn, name

    def __repr__(self):
        return f"Callable({self.name})"

    def bind(self, model, outputs, x=None) -> Bound:
        v = self.fn(outputs)
        B = outputs.embedding.shape[0]
        if not isinstance(v, torch.Tensor) or v.reshape(-1).shape[0] != B:
            raise InvalidParameterError(f"the target function must return one value per image ({B}); got "
                                        f"{type(v).__name__} {tuple(v.shape) if isinstance(v, torch.Tensor) else ''}")
        cls = torch.full((B,), -1, dtype=torch.long, device=outputs.embedding.device)

        def value(out):
            return self.fn(out).reshape(-1)

        return Bound(self, cls, [self.name] * B, value, value)


class NoTarget(Target):
    """No target: what a class-agnostic method (``Method.class_specific`` False: attention rollout, raw attention,
    Eigen-CAM) explains by default on a model without classes, such as a DINO backbone. Its value is 0 (there is
    nothing to differentiate) and it has no score: the explanation's probability is NaN, and scoring it (insertion,
    deletion) is refused."""

    class_specific = False
    scoreless = True
    LABEL = "no target (class-agnostic map)"

    def __repr__(self):
        return "NoTarget()"

    def describe(self, model) -> str:
        return self.LABEL

    def bind(self, model, outputs, x=None) -> Bound:
        e = outputs.embedding
        cls = torch.full((e.shape[0],), -1, dtype=torch.long, device=e.device)

        def value(out):
            return out.embedding.reshape(out.embedding.shape[0], -1).sum(-1) * 0

        def score(out):
            raise InvalidParameterError(
                "a class-agnostic map made without a target cannot be scored (insertion, deletion and the other "
                "metrics measure a target's score): give a target, e.g. explainers.targets.Similarity.to_region(...), "
                "a text prompt for CLIP/SigLIP, or a class of a model with a classifier")

        return Bound(self, cls, [self.LABEL] * e.shape[0], value, score)


def class_bound(c: int, device=None, label: str = "") -> Bound:
    """A bound class target for one class index (its logit as value, its probability as score)."""
    cls = torch.tensor([int(c)], device=device)
    return Bound(ClassLogit(int(c)), cls, [label], lambda out: _gather(out.logits, cls),
                 lambda out: _gather(out.logits.double().softmax(-1), cls))


def as_target(target) -> Target:
    """None / int / sequence of ints / numpy or torch integers -> :class:`ClassLogit`; a Target as is."""
    if isinstance(target, Target):
        return target
    if callable(target) and not isinstance(target, torch.Tensor):
        return Callable(target)
    return ClassLogit(target)


def bind(model, target, outputs, x=None) -> Bound:
    """Resolve ``target`` (anything :func:`as_target` takes) against a clean pass's outputs."""
    return as_target(target).bind(model, outputs, x)
