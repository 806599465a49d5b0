"""Every method's declared signedness (``Method.is_signed``) matches what it outputs on real DeiT-Tiny and the
sample photos: an unsigned map never has a negative value, a signed one has on at least one photo. Each
post-processing switch (``relu``, ``absolute``, ...) is tried both ways (renders are free); many-pass methods run
with small budgets on one photo. Contrast targets make a class-specific method's map signed."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLES
from PIL import Image

import explainers
from explainers import METHODS
from explainers.api import is_signed
from explainers.targets import Contrast

PHOTOS = ("both.png", "chelsea.png")
# Small budgets for the many-pass methods (the sign of the map does not depend on them).
BUDGETS = {
    "integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 2},
    "occlusion": {"window": 56, "stride": 56}, "rise": {"masks": 32}, "gradmask": {"masks_layer": 1},
    "similarity_graph": {"masks_layer": 1}, "tis": {"masks": 16, "iterations": 5},
}
COUNT_PARAMS = ("steps", "n_steps", "samples", "n_samples", "masks", "masks_layer", "iterations")
ONE_PHOTO = {"scorecam", "vit_cx", "rise", "gradmask", "tis", "occlusion", "similarity_graph", "lrp_full",
             "integrated_gradients", "smoothgrad"}


def _budget(name: str) -> dict:
    """The method's small budget; for a method added later, its count parameters at their smallest useful value."""
    if name in BUDGETS:
        return BUDGETS[name]
    out = {}
    for p in METHODS[name].params:
        if not p.cheap and p.kind == "int" and p.name in COUNT_PARAMS:
            lo, _ = p.bounds()
            out[p.name] = max(lo or 1, min(4, p.default))
    return out


def _switches(name: str) -> list[dict]:
    """Every combination of the method's cheap bool parameters."""
    combos = [{}]
    for p in METHODS[name].params:
        if p.cheap and p.kind == "bool":
            combos = [{**c, p.name: v} for c in combos for v in (False, True)]
    return combos


@pytest.fixture(scope="module")
def photos():
    return [Image.open(SAMPLES / n).convert("RGB") for n in PHOTOS]


SLOW = {"scorecam", "vit_cx", "rise", "gradmask", "tis", "similarity_graph", "occlusion"}  # many masked passes


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in METHODS])
def test_declared_signedness_matches_the_maps(name, deit_tiny, photos):
    m = METHODS[name]
    shown = photos[:1] if name in ONE_PHOTO else photos
    lows: dict[tuple, list[float]] = {}
    for img in shown:
        cap = explainers.capture(deit_tiny, img, name, **_budget(name))
        for sw in _switches(name):
            exp = explainers.render(cap, deit_tiny, **sw)
            full = {**cap.params, **sw}
            assert exp.signed == m.is_signed(exp.params) == is_signed(name, full)
            assert exp.scale == ("symmetric" if exp.signed else "minmax")
            lows.setdefault(tuple(sorted(sw.items())), []).append(
                min(float(exp.patch_map.min()), float(exp.raw_heatmap.min())))
    for sw, lo in lows.items():
        if m.is_signed(dict(sw)):
            assert min(lo) < 0, f"{name} {dict(sw)} is declared signed but never negative on {len(lo)} photos"
        else:
            assert min(lo) >= 0, f"{name} {dict(sw)} is declared unsigned but has negative values ({min(lo):.3g})"


def test_switches_change_the_declaration():
    assert METHODS["gradcam"].is_signed({"relu": False}) and not METHODS["gradcam"].is_signed({"relu": True})
    assert not METHODS["gradcam"].is_signed()  # the default rectifies
    assert METHODS["integrated_gradients"].is_signed() and not METHODS["integrated_gradients"].is_signed(
        {"absolute": True})
    assert METHODS["attnlrp"].is_signed() and not METHODS["attention_rollout"].is_signed()


def test_a_contrast_is_signed_and_shows_both_classes(deit_tiny, both_image):
    """"bull mastiff rather than tiger cat" on the photo of both: red (positive) on one animal, blue on the other."""
    target = Contrast(243, 282)  # bull mastiff rather than tiger cat
    exp = explainers.explain(deit_tiny, both_image, "attnlrp", target=target)
    assert exp.signed and exp.scale == "symmetric" and exp.cmap == "bwr"
    assert exp.label == "bull mastiff rather than tiger cat"
    pos, neg = exp.patch_map > 0, exp.patch_map < 0
    assert exp.patch_map[pos].sum() > 0.2 * np.abs(exp.patch_map).sum()
    assert exp.patch_map[neg].sum() < -0.2 * np.abs(exp.patch_map).sum()
    # the dog sits in the upper half of both.png, the cat lies in the lower half
    h = exp.patch_map.shape[0]
    assert exp.patch_map[: h // 2].sum() > 0 > exp.patch_map[h // 2:].sum()
    # a class-agnostic map does not follow the target: still unsigned
    agnostic = explainers.explain(deit_tiny, both_image, "attention_rollout", target=target)
    assert not agnostic.signed and agnostic.scale == "minmax"
    from explainers.text import TextContrast

    assert TextContrast.signed and Contrast.signed
