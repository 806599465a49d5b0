"""Sanity checks: model parameter randomisation on a copy (the shared model never changes), the random-logit test,
map similarities (agreeing with Quantus), the Quantus adapter and the ``sanity`` command."""

from __future__ import annotations

import argparse
import csv
import warnings

import numpy as np
import pytest
import torch

import explainers
from explainers import sanity
from explainers.errors import ExplainerError, InvalidParameterError
from explainers.metrics import randomisation as R
from explainers.metrics import rank_pixels

SIM_TOL = 1e-9  # same formula, same library underneath


@pytest.fixture(scope="module")
def quantus():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import quantus
    return quantus


@pytest.fixture(scope="module")
def x_cat(deit_tiny, cat_image):
    return deit_tiny.preprocess(cat_image)


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def edge_map(model, x, target):
    """A map that ignores the model: the image's intensity gradient magnitude."""
    g = x[0].mean(0).cpu().numpy()
    gy, gx = np.gradient(g)
    e = np.hypot(gx, gy)
    return (e - e.min()) / (e.max() - e.min())


# -- the copy ----------------------------------------------------------------------------------------------------
def test_copy_is_independent_and_the_original_unchanged(deit_tiny, x_cat):
    before = _state(deit_tiny)
    with torch.inference_mode():
        logits = deit_tiny.forward(x_cat).clone()
        embedded = deit_tiny.embed(x_cat).clone()
    twin = R.copy_model(deit_tiny)
    orig_ids = {id(p) for p in deit_tiny.module.parameters()}
    twin_ids = {id(p) for p in twin.module.parameters()}
    assert not orig_ids & twin_ids
    # the copy's blocks, head and embedding read the copy's own parameters
    for i in range(twin.num_layers):
        ids = R._param_ids(twin.blocks[i], set())
        assert ids and ids <= twin_ids
    assert R._param_ids(twin.head, set()) <= twin_ids
    for group, names in R.parameter_groups(twin):
        R.randomise_(twin.module, names, 0, group)
    with torch.inference_mode():
        assert torch.equal(deit_tiny.forward(x_cat), logits)
        assert torch.equal(deit_tiny.embed(x_cat), embedded)
        assert not torch.allclose(twin.embed(x_cat), embedded)  # the copy's embedding is its own
        assert not torch.allclose(twin.forward(x_cat), logits)
    after = _state(deit_tiny)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_copy_refuses_a_wrapper_with_a_closure_over_the_original():
    class Wrapper:
        def __init__(self, module):
            self.module = module
            self.embed = lambda x: module(x)  # copied by reference by deepcopy: still the original's module

    with pytest.raises(ExplainerError, match="not deepcopy-safe.*embed"):
        R.copy_model(Wrapper(torch.nn.Linear(3, 3)))


def test_parameter_groups_cover_every_parameter_once(deit_tiny):
    groups = R.parameter_groups(deit_tiny)
    assert [g for g, _ in groups] == ["head"] + [f"block {i}" for i in range(11, -1, -1)] + ["embeddings"]
    names = [n for _, ns in groups for n in ns]
    assert sorted(names) == sorted(n for n, _ in deit_tiny.module.named_parameters())
    assert all(n.startswith("blocks.11.") for n in dict(groups)["block 11"])
    assert {"head.weight", "norm.weight"} <= set(dict(groups)["head"])
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight"} <= set(dict(groups)["embeddings"])


def test_randomise_keeps_each_tensors_moments_and_is_seeded():
    a, b = torch.nn.Linear(64, 32), torch.nn.Linear(64, 32)
    b.load_state_dict(a.state_dict())
    w = a.weight.detach().clone()
    R.randomise_(a, ["weight"], 3, "g")
    R.randomise_(b, ["weight"], 3, "g")
    assert torch.equal(a.weight, b.weight) and not torch.allclose(a.weight, w)
    assert abs(float(a.weight.detach().std()) - float(w.std())) < 0.1 * float(w.std())
    R.randomise_(b, ["weight"], 4, "g")
    assert not torch.equal(a.weight, b.weight)


