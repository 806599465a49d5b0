"""Batch evaluation: rows, summary statistics, the command's files, resuming and determinism."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from conftest import VAL100, WEIGHTS, val_images

from explainers import evaluate as E
from explainers.errors import InvalidParameterError


def _rows(method, values, metric="insertion_auc"):
    return [{"image": f"im{i}", "method": method, metric: v} for i, v in enumerate(values)]


def test_summary_mean_ci_and_best_first():
    from scipy import stats

    rows = _rows("a", [0.1, 0.2, 0.3, 0.4]) + _rows("b", [0.5, 0.7, 0.6, 0.8]) + _rows("c", [0.0, None, ""])
    s = [r for r in E.summarize(rows, ["insertion_auc"])]
    assert [r["method"] for r in s] == ["b", "a", "c"]  # higher insertion AUC first; no values last
    a = next(r for r in s if r["method"] == "a")
    half = stats.t.ppf(0.975, 3) * np.std([0.1, 0.2, 0.3, 0.4], ddof=1) / 2
    assert a["n"] == 4 and a["mean"] == pytest.approx(0.25) and a["ci95"] == pytest.approx(half)
    assert a["low"] == pytest.approx(0.25 - half) and a["high"] == pytest.approx(0.25 + half)
    c = next(r for r in s if r["method"] == "c")
    assert c["n"] == 1 and math.isnan(c["ci95"])
    d = E.summarize(_rows("a", [0.3, 0.4], "deletion_auc") + _rows("b", [0.1, 0.2], "deletion_auc"),
                    ["deletion_auc"])
    assert [r["method"] for r in d] == ["b", "a"]  # lower deletion AUC first
    md = E.summary_markdown(E.summarize(rows))
    assert md.index("| b |") < md.index("| a |")


def test_resolve_methods():
    names = E.resolve_methods("all")
    assert "attention_rollout" in names and names[-2:] == ["random", "gaussian"]
    assert E.resolve_methods("random, attention_rollout") == ["random", "attention_rollout"]
    with pytest.raises(InvalidParameterError, match="unknown method"):
        E.resolve_methods("nope")


def test_evaluate_images_rows_and_progress(deit_tiny, val_boxes):
    from PIL import Image

    path = val_images(1)[0]
    calls = []
    rows = E.evaluate_images(deit_tiny, [(path.name, Image.open(path))], ["attention_rollout", "gaussian"],
                             boxes=val_boxes, steps=4, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 2), (2, 2)]
    assert [r["method"] for r in rows] == ["attention_rollout", "gaussian"]
    for r in rows:
        assert r["image"] == path.name and not r["error"]
        assert r["label"] == val_boxes[path.name]["label"] and r["correct"] in (0, 1)
        assert 0 <= r["insertion_auc"] <= 1 and 0 <= r["deletion_auc"] <= 1
        assert r["pointing_game"] in (0, 1, None) and 0 <= r["energy_pointing_game"] <= 1
        assert len(r["insertion_curve"]) == len(r["fractions"]) == 5
        assert r["seconds"] >= 0
    # returning False from the progress callback stops after the current map
    rows = E.evaluate_images(deit_tiny, [(path.name, Image.open(path))], ["random", "gaussian"], steps=2,
                             progress=lambda d, t: False)
    assert len(rows) == 1 and rows[0]["pointing_game"] is None


def _run(tmp, methods, limit=2):
    from explainers.cli import main

    return main(["evaluate", "--images", str(VAL100), "--model", "deit_tiny_patch16_224", "--weights", str(WEIGHTS),
                 "--device", "cpu", "--methods", methods, "--limit", str(limit), "--steps", "4", "--quiet",
                 "--out", str(tmp)])


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_evaluate_command_files_resume_and_determinism(tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(out, "random") == 0
    first = _read(out / "results.csv")
    assert [(r["image"], r["method"]) for r in first] == [(p.name, "random") for p in val_images(2)]
    assert list(first[0]) == list(E.RESULT_COLUMNS)
    # resume with one more method: only the missing pairs are computed, nothing is repeated
    assert _run(out, "random,attention_rollout") == 0
    rows = _read(out / "results.csv")
    assert len(rows) == 4 and rows[:2] == first
    assert sorted({r["method"] for r in rows}) == ["attention_rollout", "random"]
    assert _run(out, "random,attention_rollout") == 0
    assert len(_read(out / "results.csv")) == 4
    # the summary: both metrics, both methods, best first
    summ = _read(out / "summary.csv")
    ins = [r for r in summ if r["metric"] == "insertion_auc"]
    assert len(ins) == 2 and float(ins[0]["mean"]) >= float(ins[1]["mean"])
    dele = [r for r in summ if r["metric"] == "deletion_auc"]
    assert float(dele[0]["mean"]) <= float(dele[1]["mean"])
    assert {r["metric"] for r in summ} >= {"insertion_auc", "deletion_auc", "pointing_game", "seconds"}
    # self-contained Plotly page with both curves of both methods
    html = (out / "curves.html").read_text()
    assert "<script src=\"http" not in html and "Plotly" in html and "attention_rollout" in html
    assert json.loads((out / "run.json").read_text())["preset"] == "standard"
    # deterministic: a fresh run in another folder gives the same numbers
    other = tmp_path / "again"
    assert _run(other, "attention_rollout,random") == 0
    key = {(r["image"], r["method"]): r for r in _read(other / "results.csv")}
    for r in rows:
        for col in ("target", "probability", "insertion_auc", "deletion_auc", "pointing_game",
                    "energy_pointing_game"):
            assert key[(r["image"], r["method"])][col] == r[col], col
    capsys.readouterr()


def test_evaluate_refuses_a_folder_of_another_configuration(tmp_path, deit_tiny):
    out = tmp_path / "x"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"model": deit_tiny.name, "preset": "tis", "steps": None,
                                              "weights": str(deit_tiny.weights_path or ""), "tolerance": 15}))
    with pytest.raises(InvalidParameterError, match="another configuration"):
        E.run_evaluation(deit_tiny, VAL100, out, methods="random", limit=1, show_progress=False)
