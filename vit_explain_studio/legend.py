"""What the colours of a map mean: the colour strip with the values at its ends (and the centre, 0, of a
symmetric map), and a sentence saying what red and blue stand for (for a contrast "A rather than B": red for A,
blue for B)."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import explainers
from explainers import viz

STRIP_W, STRIP_H, TEXT_H = 420, 14, 24
INK = (49, 51, 63)


def sides(exp: explainers.Explanation) -> tuple[str, str]:
    """(what the high end is evidence for, what the low end is evidence for) in a few words: the two sides of a
    contrast, else the target and "against it"."""
    label = exp.label
    if label.startswith("text: "):
        label = label[len("text: "):]
    if " rather than " in label:
        a, b = label.split(" rather than ", 1)
        return a.split(",")[0].strip(), b.split(",")[0].strip()
    return label.split(",")[0].strip(), ""


def colour_names(cmap: str) -> tuple[str, str, str]:
    """The words for the (high, low, centre) colours of a colour map."""
    if cmap in viz.DIVERGING:
        return "red", "blue", "white" if cmap in ("bwr", "seismic") else "light grey"
    return "the top colour", "the bottom colour", "the middle colour"


def strip_text(exp: explainers.Explanation) -> tuple[str, str, str]:
    """The strip's (left, centre, right) labels, with the raw values at its ends."""
    lo, hi = exp.display_range()
    if exp.scale != "symmetric":
        return viz.strip_labels(exp.scale, lo, hi)
    a, b = sides(exp)
    return f"{lo:.3g} · for {b}" if b else f"{lo:.3g} · against", "0", f"for {a} · {hi:.3g}"


@functools.lru_cache(maxsize=4)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the bitmap font
        return ImageFont.load_default()


@functools.lru_cache(maxsize=64)
def _strip(cmap: str, left: str, centre: str, right: str) -> np.ndarray:
    img = Image.new("RGB", (STRIP_W, STRIP_H + TEXT_H), "white")
    img.paste(Image.fromarray(np.repeat(viz.colorize(np.linspace(0, 1, STRIP_W)[None, :], cmap), STRIP_H, 0)))
    draw, font, y = ImageDraw.Draw(img), _font(16), STRIP_H + 3
    draw.text((2, y), left, fill=INK, font=font)
    draw.text((STRIP_W // 2, y), centre, fill=INK, font=font, anchor="ma")
    draw.text((STRIP_W - 2, y), right, fill=INK, font=font, anchor="ra")
    out = np.asarray(img)
    out.setflags(write=False)
    return out


def strip(exp: explainers.Explanation) -> tuple[np.ndarray, str]:
    """The labelled colour strip (uint8 RGB) of the map as drawn, and its caption."""
    left, centre, right = strip_text(exp)
    if exp.scale == "symmetric":
        high, low, mid = colour_names(exp.cmap)
        caption = f"{low} ← against · {mid} = 0 · for → {high}"
    else:
        caption = {"positive": "0 → most evidence for the target", "absolute": "0 → largest |relevance|"}.get(
            exp.scale, "low → high relevance")
    return _strip(exp.cmap, left, centre, right), caption


def sentence(exp: explainers.Explanation) -> str:
    """What the colours of a signed map mean, in one or two sentences (Markdown)."""
    lo, hi = exp.display_range()
    high, low, mid = colour_names(exp.cmap)
    a, b = sides(exp)
    clip = f" (outliers clipped: the top {exp.clip:g} % of |values|)" if exp.clip else ""
    if exp.scale == "symmetric":
        against = f"evidence for **{b}** rather than {a}" if b else f"evidence against **{a}**"
        return (f"Signed map: **{high}** is evidence for **{a}**" + (f" rather than {b}" if b else "") +
                f", **{low}** is {against}, {mid} is 0 (no evidence either way). The colours saturate at "
                f"±{hi:.3g}{clip}.")
    if exp.scale == "positive":
        return (f"Signed map drawn *positive*: only the evidence for **{a}** is coloured (0 to {hi:.3g}{clip}); the "
                f"evidence against it is drawn as 0. Choose *symmetric* to see both.")
    if exp.scale == "absolute":
        return (f"Signed map drawn *absolute*: evidence for and against **{a}** look alike (|value| up to "
                f"{hi:.3g}{clip}). Choose *symmetric* to tell them apart.")
    return (f"Signed map drawn *minmax*: {lo:.3g} (most against **{a}**) to {hi:.3g} (most for it){clip}; 0 has no "
            f"fixed colour. Choose *symmetric* to centre the colours on 0.")