# -- the checks ------------------------------------------------------------------------------------------------
def test_a_map_that_ignores_the_model_keeps_similarity_one_and_is_flagged(deit_tiny, x_cat):
    before = _state(deit_tiny)
    res = sanity.sanity_check(deit_tiny, x_cat, [("edges", edge_map), "gaussian", "attention_gradcam"],
                              random_logit=False, steps=8)  # up to the head and the top 7 blocks
    edges, gauss, gradcam = res
    assert [s.label for s in edges.steps][:3] == ["original", "head", "head + block 11"]
    assert len(edges.steps) == 9 and len(R.cascading_steps(deit_tiny.num_layers)) == deit_tiny.num_layers + 3
    for r in (edges, gauss):
        assert np.allclose(r.spearman, 1.0) and np.allclose(r.ssim, 1.0) and np.allclose(r.topk, 1.0)
        assert not r.passes()
    assert gradcam.passes() and gradcam.at_blocks(7) < sanity.PASS_THRESHOLD
    verdict = {row["method"]: row["passes"] for row in sanity.summarize(res)}
    assert verdict == {"edges": False, "gaussian": False, "attention_gradcam": True}
    after = _state(deit_tiny)  # the shared model is left unchanged
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_known_answers_head_and_independent_mode(deit_tiny, x_cat):
    casc, = sanity.sanity_check(deit_tiny, x_cat, ["attention_rollout"], random_logit=False, steps=2)
    assert casc.spearman[1] == pytest.approx(1.0)  # the head does not enter attention rollout
    assert casc.spearman[2] < 0.999  # block 11's attention does
    ind, = sanity.sanity_check(deit_tiny, x_cat, ["attention_rollout"], mode="independent", random_logit=False,
                               steps=3)
    assert [s.label for s in ind.steps] == ["original", "head", "block 11", "block 10"]
    assert [s.label for s in R.independent_steps(12)][-2:] == ["block 0", "embeddings"]
    assert ind.spearman[1] == pytest.approx(1.0)
    # cascading and independent draw the same random weights per group: one block alone is the same either way
    assert ind.spearman[2] == pytest.approx(casc.spearman[2], abs=1e-12)
    # block 11 is back to its trained weights when block 10 alone is random
    assert ind.spearman[3] < 0.999 and ind.spearman[3] != pytest.approx(casc.spearman[2], abs=1e-6)


def test_determinism_and_seed(deit_tiny, x_cat):
    a, = sanity.sanity_check(deit_tiny, x_cat, ["attention_rollout"], seed=1, random_logit=False, steps=3)
    b, = sanity.sanity_check(deit_tiny, x_cat, ["attention_rollout"], seed=1, random_logit=False, steps=3)
    c, = sanity.sanity_check(deit_tiny, x_cat, ["attention_rollout"], seed=2, random_logit=False, steps=3)
    assert len(a.steps) == 4
    assert a.spearman == b.spearman and a.ssim == b.ssim and a.topk == b.topk
    assert a.spearman != c.spearman


def test_random_logit(deit_tiny, x_cat):
    for t in range(0, 1000, 97):
        assert R.random_other_class(1000, t, t) != t
    out = sanity.random_logit_check(deit_tiny, x_cat, ["attention_rollout", "attention_gradcam"], seed=3)
    assert out["attention_rollout"]["other_class"] == out["attention_gradcam"]["other_class"]
    assert out["attention_rollout"]["spearman"] == pytest.approx(1.0)  # class-agnostic
    assert out["attention_gradcam"]["spearman"] < 0.9  # class-specific
    res, = sanity.sanity_check(deit_tiny, x_cat, ["attention_gradcam"], steps=1, seed=3)
    assert res.other_class == out["attention_gradcam"]["other_class"] != res.target
    assert res.random_logit["spearman"] == pytest.approx(out["attention_gradcam"]["spearman"])
    rows = res.rows()
    assert rows[-1]["mode"] == "random_logit" and len(rows) == 3


def test_bad_input_gets_the_librarys_errors(deit_tiny, x_cat):
    with pytest.raises(InvalidParameterError):
        sanity.sanity_check(deit_tiny, x_cat, ["attention_rollout"], mode="sideways")
    with pytest.raises(InvalidParameterError):
        sanity.resolve_methods("attention_rollout,nope")
    with pytest.raises(InvalidParameterError):
        R.spearman(np.zeros((3, 3)), np.zeros((4, 4)))
    with pytest.raises(InvalidParameterError):
        R.topk_intersection(np.zeros((3, 3)), np.zeros((3, 3)), k=0)
    flat, ramp = np.zeros((4, 4)), np.arange(16.0).reshape(4, 4)
    assert R.spearman(flat, ramp) == 0.0 and R.spearman(flat, flat) == 1.0  # a map that went flat has changed


