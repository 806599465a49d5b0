"""Metrics: insertion/deletion curves and presets, pointing game, box mapping, reference maps.

Known answers come from a constructed "model" whose score is a known function of the pixels, from
independent formulas (numpy's trapezoid, the preprocessing applied to a drawn box), and from the real
DeiT-Tiny: an oracle map built from the model's own per-patch occlusion scores must beat a random map.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import val_images

from explainers import metrics as M
from explainers.errors import InvalidParameterError
from explainers.models import Preprocessing

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PRE = Preprocessing(input_size=(224, 224), resize=248, mean=MEAN, std=STD)


class CountingModel:
    """Two classes; P(class 0) = share of pixels still equal to the image (value 1 in channel 0).

    With the image all ones and a baseline of zeros, insertion at fraction f scores f and deletion 1 - f,
    whatever the map: the curves are known exactly. Counts the images it is given."""

    def __init__(self, size=(224, 224)):
        self.device = torch.device("cpu")
        self.preprocessing = Preprocessing(input_size=size, resize=size, mean=MEAN, std=STD)
        self.input_size = size
        self.num_classes = 2
        self.seen = 0

    def forward(self, x):
        self.seen += x.shape[0]
        p = (x[:, 0] > 0.5).double().mean(dim=(-2, -1)).clamp(1e-12, 1 - 1e-12)
        return torch.stack([p.log(), (1 - p).log()], -1)

    def to_pixels(self, x):
        return self.preprocessing.to_pixels(x)


def _np_trapezoid(y, x):
    f = getattr(np, "trapezoid", None) or np.trapz
    return float(f(y, x))


# ---------------------------------------------------------------------------------------------------------
# AUC and curves on constructed cases
# ---------------------------------------------------------------------------------------------------------
def test_trapezoid_of_a_constructed_curve():
    x = np.array([0.0, 0.1, 0.3, 0.6, 1.0])
    y = np.array([0.2, 0.5, 0.5, 0.9, 1.0])
    hand = 0.1 * 0.35 + 0.2 * 0.5 + 0.3 * 0.7 + 0.4 * 0.95
    assert M.trapezoid(y, x) == pytest.approx(hand, abs=1e-12)
    assert M.trapezoid(y, x) == pytest.approx(_np_trapezoid(y, x), abs=1e-12)
    assert M.trapezoid(x ** 0, x) == pytest.approx(1.0)


@pytest.mark.parametrize("preset", ["standard", "notebook", "tis"])
def test_constructed_model_gives_known_curves_and_auc(preset):
    model = CountingModel()
    x = torch.ones(1, 3, 224, 224)
    sal = np.random.default_rng(1).random((14, 14))
    c = M.insertion_deletion(model, x, sal, target=0, preset=preset, baseline="zero")
    p = M.PRESETS[preset]
    kept = p.pixel_counts(224 * 224, c.fractions) / (224 * 224)
    np.testing.assert_allclose(c.insertion, kept, atol=1e-9)
    np.testing.assert_allclose(c.deletion, 1 - kept, atol=1e-9)
    assert c.insertion_auc == pytest.approx(_np_trapezoid(c.insertion, c.fractions), abs=1e-9)
    if preset == "notebook":  # deletion: sklearn.metrics.auc([0] + perc, [0] + scores) / 100
        assert c.deletion_auc == pytest.approx(
            _np_trapezoid(np.r_[0, c.deletion], np.r_[0, c.fractions]), abs=1e-9)
        assert c.insertion_auc == pytest.approx((1 - 0.01 ** 2) / 2, abs=2e-4)
    else:
        assert c.insertion_auc == pytest.approx(0.5, abs=1e-6)
        assert c.deletion_auc == pytest.approx(0.5, abs=1e-6)


def test_shared_end_points_are_computed_once_and_batched():
    model = CountingModel()
    x = torch.ones(1, 3, 224, 224)
    c = M.insertion_deletion(model, x, np.ones((14, 14)), 0, preset="standard", batch_size=7)
    # 21 points per curve; the image and the full baseline are shared by both curves: 2 * 21 - 2 inputs.
    assert c.forward_passes == 40 and model.seen == 40
    c = M.insertion_deletion(model, x, np.ones((14, 14)), 0, steps=4)
    assert len(c.fractions) == 5 and c.forward_passes == 8


def test_chefer_negative_and_positive_perturbation_on_constructed_model():
    model = CountingModel()
    x = torch.ones(1, 3, 224, 224)
    # The black baseline is 0 in pixel space: (0 - mean) / std < 0.5, so removed pixels count as removed.
    c = M.insertion_deletion(model, x, np.random.default_rng(0).random((14, 14)), 0, preset="chefer")
    # accuracy: class 0 wins while at least half the pixels remain (a tie goes to the first class, as argmax).
    np.testing.assert_array_equal(c.deletion, [1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(c.insertion, c.deletion)  # the count does not care which pixels go
    assert c.deletion_auc == pytest.approx(100 * _np_trapezoid(c.deletion, np.arange(10) / 10))


def test_deletion_removes_the_top_ranked_pixels_first():
    model = CountingModel()
    x = torch.ones(1, 3, 224, 224)
    sal = np.zeros((224, 224))
    sal[:112] = 1.0  # top half most relevant
    out = M.perturb(model, x, sal, 0.5, "deletion", baseline="zero")
    assert out.shape == (1, 3, 224, 224)
    assert torch.all(out[0, :, :112] == 0) and torch.all(out[0, :, 112:] == 1)
    ins = M.perturb(model, x, sal, 0.25, "insertion", baseline="zero")
    assert int((ins[0, 0] == 1).sum()) == 224 * 56 and torch.all(ins[0, :, 112:] == 0)


def test_rank_is_deterministic_with_ties_in_raster_order():
    r = M.rank_pixels(np.ones((2, 3)), (2, 3))
    np.testing.assert_array_equal(r.numpy(), [[0, 1, 2], [3, 4, 5]])
    r = M.rank_pixels(np.array([[0.0, 2.0], [1.0, np.nan]]), (2, 2))
    np.testing.assert_array_equal(r.numpy(), [[2, 0], [1, 3]])


# ---------------------------------------------------------------------------------------------------------
# Presets reproduce their protocols
# ---------------------------------------------------------------------------------------------------------
def test_notebook_preset_protocol():
    p = M.PRESETS["notebook"]
    np.testing.assert_allclose(p.fractions, np.array([1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]) / 100)
    assert (p.baseline.kind, p.upsample, p.score, p.auc) == ("zero", "nearest", "probability", "notebook")
    assert list(p.pixel_counts(50176, p.grid())[:3]) == [int(0.01 * 50176), int(0.05 * 50176), 5017]
    x = torch.randn(1, 3, 224, 224)
    assert torch.all(p.baseline(x, MEAN, STD) == 0)  # 0 in the normalised space


def test_chefer_preset_protocol():
    p = M.PRESETS["chefer"]
    np.testing.assert_allclose(p.fractions, np.arange(10) / 10)
    assert (p.baseline.kind, p.score, p.auc, p.negative, p.upsample) == ("black", "accuracy", "chefer", True,
                                                                          "bilinear")
    x = torch.randn(1, 3, 224, 224)
    black = PRE.to_pixels(p.baseline(x, MEAN, STD))
    assert torch.allclose(black, torch.zeros_like(black), atol=1e-6)
    y = np.linspace(0.8, 0.1, 10)
    assert p.area(p.grid(), y, "deletion") == pytest.approx(_np_trapezoid(y, np.arange(10) / 10) * 100)


def test_tis_preset_protocol():
    from torchvision.transforms.functional import gaussian_blur

    p = M.PRESETS["tis"]
    assert p.steps == 224 and p.fractions[0] == 0 and p.fractions[-1] == 1
    counts = p.pixel_counts(224 * 224, p.grid())
    assert np.all(np.diff(counts) == 224)  # ceil(50176 / 224) = 224 pixels per step
    assert (p.baseline.kind, p.baseline.kernel_size, p.baseline.sigma, p.score) == ("blur", 11, 5.0, "probability")
    x = torch.randn(1, 3, 224, 224)
    assert torch.equal(p.baseline(x), gaussian_blur(x, [11, 11], [5.0, 5.0]))


def test_default_preset_is_documented_and_complete():
    assert M.DEFAULT_PRESET == "standard" and M.get_preset(None) is M.PRESETS["standard"]
    p = M.PRESETS["standard"]
    np.testing.assert_allclose(p.fractions, np.linspace(0, 1, 21))
    assert p.baseline.kind == "blur" and p.auc == "trapezoid"
    for q in M.PRESETS.values():
        assert q.doc and q.source and q.title
    with pytest.raises(InvalidParameterError, match="unknown preset"):
        M.get_preset("nope")


def test_baselines():
    x = torch.randn(1, 3, 32, 32)
    mean = M.resolve_baseline("mean")(x)
    assert torch.allclose(mean[0, :, 5, 7], x[0].mean(dim=(1, 2)))
    n1, n2 = M.resolve_baseline("noise:3")(x), M.resolve_baseline("noise:3")(x)
    assert torch.equal(n1, n2) and not torch.equal(n1, M.resolve_baseline("noise:4")(x))
    assert M.resolve_baseline("blur:15:7").kernel_size == 15
    with pytest.raises(InvalidParameterError, match="unknown baseline"):
        M.resolve_baseline("purple")


# ---------------------------------------------------------------------------------------------------------
# Real model: an oracle map from the model's own occlusion scores beats a random map
# ---------------------------------------------------------------------------------------------------------
def _occlusion_oracle(model, x, target, baseline):
    """Per-patch score drop when that patch alone is replaced by the baseline (196 forwards)."""
    gh, gw = model.grid(x)
    ph, pw = model.patch_size
    base = M.make_baseline(model, x, baseline)
    with torch.inference_mode():
        p0 = model.forward(x).softmax(-1)[0, target]
        batch = x.repeat(gh * gw, 1, 1, 1)
        for i in range(gh * gw):
            r, c = divmod(i, gw)
            batch[i, :, r * ph:(r + 1) * ph, c * pw:(c + 1) * pw] = base[0, :, r * ph:(r + 1) * ph, c * pw:(c + 1) * pw]
        drops = [p0 - model.forward(batch[s:s + 49]).softmax(-1)[:, target] for s in range(0, gh * gw, 49)]
    return torch.cat(drops).view(gh, gw).numpy()


@pytest.fixture(scope="session")
def oracle_cases(deit_tiny):
    from PIL import Image

    cases = []
    for path in val_images(3):
        x = deit_tiny.preprocess(Image.open(path))
        with torch.inference_mode():
            t = int(deit_tiny.forward(x).argmax())
        cases.append((x, t, _occlusion_oracle(deit_tiny, x, t, "blur")))
    return cases


def test_oracle_map_beats_random_map_on_real_images(deit_tiny, oracle_cases):
    ins_o, del_o, ins_r, del_r = [], [], [], []
    for i, (x, t, oracle) in enumerate(oracle_cases):
        co = M.insertion_deletion(deit_tiny, x, oracle, t)
        cr = M.insertion_deletion(deit_tiny, x, M.random_map((14, 14), seed=i), t)
        ins_o.append(co.insertion_auc)
        del_o.append(co.deletion_auc)
        ins_r.append(cr.insertion_auc)
        del_r.append(cr.deletion_auc)
        # curves are scores in [0, 1]; both end points are shared between the curves
        assert co.insertion[-1] == pytest.approx(co.deletion[0]) and co.insertion[0] == pytest.approx(co.deletion[-1])
    assert np.mean(ins_o) > np.mean(ins_r) + 0.05, (ins_o, ins_r)
    assert np.mean(del_o) < np.mean(del_r) - 0.05, (del_o, del_r)
    assert sum(o > r for o, r in zip(ins_o, ins_r)) >= 2 and sum(o < r for o, r in zip(del_o, del_r)) >= 2


def test_metric_objects_agree_with_the_curves(deit_tiny, oracle_cases):
    x, t, oracle = oracle_cases[0]
    c = M.insertion_deletion(deit_tiny, x, oracle, t, steps=5)
    assert M.InsertionAUC(steps=5)(deit_tiny, x, oracle, t) == pytest.approx(c.insertion_auc)
    assert M.DeletionAUC(steps=5)(deit_tiny, x, oracle, t) == pytest.approx(c.deletion_auc)
    assert M.METRICS["insertion_auc"].higher_is_better and not M.METRICS["deletion_auc"].higher_is_better
    assert M.METRICS["deletion_auc"].better(0.1, 0.2) and M.METRICS["pointing_game"].better(1.0, 0.0)
    # a pixel-resolution map gives the same curves as its patch map upsampled the same way
    px = M.pixel_saliency(oracle, (224, 224)).numpy()
    c2 = M.insertion_deletion(deit_tiny, x, px, t, steps=5)
    np.testing.assert_allclose(c2.insertion, c.insertion)


# ---------------------------------------------------------------------------------------------------------
# Pointing game
# ---------------------------------------------------------------------------------------------------------
def test_pointing_game_known_hits_and_misses():
    sal = np.zeros((224, 224))
    sal[100, 150] = 1.0  # pixel centre (150.5, 100.5)
    assert M.pointing_game(sal, [[140, 90, 160, 110]], (224, 224)) is True
    assert M.pointing_game(sal, [[10, 10, 60, 60]], (224, 224)) is False
    # 10 px to the right of a box: a hit with the usual 15 px tolerance, a miss without
    assert M.pointing_game(sal, [[100, 90, 140.5, 110]], (224, 224), tolerance=15) is True
    assert M.pointing_game(sal, [[100, 90, 140.5, 110]], (224, 224), tolerance=0) is False
    # union of boxes: the second box holds the maximum
    assert M.pointing_game(sal, [[0, 0, 20, 20], [145, 95, 155, 105]], (224, 224), tolerance=0) is True
    # boxes covering half the frame or more: skipped
    assert M.pointing_game(sal, [[0, 0, 224, 112]], (224, 224)) is None
    assert M.pointing_game(sal, [[0, 120, 224, 224]], (224, 224)) is False  # 46% of the frame, 19.5 px away
    assert M.pointing_game(sal, [], (224, 224)) is None


def test_pointing_game_on_a_patch_map():
    grid = np.zeros((14, 14))
    grid[2, 10] = 5.0  # patch rows 32..48, cols 160..176
    assert M.pointing_game(grid, [[160, 32, 176, 48]], (224, 224), tolerance=0) is True
    assert M.pointing_game(grid, [[0, 100, 100, 200]], (224, 224), tolerance=15) is False


def test_energy_pointing_game():
    inside = [[0, 0, 56, 224]]  # left quarter of the frame
    sal = np.zeros((224, 224))
    sal[:, :56] = 1.0
    assert M.energy_pointing_game(sal, inside, (224, 224)) == pytest.approx(1.0)
    sal[:, 56:112] = 1.0  # half of the mass inside
    assert M.energy_pointing_game(sal, inside, (224, 224)) == pytest.approx(0.5)
    assert M.energy_pointing_game(np.ones((14, 14)), inside, (224, 224)) == pytest.approx(0.25)
    assert M.energy_pointing_game(np.eye(14), [[0, 0, 224, 224]], (224, 224)) == pytest.approx(1.0)


@pytest.mark.parametrize("size,box", [((496, 368), (111, 108, 441, 193)), ((300, 500), (20, 300, 150, 480)),
                                      ((640, 480), (0, 0, 639, 479))])
def test_boxes_to_input_frame_matches_the_preprocessing(size, box):
    """Draw the box on a black image of the stored size, run the real preprocessing, and find it again."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, (0, 0, 0))
    ImageDraw.Draw(img).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=(255, 255, 255))
    for pre in (PRE, Preprocessing(input_size=(224, 224), resize=(224, 224), mean=MEAN, std=STD)):
        white = PRE.to_pixels(pre(img))[0, 0].numpy() > 0.5
        ys, xs = np.nonzero(white)
        found = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=float)
        mapped = M.boxes_to_input_frame([box], size, pre)
        assert mapped.shape == (1, 4)
        np.testing.assert_allclose(mapped[0], found, atol=1.6)


