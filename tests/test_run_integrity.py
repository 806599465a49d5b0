"""Run folders (issue 24, causes 1-7): a fingerprint of what changes the numbers, refused reruns that would mix two
configurations, resuming after an interruption, damaged or tampered files reported with their line, checked
--tolerance / --limit / boxes.json. A tiny random ViT on three small images keeps every run fast."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from run_support import (
    copy_folder,
    evaluate,
    evaluate_content,
    image_folder,
    read_csv,
    sanity,
    sanity_content,
    tiny_model,
)

from explainers.errors import ExplainerError, InvalidParameterError
from explainers.run_folder import RunFolderError


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def ev_ref(model, images, tmp_path_factory):
    out = tmp_path_factory.mktemp("ev") / "ref"
    evaluate(model, images, out)
    return out


@pytest.fixture(scope="module")
def sa_ref(model, images, tmp_path_factory):
    out = tmp_path_factory.mktemp("sa") / "ref"
    sanity(model, images, out)
    return out


def _perturbed(model, seed=1):
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        p = next(other.module.parameters())
        p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return other


# -- cause 1: zero-shot labels and templates, and every other field of the fingerprint -------------------------
def test_another_zero_shot_label_set_or_template_is_refused(model, images, tmp_path):
    zs = copy.copy(model)
    zs.zero_shot, zs.labels = {"labels": ["a cat", "a dog"], "templates": "simple"}, ["a cat", "a dog"]
    evaluate(zs, images, tmp_path / "z", methods="random")
    other = copy.copy(zs)
    other.zero_shot, other.labels = {"labels": ["a car", "a dog"], "templates": "simple"}, ["a car", "a dog"]
    with pytest.raises(RunFolderError, match="another configuration.*zero_shot.*--out"):
        evaluate(other, images, tmp_path / "z", methods="random")
    templ = copy.copy(zs)
    templ.zero_shot = {"labels": ["a cat", "a dog"], "templates": "imagenet"}
    with pytest.raises(RunFolderError, match="zero_shot"):
        evaluate(templ, images, tmp_path / "z", methods="random")
    evaluate(zs, images, tmp_path / "z", methods="random")  # the same configuration resumes
    run = json.loads((tmp_path / "z" / "run.json").read_text())
    assert run["fingerprint"]["zero_shot"] == {"labels": ["a cat", "a dog"], "templates": "simple"}


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A tiny Hugging Face CLIP folder (model and tokenizer files)."""
    from test_text import _clip_tokenizer, _module

    folder = tmp_path_factory.mktemp("clip") / "tiny-clip"
    _module("clip").save_pretrained(folder)
    _clip_tokenizer().save_pretrained(folder)
    return folder


def test_evaluate_zero_shot_on_the_command_line_keeps_labels_and_templates_apart(clip_folder, images, tmp_path,
                                                                                  capsys):
    from explainers.cli import main

    folder, pictures = clip_folder, images
    args = ["evaluate", "--model", str(folder), "--images", str(pictures), "--methods", "random", "--steps", "2",
            "--device", "cpu", "--quiet", "--out", str(tmp_path / "zs")]
    assert main([*args, "--zero-shot", "a cat,a dog", "--zero-shot-templates", "none"]) == 0
    capsys.readouterr()
    assert main([*args, "--zero-shot", "a car,a dog", "--zero-shot-templates", "none"]) == 2
    assert "zero_shot: {'labels': ['a cat', 'a dog']" in capsys.readouterr().err
    assert main([*args, "--zero-shot", "a cat,a dog", "--zero-shot-templates", "simple"]) == 2
    assert "'templates': 'none'" in capsys.readouterr().err
    assert len(read_csv(tmp_path / "zs" / "results.csv")) == 3


@pytest.mark.parametrize("change, field", [({"steps": 3}, "steps"), ({"preset": "tis"}, "preset"),
                                           ({"tolerance": 5}, "tolerance"), ({"extra": True}, "extra_metrics")])
