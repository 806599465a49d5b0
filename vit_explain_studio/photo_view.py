"""The result on the photo itself: the map drawn back through the model's resize and centre crop
(:mod:`explainers.geometry`) at the photo's resolution, the cropped-away border dimmed and hatched, beside the
original photo; an optional colour bar and a note when the crop cut part of the photo."""

from __future__ import annotations

import numpy as np
import streamlit as st
from PIL import Image

import explainers
from explainers import geometry

from . import cache, legend
from .state import Context

DISPLAY_MAX = 1600  # longer side of the photo drawn on the page
# Longer side of the downloaded PNGs: the photo's own resolution up to this. A 4096x4096 upload's full-size
# overlay took 2.9 s and a 48 MB PNG (and over a minute on a loaded server); the map has 224 pixels a side.
DOWNLOAD_MAX = 2048


def photo_geometry(ctx: Context) -> geometry.CropGeometry:
    return geometry.crop_geometry(ctx.model.preprocessing, ctx.image.size)


def capped_photo(ctx: Context, max_side: int) -> Image.Image:
    """The photo, at most ``max_side`` pixels on its longer side (cached per image and size)."""
    def make():
        img = ctx.image.convert("RGB")
        if max(img.size) > max_side:
            img = img.copy()
            img.thumbnail((max_side, max_side), Image.BICUBIC)
        return img

    return cache.cached("images", ("capped", max_side, ctx.image_hash), make)


def display_photo(ctx: Context) -> Image.Image:
    """The photo as drawn on the page (at most DISPLAY_MAX pixels on its longer side)."""
    return capped_photo(ctx, DISPLAY_MAX)


def download_geometry(ctx: Context) -> geometry.CropGeometry:
    """The crop's geometry on the downloaded PNGs (the photo's resolution up to DOWNLOAD_MAX)."""
    return photo_geometry(ctx).scaled(DOWNLOAD_MAX)


def _exp_key(ctx: Context, exp: explainers.Explanation) -> tuple:
    return (ctx.model_key, ctx.image_hash, exp.method, ctx.target_key, repr(sorted(exp.params.items())))


def photo_overlay(ctx: Context, exp: explainers.Explanation, alpha: float, full: bool = False) -> Image.Image:
    """The overlay on the photo, drawn as ``exp`` says (scaling, clip, colour map); ``full``: the download's, at
    the photo's resolution up to DOWNLOAD_MAX; else the page's, up to DISPLAY_MAX; cached."""
    def make():
        side = DOWNLOAD_MAX if full else DISPLAY_MAX
        photo = capped_photo(ctx, side)
        return geometry.photo_overlay(photo, exp.display(), photo_geometry(ctx).scaled(side), alpha=alpha,
                                      cmap=exp.cmap)

    if full and max(ctx.image.size) > DISPLAY_MAX:  # made once for the download's bytes, which are cached
        return make()
    # a photo within DISPLAY_MAX gets the same overlay on the page and in the download: the page's, cached
    return cache.cached("renders", ("photo-overlay", *_exp_key(ctx, exp), *display_key(exp), float(alpha)), make)


def display_key(exp: explainers.Explanation) -> tuple:
    return exp.scale, exp.clip, exp.cmap


def photo_heatmap(ctx: Context, exp: explainers.Explanation) -> np.ndarray:
    """The colour-mapped map at the download's resolution (the photo's up to DOWNLOAD_MAX; cropped border grey)."""
    return geometry.photo_heatmap(exp.display(), download_geometry(ctx), exp.cmap)


def crop_note(ctx: Context) -> str | None:
    """A sentence when the model's crop cut part of the photo, else None."""
    g = photo_geometry(ctx)
    if not g.cropped:
        return None
    H, W = g.input_size
    return (f"The model sees the centre {g.kept_fraction():.0%} of the photo (resized to {g.resized[0]}×"
            f"{g.resized[1]}, centre crop {W}×{H}): the hatched border is outside its view and has no relevance.")


def show_on_photo(ctx: Context, exp: explainers.Explanation, alpha: float, caption: str,
                  colour_bar: bool = True) -> Image.Image:
    """The overlay on the photo beside the original photo (stacked on a phone), the colour strip labelled with
    the values at its ends, and what the colours mean; returns the overlay."""
    ov = photo_overlay(ctx, exp, alpha)
    c1, c2 = st.columns(2)
    c1.image(ov, caption=caption, width="stretch")
    w, h = ctx.image.size
    c2.image(display_photo(ctx), caption=f"Original photo · {w}×{h}", width="stretch")
    if colour_bar:
        strip, strip_caption = legend.strip(exp)
        c1.image(strip, caption=strip_caption, width="stretch")
    if exp.signed:
        st.caption(legend.sentence(exp))
    note = crop_note(ctx)
    if note:
        st.caption(note)
    return ov
