"""Text prompts for CLIP and SigLIP: zero-shot classification and text targets for every method.

The text side runs through the model's own tokenizer and text tower (Hugging Face ``CLIPModel`` / ``SiglipModel``,
open_clip ``CLIP``). Zero-shot logits are the model's own ``exp(logit_scale) * cos(image, text) (+ logit_bias)``:
a softmax over the prompts for CLIP, a sigmoid per prompt for SigLIP. With templates, a prompt's embedding is the
normalised mean of its normalised template embeddings (``templates="imagenet"``: the 80 of Radford et al.).
Text embeddings are cached per (model, prompts, templates).

Targets: :class:`TextSimilarity` (the prompt's zero-shot logit), :class:`TextProbability` (its zero-shot
probability among ``labels``), :class:`TextContrast` (logit(a) - logit(b)). Gradient and attention methods
differentiate the value; mask-based methods and perturbation metrics score masked images with the zero-shot
probability (CLIP with one prompt: its cosine). LRP starts from ``e * t / (|e| |t|)``, as for ``Similarity``.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import torch

from ._extras import available, missing_message, require
from .errors import InvalidParameterError, MissingExtraError, ModelLoadError
from .prompts import TEMPLATES, check_template, clean_prompts, fill, imagenet_classnames, resolve_templates
from .targets import Bound, Target

__all__ = ["TEMPLATES", "imagenet_classnames", "resolve_templates", "check_template", "fill", "TextTower",
           "text_tower", "text_embeddings", "zero_shot_logits", "zero_shot", "zero_shot_classifier", "ZeroShotHead",
           "TextSimilarity", "TextProbability", "TextContrast"]

CACHE_SIZE = 32  # prompt sets kept per model


_clean = clean_prompts


class TextTower:
    """The model's own tokenizer and text tower; ``encode(texts)`` -> (N, E) text features (not normalised)."""

    def __init__(self, model, tokenizer=None):
        module = model.module
        name = type(module).__name__
        if name in ("CLIPModel", "SiglipModel"):
            self.kind = "siglip" if name.startswith("Siglip") else "clip"
            self.library = "hf"
        elif hasattr(module, "encode_text") and hasattr(module, "visual"):
            self.kind = "siglip" if getattr(module, "logit_bias", None) is not None else "clip"
            self.library = "open_clip"
        else:
            raise InvalidParameterError(
                f"{model.name} has no text tower: text prompts need a CLIP or SigLIP model with its text side (e.g. "
                "openai/clip-vit-base-patch16, google/siglip-base-patch16-224, open_clip:ViT-B-16/openai)")
        self.module = module
        self.tokenizer = tokenizer if tokenizer is not None else self._own_tokenizer(model)

    def _own_tokenizer(self, model):
        if self.library == "open_clip":
            from .models.open_clip_vit import split_name

            open_clip = require("open_clip", f"the tokenizer of {model.name}")

            arch, _ = split_name(str(model.name))
            if arch in open_clip.list_models() or arch.startswith("hf-hub:"):
                return open_clip.get_tokenizer(arch)
            if self.module.vocab_size == 49408:  # OpenAI's BPE vocabulary, shipped with open_clip
                return open_clip.tokenizer.SimpleTokenizer(context_length=self.module.context_length)
            raise ModelLoadError(
                f"cannot tell which tokenizer {model.name} uses; pass text_tower(model, tokenizer=...)")
        from transformers import AutoTokenizer

        local = model.weights_path is not None
        source = str(model.weights_path) if local else str(model.name)
        try:
            return AutoTokenizer.from_pretrained(source, local_files_only=local)
        except Exception as e:
            if "sentencepiece" in str(e).lower() and not available("sentencepiece"):
                raise MissingExtraError(missing_message("sentencepiece", f"the tokenizer of {model.name}")) from None
            raise ModelLoadError(
                f"could not load the tokenizer of {model.name} ({type(e).__name__}: {str(e)[:160]}); it comes with "
                "the model on the hub or in its folder (tokenizer.json / vocab files)") from None

    @property
    def logit_scale(self) -> torch.Tensor:
        with torch.inference_mode(False), torch.no_grad():
            return self.module.logit_scale.detach().float().exp()

    @property
    def logit_bias(self) -> torch.Tensor | None:
        b = getattr(self.module, "logit_bias", None)
        with torch.inference_mode(False), torch.no_grad():
            return None if b is None else b.detach().float().clone()

    def tokens(self, texts: list[str]) -> dict:
        if self.library == "open_clip":
            return {"text": self.tokenizer(texts)}
        cfg = self.module.config.text_config
        pad = "max_length" if self.kind == "siglip" else True  # SigLIP was trained on max-length padded text
        enc = self.tokenizer(texts, padding=pad, truncation=True, max_length=cfg.max_position_embeddings,
                             return_tensors="pt")
        return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def encode(self, texts: list[str], batch: int = 256) -> torch.Tensor:
        dev = next(self.module.parameters()).device
        outs = []
        with torch.no_grad():
            for i in range(0, len(texts), batch):
                tok = {k: v.to(dev) for k, v in self.tokens(texts[i:i + batch]).items()}
                if self.library == "open_clip":
                    f = self.module.encode_text(tok["text"])
                else:
                    f = self.module.get_text_features(**tok)
                    f = getattr(f, "pooler_output", f)
                outs.append(f.float())
        return torch.cat(outs)