def test_other_settings_are_refused_naming_the_difference(model, images, ev_ref, tmp_path, change, field):
    out = copy_folder(ev_ref, tmp_path / "f")
    with pytest.raises(RunFolderError, match=f"{field}: .* in the folder"):
        evaluate(model, images, out, **change)


def test_changed_method_parameters_are_refused(model, images, ev_ref, tmp_path, monkeypatch):
    from explainers.registry import METHODS

    out = copy_folder(ev_ref, tmp_path / "f")
    rollout = METHODS["attention_rollout"]
    before = rollout.defaults()
    monkeypatch.setattr(type(rollout), "defaults", lambda self: {**before, "discard_ratio": 0.5})
    with pytest.raises(RunFolderError, match="parameters of attention_rollout: discard_ratio"):
        evaluate(model, images, out)


def test_a_folder_recorded_before_a_parameter_was_added_resumes_at_its_default(tmp_path):
    from explainers.run_folder import RunFolder, method_params, read_run_json

    now = method_params(["saliency", "attention_rollout"])
    before = {m: {k: v for k, v in p.items() if k != "libragrad"} for m, p in now.items()}  # as written before it
    assert before != now
    with RunFolder(tmp_path / "a", "evaluate", {"model": "m"}, before) as f:
        f.write_run_json()
    with RunFolder(tmp_path / "a", "evaluate", {"model": "m"}, now) as f:  # resumes: the default is the old method
        f.write_run_json()
    assert read_run_json(tmp_path / "a" / "run.json")["methods"]["saliency"]["libragrad"] is False
    other = method_params(["saliency"], {"saliency": {"libragrad": True}})
    with pytest.raises(RunFolderError, match="parameters of saliency: libragrad: False in the folder, True now"):
        RunFolder(tmp_path / "a", "evaluate", {"model": "m"}, other).open()
    # a parameter the method always had is not filled in: missing from the folder, it is a difference
    cut = {"attention_rollout": {k: v for k, v in now["attention_rollout"].items() if k != "discard_ratio"}}
    with RunFolder(tmp_path / "b", "evaluate", {"model": "m"}, cut) as f:
        f.write_run_json()
    with pytest.raises(RunFolderError, match="parameters of attention_rollout: discard_ratio: None in the folder"):
        RunFolder(tmp_path / "b", "evaluate", {"model": "m"}, now).open()


# -- cause 2: other weights of the same architecture, --weights random -------------------------------------------
def test_sanity_refuses_other_weights_of_the_same_model(model, images, sa_ref, tmp_path):
    out = copy_folder(sa_ref, tmp_path / "s")
    before = sanity_content(out)
    with pytest.raises(RunFolderError, match="weights_sha256"):
        sanity(_perturbed(model), images, out)
    with pytest.raises(RunFolderError, match="holds a sanity run, not an evaluate run"):
        evaluate(model, images, out)
    assert sanity_content(out) == before
    with pytest.raises(RunFolderError, match="seed: 0 in the folder, 1 now"):
        sanity(model, images, out, seed=1)


