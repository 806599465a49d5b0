"""The sidebar's target: what the maps explain.

A class (its logit, as before), its probability, a contrast of two classes ("why A rather than B"), the similarity
of the image's embedding to a region of its own patches, and for CLIP/SigLIP models a text prompt, its zero-shot
probability among typed labels, or a contrast of two prompts. Models without classes (CLIP towers, backbones) get a
region or text target by default. The choice is a :class:`TargetSpec`, a frozen (hashable, comparable) record that
keys the caches (captures are stored per target); :meth:`TargetSpec.build` makes the library's target object.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw

import explainers
from explainers import text as text_lib
from explainers.targets import ClassProbability, Contrast, Similarity

from . import cache

KINDS = {"class": "Class", "prob": "Class probability", "contrast": "Contrast: A rather than B",
         "text": "Text prompt", "text_contrast": "Text contrast: A rather than B", "region": "Similar to a region"}
TEMPLATE_NAMES = {"simple": "a photo of a {}.", "none": "as typed", "imagenet": "80 ImageNet templates (ensemble)"}
DEFAULT_LABELS = "dog, cat, bird, car, person"
MAX_LABEL_CHARS = 4000


@dataclass(frozen=True)
class TargetSpec:
    """One target choice. ``region``: (top, left, bottom, right) in patches, bottom/right exclusive."""

    kind: str
    a: int | None = None
    b: int | None = None
    region: tuple[int, int, int, int] | None = None
    prompts: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    templates: str = "simple"
    prob: bool = False

    def build(self):
        """The library target: an int for a class logit (as before), else a target object."""
        if self.kind == "class":
            return int(self.a)
        if self.kind == "prob":
            return ClassProbability(int(self.a))
        if self.kind == "contrast":
            return Contrast(int(self.a), int(self.b))
        if self.kind == "region":
            return Similarity.to_region(tuple(int(v) for v in self.region), name=self.region_text())
        labels = list(self.labels) or None
        if self.kind == "text_contrast":
            return text_lib.TextContrast(self.prompts[0], self.prompts[1], labels, self.templates)
        cls = text_lib.TextProbability if self.prob else text_lib.TextSimilarity
        return cls(self.prompts[0], labels, self.templates)

    def region_text(self) -> str:
        t, lft, btm, rgt = self.region
        return f"patch rows {t + 1}–{btm}, columns {lft + 1}–{rgt}"

    def describe(self, model) -> str:
        """The target in words, for captions."""
        def cls(i):
            return f"{i} · {model.labels[i]}"
        if self.kind == "class":
            return cls(self.a)
        if self.kind == "prob":
            return f"probability of {cls(self.a)}"
        if self.kind == "contrast":
            return f"{cls(self.a)} rather than {cls(self.b)}"
        if self.kind == "region":
            return f"similarity to {self.region_text()}"
        return self.build().describe(model)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if v not in (None, (), False)}
        if self.kind.startswith("text"):
            d["templates"] = self.templates
        return d


# -- what a model offers ---------------------------------------------------------------------------------------
def text_support(model) -> str | None:
    """None when the model has a text side (CLIP/SigLIP) that loads, else why not (None also when it is not a
    CLIP/SigLIP model at all: see :func:`has_text`)."""
    try:
        text_lib.text_tower(model)
    except explainers.ExplainerError as e:
        return str(e)
    return None


def has_text(model) -> bool:
    return text_support(model) is None


def kinds_for(model) -> list[str]:
    out = ["class", "prob", "contrast"] if model.num_classes > 0 else []
    if has_text(model):
        out += ["text", "text_contrast"]
    return out + ["region"]


def default_region(grid) -> tuple[int, int, int, int]:
    gh, gw = grid
    return gh // 4, gw // 4, max(gh // 4 + 1, 3 * gh // 4), max(gw // 4 + 1, 3 * gw // 4)


def default_spec(model, probs: np.ndarray) -> TargetSpec:
    """The target when the sidebar shows no choice: the predicted class, else a text or region target."""
    if model.num_classes > 0:
        return TargetSpec("class", a=int(np.argmax(probs)))
    if has_text(model):
        return TargetSpec("text", prompts=(labels_from(DEFAULT_LABELS)[0],), labels=labels_from(DEFAULT_LABELS))
    return TargetSpec("region", region=default_region(model.grid()))


def labels_from(typed: str) -> tuple[str, ...]:
    """Comma-separated labels (duplicates dropped, order kept); "imagenet": the 1000 ImageNet class names."""
    if typed.strip().lower() == "imagenet":
        return tuple(text_lib.imagenet_classnames())
    seen: dict[str, None] = {}
    for v in typed.split(","):
        if v.strip():
            seen.setdefault(" ".join(v.split()), None)
    return tuple(seen)


def zero_shot(model_key, image_hash, model, image, labels, templates) -> list[tuple[str, float]]:
    """The zero-shot top-5 over ``labels``, cached per (model, image, labels, templates)."""
    key = ("zero-shot", model_key, image_hash, hashlib.sha1("\n".join(labels).encode()).hexdigest(), templates)
    return cache.cached("images", key, lambda: text_lib.zero_shot(model, image, list(labels), templates, top=5))


def region_picture(shown: Image.Image, grid, region) -> Image.Image:
    """The model input with the region's patches outlined (and the rest dimmed)."""
    H, W = shown.size[1], shown.size[0]
    ph, pw = H / grid[0], W / grid[1]
    t, lft, btm, rgt = region
    box = (round(lft * pw), round(t * ph), round(rgt * pw) - 1, round(btm * ph) - 1)
    dim = Image.blend(shown, Image.new("RGB", shown.size, (0, 0, 0)), 0.55)
    dim.paste(shown.crop((box[0], box[1], box[2] + 1, box[3] + 1)), box[:2])
    ImageDraw.Draw(dim).rectangle(box, outline=(255, 215, 0), width=max(2, W // 110))
    return dim


# -- the sidebar widgets ------------------------------------------------------------------------------------------
def _clear(key: str, value=None) -> None:  # the last choice wins: a pill clears the typed value and vice versa
    st.session_state[key] = value


def class_picker(model, probs: np.ndarray, ident: str, label: str = "Top-5 predictions") -> int:
    top5 = [int(i) for i in np.argsort(-probs)[:5]]

    def fmt(i: int) -> str:
        return f"{model.labels[i].split(',')[0]} · {probs[i]:.1%}"

    pills_key, any_key = f"top5.{ident}", f"anyclass.{ident}"
    pick = st.pills(label, top5, default=None if pills_key in st.session_state else top5[0], format_func=fmt,
                    key=pills_key, on_change=_clear, args=(any_key,),
                    persist_state="session",
                    help="The model's five most likely classes; click one to explain it.")
    anyc = st.selectbox("Any class (type to search)", range(model.num_classes), index=None,
                        key=any_key, placeholder="Search all classes…", on_change=_clear, args=(pills_key,),
                        persist_state="session",
                        format_func=lambda i: f"{i} · {model.labels[i]} ({probs[i]:.2%})")
    if anyc is not None:
        return int(anyc)
    return int(pick) if pick is not None else top5[0]


def _second_class(model, probs: np.ndarray, a: int, ident: str) -> int:
    b = st.selectbox("…rather than (B)", range(model.num_classes), index=None, key=f"contrast.{ident}",
                     persist_state="session", placeholder="the most likely other class",
                     format_func=lambda i: f"{i} · {model.labels[i]} ({probs[i]:.2%})",
                     help="Positive evidence is for A, negative for B: logit(A) − logit(B).")
    if b is None:
        return next(int(i) for i in np.argsort(-probs) if int(i) != a)
    return int(b)


def _region_picker(model, shown: Image.Image) -> tuple[int, int, int, int]:
    gh, gw = model.grid()
    t, lft, btm, rgt = default_region((gh, gw))
    c1, c2 = st.columns(2)
    rows = c1.slider("Patch rows", 1, gh, (t + 1, btm), key=f"region.rows.{gh}x{gw}", persist_state="session",
                     help="From top (1) to bottom, both included.")
    cols = c2.slider("Patch columns", 1, gw, (lft + 1, rgt), key=f"region.cols.{gh}x{gw}", persist_state="session",
                     help="From left (1) to right, both included.")
    region = (rows[0] - 1, cols[0] - 1, rows[1], cols[1])
    st.image(region_picture(shown, (gh, gw), region), width=200,
             caption=f"The region: rows {rows[0]}–{rows[1]}, columns {cols[0]}–{cols[1]} of {gh}×{gw} patches. "
                     "The maps show what makes the whole image's embedding similar to this region's.")
    return region


def _text_picker(model, ctx_keys: tuple, image, contrast: bool) -> TargetSpec | None:
    typed = st.text_area("Labels (comma-separated)", DEFAULT_LABELS, key="text.labels", max_chars=MAX_LABEL_CHARS,
                         persist_state="session", height=68,
                         help="Zero-shot classes, scored with the model's own text tower; `imagenet`: the 1000 "
                              "ImageNet classes.")
    templates = st.selectbox("Prompt templates", list(TEMPLATE_NAMES), key="text.templates", persist_state="session",
                             format_func=TEMPLATE_NAMES.get,
                             help="Each label is written into the templates; their text embeddings are averaged.")
    labels = labels_from(typed)
    if not labels:
        st.error("Type at least one label (e.g. dog, cat).")
        return None
    try:
        with st.spinner("Zero-shot classification…"):
            top = zero_shot(*ctx_keys, model, image, labels, templates)
    except explainers.ExplainerError as e:
        st.error(f"Zero-shot classification failed: {e}")
        return None
    sig = hashlib.sha1(repr((ctx_keys, labels, templates)).encode()).hexdigest()[:10]
    pills_key = f"zs.{sig}"
    pick = st.pills("Zero-shot top-5", [lab for lab, _ in top], key=pills_key,
                    default=None if pills_key in st.session_state else top[0][0],
                    format_func=lambda lab: f"{lab} · {dict(top)[lab]:.1%}", on_change=_clear,
                    args=("text.prompt", ""), persist_state="session",
                    help="The labels that match the image best; click one to explain it.")
    prompt = st.text_input("…or type a prompt", key="text.prompt", max_chars=300, placeholder="e.g. a dog",
                           persist_state="session", on_change=_clear, args=(pills_key,),
                           help="Explain where the image matches this text.")
    a = " ".join(prompt.split()) or (pick if pick is not None else top[0][0])
    if contrast:
        others = [lab for lab, _ in top if lab != a] + [lab for lab in labels if lab != a]
        b = st.selectbox("…rather than (B)", list(dict.fromkeys(others)), key=f"text.b.{sig}", persist_state="session",
                         accept_new_options=True, help="Pick a label or type another prompt.")
        b = " ".join(str(b or "").split())
        if not b or b == a:
            st.error("A text contrast needs a second, different prompt.")
            return None
        return TargetSpec("text_contrast", prompts=(a, b), labels=labels, templates=templates)
    prob = st.toggle("Zero-shot probability among the labels", key="text.prob", persist_state="session",
                     help="Explain the prompt's probability (softmax over the labels for CLIP, its sigmoid for "
                          "SigLIP) instead of its logit.")
    return TargetSpec("text", prompts=(a,), labels=labels, templates=templates, prob=prob)


def target_section(model, probs: np.ndarray, ident: str, ctx_keys: tuple, image, shown) -> TargetSpec | None:
    """The sidebar's target widgets; the chosen :class:`TargetSpec` (None when the input is not usable)."""
    st.subheader("Target")
    kinds = kinds_for(model)
    if model.num_classes == 0 and "text" not in kinds:
        reason = text_support(model)
        st.caption("This model has no classifier: its maps explain the similarity of the image's embedding to a "
                   "region of the image." + (f" Text prompts: {reason}" if reason and "tokenizer" in reason else ""))
    kind = st.selectbox("Explain", kinds, key=f"target.kind.{'+'.join(kinds)}", format_func=KINDS.get,
                        label_visibility="collapsed", help="What the maps explain.")
    if kind in ("class", "prob", "contrast"):
        a = class_picker(model, probs, ident, "Top-5 predictions" if kind != "contrast" else "Class A (top-5)")
        if kind == "contrast":
            return TargetSpec("contrast", a=a, b=_second_class(model, probs, a, ident))
        return TargetSpec(kind, a=a)
    if kind == "region":
        return TargetSpec("region", region=_region_picker(model, shown))
    return _text_picker(model, ctx_keys, image, contrast=kind == "text_contrast")


# -- captions -----------------------------------------------------------------------------------------------------
SCORES = {"prob": "{:.2%}", "contrast": "p(A) − p(B) = {:+.3f}", "region": "cosine similarity {:.3f}",
          "text": "zero-shot score {:.3f}", "text_contrast": "p(A) − p(B) = {:+.3f}"}


def explained_caption(ctx, exp) -> str:
    """The caption under a class-specific map: the explained target and its score on the image."""
    spec = getattr(ctx, "target_spec", None)
    if spec is None or spec.kind == "class":
        return f"Explained class **{exp.target} · {exp.label}** (probability {exp.probability:.2%})"
    extra = f"; {len(spec.labels)} labels, templates: {TEMPLATE_NAMES[spec.templates]}" \
        if spec.kind.startswith("text") else ""
    return f"Explained **{spec.describe(ctx.model)}** ({SCORES[spec.kind].format(exp.probability)}{extra})"


def short_text(exp) -> str:
    """A short form of a non-class target for an image caption."""
    label = exp.label if " rather than " in exp.label or exp.target < 0 else exp.label.split(",")[0]
    return f"{label} ({exp.probability:.3g})" if exp.target < 0 or " rather than " in exp.label else \
        f"{label} ({exp.probability:.1%})"
