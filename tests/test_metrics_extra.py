"""ROAD, faithfulness correlation, sparseness, relevance mass / rank accuracy: known answers on constructed cases
and agreement with Quantus's implementations on the same inputs and maps (DeiT-Tiny, real weights)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import explainers
from explainers import metrics as M
from explainers.errors import InvalidParameterError

ROAD_TOL = 0.0  # same perturbed images, same predictions: the accuracy curves are identical
FC_TOL = 1e-4  # float32 logits, float64 correlation
LOC_TOL = 1e-9  # same arithmetic
SPARSE_TOL = 1e-5  # Quantus adds 1e-7 to every value


@pytest.fixture(scope="module")
def quantus():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import quantus
    return quantus


class Gray(nn.Module):
    """One-channel input repeated to the 3 channels: Quantus's ROAD and faithfulness correlation index a map
    broadcast over the channels, so they run on one-channel inputs only."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        out = self.inner(x.repeat(1, 3, 1, 1))
        return out.logits if hasattr(out, "logits") else out


@pytest.fixture(scope="module")
def gray_case(deit_tiny, cat_image):
    x = deit_tiny.preprocess(cat_image)
    g = x.mean(1, keepdim=True)
    x3 = g.repeat(1, 3, 1, 1)
    exp = explainers.explain(deit_tiny, x3, "transformer_attribution")
    return g, x3, exp


# -- noisy linear imputation -------------------------------------------------------------------------------
def test_imputation_reproduces_a_linear_gradient_in_the_interior():
    yy, xx = np.mgrid[0:40, 0:48].astype(np.float64)
    img = np.stack([0.3 * yy - 0.2 * xx + 1.0, 0.01 * xx, -0.05 * yy])
    removed = np.zeros((40, 48), bool)
    removed[5:33, 4:40] = True  # a large hole, away from the border
    removed[20, 44] = True
    out = M.noisy_linear_imputation(img, removed, noise=0.0)
    assert np.abs(out - img).max() < 1e-9
    # at the border the stencil is truncated (no symmetric neighbour): no longer exact, as in the paper
    removed[0:10, 0:10] = True
    assert np.abs(M.noisy_linear_imputation(img, removed, noise=0.0) - img).max() > 1e-3


def test_imputation_fast_path_equals_a_direct_solve():
    """The nested-dissection ordered sparse LU (explainers.metrics.imputation: sliced assembly, flipped signs)
    gives the solution of the system written out pixel by pixel (dense, numpy.linalg.solve), with the noise
    drawn in raster order of the removed pixels as before."""
    from explainers.metrics import imputation as RM

    rng = np.random.default_rng(3)
    C, H, W = 2, 13, 17
    img = rng.standard_normal((C, H, W))
    removed = rng.random((H, W)) < 0.6
    idx = np.flatnonzero(removed)
    pos = {int(p): j for j, p in enumerate(idx)}
    A, rhs = np.zeros((idx.size, idx.size)), np.zeros((idx.size, C))
    for j, p in enumerate(idx):
        y, x = divmod(int(p), W)
        for dy, dx, w in RM.NEIGHBOURS:
            ny, nx = y + dy, x + dx
            if 0 <= ny < H and 0 <= nx < W:
                A[j, j] -= w
                q = ny * W + nx
                if q in pos:
                    A[j, pos[q]] += w
                else:
                    rhs[j] -= w * img[:, ny, nx]
    want = img.reshape(C, -1).copy()
    want[:, idx] = np.linalg.solve(A, rhs).T
    np.testing.assert_allclose(M.noisy_linear_imputation(img, removed, noise=0).reshape(C, -1), want, atol=1e-12)
    noisy = M.noisy_linear_imputation(img, removed, noise=0.5, seed=7).reshape(C, -1)
    want[:, idx] += 0.5 * np.random.default_rng(7).standard_normal((C, idx.size))
    np.testing.assert_allclose(noisy, want, atol=1e-12)
    keys = RM._dissection_keys(224, 224)
    assert np.array_equal(np.sort(keys), np.arange(224 * 224))  # an ordering of every pixel
    # the assembled matrix is the dense one with the signs flipped, in dissection order: symmetric, SPD
    nd = RM._dissection_order(H, W)
    order = nd[removed.ravel()[nd]]
    S, b = RM._system(img, removed, order)
    perm = np.searchsorted(idx, order)
    np.testing.assert_allclose(S.toarray(), -A[np.ix_(perm, perm)], atol=1e-15)
    np.testing.assert_allclose(b, -rhs[perm], atol=1e-15)
    assert np.linalg.eigvalsh(S.toarray()).min() > 0


