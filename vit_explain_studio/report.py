"""Downloads: heatmap PNG, overlay PNG, raw map .npy and a JSON report of the run."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import platform
import re
import time
from importlib import metadata

import numpy as np
from PIL import Image

import explainers
from explainers.models import model_summary

from . import photo_view


def png_bytes(img: Image.Image | np.ndarray) -> bytes:
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


_ABS_PATH = re.compile(r"^(/|~|[A-Za-z]:[\\/]|\\\\)")


def public(value):
    """``value`` with every absolute path replaced by its last part and a hash of the whole path (the report
    says which local model or file was used without telling where the server keeps it)."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [public(v) for v in value]
    if isinstance(value, str) and _ABS_PATH.match(value):
        name = re.split(r"[\\/]", value.rstrip("/\\"))[-1] or "local"
        return f"{name} (local, id {hashlib.sha256(value.encode()).hexdigest()[:12]})"
    if isinstance(value, str):  # a message quoting a server folder: the folder is left out
        from .settings import scrub_paths

        return scrub_paths(value)
    return value


@functools.cache
def versions() -> dict:
    out = {"explainers": explainers.__version__, "python": platform.python_version()}
    for pkg in ("torch", "timm", "transformers", "streamlit", "numpy", "plotly"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def report(ctx, exp: explainers.Explanation, curves=None, curve_settings: dict | None = None,
           display: dict | None = None) -> dict:
    """The JSON report of one explanation: model, method, parameters, target, metrics and versions."""
    m = explainers.METHODS[exp.method]
    metrics = None
    if curves is not None:
        metrics = {"insertion_auc": curves.insertion_auc, "deletion_auc": curves.deletion_auc,
                   "curves": curves.to_dict(), **(curve_settings or {})}
    return public({
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": model_summary(ctx.model),
        "image": {"name": ctx.image_name, "sha256_prefix": ctx.image_hash, "size": list(ctx.image.size),
                  "model_view": photo_view.photo_geometry(ctx).describe(),
                  "download_size": list(photo_view.download_geometry(ctx).photo_size)},
        "method": {"name": m.name, "display_name": m.display_name, "paper": m.paper, "paper_url": m.paper_url},
        "params": exp.params,
        "target": {"index": exp.target, "label": exp.label, "probability": exp.probability,
                   "explains": ctx.label if m.class_specific else "class-agnostic: the same map for every target",
                   **({"choice": ctx.target_spec.to_dict()} if getattr(ctx, "target_spec", None) else {})},
        "top5": [{"index": i, "label": lbl, "probability": p} for i, lbl, p in exp.top5],
        "seconds": exp.seconds,
        "warnings": list(exp.warnings),
        "metrics": metrics,
        "signed": exp.signed,
        "display": display or {**exp.display_dict(), "signed": exp.signed},
        "versions": versions(),
    })


def downloads(ctx, exp, overlay, curves=None, curve_settings=None, display=None) -> dict:
    """file name -> (callable returning the bytes, mime) for the download buttons; ``overlay`` is an image or
    a callable that makes one. The heatmap PNG is at the photo's own resolution up to
    ``photo_view.DOWNLOAD_MAX`` (mapped back through the model's resize and crop, the cropped border grey), like
    the overlay the page passes; both drawn as ``exp`` says (scaling, clip, colour map)."""
    stem = f"{exp.method}_{exp.target}"

    def report_json() -> bytes:
        rep = report(ctx, exp, curves, curve_settings, display)
        return json.dumps(rep, indent=2, default=float).encode()

    return {
        f"{stem}_heatmap.png": (lambda: png_bytes(photo_view.photo_heatmap(ctx, exp)), "image/png"),
        f"{stem}_overlay.png": (lambda: png_bytes(overlay() if callable(overlay) else overlay), "image/png"),
        f"{stem}_map.npy": (lambda: npy_bytes(exp.patch_map), "application/octet-stream"),
        f"{stem}_report.json": (report_json, "application/json"),
    }
