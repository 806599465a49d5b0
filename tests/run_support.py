"""A tiny model, a folder of three small images and helpers for the run-folder tests (evaluate and sanity)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np

EV_METHODS = "attention_rollout,random"
SA_METHODS = "attention_rollout,random"
TIMING = ("seconds", "metric_seconds")


def tiny_model(seed: int = 0, name: str = "tiny-vit"):
    """A 2-block ViT on 32 x 32 inputs with 10 classes, randomly initialised from ``seed`` (milliseconds a pass)."""
    import timm
    import torch

    import explainers

    torch.manual_seed(seed)
    module = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2, num_classes=10)
    return explainers.models.wrap_timm(module.eval(), name)


def image_folder(root: Path, n: int = 3) -> Path:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 255, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"im{i}.png")
    return root


def evaluate(model, images, out, **kw):
    from explainers.evaluation import run_evaluation

    return run_evaluation(model, images, out, **{"methods": EV_METHODS, "steps": 2, "show_progress": False, **kw})


def sanity(model, images, out, **kw):
    from explainers.sanity_run import run_sanity

    return run_sanity(model, images, out, **{"methods": SA_METHODS, "show_progress": False, **kw})


def evaluate_content(out: Path) -> tuple[dict, dict]:
    """What an evaluate folder holds, timings aside: ({(image, method): row}, {(image, method, curve): values})."""
    from explainers.evaluation import read_curves, read_results

    rows = {(r["image"], r["method"]): {k: v for k, v in r.items() if k not in TIMING}
            for r in read_results(out / "results.csv")}
    return rows, read_curves(out / "curves.csv")


def sanity_content(out: Path) -> list[tuple]:
    """The rows of a sanity folder's sanity.csv, checked, in a canonical order."""
    from explainers.run_folder import table_of
    from explainers.sanity_run import FIELDS

    records, _ = table_of(out / "sanity.csv", [*FIELDS, "input_sha256"]).read()
    return sorted(tuple(r.cells.values()) for r in records)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def copy_folder(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst
