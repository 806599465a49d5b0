"""A constructed reference-run tree (``results/<model>/evaluate`` and ``.../sanity``, in the files' real formats)
with known answers, for the tests of benchmarks/results_*.py and the app's Benchmark page.

Per image, ``good`` beats the random map by 0.2 on insertion and deletion AUC, ``flat`` equals the random map plus
noise of mean 0; in the sanity files ``good`` passes (top-half similarity 0.2) and ``flat`` is flagged (0.9)."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from explainers.evaluation.core import result_columns
from explainers.metrics import EXTRA_METRICS
from explainers.metrics import randomisation as R
from explainers.sanity import SanityResult
from explainers.sanity_run import FIELDS

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
import results_data as D  # noqa: E402
import run_reference as plan  # noqa: E402

LAYERS = 12
FRACTIONS = np.linspace(0, 1, 21)
# insertion / deletion advantage over the random map, top-half sanity similarity, seconds per map
PROFILES = {"good": (0.2, 0.2, 0.5), "flat": (0.0, 0.9, 0.05), "random": (0.0, 1.0, 0.0), "gaussian": (0.05, 1.0, 0.0)}


def image_names(n: int) -> list[str]:
    return [f"img_{i:03d}.JPEG" for i in range(n)]


def write_evaluation(folder: Path, methods: dict[str, str], images: list[str], seed: int = 0) -> None:
    """results.csv, curves.csv and run.json; ``methods``: name -> profile (a key of :data:`PROFILES`)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cols = result_columns(True)
    base = {img: (0.3 + 0.2 * rng.random(), 0.4 + 0.2 * rng.random()) for img in images}  # random map's AUCs
    with open(folder / "results.csv", "w", newline="") as fr, open(folder / "curves.csv", "w", newline="") as fc:
        wr, wc = csv.writer(fr), csv.writer(fc)
        wr.writerow(cols)
        wc.writerow(("image", "method", "curve", "values"))
        for img in images:
            for m, prof in methods.items():
                adv, _, sec = PROFILES[prof]
                noise = 0.0 if prof == "random" else float(rng.normal(0, 0.02))
                ins, dele = base[img][0] + adv + noise, base[img][1] - adv + noise
                row = {"image": img, "method": m, "target": 1, "target_label": "one", "label": 1, "correct": 1,
                       "probability": 0.9, "insertion_auc": ins, "deletion_auc": dele, "pointing_game": 1,
                       "energy_pointing_game": 0.5, "seconds": sec * (1 + 0.1 * rng.random()), "metric_seconds": 1.0,
                       "error": "", **{k: 0.5 + adv for k in EXTRA_METRICS}}
                wr.writerow(["" if row.get(c) is None else row[c] for c in cols])
                wc.writerow((img, m, "fractions", " ".join(repr(float(v)) for v in FRACTIONS)))
                wc.writerow((img, m, "insertion", " ".join(repr(float(ins * v)) for v in FRACTIONS)))
                wc.writerow((img, m, "deletion", " ".join(repr(float(dele * (1 - v))) for v in FRACTIONS)))
    (folder / "run.json").write_text(json.dumps({"model": "fixture", "weights": "", "preset": "standard",
                                                 "steps": None, "tolerance": 15, "extra_metrics": True}))


def _result(method: str, image: str, mode: str, half: float) -> SanityResult:
    plan = (R.cascading_steps if mode == "cascading" else R.independent_steps)(LAYERS)
    if mode == "cascading":  # 1 until the top block, ``half`` from the top half on
        sim = [1.0 if s.blocks == 0 else (half if s.blocks >= math.ceil(LAYERS / 2) else (1 + half) / 2)
               for s in plan]
    else:
        sim = [1.0] + [half] * (len(plan) - 1)
    res = SanityResult(method=method, image=image, mode=mode, target=1, steps=plan, spearman=sim, ssim=sim,
                       topk=sim, num_layers=LAYERS)
    if mode == "cascading":
        res.random_logit = {"spearman": half, "ssim": half, "topk": half}
        res.other_class = 2
    return res


def write_sanity(folder: Path, methods: dict[str, str], images: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "sanity.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        for img in images:
            for m, prof in methods.items():
                for mode in ("cascading", "independent"):
                    w.writerows(_result(m, img, mode, PROFILES[prof][1]).rows())
    (folder / "run.json").write_text(json.dumps({"model": "fixture", "seed": 0,
                                                 "modes": ["cascading", "independent"], "random_logit": True}))


METHODS_1 = {"good": "good", "flat": "flat", "rise": "good", "random": "random", "gaussian": "gaussian"}


@pytest.fixture
def small_plan(monkeypatch):
    """Two models, five methods (``rise`` the many-pass one), 6 evaluation and 4 (2) sanity images."""
    monkeypatch.setattr(plan, "TIERS", (("cheap", ("good", "flat", "random", "gaussian")), ("heavy", ("rise",))))
    monkeypatch.setattr(plan, "MODELS", (plan.Model("m1", "Model One", ""), plan.Model("m2", "Model Two", "")))
    monkeypatch.setattr(plan, "EVAL_IMAGES", 6)
    monkeypatch.setattr(plan, "SANITY_IMAGES", 4)
    monkeypatch.setattr(plan, "HEAVY_SANITY_IMAGES", 2)


def build(root, m2_images: int = 3):
    """m1 complete; m2 with ``good`` and ``random`` on the first ``m2_images`` images and no sanity run."""
    images = image_names(6)
    write_evaluation(root / "m1" / "evaluate", METHODS_1, images)
    write_sanity(root / "m1" / "sanity", {k: v for k, v in METHODS_1.items() if k != "rise"}, images[:4])
    write_sanity(root / "m1" / "sanity2", {"rise": "good"}, images[:2])
    extra = (root / "m1" / "sanity2" / "sanity.csv").read_text().split("\n", 1)[1]
    with open(root / "m1" / "sanity" / "sanity.csv", "a") as fh:
        fh.write(extra)
    write_evaluation(root / "m2" / "evaluate", {"good": "good", "random": "random"}, images[:m2_images], seed=1)
    return D.collect(root, plan.MODELS)
