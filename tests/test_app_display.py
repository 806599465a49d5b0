"""Signed maps in the app (``streamlit.testing.v1.AppTest``, DeiT-Tiny with its real weights): AttnLRP offers the
scalings and the clip, draws symmetric with bwr by default, labels its colour strip and says what red and blue
mean; the raw grid is centred on 0; the JSON report names the scaling; a contrast names both classes; an unsigned
method keeps today's controls; Compare draws each method in its own default scaling and says which are signed."""

from __future__ import annotations

import json

import numpy as np
from app_support import check_clean, decode, grid_values, offline_weights, open_page, plotly_specs  # noqa: F401

import explainers
from explainers import viz


def _grid(at) -> dict:
    return next(t for s in plotly_specs(at) for t in s["data"] if t.get("type") == "heatmap")


def _captions(at) -> list[str]:
    return [c.value for c in at.main.caption]


def _image_captions(at) -> list[str]:
    return [i.proto.imgs[0].caption for i in at.main.image]


def test_attnlrp_is_drawn_signed_with_its_controls(deit_tiny, both_image):
    at = open_page("chefer", **{"chefer.curves_on": False, "chefer.method": "attnlrp"})
    check_clean(at)
    scale = at.selectbox(key="chefer.scale")
    assert scale.value == "symmetric" and scale.options == list(viz.SCALES)
    cmap = at.selectbox(key="chefer.cmap.div")
    assert cmap.value == "bwr" and cmap.options[:4] == list(viz.DIVERGING)
    assert at.slider(key="chefer.clip").value == 0.0
    assert "blue ← against · white = 0 · for → red" in _image_captions(at)
    sentence = next(c for c in _captions(at) if c.startswith("Signed map"))
    assert "**red** is evidence for **bull mastiff**" in sentence and "**blue** is evidence against" in sentence
    ref = explainers.explain(deit_tiny, both_image, "attnlrp")
    np.testing.assert_allclose(grid_values(at), ref.patch_map, rtol=1e-3, atol=1e-6)
    g = _grid(at)
    assert g["zmin"] == -g["zmax"] and g["zmax"] > 0  # centred on 0
    assert abs(g["zmax"] - float(np.abs(ref.patch_map).max())) < 1e-3 * g["zmax"]

    # positive: only the evidence for the target, a sequential map; the clip lowers the end of the scale
    scale.set_value("positive").run()
    at.slider(key="chefer.clip").set_value(5.0).run()
    check_clean(at)
    assert at.selectbox(key="chefer.cmap.seq").value == "jet"
    assert any("drawn *positive*" in c and "outliers clipped: the top 5 %" in c for c in _captions(at))
    g = _grid(at)
    lo, hi = viz.value_range(ref.patch_map, "positive", 5.0)  # the grid's own scale: its values, clipped
    assert g["zmin"] == lo == 0 and abs(g["zmax"] - hi) < 1e-3 * hi
    assert decode(g["z"]).min() == 0  # negatives drawn as 0
    # the JSON report names the drawing
    from vit_explain_studio import cache

    # the bytes the download buttons hand out (the last ones made for AttnLRP)
    files = [v[0] for k, v in cache.store("downloads")._items.items() if k[3] == "attnlrp"][-1]
    rep = json.loads(next(data for name, (data, _) in files.items() if name.endswith("report.json")))
    assert rep["signed"] is True
    assert rep["display"]["scale"] == "positive" and rep["display"]["clip_percentile"] == 5.0
    assert rep["display"]["colour_map"] == "jet" and rep["display"]["range"][0] == 0.0


def test_a_contrast_names_both_classes(deit_tiny):
    at = open_page("chefer", **{"chefer.curves_on": False, "chefer.method": "attnlrp"})
    kind = [s for s in at.sidebar.selectbox if s.key and s.key.startswith("target.kind.")][0]
    kind.set_value("contrast").run()
    b = [s for s in at.sidebar.selectbox if s.key.startswith("contrast.")][0]
    b.set_value(282).run()
    check_clean(at)
    sentence = next(c for c in _captions(at) if c.startswith("Signed map"))
    assert "**red** is evidence for **bull mastiff** rather than tiger cat" in sentence
    assert "**blue** is evidence for **tiger cat** rather than bull mastiff" in sentence


def test_an_unsigned_method_keeps_todays_controls():
    at = open_page("attention", **{"attention.curves_on": False})
    check_clean(at)
    assert not [s for s in at.main.selectbox if s.key == "attention.scale"]
    assert at.selectbox(key="attention.cmap.seq").value == "jet"
    assert "low → high relevance" in _image_captions(at)
    assert not any(c.startswith("Signed map") for c in _captions(at))


def test_compare_draws_each_method_in_its_own_scaling():
    at = open_page("compare", **{"cmp.methods": ["attention_rollout", "attnlrp"], "cmp.curves_on": False})
    check_clean(at)
    caps = _image_captions(at)
    assert any(c.startswith("AttnLRP") and "signed: red for, blue against" in c for c in caps)
    assert any(c.startswith("Attention Rollout") and "signed" not in c for c in caps)
    table = at.dataframe[0].value
    maps = dict(zip(table["method"], table["map"]))
    assert maps["AttnLRP"] == "signed · symmetric" and maps["Attention Rollout"] == "unsigned · minmax"
    assert any("Each map is drawn in its own default scaling" in c for c in _captions(at))
