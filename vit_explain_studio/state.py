"""The shared sidebar (model, device, image, target class).

``sidebar()`` runs on every rerun from ``app.py`` (before the page), so its widgets, and with them the
user's choices, live in the session state across page switches. It returns a :class:`Context` that pages
read with :func:`context`. The cached loading behind it is in :mod:`vit_explain_studio.loading`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st
import torch
from PIL import Image

import explainers
from explainers.models import resolve_device

from . import loading, settings, targets_ui
from .loading import LoadFailure, decode, model_input_image, predict, read_sample, thumbnail  # noqa: F401
from .targets_ui import TargetSpec

_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_TIMM_NAME = re.compile(r"^(timm/)?[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)?$")


class ChoiceError(ValueError):
    """A model name or path the app refuses (message for the user)."""


@dataclass
class Context:
    """What a page needs: the loaded model, the image and the target to explain."""

    model: explainers.ViTModel
    model_key: tuple  # (name, weights, device[, num_classes, img_size]): the cache key of the model
    image: Image.Image
    image_hash: str
    image_name: str
    probs: np.ndarray  # (num_classes,) softmax of the model on the image (empty for a model without classes)
    target: object  # a class index (int), or a target object of explainers.targets / explainers.text
    top5: list[int] = field(default_factory=list)
    target_spec: TargetSpec | None = None  # the sidebar's choice (None: ``target`` is a class index)

    @property
    def target_key(self):
        """A stable, hashable cache key of the target (target objects are rebuilt on every rerun)."""
        if isinstance(self.target, (int, np.integer)):
            return int(self.target)
        return self.target_spec if self.target_spec is not None else repr(self.target)

    @property
    def label(self) -> str:
        if isinstance(self.target, (int, np.integer)):
            return self.model.labels[int(self.target)]
        return self.target_spec.describe(self.model) if self.target_spec is not None else \
            self.target.describe(self.model)

    def x(self) -> torch.Tensor:
        return self.model.preprocess(self.image)

    def shown(self) -> Image.Image:
        """The model input (resized, centre-cropped) as an RGB image: what the heatmaps cover."""
        return model_input_image(self.model_key, self.image_hash, self.model, self.image)


# -- typed models --------------------------------------------------------------------------------------
MAX_CHECKED_FILES = 2000  # a model folder holds a handful of files; more is refused, not walked


def _inside(p: Path, roots: list[Path]) -> bool:
    return any(p == root or root in p.parents for root in roots)


def _under_allowed(path: Path) -> bool:
    """Whether ``path`` and every file that loading it could read lie under an allowed folder once links are
    resolved: a folder under the allowed root that holds a symlink to a file (or folder) outside it is refused
    (issue 16). Folders are walked, following links, with each target resolved and checked."""
    roots = settings.allowed_roots()
    p = settings.resolve_path(str(path)).resolve()
    if not _inside(p, roots):
        return False
    if not p.is_dir():
        return True
    seen, stack, count = {p}, [p], 0
    while stack:
        folder = stack.pop()
        try:
            entries = list(folder.iterdir())
        except OSError:
            return False
        for entry in entries:
            count += 1
            if count > MAX_CHECKED_FILES:
                return False
            target = entry.resolve()
            if not _inside(target, roots):
                return False
            if target.is_dir() and target not in seen:
                seen.add(target)
                stack.append(target)
    return True


def check_model_choice(name: str, weights: str | None = None) -> tuple[str, str | None]:
    """Validate a model the user typed: a timm name, a Hugging Face id, or a local folder/file under one of
    the operator's allowed folders (``VIT_EXPLAIN_ALLOWED_PATHS``). Returns (name, weights)."""
    name = (name or "").strip()
    weights = (weights or "").strip() or None
    if not name:
        raise ChoiceError("Enter a model name.")
    for what, text in (("model name", name), ("weights path", weights or "")):
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise ChoiceError(f"The {what} contains a control character (such as a NUL byte); type it again "
                              "without one.")
    looks_like_path = (name.startswith(("/", ".", "~")) or "\\" in name or ".." in name or _exists(name))
    if looks_like_path:
        name = _allowed_path(name, "Local model folders")
    elif not (_TIMM_NAME.match(name) or _HF_ID.match(name)):
        raise ChoiceError(f"{name!r} is neither a timm model name (e.g. deit_small_patch16_224) nor a Hugging "
                          "Face id (owner/name).")
    if weights is not None:
        weights = _allowed_path(weights, "Local weights")
    return name, weights


