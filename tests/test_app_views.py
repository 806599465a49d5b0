"""The app's result views through ``AppTest`` with the real DeiT-Tiny weights: the attention browser (the traced
attention of every layer and head, a redraw per slider move), the "press Run" hint and Cancel keeping the previous
result on the model-pass forms, and the result drawn on the photo at its own resolution."""

from __future__ import annotations

import io
import json
import types

import numpy as np
import pytest
import torch
from app_support import (
    check_clean,
    decode,
    grid_values,
    new_app,
    offline_weights,  # noqa: F401  (autouse here too: DeiT-Tiny from ../shared, no network)
    open_page,
    plotly_specs,
)
from conftest import SAMPLES
from PIL import Image

import explainers
from explainers.geometry import crop_geometry


def head_maps(at) -> list[np.ndarray]:
    spec = next(s for s in plotly_specs(at) if "every head" in s["layout"]["title"]["text"])
    return [decode(t["z"]) for t in spec["data"] if t["type"] == "heatmap"]


def picker_shapes(at) -> list[dict]:
    spec = next(s for s in plotly_specs(at) if "Click a patch" in s["layout"]["title"]["text"])
    return spec["layout"].get("shapes", [])


def test_attention_browser_draws_the_traced_attention_and_redraws_from_the_cache(deit_tiny, both_image):
    from vit_explain_studio import cache

    at = open_page("attention_browser")
    assert not any(s.value == "Target class" for s in at.sidebar.subheader)  # raw attention: no class to choose
    x = deit_tiny.preprocess(both_image)
    with torch.inference_mode():
        A = torch.stack(deit_tiny.trace(x).attentions)[:, 0].numpy()  # (12, 3, 197, 197)

    # the last layer, the class token's row (DeiT pools the class token): one map per head
    maps = head_maps(at)
    assert len(maps) == 3
    for h, m in enumerate(maps):
        np.testing.assert_allclose(m, A[11, h, 0, 1:].reshape(14, 14), atol=2e-3, rtol=2e-2)
    assert picker_shapes(at) == []  # no patch to outline

    store = cache.store("captures")
    misses = store.misses
    at.slider(key="attn.layer").set_value(3).run()
    check_clean(at)
    for h, m in enumerate(head_maps(at)):
        np.testing.assert_allclose(m, A[2, h, 0, 1:].reshape(14, 14), atol=2e-3, rtol=2e-2)

    # a patch as the query: its own row, outlined on the picker
    at.radio(key="attn.query").set_value("patch").run()  # the row and column fields are enabled for a patch
    at.number_input(key="attn.row").set_value(5)
    at.number_input(key="attn.col").set_value(9)
    at.run()
    check_clean(at)
    for h, m in enumerate(head_maps(at)):
        np.testing.assert_allclose(m, A[2, h, 1 + 5 * 14 + 9, 1:].reshape(14, 14), atol=2e-3, rtol=2e-2)
    assert {"x0": 9 * 16, "x1": 10 * 16, "y0": 5 * 16, "y1": 6 * 16} in [
        {k: s[k] for k in ("x0", "x1", "y0", "y1")} for s in picker_shapes(at)]
    assert any("patch (row 5, column 9)" in c.value for c in at.main.caption)
    assert store.misses == misses, "moving the slider or the query traced the model again"


def test_a_click_on_the_picker_selects_the_patch_under_it():
    from vit_explain_studio.attention_browser import AttentionData

    data = AttentionData(np.zeros((1, 1, 197, 197), np.float16), np.zeros(197), 1, (14, 14), (16, 16))
    assert data.patch_at(9 * 16 + 3, 5 * 16 + 15) == (5, 9)
    assert data.patch_at(0, 0) == (0, 0)
    assert data.patch_at(500, -3) == (0, 13)  # outside the image: clamped to the grid


