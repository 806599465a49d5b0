"""Batch evaluation: rows, summary statistics, the command's files, resuming and determinism."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

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
    assert list(first[0]) == [*E.RESULT_COLUMNS, "input_sha256", "checksum"]
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
    assert json.loads((out / "run.json").read_text())["fingerprint"]["preset"] == "standard"
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
    E.run_evaluation(deit_tiny, VAL100, out, methods="random", limit=1, steps=2, preset="tis", show_progress=False)
    with pytest.raises(InvalidParameterError, match="another configuration.*preset: 'tis' in the folder, 'standard'"):
        E.run_evaluation(deit_tiny, VAL100, out, methods="random", limit=1, steps=2, show_progress=False)
    (out / "run.json").write_text(json.dumps({"model": deit_tiny.name, "preset": "tis", "steps": None}))
    with pytest.raises(InvalidParameterError, match="before run folders carried a fingerprint"):
        E.run_evaluation(deit_tiny, VAL100, out, methods="random", limit=1, steps=2, show_progress=False)


# -- inputs: list files and the ImageNet devkit's labels -------------------------------------------------------
def _timm_synsets() -> list[str]:
    import timm

    return (Path(timm.__file__).parent / "data" / "_info" / "imagenet_synsets.txt").read_text().split()


def _devkit(tmp_path, boxes, seed=0):
    """A devkit meta.mat (1000 leaf synsets in a shuffled ILSVRC2012_ID order, plus non-leaf synsets) and a
    ground-truth file whose lines give the val images the WordNet ids of boxes.json."""
    from scipy.io import savemat

    wnids = _timm_synsets()
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(wnids))  # ILSVRC2012_ID k -> order[k - 1], not sorted
    extra = [("n00001740", 3), ("n00002137", 2)]  # inner nodes come after the 1000 classes, with children
    syn = np.zeros((1000 + len(extra), 1), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"),
                                                  ("num_children", "O")])
    for i, w in enumerate(order):
        syn[i, 0] = (i + 1, w, f"class {w}", 0)
    for j, (w, c) in enumerate(extra):
        syn[1000 + j, 0] = (1001 + j, w, "inner", c)
    savemat(tmp_path / "meta.mat", {"synsets": syn})
    id_of = {w: i + 1 for i, w in enumerate(order)}
    n = max(int(k[15:23]) for k in boxes)
    lines = [str(int(rng.integers(1, 1001))) for _ in range(n + 5)]
    for name, e in boxes.items():
        lines[int(name[15:23]) - 1] = str(id_of[e["wnid"]])
    (tmp_path / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "ILSVRC2012_validation_ground_truth.txt", tmp_path / "meta.mat"


def test_imagenet_devkit_labels_agree_with_boxes_json(tmp_path, val_boxes):
    from explainers.evaluation.inputs import load_boxes

    gt, meta = _devkit(tmp_path, val_boxes)
    labels = E.imagenet_val_labels(list(val_boxes), gt)  # meta.mat found beside the ground-truth file
    assert labels == {k: {"label": v["label"], "wnid": v["wnid"]} for k, v in val_boxes.items()}
    # merged into the boxes: the ground truth agrees with boxes.json, boxes are kept
    names = [p.name for p in val_images(3)]
    boxes, _ = load_boxes(VAL100, names, ground_truth=gt, meta=meta)
    assert boxes[names[0]]["boxes_xyxy"] == val_boxes[names[0]]["boxes_xyxy"]
    # a boxes file that disagrees is refused (a devkit / boxes mismatch would silently corrupt "correct")
    wrong = {n: {**val_boxes[n]} for n in names}
    wrong[names[1]]["label"] = (wrong[names[1]]["label"] + 1) % 1000
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    with pytest.raises(InvalidParameterError, match="same devkit"):
        load_boxes(VAL100, names, tmp_path / "wrong.json", gt, meta)
    with pytest.raises(InvalidParameterError, match="meta.mat"):
        E.imagenet_val_labels(names, gt, tmp_path / "nope.mat")
    with pytest.raises(InvalidParameterError, match="not named like"):
        E.imagenet_val_labels(["cat.png"], gt, meta)


def test_list_file_input(tmp_path):
    files = val_images(3)
    lst = tmp_path / "list.txt"
    rel = os.path.relpath(files[2], tmp_path)
    lst.write_text(f"# three images\n{rel}\n\n{files[0]}\n{files[1]}\n")
    assert E.list_images(lst) == [tmp_path / rel, files[0], files[1]]  # list order, relative to the list
    assert len(E.list_images(lst, limit=2)) == 2
    lst.write_text(f"{files[0]}\n{files[0]}\n")
    with pytest.raises(InvalidParameterError, match="two images named"):
        E.list_images(lst)
    lst.write_text(f"{files[0]}\nmissing.jpg\n")
    with pytest.raises(InvalidParameterError, match="do not exist"):
        E.list_images(lst)
    with pytest.raises(InvalidParameterError, match="neither a folder nor a list"):
        E.list_images(tmp_path / "nothing")


def test_an_item_that_raises_is_recorded_and_the_run_goes_on(deit_tiny, val_boxes, monkeypatch):
    import explainers.api

    path = val_images(1)[0]
    entry = val_boxes[path.name]
    methods = ["attention_rollout", "chefer_rollout", "random"]
    good = E.evaluate_item(deit_tiny, path.name, path.read_bytes(), "", methods, entry, steps=2)
    real = explainers.api.explain

    def flaky(model, x, method, **kw):
        if method == "chefer_rollout":
            raise RuntimeError("boom")
        return real(model, x, method, **kw)

    monkeypatch.setattr(explainers.api, "explain", flaky)
    rows = E.evaluate_item(deit_tiny, path.name, path.read_bytes(), "", methods, entry, steps=2)
    assert [r["method"] for r in rows] == methods
    assert rows[1]["error"] == "RuntimeError: boom" and math.isnan(rows[1]["insertion_auc"])
    for i in (0, 2):  # the other methods are unaffected
        assert not rows[i]["error"] and rows[i]["insertion_auc"] == good[i]["insertion_auc"]
    # an image that does not decode, or could not be read: one error row per method
    bad = E.evaluate_item(deit_tiny, "broken.jpg", b"not an image", "", methods, None, steps=2)
    assert [r["method"] for r in bad] == methods
    assert all(r["error"].startswith("ImageError") and "broken.jpg" in r["error"] for r in bad)
    lost = E.evaluate_item(deit_tiny, "gone.jpg", None, "ImageError: cannot read gone.jpg", ["random"], None)
    assert lost[0]["error"] == "ImageError: cannot read gone.jpg"


def test_serial_run_does_not_import_ray(tmp_path):
    code = ("import sys\nfrom explainers.cli import main\n"
            f"assert main(['evaluate', '--images', {str(VAL100)!r}, '--model', 'deit_tiny_patch16_224', "
            f"'--weights', {str(WEIGHTS)!r}, '--device', 'cpu', '--methods', 'random', '--limit', '1', "
            f"'--steps', '2', '--quiet', '--out', {str(tmp_path)!r}]) == 0\n"
            "print('RAY' if 'ray' in sys.modules else 'NO-RAY')\n")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("NO-RAY")
    assert len(_read(tmp_path / "results.csv")) == 1


def test_ray_flags_need_ray(tmp_path, capsys):
    from explainers.cli import main

    code = main(["evaluate", "--images", str(VAL100), "--model", "deit_tiny_patch16_224", "--workers", "2",
                 "--methods", "random", "--out", str(tmp_path)])
    assert code == 2 and "--workers only apply with --ray" in capsys.readouterr().err
    assert main(["evaluate", "--images", str(VAL100), "--model", "m", "--methods", "nope", "--ray", "local:2",
                 "--out", str(tmp_path)]) == 2  # refused before a cluster starts
    assert "unknown method" in capsys.readouterr().err


def test_resume_after_a_row_cut_by_an_interruption(tmp_path, deit_tiny):
    out = tmp_path / "r"
    E.run_evaluation(deit_tiny, VAL100, out, methods="random", limit=2, steps=2, show_progress=False)
    text = (out / "results.csv").read_text()
    (out / "results.csv").write_text(text[:-30])  # the last row cut mid-line, no newline
    info = E.run_evaluation(deit_tiny, VAL100, out, methods="random", limit=2, steps=2, show_progress=False)
    assert info["computed"] == 1 and info["rows"] == 2  # only the cut pair again
    rows = [r for r in _read(out / "results.csv") if r["error"] is not None]  # complete rows
    assert sorted(r["image"] for r in rows) == [p.name for p in val_images(2)]
    assert (out / "results.csv").read_text().splitlines()[1] == text.splitlines()[1]  # the whole row kept