def test_imputation_matches_quantus(quantus):
    from quantus.functions.perturb_func import noisy_linear_imputation

    rng = np.random.default_rng(1)
    img = rng.random((3, 30, 36))
    removed = rng.random((30, 36)) < 0.4
    removed[10:20, 5:30] = True
    ref = noisy_linear_imputation(img.copy(), np.flatnonzero(removed), noise=0.0)
    assert np.abs(M.noisy_linear_imputation(img, removed, noise=0.0) - ref).max() < 1e-9


def test_imputation_noise_is_seeded_and_sized():
    img = np.zeros((3, 32, 32))
    removed = np.zeros((32, 32), bool)
    removed[8:24, 8:24] = True
    a = M.noisy_linear_imputation(img, removed, noise=0.1, seed=3)
    assert np.array_equal(a, M.noisy_linear_imputation(img, removed, noise=0.1, seed=3))
    assert not np.array_equal(a, M.noisy_linear_imputation(img, removed, noise=0.1, seed=4))
    assert np.all(a[:, ~removed] == 0) and abs(a[:, removed].std() - 0.1) < 0.01
    with pytest.raises(InvalidParameterError):
        M.noisy_linear_imputation(img, removed[:10], noise=0.0)


# -- ROAD ----------------------------------------------------------------------------------------------------
class LinearPixels:
    """A constructed model: logit 1 = 10 x (mean of channel 0 over the pixels S) - 5, logit 0 = 0."""

    device = torch.device("cpu")
    num_classes = 2

    def __init__(self, mask: torch.Tensor):
        self.mask = mask.float()

    def forward(self, x):
        s = (x[:, 0] * self.mask).sum((-2, -1)) / self.mask.sum()
        return torch.stack([torch.zeros_like(s), 10 * s - 5], -1)


def sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_road_with_a_perfect_map_on_a_constructed_model():
    S = torch.zeros(32, 32, dtype=torch.bool)
    S[12:20, 12:20] = True  # 64 of 1024 pixels
    x = torch.zeros(1, 3, 32, 32)
    x[0, 0][S] = 1.0
    model = LinearPixels(S)
    p = M.Preset("t", "t", (0.0, 0.0625, 0.25, 0.5, 0.75, 0.9375, 1.0), M.Baseline("zero"))
    c = M.road(model, x, S.float(), 1, preset=p, noise=0.0)
    # MoRF: S goes first and is filled from its zero neighbours; all removed -> the image's mean colour
    np.testing.assert_allclose(c.morf, [sig(5)] + [sig(-5)] * 5 + [sig(10 * 64 / 1024 - 5)], atol=1e-12)
    # LeRF: the background goes first and S is kept until the end
    np.testing.assert_allclose(c.lerf, [sig(5)] * 6 + [sig(10 * 64 / 1024 - 5)], atol=1e-12)
    anti = M.road(model, x, 1.0 - S.float(), 1, preset=p, noise=0.0)
    assert c.gap > 0.8 > 0 > anti.gap
    assert c.morf_auc < anti.morf_auc and c.lerf_auc > anti.lerf_auc
    assert c.forward_passes == 12  # 5 + 5 inner steps, plus the untouched image and "all removed", shared


