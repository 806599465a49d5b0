"""The newer metrics as evaluation columns: ``evaluate --extra-metrics``, the Evaluate page's switch and the
Compare page's optional columns hold the numbers of ``explainers.metrics.extra_scores``."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from conftest import SAMPLES, VAL100, WEIGHTS, _require, val_images

import explainers
from explainers import evaluate as E
from explainers import metrics
from explainers.evaluation.core import EXTRA_COLUMNS, result_columns
from explainers.evaluation.report import COLUMN_TITLES

STEPS = 4


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_extra_columns_hold_extra_scores(deit_tiny, val_boxes):
    """With ``extra=True`` every row carries the newer metrics, equal to ``extra_scores`` of the same map (the
    boxes brought into the model-input frame); without it the rows are as before."""
    from PIL import Image

    path = val_images(1)[0]
    image = Image.open(path)
    rows = E.evaluate_images(deit_tiny, [(path.name, image)], ["attention_rollout", "random"], boxes=val_boxes,
                             steps=STEPS, extra=True)
    x = deit_tiny.preprocess(image)
    entry = val_boxes[path.name]
    boxes = metrics.boxes_to_input_frame(entry["boxes_xyxy"], (entry["width"], entry["height"]),
                                         deit_tiny.preprocessing)
    rollout = explainers.explain(deit_tiny, x, "attention_rollout", target=rows[0]["target"]).heatmap
    maps = {"attention_rollout": rollout,
            "random": metrics.random_map(deit_tiny.grid(x), metrics.seed_for(path.name))}
    for r in rows:
        assert not r["error"]
        want = metrics.extra_scores(deit_tiny, x, maps[r["method"]], r["target"], boxes=boxes, steps=STEPS,
                                    label=entry["label"])
        assert set(want) == set(EXTRA_COLUMNS)
        for k, v in want.items():
            assert r[k] == pytest.approx(v, abs=1e-9), k
        assert -1 <= r["faithfulness_correlation"] <= 1 and 0 <= r["relevance_mass_accuracy"] <= 1
    plain = E.evaluate_images(deit_tiny, [(path.name, image)], ["random"], steps=STEPS)
    assert not set(metrics.EXTRA_METRICS) & set(plain[0])
    summary = E.summarize(rows)
    assert {s["metric"] for s in summary} >= set(metrics.EXTRA_METRICS)
    morf = [s for s in summary if s["metric"] == "road_morf_auc"]
    assert morf[0]["mean"] <= morf[1]["mean"] and not morf[0]["higher_is_better"]  # lower is better: first


def test_evaluate_command_extra_metrics(tmp_path, capsys):
    from explainers.cli import main

    out = tmp_path / "run"
    args = ["evaluate", "--images", str(VAL100), "--model", "deit_tiny_patch16_224", "--weights", str(WEIGHTS),
            "--device", "cpu", "--methods", "random", "--limit", "1", "--steps", str(STEPS), "--quiet",
            "--out", str(out)]
    assert main([*args, "--extra-metrics"]) == 0
    rows = _read(out / "results.csv")
    assert list(rows[0]) == [*result_columns(True), "input_sha256", "checksum"]
    assert set(EXTRA_COLUMNS) <= set(rows[0]) and not set(EXTRA_COLUMNS) & set(result_columns(False))
    assert all(math.isfinite(float(rows[0][k])) for k in metrics.EXTRA_METRICS)
    md = (out / "summary.md").read_text()
    assert all(COLUMN_TITLES[k] in md for k in metrics.EXTRA_METRICS)
    summ = {(r["metric"], r["method"]): r for r in _read(out / "summary.csv")}
    assert float(summ[("sparseness", "random")]["mean"]) == pytest.approx(float(rows[0]["sparseness"]))
    # the folder remembers the option: the run without it is refused, not mixed
    assert main(args) == 2 and "another configuration" in capsys.readouterr().err


# -- the app ---------------------------------------------------------------------------------------------------
def _open(monkeypatch, page: str, **state):
    pytest.importorskip("streamlit")
    from conftest import ROOT
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("VIT_EXPLAIN_WEIGHTS", str(_require(WEIGHTS)))
    monkeypatch.delenv("VIT_EXPLAIN_ALLOWED_PATHS", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    at.switch_page(f"vit_explain_studio/app_pages/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_compare_page_optional_metric_columns(monkeypatch):
    """The chosen extra columns appear (the others do not) and hold ``extra_scores`` of the page's own map."""
    from vit_explain_studio import compute

    chosen = ["sparseness", "road_gap", "relevance_mass_accuracy"]
    box = (40, 40, 180, 200)
    at = _open(monkeypatch, "compare", **{"cmp.methods": ["attention_rollout"], "cmp.steps": 5,
                                          "cmp.box.on": True, "cmp.box.x0": box[0], "cmp.box.y0": box[1],
                                          "cmp.box.x1": box[2], "cmp.box.y1": box[3], "cmp.extra": chosen})
    table = at.dataframe[0].value
    titles = [COLUMN_TITLES[m] for m in chosen]
    assert set(titles) <= set(table.columns)
    assert not {COLUMN_TITLES[m] for m in EXTRA_COLUMNS if m not in chosen} & set(table.columns)
    ctx = at.session_state["ctx"]
    exp = compute.explain(ctx, "attention_rollout", explainers.METHODS["attention_rollout"].defaults())
    want = metrics.extra_scores(ctx.model, ctx.x(), exp.heatmap, ctx.target, boxes=[tuple(map(float, box))],
                                steps=5)
    row = table[table["method"] == explainers.METHODS["attention_rollout"].display_name].iloc[0]
    for m in chosen:
        assert row[COLUMN_TITLES[m]] == pytest.approx(round(want[m], 4), abs=1e-9), m
    # an extra column sorts the table like the others
    at.selectbox(key="cmp.sort").set_value(COLUMN_TITLES["sparseness"]).run()
    assert not at.exception
    # without the columns chosen, none is shown
    at.session_state["cmp.extra"] = []
    at.run()
    assert not {COLUMN_TITLES[m] for m in EXTRA_COLUMNS} & set(at.dataframe[0].value.columns)


def test_evaluate_page_extra_metrics(monkeypatch, deit_tiny):
    from PIL import Image

    at = _open(monkeypatch, "evaluate", **{"ev.samples": ["chelsea.png"], "ev.methods": ["random"],
                                           "ev.steps": 5, "ev.extra": True})
    at.button(key="ev.run").click().run()
    assert not at.exception and not at.error
    summary = at.dataframe[0].value
    rows = E.evaluate_images(deit_tiny, [("chelsea.png", Image.open(_require(SAMPLES / "chelsea.png")))],
                             ["random"], steps=5, extra=True)
    for m in ("road_morf_auc", "road_lerf_auc", "road_gap", "faithfulness_correlation", "sparseness"):
        assert summary[COLUMN_TITLES[m]].iloc[0] == pytest.approx(round(rows[0][m], 4), abs=1e-9), m
    assert COLUMN_TITLES["relevance_mass_accuracy"] not in summary.columns  # no boxes given
    np.testing.assert_allclose(summary["insertion AUC ↑"].iloc[0], round(rows[0]["insertion_auc"], 4))
