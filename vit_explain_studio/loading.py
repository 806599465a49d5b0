"""Model loading (shared, with fast and readable failures), what this server can load, and the image caches.

* :func:`load_model`: one model per (name, weights, device) for every session (``st.cache_resource``). A
  failure is remembered for :data:`RETRY_AFTER_S` so reruns do not load again; it becomes a
  :class:`LoadFailure` (a short message for the page, the technical detail for an expander), never a traceback.
* :func:`availability`: whether a curated model can load here (local weights, the hub reachable: checked
  once per process, quickly). When the hub cannot be reached, the hub libraries are put in offline mode so a
  missing model fails at once instead of after their retries.
* Images: decoded uploads, the model-input images, thumbnails and predictions live in the "images" store of
  :mod:`vit_explain_studio.cache` (bounded by the one budget), not in ``st.cache_data``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import torch
from PIL import Image

import explainers
import explainers.errors

from . import cache, settings

LOG = logging.getLogger("studio")
RETRY_AFTER_S = 60.0
HUB_HOST = ("huggingface.co", 443)


@dataclass(frozen=True)
class LoadFailure:
    """Why a model could not be loaded: ``message`` for the page, ``detail`` for the expander."""

    name: str
    message: str
    detail: str


@st.cache_resource(show_spinner=False)
def _state() -> dict:
    return {"failures": {}, "loaded": set(), "lock": threading.Lock(), "hub": None}


def hub_reachable() -> bool:
    """Whether the Hugging Face hub answers (a 1.5 s TCP connect, once per process). Offline (or with
    ``HF_HUB_OFFLINE=1``) the hub libraries are switched to offline mode: a missing model fails at once."""
    st_ = _state()
    if st_["hub"] is None:
        if os.environ.get("HF_HUB_OFFLINE", "").strip() in ("1", "true", "True"):
            ok = False
        else:  # in a thread: a name lookup that hangs must not hold the page either
            answer: list[bool] = []

            def probe() -> None:
                try:
                    with socket.create_connection(HUB_HOST, timeout=1.5):
                        answer.append(True)
                except OSError:
                    answer.append(False)

            t = threading.Thread(target=probe, daemon=True)
            t.start()
            t.join(timeout=2.0)
            ok = bool(answer and answer[0])
        if not ok:
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            try:
                import huggingface_hub.constants as hc

                hc.HF_HUB_OFFLINE = True
            except (ImportError, AttributeError):
                pass
        st_["hub"] = ok
    return bool(st_["hub"])


def in_hub_cache(name: str) -> bool:
    """Whether the local Hugging Face cache holds a download of this model (timm names are stored as
    ``timm/<name>.<tag>``)."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return False
    repo = name if "/" in name else f"timm/{name}"
    prefix = "models--" + repo.replace("/", "--")
    try:
        return any(p.name == prefix or p.name.startswith(prefix + ".") for p in Path(HF_HUB_CACHE).iterdir())
    except OSError:
        return False


def availability(name: str) -> str:
    """"ready" (loaded, local weights or in the hub cache), "hub" (will download), or "offline" (cannot load
    here: no local weights and the hub cannot be reached)."""
    st_ = _state()
    if any(key[0] == name for key in st_["loaded"]):
        return "ready"
    if name == settings.default_model() and settings.default_weights():
        return "ready"
    if in_hub_cache(name):
        return "ready"
    return "hub" if hub_reachable() else "offline"


def short(message: str, limit: int = 220) -> str:
    """The first sentence of an error message (the expander shows it all)."""
    first = message.strip().split("\n")[0]
    for stop in (". ", "; "):
        if stop in first[:limit]:
            first = first[: first.index(stop) + 1]
            break
    return first if len(first) <= limit else first[: limit - 1] + "…"


MAX_CLASSES = 100_000
IMG_SIZE_RANGE = (16, 1024)


def parse_model_options(num_classes: str | None, img_size: str | None) -> tuple[int | None, tuple | None]:
    """The sidebar's typed model options -> (num_classes, (H, W)); empty means the model's own. Raises
    ValueError with a message for the user."""
    n = (num_classes or "").strip()
    if n:
        if not n.isdigit() or int(n) > MAX_CLASSES:
            raise ValueError(f"Number of classes: a whole number from 0 to {MAX_CLASSES} (0: no classifier); "
                             f"got {n!r}.")
        n = int(n)
    size = (img_size or "").strip().lower().replace("×", ",").replace("x", ",").replace(" ", "")
    if size:
        parts = size.split(",")
        lo, hi = IMG_SIZE_RANGE
        if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts) or \
                not all(lo <= int(p) <= hi for p in parts):
            raise ValueError(f"Input size: N or H,W pixels, each from {lo} to {hi} (e.g. 224 or 224,320); "
                             f"got {img_size.strip()!r}.")
        size = (int(parts[0]), int(parts[-1]))
    return (n if n != "" else None), (size or None)