def test_road_matches_quantus(quantus, deit_tiny, gray_case):
    g, x3, exp = gray_case
    pcts = [20, 50, 80]
    preset = M.Preset("q", "q", tuple(p / 100 for p in pcts), M.Baseline("zero"), counts="floor")
    ours = M.road(deit_tiny, x3, exp.heatmap, exp.target, preset=preset, noise=0.0, score="accuracy")
    net = Gray(deit_tiny.module).eval()
    a = exp.heatmap[None, None].astype(np.float32)
    kw = {"percentages": pcts, "noise": 0.0, "normalise": False, "abs": False, "disable_warnings": True}
    q_morf = quantus.ROAD(**kw)(model=net, x_batch=g.numpy(), y_batch=np.array([exp.target]), a_batch=a,
                                device="cpu")
    q_lerf = quantus.ROAD(**kw)(model=net, x_batch=g.numpy(), y_batch=np.array([exp.target]), a_batch=-a,
                                device="cpu")
    assert np.abs(ours.morf - [q_morf[p] for p in pcts]).max() <= ROAD_TOL
    assert np.abs(ours.lerf - [q_lerf[p] for p in pcts]).max() <= ROAD_TOL


def test_road_real_map_beats_random(deit_tiny, cat_image):
    x = deit_tiny.preprocess(cat_image)
    exp = explainers.explain(deit_tiny, x, "transformer_attribution")
    good = M.road(deit_tiny, x, exp.heatmap, exp.target, steps=4, seed=1)
    rand = M.road(deit_tiny, x, M.random_map(deit_tiny.grid(), 0), exp.target, steps=4, seed=1)
    assert good.morf_auc < rand.morf_auc and good.gap > rand.gap
    assert good.fractions.tolist() == M.get_preset("standard").grid(4).tolist()
    with pytest.raises(InvalidParameterError):
        M.road(deit_tiny, x, exp.heatmap, deit_tiny.num_classes)
    with pytest.raises(InvalidParameterError):
        M.road(deit_tiny, x, exp.heatmap, 1, score="logit")


def test_road_is_deterministic():
    S = torch.zeros(24, 24, dtype=torch.bool)
    S[6:14, 8:20] = True
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    model = LinearPixels(S)
    sal = torch.rand(24, 24, generator=torch.Generator().manual_seed(1))
    a, b = (M.road(model, x, sal, 1, steps=6, noise=0.05, seed=7) for _ in range(2))
    c = M.road(model, x, sal, 1, steps=6, noise=0.05, seed=8)
    assert np.array_equal(a.morf, b.morf) and np.array_equal(a.lerf, b.lerf)
    assert not np.array_equal(a.morf, c.morf)


# -- faithfulness correlation, sparseness ----------------------------------------------------------------------
def test_faithfulness_correlation_matches_quantus(quantus, deit_tiny, gray_case, monkeypatch):
    g, x3, exp = gray_case
    drawn = []
    choice = np.random.choice

    def recording_choice(*args, **kw):
        out = choice(*args, **kw)
        drawn.append(out)
        return out

    monkeypatch.setattr(np.random, "choice", recording_choice)
    metric = quantus.FaithfulnessCorrelation(nr_runs=6, subset_size=224, perturb_baseline=0.0, normalise=False,
                                             abs=False, disable_warnings=True, return_aggregate=False)
    q = metric(model=Gray(deit_tiny.module).eval(), x_batch=g.numpy(), y_batch=np.array([exp.target]),
               a_batch=exp.heatmap[None, None].astype(np.float32), device="cpu", softmax=False)
    monkeypatch.setattr(np.random, "choice", choice)
    ours = M.faithfulness_correlation(deit_tiny, x3, exp.heatmap, exp.target, baseline="zero", score="logit",
                                      subsets=np.stack(drawn))
    assert abs(ours - q[0]) < FC_TOL


def _square_case():
    """A 16 x 16 input whose channel 0 is 1 on the 8 x 8 square S, and the model reading S."""
    S = torch.zeros(16, 16, dtype=torch.bool)
    S[4:12, 4:12] = True
    x = torch.zeros(1, 3, 16, 16)
    x[0, 0][S] = 1.0
    return S, x, LinearPixels(S)


