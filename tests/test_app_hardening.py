"""Hardening of the app for a public Space (issue 16): symlinks out of the allowed folders, server paths in
the JSON report, and the one cache budget (issue 17 item 4). Through ``AppTest`` with the real DeiT-Tiny
weights where the app is involved."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import ROOT, WEIGHTS, _require

pytest.importorskip("streamlit")
from app_support import check_clean, new_app, offline_weights  # noqa: E402, F401  (autouse fixture)

import explainers  # noqa: E402

OTHER = "Other: timm name, Hugging Face id or local folder…"


def _type_model(at, name: str, weights: str = "") -> None:
    at.sidebar.selectbox(key="model_choice").set_value(OTHER).run()
    at.sidebar.text_input(key="model_weights").input(weights)
    at.sidebar.text_input(key="model_typed").input(name).run()


@pytest.fixture
def allowed(tmp_path, monkeypatch):
    root = tmp_path / "allowed"
    root.mkdir()
    monkeypatch.setenv("VIT_EXPLAIN_ALLOWED_PATHS", str(root))
    return root


def test_a_folder_holding_a_link_to_weights_outside_is_refused(allowed, tmp_path):
    from vit_explain_studio.state import ChoiceError, check_model_choice

    hf = _require(WEIGHTS / "hf")
    outside = tmp_path / "outside"  # neither under VIT_EXPLAIN_ALLOWED_PATHS nor VIT_EXPLAIN_WEIGHTS
    outside.mkdir()
    (outside / "model.safetensors").write_bytes((hf / "model.safetensors").read_bytes())
    hf = outside
    folder = allowed / "innocent"
    folder.mkdir()
    (folder / "config.json").write_bytes((WEIGHTS / "hf" / "config.json").read_bytes())  # a real file inside
    (folder / "model.safetensors").symlink_to(hf / "model.safetensors")  # the escape
    with pytest.raises(ChoiceError, match="links included"):
        check_model_choice(str(folder))
    # the same escape one folder deeper, through a linked folder, and as the weights argument
    deep = allowed / "deep" / "hf"
    deep.mkdir(parents=True)
    (deep / "model.safetensors").symlink_to(hf / "model.safetensors")
    with pytest.raises(ChoiceError):
        check_model_choice(str(allowed / "deep"))
    (allowed / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ChoiceError):
        check_model_choice(str(allowed / "linked"))
    with pytest.raises(ChoiceError):
        check_model_choice("deit_tiny_patch16_224", weights=str(folder / "model.safetensors"))
    # a folder of real files under the allowed root passes
    clean = allowed / "clean"
    clean.mkdir()
    (clean / "config.json").write_text("{}")
    assert check_model_choice(str(clean)) == (str(clean.resolve()), None)

    # in the app: one message, no model, nothing read
    at = new_app()
    at.run()
    _type_model(at, str(folder))
    assert not at.exception, [e.message for e in at.exception]
    msgs = [e.value for e in at.error]
    assert len(msgs) == 1 and "links included" in msgs[0], msgs
    assert at.session_state["ctx"] is None


def test_a_link_to_another_allowed_folder_is_accepted(allowed, deit_tiny_hf, both_image):
    """Links are fine when their targets are allowed too (here the operator's VIT_EXPLAIN_WEIGHTS folder): the
    check follows them, it does not ban them."""
    folder = allowed / "mirror"
    folder.mkdir()
    for f in ("config.json", "model.safetensors"):
        (folder / f).symlink_to(_require(WEIGHTS / "hf" / f))
    at = new_app()
    at.run()
    _type_model(at, str(folder))
    check_clean(at)
    ctx = at.session_state["ctx"]
    assert ctx is not None and ctx.target == explainers.explain(deit_tiny_hf, both_image, "attention_rollout").target


def _strings(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


def test_the_json_report_names_no_server_path(monkeypatch):
    """A model typed as a local folder: the JSON report names it (last part and a hash), never where it is."""
    from vit_explain_studio import compute, report

    monkeypatch.setenv("VIT_EXPLAIN_ALLOWED_PATHS", str(WEIGHTS.parent))
    at = new_app()
    at.run()
    _type_model(at, os.path.relpath(WEIGHTS / "hf", ROOT))
    check_clean(at)
    ctx = at.session_state["ctx"]
    assert ctx.model_key[0] == str((WEIGHTS / "hf").resolve())  # the server does know the path...
    exp = compute.explain(ctx, "attention_rollout", {})
    overlay = explainers.viz.overlay(ctx.shown(), exp.heatmap)
    files = report.downloads(ctx, exp, overlay)
    make = next(make for name, (make, _) in files.items() if name.endswith("report.json"))
    rep = json.loads(make())
    texts = list(_strings(rep))
    for secret in (str(WEIGHTS.resolve()), str(ROOT), str(ROOT.parent), os.path.expanduser("~")):
        assert not any(secret in t for t in texts), (secret, [t for t in texts if secret in t])
    assert not any(t.startswith("/") for t in texts), [t for t in texts if t.startswith("/")]
    assert rep["model"]["name"].startswith("hf (local, id ")  # ...the report names it without the path
    assert rep["target"]["index"] == exp.target and rep["method"]["name"] == "attention_rollout"
    np.testing.assert_allclose(np.load(__import__("io").BytesIO(
        next(m for n, (m, _) in files.items() if n.endswith(".npy"))())), exp.patch_map)


def test_lru_bounds_each_session_and_the_total():
    """The cache type behind every app cache: the byte budget holds overall, and a session that fills more
    than its share evicts its own oldest entries, not the other sessions'."""
    from vit_explain_studio.cache import LRU

    mb = 2**20
    lru = LRU(10 * mb, per_session=0.5)
    lru.put("b0", np.zeros(mb, np.uint8), owner="B")
    for i in range(8):  # session A inserts 8 MB: only its own latest 5 MB stay
        lru.put(f"a{i}", np.zeros(mb, np.uint8), owner="A")
        assert lru.bytes <= 10 * mb and lru.session_bytes("A") <= 5 * mb
    assert "b0" in lru and lru.session_bytes("B") == mb
    assert [k for k in ("a3", "a4", "a5", "a6", "a7") if k in lru] == ["a3", "a4", "a5", "a6", "a7"]
    assert "a2" not in lru
    lru.put("huge", np.zeros(11 * mb, np.uint8), owner="C")  # larger than the store: not kept
    assert "huge" not in lru and lru.bytes == 6 * mb


def test_one_budget_covers_the_decoded_uploads(monkeypatch):
    """With VIT_EXPLAIN_CACHE_MB=64, a session uploading many distinct large photos keeps every cache of the
    app within the 64 MB (the decoded-image cache was outside the budget, issue 17); the app still works."""
    import io as _io

    from PIL import Image

    from vit_explain_studio import cache

    monkeypatch.setenv("VIT_EXPLAIN_CACHE_MB", "64")
    cache.stores.clear()
    try:
        at = new_app()
        at.run()
        at.sidebar.radio(key="image_source").set_value("Upload").run()
        rng = np.random.default_rng(0)
        for i in range(8):
            buf = _io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (1500, 2000, 3), dtype=np.uint8)).save(buf, format="JPEG")
            at.sidebar.get("file_uploader")[0].set_value((f"big{i}.jpg", buf.getvalue(), "image/jpeg"))
            at.run()
            check_clean(at)
            used = cache.usage()
            assert used["total"] <= 64 * 2**20, used
            assert used["images"] <= cache.store("images").max_bytes
        assert at.session_state["ctx"].image_name == "big7.jpg"
        assert 8 * 1500 * 2000 * 3 > 64 * 2**20  # the uploads alone would not have fitted
    finally:
        cache.stores.clear()
