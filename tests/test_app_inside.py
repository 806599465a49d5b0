"""The "Inside the model" page through ``AppTest`` with the real DeiT-Tiny weights: the drawn numbers are the
library's, a slider, a toggle or a picked head costs no model pass, and the high-norm toggle of a method page."""

from __future__ import annotations

import numpy as np
from app_support import (
    check_clean,
    decode,
    offline_weights,  # noqa: F401  (autouse here too: DeiT-Tiny from ../shared, no network)
    open_page,
    plotly_specs,
)

import explainers


def _spec(at, title_part: str) -> dict:
    return next(s for s in plotly_specs(at) if title_part in s["layout"]["title"]["text"])


def _captions(at) -> list[str]:
    return [i.caption for el in at.main.get("image") for i in el.proto.imgs]


def test_inside_page_draws_the_library_results_and_redraws_from_the_cache(deit_tiny, both_image):
    from vit_explain_studio import cache

    at = open_page("inside")
    assert at.title[0].value == "Inside the model"
    lens = explainers.logit_lens(deit_tiny, both_image)
    curve = _spec(at, "Logit lens")["data"][0]
    np.testing.assert_allclose(decode(curve["y"]), lens.pooled, rtol=1e-4)
    assert lens.top_labels[-1][0] in curve["customdata"][-1]  # the hover names the block's top classes
    assert len(_captions(at)) == deit_tiny.num_layers  # one tile per block

    store = cache.store("captures")
    misses = store.misses
    at.toggle(key="inside.lens_shared").set_value(True).run()
    check_clean(at)
    assert store.misses == misses, "a colour-range change ran the model again"

    at.get("button_group")[0].set_value("heads").run()
    check_clean(at)
    heads = explainers.head_importance(deit_tiny, both_image)
    grid = _spec(at, "one head removed")["data"][0]
    np.testing.assert_allclose(decode(grid["z"]), heads.scores, atol=1e-5)
    misses = store.misses
    at.number_input(key="inside.layer").set_value(4)
    at.number_input(key="inside.head").set_value(2)
    at.run()
    check_clean(at)
    assert any("Block 4, head 2" in c for c in _captions(at))
    assert store.misses == misses, "picking a head ran the model again"

    at.get("button_group")[0].set_value("norms").run()
    check_clean(at)
    misses = store.misses
    at.slider(key="inside.norm_layer").set_value(6).run()
    check_clean(at)
    assert store.misses == misses, "moving the block slider ran the model again"
    assert any("high-norm token" in c.value for c in at.main.caption)


def test_high_norm_toggle_on_an_attention_page(deit_tiny, both_image):
    at = open_page("attention")
    at.toggle(key="attention.high_norm").set_value(True).run()
    check_clean(at)
    norms = explainers.token_norms(deit_tiny, both_image)
    k = max(1, int(norms.outliers.sum()))
    assert any(f"of the map's {k} brightest patch" in c.value for c in at.main.caption)