def test_faithfulness_correlation_known_answer_and_seed():
    S, x, model = _square_case()
    # the logit drop is exactly 10/64 per pixel of S removed: a map = S correlates perfectly with the drops
    r = M.faithfulness_correlation(model, x, S.float(), 1, runs=20, subset=30, baseline="zero", score="logit")
    assert r == pytest.approx(1.0, abs=1e-9)
    r2 = M.faithfulness_correlation(model, x, 1.0 - S.float(), 1, runs=20, subset=30, baseline="zero",
                                    score="logit")
    assert r2 == pytest.approx(-1.0, abs=1e-9)
    noisy = torch.from_numpy(np.random.default_rng(0).random((16, 16)))
    a = M.faithfulness_correlation(model, x, noisy, 1, runs=20, subset=30, seed=5, baseline="zero")
    assert a == M.faithfulness_correlation(model, x, noisy, 1, runs=20, subset=30, seed=5, baseline="zero")
    assert a != M.faithfulness_correlation(model, x, noisy, 1, runs=20, subset=30, seed=6, baseline="zero")
    with pytest.raises(InvalidParameterError):
        M.faithfulness_correlation(model, x, S.float(), 1, runs=1)


def test_faithfulness_correlation_reuses_the_drops_of_one_image():
    S, x, model = _square_case()
    calls = []
    forward = model.forward
    model.forward = lambda t: calls.append(t.shape[0]) or forward(t)
    maps = [S.float(), 1.0 - S.float(), torch.from_numpy(np.random.default_rng(0).random((16, 16)))]
    kw = dict(runs=20, subset=30, baseline="zero", batch_size=8)
    plain = [M.faithfulness_correlation(model, x, m, 1, **kw) for m in maps]
    once = sum(calls) // 3  # images through the model for one map: the clean input and the 20 subsets
    assert once == 21
    calls.clear()
    cache: dict = {}
    assert [M.faithfulness_correlation(model, x, m, 1, cache=cache, **kw) for m in maps] == plain  # exactly
    assert sum(calls) == once  # the maps after the first reuse the drops
    # another target, seed or input is computed again, never read from the cache
    other = x.clone()
    other[0, 0, 5, 5] = 0.0
    for args, more in (((model, x, maps[2], 0), {}), ((model, x, maps[2], 1), {"seed": 3}),
                       ((model, other, maps[2], 1), {})):
        calls.clear()
        assert M.faithfulness_correlation(*args, cache=cache, **kw, **more) == M.faithfulness_correlation(
            *args, **kw, **more)
        assert sum(calls) == 2 * once


def test_sparseness_known_answers_and_quantus(quantus, gray_case):
    assert M.gini(np.ones(100)) == pytest.approx(0.0)
    one_hot = np.zeros(100)
    one_hot[3] = 5.0
    assert M.gini(one_hot) == pytest.approx(0.99)  # (n - 1) / n
    _, _, exp = gray_case
    a = exp.heatmap[None, None].astype(np.float64)
    q = quantus.Sparseness(disable_warnings=True).evaluate_batch(x_batch=a.copy(), a_batch=a.copy())
    assert abs(M.sparseness(exp.heatmap, exp.heatmap.shape) - float(q[0])) < SPARSE_TOL


# -- localisation ----------------------------------------------------------------------------------------------
def test_relevance_mass_and_rank_known_answers():
    s = np.zeros((20, 20))
    s[2:6, 2:6] = 1.0
    s[0, 10] = 1.0  # before the block in raster order
    box = [[2, 2, 6, 6]]  # the 16 pixels of the block
    assert M.relevance_mass_accuracy(s, box, (20, 20)) == pytest.approx(16 / 17)
    assert M.relevance_rank_accuracy(s, box, (20, 20)) == pytest.approx(15 / 16)  # (0, 10) first
    assert math.isnan(M.relevance_mass_accuracy(s, [], (20, 20)))
    assert math.isnan(M.relevance_rank_accuracy(s, None, (20, 20)))
    assert M.relevance_mass_accuracy(-s, box, (20, 20)) == pytest.approx(16 / 400)  # no positive mass


