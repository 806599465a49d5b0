"""The Evaluate page's text mode (CLIP and SigLIP): a zero-shot evaluation.

With a model that has a text side, each image is explained for its zero-shot top label among the sidebar's labels
(shared with the explainer pages' *Labels* box) or the 1000 ImageNet class names, with the chosen prompt templates:
the library's ``text.zero_shot_classifier`` turns the model into a classifier over those labels and
``explainers.evaluate`` runs on it, as ``python -m explainers evaluate --zero-shot`` does (the insertion/deletion
curves score masked images with the softmax over the labels). :func:`mode_section` draws the choice and returns a
:class:`ZeroShot` record, ``"class"`` for a class-based run, or None for a model that can do neither.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from explainers import text as text_lib

from . import targets_ui

SOURCES = {"sidebar": "The sidebar's labels", "imagenet": "The 1000 ImageNet class names"}
MODES = {"zero-shot": "Zero-shot label (text prompts)", "class": "The model's predicted class"}
SIDEBAR_LABELS, SIDEBAR_TEMPLATES = "text.labels", "text.templates"  # the explainer pages' sidebar widgets


@dataclass(frozen=True)
class ZeroShot:
    """A zero-shot evaluation's labels: ``source`` "sidebar" (``labels`` as typed) or "imagenet"."""

    source: str
    labels: tuple[str, ...]
    templates: str = "simple"

    def classifier(self, model):
        """``model`` as a classifier over the labels (the library's ``zero_shot_classifier``)."""
        labels = "imagenet" if self.source == "imagenet" else list(self.labels)
        return text_lib.zero_shot_classifier(model, labels, self.templates)

    @property
    def labels_text(self) -> str:
        """The labels as the command line's ``--zero-shot`` takes them ("imagenet" or "A,B,C")."""
        return "imagenet" if self.source == "imagenet" else ",".join(self.labels)

    def describe(self) -> str:
        """The labels and templates in words, for captions."""
        if self.source == "imagenet":
            what = "the 1000 ImageNet class names"
        else:
            shown = ", ".join(self.labels[:12]) + (", …" if len(self.labels) > 12 else "")
            what = f"{len(self.labels)} labels ({shown})"
        return f"{what}, templates: {targets_ui.TEMPLATE_NAMES[self.templates]}"

    def record(self) -> dict:
        """The columns the downloads add: the labels (as ``--zero-shot`` takes them) and the templates."""
        return {"zero_shot_labels": self.labels_text, "zero_shot_templates": self.templates}


def _to_sidebar(key: str, sidebar_key: str) -> None:
    """Copy the page's value into the sidebar widget's state (the explainer pages show the same labels)."""
    st.session_state[sidebar_key] = st.session_state[key]


def _shared(key: str, sidebar_key: str, default) -> None:
    """Show the sidebar's current value in the page's widget ``key`` (set before the widget is drawn)."""
    st.session_state[key] = st.session_state.get(sidebar_key, default)


def zero_shot_section() -> ZeroShot | None:
    """The labels and templates of a zero-shot run (None, with a message, when no usable labels are typed)."""
    c1, c2 = st.columns([1, 1])
    source = c1.radio("Zero-shot labels", list(SOURCES), key="ev.zs.source", format_func=SOURCES.get,
                      persist_state="session",
                      help="The labels each image is classified over; the image is explained for its top label. "
                           "A boxes.json label is an index into these labels.")
    _shared("ev.zs.templates", SIDEBAR_TEMPLATES, "simple")
    templates = c2.selectbox("Prompt templates", list(targets_ui.TEMPLATE_NAMES), key="ev.zs.templates",
                             format_func=targets_ui.TEMPLATE_NAMES.get, on_change=_to_sidebar,
                             args=("ev.zs.templates", SIDEBAR_TEMPLATES),
                             help="Each label is written into the templates; their text embeddings are averaged "
                                  "(the ImageNet ensemble over 1000 labels encodes 80,000 prompts: minutes on a "
                                  "CPU, once per model). Shared with the sidebar of the explainer pages.")
    if source == "imagenet":
        return ZeroShot("imagenet", (), templates)
    _shared("ev.zs.labels", SIDEBAR_LABELS, targets_ui.DEFAULT_LABELS)
    typed = st.text_area("Labels (comma-separated)", key="ev.zs.labels", max_chars=targets_ui.MAX_LABEL_CHARS,
                         height=68, on_change=_to_sidebar, args=("ev.zs.labels", SIDEBAR_LABELS),
                         help="The same labels as in the sidebar of the explainer pages (a change here shows "
                              "there too).")
    labels = targets_ui.labels_from(typed)
    if len(labels) < 2:
        st.error("Type at least two labels (e.g. dog, cat): each image is classified among them, and a softmax "
                 "over one label is always 1.")
        return None
    return ZeroShot("sidebar", labels, templates)


def mode_section(model) -> ZeroShot | str | None:
    """What the run explains: a :class:`ZeroShot` (a model with a text side), ``"class"`` (a classifier without
    one, or chosen), ``"invalid"`` (zero-shot labels that cannot be used; a message is shown) or None when the
    model has neither classes nor a text side (nothing to run)."""
    has_text = targets_ui.has_text(model)
    if model.num_classes == 0 and not has_text:
        reason = targets_ui.text_support(model)
        st.info("This model has no classifier and no text side: the evaluation explains each image's predicted "
                "class, or for a CLIP or SigLIP model its zero-shot label. Load a classifier or a CLIP/SigLIP "
                "model (or leave *Number of classes* empty)." + (f" Text prompts: {reason}" if reason and
                                                                  "tokenizer" in reason else ""))
        return None
    if not has_text:
        return "class"
    if model.num_classes > 0:
        mode = st.radio("Explain", list(MODES), key="ev.mode", format_func=MODES.get, horizontal=True,
                        persist_state="session")
        if mode == "class":
            return "class"
    return zero_shot_section() or "invalid"
