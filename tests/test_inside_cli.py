"""The inside views' subcommands write a CSV that holds the library's numbers and a PNG of the right size."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import SHARED, WEIGHTS
from PIL import Image

import explainers
from explainers.cli import main

IMAGE = SHARED / "images" / "samples" / "chelsea.png"


@pytest.fixture(scope="module")
def args():
    if not WEIGHTS.exists():
        pytest.skip("DeiT-Tiny weights not found in ../shared/weights")
    return ["--model", "deit_tiny_patch16_224", "--weights", str(WEIGHTS), "--device", "cpu", "--image", str(IMAGE)]


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_lens_and_norms_subcommands(args, tmp_path, capsys, deit_tiny):
    assert main(["lens", *args, "--out-dir", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = _rows(tmp_path / "lens.csv")
    lens = explainers.logit_lens(deit_tiny, explainers.load_image(IMAGE))
    np.testing.assert_allclose([float(r["pooled_score"]) for r in rows], lens.pooled, rtol=1e-5)
    assert summary["decided_at_block"] == lens.decided_at + 1
    assert Image.open(tmp_path / "lens.png").size == (12 * 112, 112)
    assert main(["norms", *args, "--out-dir", str(tmp_path)]) == 0
    rows = _rows(tmp_path / "norms.csv")
    assert len(rows) == 1 + 196 and rows[0]["token"] == "class"


def test_heads_subcommand_with_a_contrast(args, tmp_path, capsys):
    assert main(["heads", *args, "--target", "285", "--contrast", "281", "--ablation", "mean",
                 "--out-dir", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ablation"] == "mean" and "rather than" in summary["target"]
    rows = _rows(tmp_path / "heads.csv")
    assert len(rows) == 12 * 3 + 12 and rows[-1]["head"] == "all"
    assert Image.open(tmp_path / "heads.png").size == (3 * 24, 12 * 24)


def test_bad_ablation_is_refused_by_the_parser(args, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["heads", *args, "--ablation", "noise", "--out-dir", str(tmp_path)])
    assert "invalid choice" in capsys.readouterr().err