@st.cache_resource(show_spinner=False, max_entries=4)
def _load(name: str, weights: str | None, device: str, num_classes: int | None = None,
          img_size: tuple | None = None) -> explainers.ViTModel:
    return explainers.load_model(name, weights=weights, device=device, num_classes=num_classes, img_size=img_size)


def load_model(name: str, weights: str | None, device: str, num_classes: int | None = None,
               img_size: tuple | None = None) -> explainers.ViTModel | LoadFailure:
    """The shared model, or a :class:`LoadFailure` (remembered for a minute: reruns do not retry).
    num_classes / img_size: a new classifier / input size (:func:`explainers.load_model`)."""
    key = (name, weights, device, num_classes, img_size)
    st_ = _state()
    failed = st_["failures"].get(key)
    if failed is not None and time.monotonic() - failed[1] < RETRY_AFTER_S:
        return failed[0]
    hub_reachable()  # offline: the hub libraries fail fast
    shown = Path(name).name if os.sep in name else name
    offline = (f"{shown} needs its weights from the Hugging Face hub, which this server cannot reach. Pick a model "
               "marked ✓, or ask the operator for local weights (VIT_EXPLAIN_WEIGHTS, or a folder under "
               "VIT_EXPLAIN_ALLOWED_PATHS).")
    curated = {m.name for m in settings.CURATED}
    try:
        if weights is None and name in curated and availability(name) == "offline":
            # a known ViT that cannot be had here: say so now instead of building it to fail at the download
            raise explainers.errors.WeightsUnavailableError(f"{name!r}: no local weights, hub unreachable")
        model = _load(*key)
    except explainers.errors.WeightsUnavailableError as e:
        fail = LoadFailure(name, offline, settings.scrub_paths(f"{type(e).__name__}: {e}"))
    except explainers.ExplainerError as e:
        fail = LoadFailure(name, settings.scrub_paths(short(str(e))),
                           settings.scrub_paths(f"{type(e).__name__}: {e}"))
    except Exception as e:  # noqa: BLE001 - a third-party error: shown as text, logged with its traceback
        LOG.exception("loading %s failed", name)
        fail = LoadFailure(name, f"{shown} could not be loaded ({type(e).__name__}).",
                           settings.scrub_paths(f"{type(e).__name__}: {str(e)[:2000]}"))
    else:
        st_["failures"].pop(key, None)
        st_["loaded"].add(key)
        return model
    st_["failures"][key] = (fail, time.monotonic())
    return fail


def _key(name, weights, device, num_classes=None, img_size=None) -> tuple:
    return name, weights, device, num_classes, img_size


def forget_failure(*chosen) -> None:
    _state()["failures"].pop(_key(*chosen), None)


def is_loaded(*chosen) -> bool:
    return _key(*chosen) in _state()["loaded"]


# -- images ------------------------------------------------------------------------------------------------
def decode(data: bytes) -> tuple[Image.Image, str]:
    """Uploaded bytes -> (upright RGB image, content hash). Raises explainers.ImageError for bad files."""
    h = hashlib.sha256(data).hexdigest()[:20]
    return cache.cached("images", ("decoded", h), lambda: explainers.load_image(data)), h


def read_sample(name: str) -> tuple[Image.Image, str]:
    path = settings.SAMPLES / Path(name).name
    return decode(path.read_bytes())


def predict(model_key: tuple, image_hash: str, model, image) -> np.ndarray:
    """The class probabilities of the image (an empty array for a model without classes)."""
    if model.num_classes == 0:
        return np.zeros(0, dtype=np.float32)

    def make():
        with torch.inference_mode():
            logits = model.forward(model.preprocess(image))
        return logits.float().softmax(-1)[0].cpu().numpy()

    return cache.cached("images", ("probs", model_key, image_hash), make)


def model_input_image(model_key: tuple, image_hash: str, model, image) -> Image.Image:
    def make():
        x = model.preprocess(image)
        arr = model.to_pixels(x)[0].permute(1, 2, 0).cpu().numpy()
        return Image.fromarray((arr * 255).round().astype(np.uint8))

    return cache.cached("images", ("input", model_key, image_hash), make)


def thumbnail(image_hash: str, image) -> Image.Image:
    def make():
        small = image.copy()
        small.thumbnail((320, 320))
        return small

    return cache.cached("images", ("thumb", image_hash), make)
