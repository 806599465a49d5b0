"""The two real classifiers in ../shared/weights: accuracy as their README states (so preprocessing and
normalisation are right), and every method of the original set beating a random map on ViT-Tiny AugReg too
(DeiT-Tiny: tests/test_methods.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import VAL100, val_images

import explainers
from explainers.metrics import insertion_deletion, random_map

PART1 = ["attention_rollout", "gradient_rollout", "chefer_rollout", "attention_last_layer", "attention_gradcam",
         "generic_attention", "transformer_attribution", "lrp_full", "lrp_last_layer", "vit_cx", "gradmask",
         "similarity_graph"]
CHEAP = {"vit_cx": {"distance_threshold": 0.2}, "gradmask": {"masks_layer": 2}, "similarity_graph": {"masks_layer": 2}}


@pytest.mark.parametrize("fixture,readme_top1", [("deit_tiny", 70), ("vit_tiny", 73)])
def test_top1_on_the_100_validation_images_matches_the_weights_readme(request, fixture, readme_top1):
    model = request.getfixturevalue(fixture)
    boxes = json.loads((VAL100 / "boxes.json").read_text())
    files = val_images(100)
    correct = 0
    for i in range(0, len(files), 25):
        chunk = files[i:i + 25]
        xs = torch.cat([model.preprocess(explainers.load_image(f)) for f in chunk])
        with torch.inference_mode():
            pred = model.forward(xs).argmax(-1).tolist()
        correct += sum(int(p == boxes[f.name]["label"]) for p, f in zip(pred, chunk))
    assert abs(correct - readme_top1) <= 2, correct


@pytest.fixture(scope="module")
def vit_setup(vit_tiny):
    xs = torch.cat([vit_tiny.preprocess(explainers.load_image(p)) for p in val_images(20)])
    with torch.inference_mode():
        targets = vit_tiny.forward(xs).argmax(-1).tolist()
    floor = [np.mean([insertion_deletion(vit_tiny, x[None], random_map((14, 14), 100 * i + k), t, steps=10)
                      .deletion_auc for k in range(3)]) for i, (x, t) in enumerate(zip(xs, targets))]
    return xs, targets, float(np.mean(floor))


@pytest.mark.slow
@pytest.mark.parametrize("method", PART1)
def test_vit_tiny_every_method_beats_a_random_map_on_deletion(vit_tiny, vit_setup, method):
    xs, targets, floor = vit_setup
    exps = explainers.explain(vit_tiny, xs, method, **CHEAP.get(method, {}))
    assert [e.target for e in exps] == targets
    ours = np.mean([insertion_deletion(vit_tiny, x[None], e.heatmap, e.target, steps=10).deletion_auc
                    for x, e in zip(xs, exps)])
    assert ours < floor, (ours, floor)