_towers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.RLock()


def text_tower(model, tokenizer=None) -> TextTower:
    """The text side of ``model`` (cached per model; ``tokenizer`` replaces the model's own)."""
    with _lock:
        tower = _towers.get(model.module)
        if tower is None or tokenizer is not None:
            tower = _towers[model.module] = TextTower(model, tokenizer)
            _cache.pop(model.module, None)
        return tower


def share_tokenizer(source, copy) -> None:
    """Give ``copy`` (e.g. the float64 copy the LRP methods make) the tokenizer ``source`` already has, so that
    it never loads one again (a locally given tokenizer may not be loadable at all)."""
    with _lock:
        tower = _towers.get(source.module)
    if tower is not None and copy.module is not source.module:
        text_tower(copy, tokenizer=tower.tokenizer)


def text_embeddings(model, prompts, templates=None) -> torch.Tensor:
    """(K, E) normalised text embeddings of ``prompts`` (template ensemble), cached per (model, prompts, templates)."""
    prompts, tmpl = _clean(prompts), resolve_templates(templates)
    key = (prompts, tmpl)
    with _lock:
        per_model = _cache.setdefault(model.module, OrderedDict())
        hit = per_model.get(key)
        if hit is not None:
            per_model.move_to_end(key)
            return hit
    tower = text_tower(model)
    texts = [fill(t, p) for p in prompts for t in tmpl]
    with torch.inference_mode(False), torch.no_grad():  # cached tensors must be usable in autograd graphs later
        f = tower.encode(texts).reshape(len(prompts), len(tmpl), -1)
        f = torch.nn.functional.normalize(f, dim=-1).mean(1)
        emb = torch.nn.functional.normalize(f, dim=-1).to(model.device)
    with _lock:
        per_model[key] = emb
        while len(per_model) > CACHE_SIZE:
            per_model.popitem(last=False)
    return emb


def _logits(e: torch.Tensor, T: torch.Tensor, scale, bias) -> torch.Tensor:
    z = torch.nn.functional.normalize(e.float(), dim=-1) @ T.T * scale.to(e.device)
    return z + bias.to(e.device) if bias is not None else z


def zero_shot_logits(model, embedding: torch.Tensor, prompts, templates=None) -> torch.Tensor:
    """(B, K) zero-shot logits of image embeddings (B, E) (``model.outputs(x).embedding``) against ``prompts``."""
    T = text_embeddings(model, prompts, templates)
    tower = text_tower(model)
    return _logits(embedding, T, tower.logit_scale, tower.logit_bias)


def zero_shot(model, image, labels=None, templates="simple", top: int = 5) -> list[tuple[str, float]]:
    """Zero-shot classification of one image: the ``top`` labels with their probabilities (CLIP: softmax over the
    labels; SigLIP: each label's own sigmoid). labels: None -> the 1000 ImageNet classes."""
    from .api import to_input

    if isinstance(top, bool) or not hasattr(top, "__index__") or getattr(top, "ndim", 0) or int(top) < 1:
        raise InvalidParameterError(f"top must be a whole number of labels, 1 or more; got {top!r}")
    top = int(top)
    labels = list(_clean(labels)) if labels is not None else imagenet_classnames()
    x, _ = to_input(model, image)
    with torch.inference_mode():
        z = zero_shot_logits(model, model.outputs(x[:1]).embedding, labels, templates)[0]
        p = z.sigmoid() if text_tower(model).kind == "siglip" else z.softmax(-1)
        v, i = torch.topk(p, k=min(top, len(labels)))
    return [(labels[int(j)], float(s)) for s, j in zip(v, i)]