def _exists(name: str) -> bool:
    try:
        return settings.resolve_path(name).exists()
    except (OSError, RuntimeError, ValueError):  # too long for the file system, ~user unknown: not a file here
        return False


def _allowed_path(typed: str, what: str) -> str:
    """The resolved path of ``typed`` when it lies under an allowed folder; else a :class:`ChoiceError`. A path the
    operating system cannot even look up (``~nosuchuser``, a name longer than the file system allows) is refused
    with the same advice, never with the system's error (it would name the server's folders)."""
    advice = (f"{what} must lie under a folder the operator allowed (VIT_EXPLAIN_ALLOWED_PATHS), links included; "
              f"{typed[:120]!r}{'…' if len(typed) > 120 else ''}")
    try:
        if not _under_allowed(Path(typed)):
            raise ChoiceError(f"{advice} does not.")
        return str(settings.resolve_path(typed).resolve())
    except (OSError, RuntimeError, ValueError) as e:
        if isinstance(e, ChoiceError):
            raise
        reason = "its user is unknown" if typed.startswith("~") and isinstance(e, RuntimeError) else \
            "it is too long" if getattr(e, "errno", None) == 36 else "this server cannot read it"
        raise ChoiceError(f"{advice} is not a path this server can use ({reason}).") from None


# -- the sidebar -------------------------------------------------------------------------------------------
MARKS = {"ready": "✓", "hub": "⤓", "offline": "✗"}
MARK_HELP = ("✓ loads here · ⤓ downloads from the hub at first use · ✗ cannot load on this server (offline, no "
             "local weights)")


def _model_section() -> tuple | None:
    st.subheader("Model")
    names = [m.name for m in settings.CURATED]
    default = settings.default_model()
    if default not in names:
        names.insert(0, default)
    options = [*names, settings.OTHER_MODEL]
    info = {m.name: m for m in settings.CURATED}

    def fmt(n: str) -> str:
        if n == settings.OTHER_MODEL:
            return n
        mark = MARKS[loading.availability(n)]
        return f"{mark} {info[n].label()}" if n in info else f"{mark} {n}"

    choice = st.selectbox(
        "Model", options, key="model_choice", label_visibility="collapsed", format_func=fmt,
        help=f"A curated list of ViT classifiers with their size and expected CPU speed, or any other model. "
             f"{MARK_HELP}.")
    weights = None
    if choice == settings.OTHER_MODEL:
        typed = st.text_input("timm name, Hugging Face id, or local folder", key="model_typed", max_chars=300,
                              placeholder="e.g. deit_small_patch16_224 or facebook/deit-small-patch16-224")
        typed_weights = st.text_input("Local weights (optional)", key="model_weights", max_chars=1000,
                                      help="A .safetensors/.pth file or folder under an allowed folder "
                                           "(VIT_EXPLAIN_ALLOWED_PATHS).")
        if not typed.strip():
            st.info("Enter a model name to load it.")
            return None
        try:
            name, weights = check_model_choice(typed, typed_weights)
        except ChoiceError as e:
            st.error(str(e))
            return None
    else:
        name = choice
        if loading.availability(name) == "offline":
            st.caption("✗ Not available on this server: no local weights and the hub cannot be reached.")
        else:
            st.caption(info[name].note if name in info else "")
        if name == default:
            weights = settings.default_weights()
    devices = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    device = st.selectbox("Device", devices, key="device",
                          help="auto: the GPU when there is one, else the CPU.")
    with st.expander("Advanced", icon=":material/settings:"):
        n_typed = st.text_input("Number of classes", key="model.num_classes", max_chars=8,
                                placeholder="the model's own",
                                help="A new, untrained classifier of N classes; 0: no classifier (explain a region or "
                                     "text target). Empty: the model's own head.")
        size_typed = st.text_input("Input size", key="model.img_size", max_chars=12, placeholder="the model's own",
                                   help="Build the model for this input size: N or H,W pixels (timm models; the "
                                        "position embedding is resampled). Empty: the model's own.")
    try:
        num_classes, img_size = loading.parse_model_options(n_typed, size_typed)
    except ValueError as e:
        st.error(str(e))
        return None
    return name, weights, str(resolve_device(device)), num_classes, img_size


def _failure_in_main(fail: LoadFailure, chosen: tuple) -> None:
    """A failed load: a short message in the main area, the technical detail in an expander, a retry."""
    st.error(f"The model could not be loaded: {fail.message}")
    with st.expander("Details"):
        st.code(fail.detail, language=None, wrap_lines=True)
    if st.button("Try again", key="model.retry"):
        loading.forget_failure(*chosen)
        st.rerun()