def test_localisation_matches_quantus(quantus, deit_tiny, val_boxes):
    from conftest import val_images

    for path in val_images(3):
        image = explainers.load_image(path)
        exp = explainers.explain(deit_tiny, image, "transformer_attribution")
        entry = val_boxes[path.name]
        boxes = M.boxes_to_input_frame(entry["boxes_xyxy"], image.size, deit_tiny.preprocessing)
        H, W = exp.heatmap.shape
        s = M.box_mask(boxes, (H, W))[None, None]
        a = exp.heatmap[None, None].astype(np.float64)
        mass = quantus.RelevanceMassAccuracy(disable_warnings=True).evaluate_batch(a_batch=a, s_batch=s)
        rank = quantus.RelevanceRankAccuracy(disable_warnings=True).evaluate_batch(a_batch=a, s_batch=s)
        assert abs(M.relevance_mass_accuracy(exp.heatmap, boxes, (H, W)) - mass[0]) < LOC_TOL
        assert abs(M.relevance_rank_accuracy(exp.heatmap, boxes, (H, W)) - rank[0]) < 2 / s.sum()  # ties
        if s.mean() < 0.5:
            hit = quantus.PointingGame(disable_warnings=True).evaluate_batch(a_batch=a, s_batch=s)
            assert M.pointing_game(exp.heatmap, boxes, (H, W), tolerance=0) == bool(hit[0])


# -- metric objects ---------------------------------------------------------------------------------------------
def test_metric_objects_metadata_and_extra_scores(deit_tiny, cat_image):
    for name in ("insertion_auc", "deletion_auc", "pointing_game", "energy_pointing_game"):
        assert name in M.METRICS  # the older names keep working
    expected = {"road_morf_auc": (False, "faithfulness"), "road_lerf_auc": (True, "faithfulness"),
                "road_gap": (True, "faithfulness"), "faithfulness_correlation": (True, "faithfulness"),
                "sparseness": (True, "complexity"), "relevance_mass_accuracy": (True, "localisation"),
                "relevance_rank_accuracy": (True, "localisation"), "randomisation_similarity": (False, "randomisation"),
                "random_logit_similarity": (False, "randomisation")}
    for name, (hib, cat) in expected.items():
        m = M.METRICS[name]
        assert (m.higher_is_better, m.category) == (hib, cat) and m.title
    assert M.METRICS["relevance_rank_accuracy"].needs_boxes and not M.METRICS["road_gap"].needs_boxes
    x = deit_tiny.preprocess(cat_image)
    exp = explainers.explain(deit_tiny, x, "attention_rollout")
    box = [[40.0, 30.0, 200.0, 200.0]]
    out = M.extra_scores(deit_tiny, x, exp.heatmap, exp.target, boxes=box, steps=4, fc_runs=8)
    assert set(out) == set(M.EXTRA_METRICS)
    assert out["road_gap"] == pytest.approx(out["road_lerf_auc"] - out["road_morf_auc"])
    assert out["relevance_mass_accuracy"] == pytest.approx(M.RelevanceMassAccuracy()(deit_tiny, x, exp.heatmap,
                                                                                     exp.target, boxes=box))
    assert M.extra_scores(deit_tiny, x, exp.heatmap, exp.target, steps=2, fc_runs=4)["relevance_rank_accuracy"] \
        is None
    with pytest.raises(InvalidParameterError):
        M.METRICS["random_logit_similarity"](deit_tiny, x, exp.heatmap, exp.target)
    assert M.METRICS["random_logit_similarity"](deit_tiny, x, exp.heatmap, exp.target,
                                                method="attention_rollout") == pytest.approx(1.0)
