"""The two real classifiers in ../shared/weights: accuracy as their README states (so preprocessing and
normalisation are right), and every method of the original set beating a random map on ViT-Tiny AugReg too
(DeiT-Tiny: tests/test_methods.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import VAL100, WEIGHTS, val_images

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
    scores = [insertion_deletion(vit_tiny, x[None], random_map((14, 14), 100 * i + k), t, steps=10)
              for i, (x, t) in enumerate(zip(xs, targets)) for k in range(3)]
    deletion, insertion = np.mean([s.deletion_auc for s in scores]), np.mean([s.insertion_auc for s in scores])
    return xs, targets, float(deletion), float(insertion)


@pytest.mark.slow
@pytest.mark.parametrize("method", [m for m in PART1 if m != "lrp_full"])
def test_vit_tiny_every_method_beats_a_random_map_on_deletion(vit_tiny, vit_setup, method):
    xs, targets, floor, _ = vit_setup
    exps = explainers.explain(vit_tiny, xs, method, **CHEAP.get(method, {}))
    assert [e.target for e in exps] == targets
    ours = np.mean([insertion_deletion(vit_tiny, x[None], e.heatmap, e.target, steps=10).deletion_auc
                    for x, e in zip(xs, exps)])
    assert ours < floor, (ours, floor)


@pytest.mark.slow
def test_vit_tiny_full_lrp_beats_random_on_insertion_and_sits_at_random_on_deletion(vit_tiny, vit_setup):
    """Full LRP (pixel relevance) is the one original method at the random level on ViT-Tiny AugReg's deletion
    curve (0.525 against 0.518 for random maps on these 20 images), as Chefer et al. 2021 report for full LRP on
    ViT-B; it does beat random maps on insertion (0.533 against 0.505). Both facts are checked, so a change that
    made it worse (or a fix that made it better) shows here. README: "Methods: where we differ"."""
    xs, targets, del_floor, ins_floor = vit_setup
    exps = explainers.explain(vit_tiny, xs, "lrp_full")
    scores = [insertion_deletion(vit_tiny, x[None], e.heatmap, e.target, steps=10) for x, e in zip(xs, exps)]
    ins, dele = np.mean([s.insertion_auc for s in scores]), np.mean([s.deletion_auc for s in scores])
    assert ins > ins_floor + 0.015, (ins, ins_floor)
    assert abs(dele - del_floor) < 0.03, (dele, del_floor)


def test_num_classes_with_local_weights_keeps_or_replaces_the_head(deit_tiny):
    """num_classes equal to the weights' own keeps their trained head (the same logits); another number gets a
    fresh head of that size over the same trunk; 0 gives the embedding model (no head)."""
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    same = explainers.load_model("deit_tiny_patch16_224", weights=WEIGHTS, num_classes=1000)
    ten = explainers.load_model("deit_tiny_patch16_224", weights=WEIGHTS, num_classes=10)
    none = explainers.load_model("deit_tiny_patch16_224", weights=WEIGHTS, num_classes=0)
    with torch.inference_mode():
        assert torch.allclose(same.forward(x), deit_tiny.forward(x), atol=1e-5)
        assert ten.forward(x).shape == (2, 10)
        e_own, e_none = deit_tiny.outputs(x).embedding, none.outputs(x).embedding
        assert torch.allclose(e_own, e_none, atol=1e-5) and none.outputs(x).logits is None