def _image_section() -> tuple[Image.Image, str, str] | None:
    st.subheader("Image")
    source = st.radio("Image source", ["Gallery", "Upload", "Camera"], key="image_source", horizontal=True,
                      label_visibility="collapsed")
    try:
        if source == "Gallery":
            files = settings.samples()
            credits = settings.attributions()
            name = st.selectbox("Sample photo", [p.name for p in files], key="sample",
                                format_func=lambda n: f"{n} — {credits.get(n, '').split(' — ')[0]}")
            img, h = read_sample(name)
            st.caption(f"{credits.get(name, '')}. See ATTRIBUTION.md beside the sample photos.")
            return img, h, name
        if source == "Upload":
            up = st.file_uploader("Upload a photo", key="upload",
                                  type=["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"])
        else:
            up = st.camera_input("Take a photo", key="camera")
        if up is None:
            st.info("Upload a photo (PNG, JPEG, WebP, GIF, BMP, TIFF) or pick one from the gallery.")
            return None
        # The session keeps its current upload decoded (a large photo may not fit the shared image cache
        # under a small VIT_EXPLAIN_CACHE_MB; it is held by the session's context anyway).
        last = st.session_state.get("vit_explain_studio.upload")
        if last is not None and last[0] == up.file_id:
            return last[1], last[2], up.name
        img, h = decode(up.getvalue())
        st.session_state["vit_explain_studio.upload"] = (up.file_id, img, h)
        return img, h, up.name
    except explainers.ImageError as e:
        st.error(f"This image cannot be used: {e}")
        return None


def sidebar(boot=None, show_target: bool = True) -> Context | None:
    """Draw the shared sidebar; store and return the context (None when no model or image is usable).
    ``boot``: an ``st.empty`` at the top of the main area that shows the loading progress while a model
    loads for the first time (a cold server shows the page at once, not after the load)."""
    st.session_state["ctx"] = None
    with st.sidebar:
        chosen = _model_section()
    model = None
    if chosen is not None:
        if boot is not None and not loading.is_loaded(*chosen):
            with boot.container():
                st.progress(0.4, text=f"Loading the model {Path(chosen[0]).name} (once for all sessions)…")
        model = loading.load_model(*chosen)
        if isinstance(model, LoadFailure):
            with boot.container() if boot is not None else st.container():
                _failure_in_main(model, chosen)
            with st.sidebar:
                st.caption("✗ This model could not be loaded: see the message on the page.")
            model = None
        elif boot is not None:
            boot.empty()
    elif boot is not None:
        boot.empty()
    with st.sidebar:
        if model is not None:
            classes = f"{model.num_classes} classes" if model.num_classes else "no classifier (embedding model)"
            st.caption(f"{model.num_layers} layers · {model.num_heads} heads · {model.grid()[0]}×"
                       f"{model.grid()[1]} patches · {classes} · {model.device}")
            asked = chosen[4] if len(chosen) > 4 else None
            if asked is not None and tuple(model.input_size) != asked:
                st.warning(f"This model keeps its own input size {model.input_size[0]}×{model.input_size[1]}: "
                           "the input size option applies to timm models.")
        picked = _image_section()
        if model is None or picked is None:
            return None
        image, image_hash, image_name = picked
        st.image(thumbnail(image_hash, image), width=160, caption=f"{image_name} · {image.size[0]}×{image.size[1]}")
        probs = predict(chosen, image_hash, model, image)
        ident = hashlib.sha1(repr((chosen, image_hash)).encode()).hexdigest()[:12]
        if show_target:
            spec = targets_ui.target_section(model, probs, ident, (chosen, image_hash), image,
                                             model_input_image(chosen, image_hash, model, image))
        else:
            spec = targets_ui.default_spec(model, probs)
        if spec is None:
            return None
        try:
            target = spec.build()
        except explainers.ExplainerError as e:
            st.error(f"This target cannot be explained: {e}")
            return None
    ctx = Context(model=model, model_key=chosen, image=image, image_hash=image_hash, image_name=image_name,
                  probs=probs, target=target, top5=[int(i) for i in np.argsort(-probs)[:5]], target_spec=spec)
    st.session_state["ctx"] = ctx
    return ctx


def context() -> Context | None:
    """The context the sidebar made in this run; pages show a hint and stop when there is none."""
    ctx = st.session_state.get("ctx")
    if ctx is None:
        st.info("Choose a model and an image in the sidebar.")
    return ctx


def page_context(title: str, caption: str) -> Context | None:
    """A page's title and caption, then :func:`context` (None: the page stops)."""
    st.title(title)
    st.caption(caption)
    return context()
