"""How maps are drawn (explainers.viz): matplotlib's exact colour tables, the display scalings against captum's own
normalisation, a constructed signed map read back from the PNG, metrics that ignore the drawing, the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import explainers
from explainers import viz
from explainers.errors import InvalidParameterError


@pytest.mark.parametrize("name", viz.COLORMAPS)
def test_colour_tables_are_matplotlibs_at_256_levels(name):
    from matplotlib import colormaps

    cm = colormaps[name]
    assert cm.N == 256  # the table is matplotlib's own lookup table, not a resampling of it
    want = np.round(cm(np.arange(256))[:, :3] * 255).astype(np.uint8)
    np.testing.assert_array_equal(viz.table(name), want)
    # every level is reachable: position i/255 draws level i
    np.testing.assert_array_equal(viz.colorize(np.linspace(0, 1, 256)[None, :], name)[0], want)


def test_every_offered_colour_map_is_a_table():
    from vit_explain_studio import plots

    assert set(viz.DIVERGING) == {"bwr", "seismic", "RdBu_r", "coolwarm"}
    assert {"jet", "viridis", "inferno", "gray", "magma", "turbo", "cividis"} == set(viz.SEQUENTIAL)
    for name in viz.DIVERGING:  # low = blue, high = red, as the LRP libraries draw relevance
        lo, hi = viz.table(name)[0].astype(int), viz.table(name)[-1].astype(int)
        assert lo[2] > lo[0] and hi[0] > hi[2]
    scale = plots.colorscale("viridis", n=256)  # the raw grid's Plotly scale is the same table
    assert scale[100][1] == "rgb({},{},{})".format(*viz.table("viridis")[100])
    with pytest.raises(InvalidParameterError, match="unknown colour map 'Jet'"):
        viz.colorize(np.zeros((2, 2)), "Jet")


def test_scalings_on_known_values():
    v = np.array([-2.0, -1.0, 0.0, 1.0, 4.0])
    np.testing.assert_allclose(viz.scale_map(v, "minmax"), (v + 2) / 6, atol=1e-7)
    np.testing.assert_allclose(viz.scale_map(v, "positive"), [0, 0, 0, 0.25, 1], atol=1e-7)
    np.testing.assert_allclose(viz.scale_map(v, "absolute"), [0.5, 0.25, 0, 0.25, 1], atol=1e-7)
    np.testing.assert_allclose(viz.scale_map(v, "symmetric"), [0.25, 0.375, 0.5, 0.625, 1], atol=1e-7)
    assert viz.value_range(v, "symmetric") == (-4.0, 4.0) and viz.value_range(v, "minmax") == (-2.0, 4.0)
    # a map without information: the first colour, or the centre colour of a symmetric map
    assert (viz.scale_map(np.zeros((3, 3)), "symmetric") == 0.5).all()
    assert (viz.scale_map(np.full((3, 3), 2.0), "minmax") == 0).all()
    for bad in (-1, 50, float("nan"), "x"):
        with pytest.raises(InvalidParameterError, match="clip"):
            viz.scale_map(v, "symmetric", bad)
    with pytest.raises(InvalidParameterError, match="unknown scaling 'signed'.*symmetric"):
        viz.scale_map(v, "signed")


@pytest.mark.parametrize("clip", [0.5, 2.0, 10.0])  # captum's own threshold fails at 0 (float rounding)
def test_scalings_agree_with_captum(clip):
    """captum's visualisation normalises a map by its ``outlier_perc`` threshold and clips to [-1, 1]: our
    symmetric / positive / absolute positions are that, moved to [0, 1]."""
    from captum.attr._utils.visualization import _normalize_attr

    rng = np.random.default_rng(0)
    attr = rng.standard_normal((24, 24)) ** 3  # heavy tails: the clip matters
    ours = {"symmetric": viz.scale_map(attr, "symmetric", clip) * 2 - 1,
            "positive": viz.scale_map(attr, "positive", clip), "absolute": viz.scale_map(attr, "absolute", clip)}
    for scale, sign in (("symmetric", "all"), ("positive", "positive"), ("absolute", "absolute_value")):
        np.testing.assert_allclose(ours[scale], _normalize_attr(attr, sign, outlier_perc=clip), atol=1e-6)
    if clip == 10:  # at 0.5 % and 2 % the largest value alone holds the share
        assert (np.abs(ours["symmetric"]) == 1).sum() > 1  # several outliers share the end colour


def _signed_explanation(values: np.ndarray, **display) -> explainers.Explanation:
    return explainers.Explanation(method="attnlrp", patch_map=values, heatmap=viz.scale_map(values, "minmax"),
                                  target=1, probability=0.5, label="bull mastiff", params={}, seconds=0.0,
                                  raw_heatmap=values, signed=True, **display)


def test_a_signed_map_is_red_where_positive_blue_where_negative_and_white_at_zero(tmp_path):
    """A constructed signed map, written by the command line's PNG writer and read back pixel by pixel."""
    from explainers.cli import save_heatmap_png

    values = np.zeros((64, 64), np.float32)
    values[8:24, 8:24] = 3.0  # evidence for the target
    values[40:56, 40:56] = -1.5  # evidence against it
    exp = _signed_explanation(values)
    assert (exp.scale, exp.cmap) == ("symmetric", "bwr")  # the default drawing of a signed map
    path = tmp_path / "signed.png"
    save_heatmap_png(exp.display(), path, cmap=exp.cmap)
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert (rgb[8:24, 8:24] == [255, 0, 0]).all()  # the largest |value| saturates: pure red
    r, g, b = rgb[44, 44]
    assert b == 255 and r == g and 120 < r < 135  # half the largest |value| against: half-way to blue
    centre = np.round(np.asarray(__import__("matplotlib").colormaps["bwr"](0.5)[:3]) * 255).astype(int)
    assert np.abs(rgb[32, 32] - centre).max() <= 1 and (rgb[32, 32] >= 253).all()  # 0: the centre colour, white
    # unsigned, the same map min-max scaled puts 0 at a colour that depends on the map (no fixed meaning)
    mm = viz.colorize(exp.display("minmax"), "bwr")
    assert (mm[32, 32] != rgb[32, 32]).any()