def test_boxes_outside_the_crop_are_dropped():
    out = M.boxes_to_input_frame([[0, 0, 20, 368], [200, 100, 300, 200]], (496, 368), PRE)
    assert out.shape == (1, 4)  # the first box lies in the cropped-away left margin


def test_val_boxes_land_inside_the_frame(val_boxes):
    entry = val_boxes[val_images(1)[0].name]
    b = M.boxes_to_input_frame(entry["boxes_xyxy"], (entry["width"], entry["height"]), PRE)
    assert len(b) >= 1 and np.all(b >= 0) and np.all(b <= 224)


# ---------------------------------------------------------------------------------------------------------
# Reference maps
# ---------------------------------------------------------------------------------------------------------
def test_reference_maps():
    a, b = M.random_map((14, 14), 7), M.random_map((14, 14), 7)
    assert a.shape == (14, 14) and np.array_equal(a, b) and not np.array_equal(a, M.random_map((14, 14), 8))
    g = M.gaussian_map((16, 16))
    assert g.shape == (16, 16) and g.max() == pytest.approx(1.0)
    assert np.unravel_index(np.argmax(M.gaussian_map((15, 15))), (15, 15)) == (7, 7)
    assert g[0, 0] < g[4, 4] < g[7, 7]
    # the Gaussian prior points at the centre: a hit on a central box
    assert M.pointing_game(M.gaussian_map((14, 14)), [[90, 90, 134, 134]], (224, 224), tolerance=0) is True
    assert M.seed_for("a.JPEG") == M.seed_for("a.JPEG") != M.seed_for("b.JPEG")