@pytest.mark.parametrize("command", ["sanity", "evaluate"])
def test_weights_random_is_refused_on_the_command_line(images, tmp_path, capsys, command):
    from explainers.cli import main

    code = main([command, "--model", "deit_tiny_patch16_224", "--weights", "random", "--images", str(images),
                 "--methods", "random", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "--weights random draws new weights" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


# -- cause 3: an empty results.csv ---------------------------------------------------------------------------
def test_an_empty_results_csv_is_computed_again_with_its_header(model, images, ev_ref, tmp_path):
    out = copy_folder(ev_ref, tmp_path / "e")
    (out / "results.csv").write_bytes(b"")
    info = evaluate(model, images, out)
    assert info["images"] == 3 and info["computed"] == 6 and info["rows"] == 6
    assert list(read_csv(out / "results.csv")[0])[:2] == ["image", "method"]
    assert evaluate_content(out) == evaluate_content(ev_ref)
    assert evaluate(model, images, out)["computed"] == 0  # and the next rerun has nothing left to do


# -- cause 4: a sanity.csv cut in the middle of an image, or by a few bytes -----------------------------------
@pytest.mark.parametrize("cut", [5, 0.5])
def test_a_cut_sanity_csv_resumes_to_the_uninterrupted_result(model, images, sa_ref, tmp_path, cut, capsys):
    out = copy_folder(sa_ref, tmp_path / "c")
    data = (out / "sanity.csv").read_bytes()
    keep = len(data) - cut if isinstance(cut, int) else int(len(data) * cut)
    (out / "sanity.csv").write_bytes(data[:keep])
    info = sanity(model, images, out)
    assert info["computed"] >= 1 and "computed again" in capsys.readouterr().err
    assert sanity_content(out) == sanity_content(sa_ref)
    assert (out / "summary.md").read_text() == (sa_ref / "summary.md").read_text()


# -- cause 5: tampered or damaged files -------------------------------------------------------------------------
def _line(path, n, new: bytes):
    lines = path.read_bytes().split(b"\n")
    lines[n - 1] = new
    path.write_bytes(b"\n".join(lines))


DAMAGE = {
    "run.json invalid JSON": ("run.json", lambda p: p.write_text("{not json"), "run.json is damaged"),
    "run.json a list": ("run.json", lambda p: p.write_text("[1, 2]"), "a JSON list"),
    "run.json a folder": ("run.json", lambda p: (p.unlink(), p.mkdir()), "run.json is not a file"),
    "run.json edited": ("run.json", lambda p: p.write_text(p.read_text().replace('"steps": 2', '"steps": 3')),
                        "changed after it was written"),
    "run.json missing": ("run.json", lambda p: p.unlink(), "but no run.json"),
    "wrong header": ("results.csv", lambda p: _line(p, 1, b"image,method,score,checksum"), "line 1 is damaged"),
    "missing column": ("results.csv", lambda p: _line(p, 2, p.read_bytes().split(b"\n")[1].split(b",", 1)[1]),
                       "line 2 is damaged"),
    "non-numeric curve": ("curves.csv", lambda p: _line(p, 3, p.read_bytes().split(b"\n")[2].replace(b"0.", b"x.")),
                          "curves.csv line 3 is damaged"),
    "field over the csv limit": ("results.csv", lambda p: _line(p, 2, b"im0.png,random," + b"9" * 200_000 + b",0"),
                                 "line 2 is damaged"),
    "results.csv a folder": ("results.csv", lambda p: (p.unlink(), p.mkdir()), "results.csv is not a file"),
    "curves.csv from another run": ("curves.csv", None, "curves.csv line 2 is damaged"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_evaluate_files_are_reported_with_the_line_and_the_fix(model, images, ev_ref, tmp_path, case):
    name, damage, message = DAMAGE[case]
    out = copy_folder(ev_ref, tmp_path / "d")
    if damage is None:  # the same file of a run with other settings
        other = tmp_path / "other"
        evaluate(model, images, other, tolerance=3)
        (out / name).write_bytes((other / name).read_bytes())
    else:
        damage(out / name)
    with pytest.raises(RunFolderError, match=message) as e:
        evaluate(model, images, out)
    assert "--out" in str(e.value) or "Delete that line" in str(e.value)


def test_damaged_sanity_csv_and_the_command_lines_message(model, images, sa_ref, tmp_path, monkeypatch, capsys):
    import explainers
    from explainers.cli import main

    out = copy_folder(sa_ref, tmp_path / "d")
    _line(out / "sanity.csv", 4, (out / "sanity.csv").read_bytes().split(b"\n")[3].replace(b"cascading", b"cascadinG"))
    with pytest.raises(RunFolderError, match="sanity.csv line 4 is damaged.*Delete that line"):
        sanity(model, images, out)
    with pytest.raises(RunFolderError, match="line 4"):
        explainers.sanity_run.read_results(out)
    monkeypatch.setattr(explainers, "load_model", lambda *a, **k: model)
    code = main(["sanity", "--model", "tiny-vit", "--images", str(images), "--methods", "attention_rollout,random",
                 "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "line 4 is damaged" in err and "Traceback" not in err


# -- cause 6: --tolerance and --limit ---------------------------------------------------------------------------
@pytest.mark.parametrize("tolerance", [math.nan, -1, math.inf, "x"])
def test_tolerance_must_be_finite_and_not_negative(model, images, tmp_path, tolerance):
    with pytest.raises(InvalidParameterError, match="--tolerance"):
        evaluate(model, images, tmp_path / "t", tolerance=tolerance)
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("limit", [-1, 0, 1.5, True])
def test_limit_must_be_a_positive_whole_number(model, images, tmp_path, limit):
    with pytest.raises(InvalidParameterError, match="--limit"):
        evaluate(model, images, tmp_path / "l", limit=limit)
    with pytest.raises(InvalidParameterError, match="--limit"):
        sanity(model, images, tmp_path / "l", limit=limit)


def test_the_command_line_refuses_them_before_loading_a_model(images, tmp_path, capsys):
    from explainers.cli import main

    base = ["evaluate", "--model", "no-such-model", "--images", str(images), "--methods", "random", "--out",
            str(tmp_path / "o")]
    for extra, message in ((["--tolerance", "nan"], "--tolerance"), (["--limit", "-1"], "--limit")):
        assert main(base + extra) == 2 and message in capsys.readouterr().err
    assert main(["sanity", "--model", "no-such-model", "--images", str(images), "--limit", "-1", "--out",
                 str(tmp_path / "o")]) == 2 and "--limit" in capsys.readouterr().err


# -- cause 7: boxes.json with wrong types --------------------------------------------------------------------------
@pytest.mark.parametrize("boxes, message", [
    ([1], "a JSON list"), ({"im0.png": "dog"}, "entry of 'im0.png' is a str"),
    ({"im0.png": {"label": "abc"}}, "label must be a class index"),
    ({"im0.png": {"label": 1, "boxes_xyxy": [1, 2, 3, 4]}}, "box 0 must be"),
    ({"im0.png": {"label": 1, "width": "wide", "boxes_xyxy": []}}, "width must be"),
    ({"im0.png": {"label": 1, "boxes_xyxy": [[0, 0, "a", 4]]}}, "box 0 must be a finite number"),
    ("[" * 100_000 + "]" * 100_000, "cannot read it as JSON")])
def test_a_boxes_file_of_wrong_types_is_refused_naming_the_entry(model, images, tmp_path, boxes, message):
    path = tmp_path / "boxes.json"
    path.write_text(boxes if isinstance(boxes, str) else json.dumps(boxes))
    with pytest.raises(InvalidParameterError, match=message):
        evaluate(model, images, tmp_path / "b", boxes_path=path)


def test_evaluate_item_never_raises_on_a_bad_box_entry(model, images):
    from explainers.evaluation import evaluate_item

    data = (images / "im0.png").read_bytes()
    for entry in ([1], "dog", {"label": "abc"}, {"label": 2, "boxes_xyxy": [[1, 2]]}):
        rows = evaluate_item(model, "im0.png", data, "", ["random"], entry, steps=2)
        assert len(rows) == 1 and rows[0]["error"].startswith("InvalidParameterError")


# -- what else the fingerprint and the records catch ----------------------------------------------------------
def test_a_changed_image_is_refused(model, images, ev_ref, tmp_path):
    out = copy_folder(ev_ref, tmp_path / "i")
    moved = copy_folder(images, tmp_path / "imgs")
    (moved / "im1.png").write_bytes((moved / "im2.png").read_bytes())
    with pytest.raises(RunFolderError, match="im1.png: the image file or its boxes.json entry changed"):
        evaluate(model, moved, out)


def test_a_changed_image_is_refused_by_sanity_and_nothing_is_rewritten(model, images, sa_ref, tmp_path):
    out = copy_folder(sa_ref, tmp_path / "i")
    data = (out / "sanity.csv").read_bytes()
    (out / "sanity.csv").write_bytes(data[:-5])  # a cut last line, which a resuming run would drop
    moved = copy_folder(images, tmp_path / "imgs")
    (moved / "im0.png").write_bytes((moved / "im2.png").read_bytes())
    with pytest.raises(RunFolderError, match="im0.png: the image file changed"):
        sanity(model, moved, out)
    assert (out / "sanity.csv").read_bytes() == data[:-5]


def test_a_second_run_on_the_same_folder_at_once_is_refused(model, images, ev_ref, tmp_path):
    from explainers.run_folder import RunFolder

    out = copy_folder(ev_ref, tmp_path / "k")
    holder = RunFolder(out, "evaluate", {}, {})
    holder._take_lock()  # as a run in another process would
    try:
        with pytest.raises(RunFolderError, match="another run is writing"):
            evaluate(model, images, out)
    finally:
        holder.close()
    assert evaluate(model, images, out)["computed"] == 0


def test_records_round_trip_text_and_fields_over_the_csv_limit(tmp_path):
    from explainers.run_folder import Table

    t = Table(tmp_path / "t.csv", ("a", "b"), seed=7)
    t.start()
    t.append([t.encode(["x,\"y\"\nz", "9" * 200_000]), t.encode([None, float("nan")])])
    records, cut = t.read()
    assert not cut and [r.cells["a"] for r in records] == ['x,"y" z', ""] and len(records[0].cells["b"]) == 200_000
    with pytest.raises(RunFolderError, match="line 2 is damaged"):
        Table(t.path, ("a", "b"), seed=8).read()  # the same file read as another run's


def test_old_result_files_are_still_readable(tmp_path):
    from explainers.evaluation import read_results

    (tmp_path / "results.csv").write_text("image,method,insertion_auc,error\na.png,random,0.5,\nb.png,ran")
    assert read_results(tmp_path / "results.csv") == [{"image": "a.png", "method": "random",
                                                       "insertion_auc": "0.5", "error": ""}]
    assert issubclass(RunFolderError, ExplainerError)


# -- causes 15-16, without a cluster (the two-node run: tests/test_ray_cluster.py) -----------------------------
def test_relative_weights_are_resolved_on_the_driver(tmp_path, monkeypatch):
    from explainers.errors import ModelLoadError
    from explainers.evaluation.distributed import resolve_weights

    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "model.safetensors").write_bytes(b"x")
    monkeypatch.chdir(tmp_path / "w")
    assert resolve_weights("model.safetensors") == str(tmp_path / "w" / "model.safetensors")
    assert resolve_weights("../w") == str(tmp_path / "w") and resolve_weights(None) is None
    with pytest.raises(ModelLoadError, match="'../nowhere' does not exist .*Ray driver"):
        resolve_weights("../nowhere")


def test_a_node_without_the_weights_or_with_other_weights_is_named():
    from explainers.errors import ModelLoadError
    from explainers.evaluation.distributed import check_workers

    fp = {"model": "m", "weights_sha256": "a" * 64}
    ok = {"node": "head (10.0.0.1)", "error": None, "fingerprint": fp}
    lost = {"node": "gpu-2 (10.0.0.2)", "error": ("ModelLoadError", "weights path 'w' does not exist", True)}
    with pytest.raises(ModelLoadError, match="node gpu-2 .10.0.0.2. has no weights at /data/w"):
        check_workers([ok, lost], "/data/w")
    other = {**ok, "node": "gpu-3 (10.0.0.3)", "fingerprint": {**fp, "weights_sha256": "b" * 64}}
    with pytest.raises(ModelLoadError, match="different models: on head .* and on gpu-3 .*weights_sha256"):
        check_workers([ok, other], "/data/w")
    check_workers([ok, ok], "/data/w")


def test_a_failed_connection_gives_the_token_advice(monkeypatch, tmp_path):
    from explainers.evaluation.distributed import connect_error

    for k in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    e = connect_error("head:6379", "head:6379", ConnectionError("Failed to connect to Ray cluster at head:6379"))
    assert "RAY_AUTH_MODE=token" in str(e) and "ray get-auth-token" in str(e) and "this process has none" in str(e)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "abc")
    assert "check that it is the head node's" in str(connect_error("auto", "auto", RuntimeError("x")))
    assert "token" not in str(connect_error("local:2", "local", RuntimeError("no memory")))