# -- agreement with Quantus --------------------------------------------------------------------------------------
def test_similarities_match_quantus(quantus, deit_tiny, x_cat):
    from quantus.functions.similarity_func import correlation_spearman
    from quantus.functions.similarity_func import ssim as q_ssim

    a = explainers.explain(deit_tiny, x_cat, "transformer_attribution").heatmap
    b = explainers.explain(deit_tiny, x_cat, "attention_gradcam").heatmap
    assert abs(R.spearman(a, b) - correlation_spearman(a.ravel(), b.ravel())) < SIM_TOL
    assert abs(R.ssim(a, b) - q_ssim(a.astype(np.float64), b.astype(np.float64))) < SIM_TOL  # both span [0, 1]
    k = int(round(0.1 * a.size))
    s = (rank_pixels(b, b.shape).numpy() < k)[None, None]
    tki = quantus.TopKIntersection(k=k, disable_warnings=True).evaluate_batch(a_batch=a[None, None], s_batch=s)
    assert abs(R.topk_intersection(a, b) - tki[0]) < 2 / k  # Quantus breaks ties with an unstable sort


def test_map_comparer_fast_path_equals_direct_computations():
    """MapComparer (one unstable sort per map, the reference's SSIM window statistics cached) gives what scipy's
    Spearman, scikit-image's SSIM and a stable-sort top-k give, on maps with and without ties."""
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    for case in range(4):
        a, b = rng.random((40, 56)), rng.random((40, 56)) * 1.3 - 0.1  # b leaves [0, 1]: clipped for SSIM
        if case % 2:  # plateaus: many ties, also across the top-k cut
            a, b = np.round(a * 4) / 4, np.round(b * 3) / 3
        sims = R.MapComparer(a, k=0.1)(b)
        n = int(round(0.1 * a.size))
        top = [set(np.argsort(-m.ravel(), kind="stable")[:n]) for m in (a, b)]
        assert sims["spearman"] == pytest.approx(spearmanr(a.ravel(), b.ravel())[0], abs=1e-12)
        assert sims["ssim"] == pytest.approx(structural_similarity(np.clip(a, 0, 1), np.clip(b, 0, 1),
                                                                   data_range=1.0), abs=1e-12)
        assert sims["topk"] == len(top[0] & top[1]) / n
    small = rng.random((5, 6))  # smaller than SSIM's 7 x 7 window: scikit-image's own message
    with pytest.raises(ValueError):
        R.MapComparer(small)(small)


def test_quantus_random_logit_with_the_adapter(quantus, deit_tiny, x_cat):
    from quantus.functions.similarity_func import correlation_spearman

    from explainers.quantus_adapter import LogitsModule, explain_func

    method = "attention_gradcam"
    x = x_cat.numpy()
    with torch.inference_mode():
        y = np.array([int(deit_tiny.forward(x_cat).argmax())])
    metric = quantus.RandomLogit(num_classes=deit_tiny.num_classes, similarity_func=correlation_spearman, seed=42,
                                 disable_warnings=True)
    q = metric(model=LogitsModule(deit_tiny), x_batch=x, y_batch=y, explain_func=explain_func,
               explain_func_kwargs={"method": method}, device="cpu")
    np.random.seed(42)  # Quantus's choice of the other class
    other = int(np.delete(np.arange(deit_tiny.num_classes), y[0])[np.random.randint(0, deit_tiny.num_classes - 1)])
    ours = R.spearman(explainers.explain(deit_tiny, x_cat, method, target=int(y[0])).heatmap,
                      explainers.explain(deit_tiny, x_cat, method, target=other).heatmap)
    assert abs(ours - q[0]) < 1e-6


def test_quantus_adapter_shapes_and_errors(deit_tiny, x_cat):
    from explainers.quantus_adapter import LogitsModule, explain_func

    two = torch.cat([x_cat, x_cat.flip(-1)]).numpy()
    maps = explain_func(LogitsModule(deit_tiny), two, np.array([281, 282]), method="attention_gradcam")
    assert maps.shape == (2, 1, 224, 224) and maps.dtype == np.float32
    ref = explainers.explain(deit_tiny, x_cat, "attention_gradcam", target=281).heatmap
    np.testing.assert_allclose(maps[0, 0], ref, atol=1e-5)
    same = explain_func(deit_tiny.module, two[:1], 281, method="attention_gradcam")
    np.testing.assert_allclose(same[0, 0], ref, atol=1e-5)
    raw = explain_func(deit_tiny, two[:1], None, method="attention_rollout", output="raw")
    assert raw.shape == (1, 1, 224, 224)
    with pytest.raises(InvalidParameterError):
        explain_func(deit_tiny, two[:1], None, output="png")
    with pytest.raises(InvalidParameterError):
        explain_func("not a model", two[:1], None)