def test_positive_and_absolute_drawings():
    values = np.array([[-2.0, 0.0, 1.0, 2.0]], np.float32)
    exp = _signed_explanation(values, scale="positive")
    assert exp.cmap == "jet"  # a one-sided scaling takes a sequential map
    np.testing.assert_allclose(exp.display(), [[0, 0, 0.5, 1]])
    np.testing.assert_allclose(exp.with_display("absolute").display(), [[1, 0, 0.5, 1]])
    d = exp.with_display("symmetric", clip=0).to_dict()["display"]
    assert d == {"scale": "symmetric", "clip_percentile": 0.0, "colour_map": "bwr", "range": [-2.0, 2.0]}


def test_metrics_do_not_depend_on_the_drawing(deit_tiny, cat_image):
    """Insertion/deletion and the pointing game rank the raw map (most positive first) under every scaling and
    clip; ranking the drawn positions instead would change them (absolute reorders a signed map)."""
    from explainers import metrics

    x = deit_tiny.preprocess(cat_image)
    exp = explainers.explain(deit_tiny, cat_image, "gradcam", relu=False)
    assert exp.signed and exp.scale == "symmetric" and exp.raw_heatmap.min() < 0
    box = [(60.0, 40.0, 180.0, 200.0)]
    size = deit_tiny.input_size

    def scores(e):
        c = metrics.insertion_deletion(deit_tiny, x, e.heatmap, e.target, steps=4)
        return (c.insertion_auc, c.deletion_auc, metrics.pointing_game(e.heatmap, box, size),
                metrics.energy_pointing_game(e.heatmap, box, size))

    base = scores(exp)
    for scale, clip in zip(viz.SCALES, (5.0, 0.0, 5.0, 2.0)):
        drawn = exp.with_display(scale, clip)
        assert scores(drawn) == base, (scale, clip)
        assert drawn.to_dict()["display"]["scale"] == scale
    # the metrics' map keeps the raw order: most positive first
    assert (np.diff(exp.heatmap.ravel()[np.argsort(exp.raw_heatmap.ravel())]) >= 0).all()
    absolute = metrics.insertion_deletion(deit_tiny, x, exp.display("absolute"), exp.target, steps=4)
    assert (absolute.insertion_auc, absolute.deletion_auc) != base[:2]


def test_command_line_writes_a_signed_png(tmp_path, capsys):
    from conftest import SAMPLES, WEIGHTS

    from explainers.cli import main

    out = tmp_path / "attnlrp.png"
    rc = main(["explain", "--model", "deit_tiny_patch16_224", "--weights", str(WEIGHTS), "--device", "cpu",
               "--method", "attnlrp", "--image", str(SAMPLES / "chelsea.png"), "--out", str(out), "--no-overlay",
               "--scale", "symmetric", "--cmap", "bwr", "--clip", "1"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["signed"] is True
    d = rep["display"]
    assert d["scale"] == "symmetric" and d["colour_map"] == "bwr" and d["clip_percentile"] == 1.0
    assert d["range"][0] == -d["range"][1] < 0
    rgb = np.asarray(Image.open(out).convert("RGB")).astype(int)
    lut = viz.table("bwr").astype(int)
    assert np.isin(rgb.reshape(-1, 3) @ [65536, 256, 1], lut @ [65536, 256, 1]).all()  # only bwr's colours
    red = (rgb[..., 0] == 255) & (rgb[..., 2] < 128)
    blue = (rgb[..., 2] == 255) & (rgb[..., 0] < 128)
    assert red.sum() > 100 and blue.sum() > 10  # evidence for and against the cat, both drawn
    with pytest.raises(SystemExit):
        main(["explain", "--model", "x", "--image", "y", "--out", "z", "--scale", "signed"])