def test_a_changed_parameter_asks_for_run_and_cancel_keeps_the_previous_result(monkeypatch):
    from vit_explain_studio import cache, runs

    at = open_page("gradmask", **{"p.gradmask.masks_layer": 1, "gradmask.curves_on": False})
    first = grid_values(at)
    assert not at.main.info
    store = cache.store("captures")
    misses = store.misses

    # a change without Run: the hint, the previous result, no model pass
    at.slider(key="p.gradmask.masks_layer").set_value(2).run()
    check_clean(at)
    assert any("press **Run**" in i.value for i in at.main.info)
    np.testing.assert_array_equal(grid_values(at), first)
    assert store.misses == misses

    # Run: the new parameters are computed, the hint goes
    at.button(key="p.gradmask.run").click().run()
    check_clean(at)
    assert not at.main.info
    second = grid_values(at)
    assert not np.allclose(second, first)

    # Run with masks_layer 3, cancelled while it runs (the Cancel button's callback; a click cannot interrupt an
    # AppTest run): the page goes back to the finished parameters and shows their result, with the hint
    at.slider(key="p.gradmask.masks_layer").set_value(3)
    at.session_state["gradmask.gradmask.applied"] = {**at.session_state["gradmask.gradmask.applied"],
                                                     "masks_layer": 3}
    fake = {k: at.session_state[k] for k in ("gradmask.gradmask.applied", "gradmask.gradmask.done")}
    monkeypatch.setattr(runs, "st", types.SimpleNamespace(session_state=fake))
    runs._cancel("gradmask", "gradmask", ("a job",))
    monkeypatch.undo()
    for k, v in fake.items():
        at.session_state[k] = v
    misses = store.misses
    at.run()
    check_clean(at)
    assert any("Cancelled" in w.value and "previous parameters" in w.value for w in at.main.warning)
    assert any("press **Run**" in i.value for i in at.main.info)
    np.testing.assert_array_equal(grid_values(at), second)
    assert store.misses == misses


def test_the_result_on_the_photo_at_its_resolution(deit_tiny):
    from vit_explain_studio import compute, photo_view, report

    at = new_app(sample="chelsea.png", **{"attention.curves_on": False})
    at.run()
    at.switch_page("vit_explain_studio/app_pages/attention.py").run()
    check_clean(at)
    captions = [i.proto.imgs[0].caption for i in at.main.image]
    assert "Original photo · 451×300" in captions and "low → high relevance" in captions
    assert any("The model sees the centre" in c.value and "hatched border" in c.value for c in at.main.caption)
    at.toggle(key="attention.colour_bar").set_value(False).run()
    assert "low → high relevance" not in [i.proto.imgs[0].caption for i in at.main.image]

    ctx = at.session_state["ctx"]
    assert ctx.image.size == (451, 300)
    exp = compute.explain(ctx, "attention_rollout", {})
    ov = photo_view.photo_overlay(ctx, exp, 0.5, full=True)
    assert ov.size == (451, 300)
    g = crop_geometry(deit_tiny.preprocessing, (451, 300))
    x0, _, x1, _ = g.box
    assert x0 > 30 and x1 < 421  # the 451x300 photo loses its left and right ends to DeiT's crop
    photo, drawn = np.asarray(ctx.image.convert("RGB"), np.float32), np.asarray(ov, np.float32)
    border = drawn[:, : int(x0) - 1]
    assert border.mean() < photo[:, : int(x0) - 1].mean() + 20  # dimmed/hatched, not coloured by the map
    files = report.downloads(ctx, exp, lambda: ov)
    data = {name.rsplit("_", 1)[1]: make() for name, (make, _) in files.items()}
    for png in ("heatmap.png", "overlay.png"):
        assert Image.open(io.BytesIO(data[png])).size == (451, 300)
    rep = json.loads(data["report.json"])
    assert rep["image"]["model_view"]["cropped"] is True
    assert rep["image"]["model_view"]["crop_box_in_photo"] == pytest.approx(list(g.box), abs=0.01)
    text = data["report.json"].decode()
    assert "/work" not in text and str(SAMPLES) not in text


def test_libragrad_switch_draws_the_balanced_map(deit_tiny):
    """Issue 26: the LibraGrad option of a gradient method, from its settings (a heavy parameter: Run)."""
    at = open_page("generic_attention", **{"generic_attention.curves_on": False})
    plain = grid_values(at)
    toggle = at.toggle(key="p.generic_attention.libragrad")
    assert toggle.label == "LibraGrad (balanced backward)" and toggle.value is False
    toggle.set_value(True).run()
    at.button(key="p.generic_attention.run").click().run()
    check_clean(at)
    ctx = at.session_state["ctx"]  # the page's photo and class
    balanced = explainers.explain(deit_tiny, ctx.image, "generic_attention", target=ctx.target, libragrad=True)
    np.testing.assert_allclose(grid_values(at), balanced.patch_map, rtol=1e-3, atol=1e-7)
    assert not np.allclose(plain, balanced.patch_map, rtol=1e-3, atol=1e-7)