# -- command line --------------------------------------------------------------------------------------------------
def test_sanity_command_writes_csv_and_self_contained_html(deit_tiny, cat_image, tmp_path, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    cat_image.save(images / "cat.png")
    ap = argparse.ArgumentParser()
    sanity.add_cli(ap.add_subparsers(dest="command"))
    args = ap.parse_args(["sanity", "--model", "deit_tiny_patch16_224", "--methods", "attention_rollout,gaussian",
                          "--images", str(images), "--out", str(tmp_path / "out"), "--quiet"])
    monkeypatch.setattr(explainers, "load_model", lambda *a, **k: deit_tiny)  # the fixture's local weights
    assert args.func(args) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "sanity.csv")))
    steps = deit_tiny.num_layers + 3
    assert len(rows) == 2 * steps + 2
    assert {r["method"] for r in rows} == {"attention_rollout", "gaussian"}
    assert float([r for r in rows if r["method"] == "gaussian"][-2]["spearman"]) == pytest.approx(1.0)
    html = (tmp_path / "out" / "sanity.html").read_text()
    assert "plotly" in html.lower() and "<script src=\"http" not in html and "attention_rollout" in html
    assert "FLAGGED" in (tmp_path / "out" / "summary.md").read_text()


# -- the app page ------------------------------------------------------------------------------------------------
def test_sanity_page_shows_the_strip_and_the_curve_and_caches(monkeypatch):
    from conftest import ROOT, WEIGHTS, _require
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("VIT_EXPLAIN_WEIGHTS", str(_require(WEIGHTS)))
    monkeypatch.delenv("VIT_EXPLAIN_ALLOWED_PATHS", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.session_state["san.methods"] = ["attention_rollout"]
    at.run()
    at.switch_page("vit_explain_studio/app_pages/sanity.py").run()
    assert not at.exception and not at.error, ([e.message for e in at.exception], [e.value for e in at.error])
    captions = [c for el in at.main.image for c in (i.caption for i in el.proto.imgs)]
    steps = 12 + 3
    assert captions[0] == "original" and sum(c.startswith("head") or c.startswith("all") for c in captions) \
        == steps - 1
    specs = [el.proto.spec for el in at.get("plotly_chart")]
    assert any("Attention Rollout" in s or "attention" in s.lower() for s in specs)
    from vit_explain_studio import sanity_page

    assert len(sanity_page._store()) >= 1
    at.run()  # cached: no recomputation, the same strip
    assert [c for el in at.main.image for c in (i.caption for i in el.proto.imgs)] == captions


def test_sanity_command_resumes_and_extends_a_folder(deit_tiny, cat_image, tmp_path, monkeypatch):
    """An interrupted run keeps the images it finished; the rerun computes only the missing (image, method) pairs
    (a new method, a higher --limit) and its files equal a run in one go; other settings are refused."""
    from explainers import sanity_run

    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        cat_image.rotate(90 * i).save(images / f"im{i}.png")
    monkeypatch.setattr(explainers, "load_model", lambda *a, **k: deit_tiny)
    ap = argparse.ArgumentParser()
    sanity_run.add_cli(ap.add_subparsers(dest="command"))

    def run(out, methods, *extra):
        args = ap.parse_args(["sanity", "--model", "deit_tiny_patch16_224", "--methods", methods, "--images",
                              str(images), "--out", str(out), "--quiet", "--no-random-logit", *extra])
        return args.func(args)

    real, calls = sanity.sanity_check, []

    class Stopped(Exception):
        pass

    def counting(model, image, methods, *a, name="image", **k):
        calls.append((name, tuple(methods)))
        if calls == [("im0.png", ("attention_rollout",)), ("im1.png", ("attention_rollout",))]:
            raise Stopped  # the first run stops during the second image
        return real(model, image, methods, *a, name=name, **k)

    monkeypatch.setattr(sanity, "sanity_check", counting)
    with pytest.raises(Stopped):
        run(tmp_path / "out", "attention_rollout", "--limit", "2")
    assert {r["image"] for r in csv.DictReader(open(tmp_path / "out" / "sanity.csv"))} == {"im0.png"}
    calls.clear()
    assert run(tmp_path / "out", "attention_rollout,gaussian") == 0
    assert calls == [("im0.png", ("gaussian",)), ("im1.png", ("attention_rollout", "gaussian")),
                     ("im2.png", ("attention_rollout", "gaussian"))]
    calls.clear()
    assert run(tmp_path / "out", "attention_rollout,gaussian") == 0 and calls == []  # nothing left to do
    assert run(tmp_path / "once", "attention_rollout,gaussian") == 0
    a, b = (sorted(csv.DictReader(open(tmp_path / d / "sanity.csv")), key=lambda r: (r["image"], r["method"], r["step"]))  # noqa: E501
            for d in ("out", "once"))
    assert a == b and len(a) == 3 * 2 * (deit_tiny.num_layers + 3)
    assert (tmp_path / "out" / "summary.md").read_text() == (tmp_path / "once" / "summary.md").read_text()
    with pytest.raises(InvalidParameterError, match="seed"):
        run(tmp_path / "out", "attention_rollout", "--seed", "1")
