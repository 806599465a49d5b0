"""explainers.geometry: maps of the model input drawn back onto the photo through the model's resize and centre
crop, checked against known answers and against the real preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from explainers.geometry import crop_geometry, map_to_photo, photo_heatmap, photo_overlay
from explainers.models.core import Preprocessing

DEIT = Preprocessing(input_size=(224, 224), resize=256, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def test_deit_geometry_of_a_landscape_photo_is_known():
    # 600x400: shorter side 400 -> 256 (x0.64), 384x256, centre 224x224 from (80, 16); back in the photo
    # (x1.5625): x 125..475, y 25..375
    g = crop_geometry(DEIT, (600, 400))
    assert g.resized == (384, 256) and g.offset == (80, 16)
    assert g.box == pytest.approx((125.0, 25.0, 475.0, 375.0))
    assert g.cropped and g.kept_fraction() == pytest.approx(350 * 350 / (600 * 400))


def test_a_hot_patch_lands_at_its_photo_coordinates():
    g = crop_geometry(DEIT, (600, 400))
    patch = np.zeros((14, 14))
    patch[3, 5] = 1.0  # one patch = 16 input pixels = 25 photo pixels
    m, inside = map_to_photo(patch, g, nearest=True)
    assert m.shape == (400, 600) and inside.shape == (400, 600)
    ys, xs = np.nonzero(m)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (25 + 3 * 25, 25 + 4 * 25 - 1, 125 + 5 * 25, 125 + 6 * 25 - 1)
    # what the model saw, and nothing else, is inside
    ys, xs = np.nonzero(inside)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (25, 374, 125, 474)
    # bilinear sampling keeps the peak at the same place
    smooth, _ = map_to_photo(patch, g)
    y, x = np.unravel_index(np.argmax(smooth), smooth.shape)
    assert 100 <= y < 125 and 250 <= x < 275


def test_the_geometry_matches_the_real_preprocessing():
    """Paint the photo region that geometry says is patch (3, 5) of a portrait photo: after the model's own
    preprocessing, that patch (and only it) is painted."""
    w, h = 300, 500
    g = crop_geometry(DEIT, (w, h))
    patch = np.zeros((14, 14))
    patch[3, 5] = 1.0
    m, _ = map_to_photo(patch, g, nearest=True)
    photo = np.zeros((h, w, 3), dtype=np.uint8)
    photo[m > 0] = 255
    x = DEIT(Image.fromarray(photo))[0, 0]  # (224, 224), [0, 1]
    cells = x.reshape(14, 16, 14, 16).mean(dim=(1, 3))
    assert int(torch.argmax(cells)) == 3 * 14 + 5
    assert cells[3, 5] > 0.9 and (cells > 0.25).sum() == 1


def test_exact_resize_and_uncropped_photo():
    exact = Preprocessing(input_size=(224, 224), resize=(224, 224), mean=(0, 0, 0), std=(1, 1, 1))
    g = crop_geometry(exact, (640, 427))
    assert g.box == pytest.approx((0, 0, 640, 427)) and not g.cropped
    _, inside = map_to_photo(np.ones((14, 14)), g)
    assert inside.all()


def test_overlay_marks_the_cropped_border():
    g = crop_geometry(DEIT, (600, 400))
    photo = Image.new("RGB", (600, 400), (200, 200, 200))
    values = np.full((224, 224), 0.5)
    ov = np.asarray(photo_overlay(photo, values, g, alpha=0.0))
    assert ov.shape == (400, 600, 3)
    assert (ov[200, 300] == 200).all()  # inside, alpha 0: the photo itself
    border = ov[:, :100].reshape(-1, 3)
    assert border.max() > 160 and border.min() < 120  # dimmed, with light hatching
    heat = photo_heatmap(values, g, "gray")
    assert heat.shape == (400, 600, 3) and (heat[0, 0] == 128).all()
    with pytest.raises(ValueError):
        photo_overlay(Image.new("RGB", (10, 10)), values, g)


def test_a_scaled_copy_keeps_the_crop_where_it_was():
    """Downloads of a large photo are drawn on a copy at most 2048 px on its longer side: the crop box scales
    with the photo (600x400 halved: x 62.5..237.5, y 12.5..187.5) and a hot patch lands at half its place."""
    g = crop_geometry(DEIT, (600, 400))
    assert g.scaled(600) is g
    half = g.scaled(300)
    assert half.photo_size == (300, 200) and half.box == pytest.approx((62.5, 12.5, 237.5, 187.5))
    patch = np.zeros((14, 14))
    patch[3, 5] = 1.0
    m, _ = map_to_photo(patch, half, nearest=True)
    ys, xs = np.nonzero(m)
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == pytest.approx((50, 62.5, 125, 137.5), abs=1)