class ZeroShotHead:
    """A linear classifier over the normalised image embedding: ``scale * normalize(e) @ T.T (+ bias)``."""

    def __init__(self, T: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        self.weight, self.bias = T * scale, bias  # the LRP rules read ``weight`` (their ratios ignore the norm)
        self.out_features = T.shape[0]

    def __call__(self, e: torch.Tensor) -> torch.Tensor:
        z = torch.nn.functional.normalize(e, dim=-1) @ self.weight.T.to(e.dtype)
        return z + self.bias.to(e.dtype) if self.bias is not None else z


def zero_shot_classifier(model, labels="imagenet", templates="simple"):
    """``model`` as a classifier over ``labels`` ("imagenet": the 1000 classes): its head is the normalised text
    embeddings scaled by the logit scale (+ bias), so class indices, ``evaluate`` and every class target work.
    Shares the model's modules (no copy). Masked images are scored by the softmax over the labels (for SigLIP
    too; the per-prompt sigmoid is what :class:`TextProbability` scores)."""
    import copy
    import dataclasses

    names = imagenet_classnames() if isinstance(labels, str) and labels.strip().lower() == "imagenet" \
        else list(_clean(labels))
    T = text_embeddings(model, names, templates)
    tower = text_tower(model)
    clf = copy.copy(model)
    clf.pooling = clf.head = dataclasses.replace(model.pooling, head=ZeroShotHead(T, tower.logit_scale,
                                                                                   tower.logit_bias))
    clf.num_classes, clf.labels = len(names), names
    clf.name = f"{model.name} (zero-shot, {len(names)} labels)"
    clf.zero_shot = {"labels": list(names), "templates": templates}  # part of a run folder's fingerprint
    return clf


class _TextTarget(Target):
    class_specific = False
    what = ""

    def __init__(self, prompts: tuple, labels=None, templates=None):
        self.prompts = _clean(prompts)
        extra = [] if labels is None else [lab for lab in _clean(labels) if lab not in self.prompts]
        self.labels = tuple(extra) + tuple(p for p in self.prompts if p not in extra)
        self.templates = templates
        resolve_templates(templates)  # refuse bad templates now

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(map(repr, self.prompts))}, {len(self.labels)} labels)"

    def describe(self, model) -> str:
        return self._label()

    def _setup(self, model, outputs):
        e = outputs.embedding
        if e is None:
            raise InvalidParameterError(f"{model.name} gives no image embedding to compare with text")
        tower = text_tower(model)
        with torch.inference_mode(False):  # bound inside inference mode, differentiated outside it
            T = text_embeddings(model, self.labels, self.templates).to(e.device)
        idx = [self.labels.index(p) for p in self.prompts]
        return tower, T, idx

    def _bound(self, model, outputs, value, score, reference) -> Bound:
        B = outputs.embedding.shape[0]
        cls = torch.full((B,), -1, dtype=torch.long, device=outputs.embedding.device)
        b = Bound(self, cls, [self._label()] * B, value, score)
        b.reference = reference
        b.prompts, b.templates = self.labels, resolve_templates(self.templates)
        return b


def _probabilities(tower, z: torch.Tensor) -> torch.Tensor:
    return z.sigmoid() if tower.kind == "siglip" else z.softmax(-1)


class TextSimilarity(_TextTarget):
    """The zero-shot logit of ``prompt`` (``exp(logit_scale) * cos(image, text) (+ bias)``); masked images are
    scored by its zero-shot probability among ``labels``."""

    def __init__(self, prompt: str, labels=None, templates=None):
        super().__init__((prompt,), labels, templates)

    def _label(self):
        return f"text: {self.prompts[0]!r}"

    def bind(self, model, outputs, x=None) -> Bound:
        tower, T, (i,) = self._setup(model, outputs)
        if isinstance(self, TextProbability) and tower.kind == "clip" and len(self.labels) < 2:
            raise InvalidParameterError("a CLIP zero-shot probability needs other labels to compete with (labels=[...]"
                                        "; command line: --labels A,B,C): a softmax over one prompt is always 1")
        s, bias = tower.logit_scale, tower.logit_bias

        def value(out):
            return _logits(out.embedding, T, s, bias)[:, i]

        def score(out):
            z = _logits(out.embedding, T, s, bias)
            if tower.kind == "clip" and len(self.labels) == 1:  # a softmax over one prompt is constant: the cosine
                return (z[:, i] - (bias if bias is not None else 0)) / s
            return _probabilities(tower, z)[:, i]

        return self._bound(model, outputs, self._value(value, score), score, T[i])

    def _value(self, value, score):
        return value


class TextProbability(TextSimilarity):
    """The zero-shot probability of ``prompt`` among ``labels`` (CLIP: softmax; SigLIP: the prompt's sigmoid)."""

    def _label(self):
        return f"p(text {self.prompts[0]!r})"

    def _value(self, value, score):
        return score


class TextContrast(_TextTarget):
    """``logit(a) - logit(b)``: evidence for prompt ``a`` rather than ``b`` (masked images: ``p(a) - p(b)``)."""

    signed = True

    def __init__(self, a: str, b: str, labels=None, templates=None):
        super().__init__((a, b), labels, templates)
        if self.prompts[0] == self.prompts[1]:
            raise InvalidParameterError(f"a contrast needs two different prompts; got {a!r} twice")

    def _label(self):
        return f"text: {self.prompts[0]!r} rather than {self.prompts[1]!r}"

    def bind(self, model, outputs, x=None) -> Bound:
        tower, T, (i, j) = self._setup(model, outputs)
        s, bias = tower.logit_scale, tower.logit_bias

        def value(out):
            z = _logits(out.embedding, T, s, bias)
            return z[:, i] - z[:, j]

        def score(out):
            p = _probabilities(tower, _logits(out.embedding, T, s, bias))
            return p[:, i] - p[:, j]

        return self._bound(model, outputs, value, score, T[i] - T[j])
