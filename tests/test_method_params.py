"""``--param METHOD.NAME=VALUE`` of the ``sanity`` and ``evaluate`` commands: a method run with parameters other
than its defaults (the reference plan's smaller RISE budget for the sanity table). The rows are those of the
library's functions given the same parameters, the folder records the value and refuses another one, bad input
gets a message naming the fix before a model loads; the reference plan passes the budget to the sanity command of
its method only, and the summary and tables say so. A tiny random ViT on two small images."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import ROOT
from run_support import evaluate, image_folder, read_csv, sanity, sanity_content, tiny_model

from explainers.errors import InvalidParameterError
from explainers.registry import parse_method_params
from explainers.run_folder import RunFolderError

sys.path.insert(0, str(ROOT / "benchmarks"))
import run_reference as plan  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("images"), n=2)


def test_parse_method_params_coerces_and_checks_each_value():
    assert parse_method_params(["rise.masks=1000", " rise.cells = 5", "attention_rollout.discard_ratio=0.5"],
                               ["rise", "attention_rollout"]) == {"rise": {"masks": 1000, "cells": 5},
                                                                   "attention_rollout": {"discard_ratio": 0.5}}
    assert parse_method_params([], ["rise"]) == {}
    for item, message in (("rise.masks", "METHOD.NAME=VALUE"), ("masks=1000", "METHOD.NAME=VALUE"),
                          ("rise.=3", "METHOD.NAME=VALUE"), ("gradcam.relu=false", "not one of the run's methods"),
                          ("rise.masks=1.5", "must be an integer"), ("rise.size=3", "rise has no parameter 'size'"),
                          ("rise.masks=0", "masks")):
        with pytest.raises(InvalidParameterError, match=message):
            parse_method_params([item], ["rise"])


def test_a_method_checked_with_other_parameters_is_recorded_and_never_mixed(model, images, tmp_path):
    from explainers import sanity as S
    from explainers.images import load_image
    from explainers.run_folder import read_run_json
    from explainers.sanity_run import FIELDS

    half = {"attention_rollout": {"discard_ratio": 0.5}}
    sanity(model, images, tmp_path / "half", methods="attention_rollout", params=half, random_logit=False)
    sanity(model, images, tmp_path / "default", methods="attention_rollout", random_logit=False)
    assert read_run_json(tmp_path / "half" / "run.json")["methods"]["attention_rollout"]["discard_ratio"] == 0.5
    assert read_run_json(tmp_path / "default" / "run.json")["methods"]["attention_rollout"]["discard_ratio"] == 0.9
    direct = sorted(tuple(str(row[k]) for k in FIELDS[:6])
                    + tuple(round(float(row[k]), 6) for k in ("spearman", "topk"))
                    for f in sorted(images.iterdir())
                    for r in S.sanity_check(model, load_image(f), ["attention_rollout"], "cascading", name=f.name,
                                            params=half, random_logit=False)
                    for row in r.rows())
    written = sorted(tuple(str(c) for c in row[:6]) + (round(float(row[7]), 6), round(float(row[9]), 6))
                     for row in sanity_content(tmp_path / "half"))
    assert written == direct
    assert written != sorted(tuple(str(c) for c in row[:6]) + (round(float(row[7]), 6), round(float(row[9]), 6))
                             for row in sanity_content(tmp_path / "default"))
    with pytest.raises(RunFolderError, match="parameters of attention_rollout: discard_ratio: 0.5 in the folder, "
                                             "0.9 now"):
        sanity(model, images, tmp_path / "half", methods="attention_rollout", random_logit=False)


def test_the_command_line_takes_param_and_refuses_a_bad_one_before_loading(model, images, tmp_path, monkeypatch,
                                                                            capsys):
    import explainers
    from explainers.cli import main
    from explainers.run_folder import read_run_json

    base = ["sanity", "--model", "tiny-vit", "--images", str(images), "--methods", "attention_rollout", "--quiet",
            "--no-random-logit", "--out", str(tmp_path / "o")]
    loaded = []
    monkeypatch.setattr(explainers, "load_model", lambda *a, **k: loaded.append(1) or model)
    for bad, message in ((["--param", "attention_rollout.discard_ratio"], "METHOD.NAME=VALUE"),
                         (["--param", "rise.masks=10"], "'rise' is not one of the run's methods"),
                         (["--param", "attention_rollout.discard_ratio=2"], "discard_ratio")):
        assert main(base + bad) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert loaded == [] and not (tmp_path / "o").exists()
    assert main(base + ["--param", "attention_rollout.discard_ratio=0.5"]) == 0
    assert read_run_json(tmp_path / "o" / "run.json")["methods"]["attention_rollout"]["discard_ratio"] == 0.5


def test_the_plan_gives_the_budget_to_its_methods_sanity_command_only():
    assert plan.SANITY_PARAMS == {"rise": {"masks": 1000}}
    cmds = plan.commands(device="cpu")
    with_budget = [c for c in cmds if "--param=rise.masks=1000" in c]
    assert len(with_budget) == len(plan.MODELS)
    for c in with_budget:
        assert c[c.index("-m") + 2] == "sanity" and "rise" in c[c.index("--methods") + 1].split(",")
    rest = [c for c in cmds if c not in with_budget]
    assert not [c for c in rest if any(a.startswith("--param") for a in c)]
    assert not [c for c in rest if "sanity" in c and "rise" in c[c.index("--methods") + 1].split(",")]


def test_the_summary_and_the_tables_state_the_budget(tmp_path):
    """A sanity folder that recorded RISE with 1000 masks: the summary's entry carries the budget, and the docs
    table and the Benchmark page's table name it beside the method."""
    import results_data as D
    import results_tables as T

    from explainers.run_folder import RunFolder, method_params
    from vit_explain_studio.benchmark_view import sanity_frame

    folder = tmp_path / "sanity"
    with RunFolder(folder, "sanity", {"model": "m"}, method_params(["rise", "gradcam"], plan.SANITY_PARAMS)) as f:
        f.write_run_json()
    assert D._budgets(D._run_json(folder)) == {"rise": {"masks": 1000}}
    entry = {"images": 5, "passes": True, "budget": {"masks": 1000}, "top_half": 0.1}
    model = {"sanity": {"methods": {"rise": entry, "gradcam": {**entry, "budget": {}}}}}
    summary = {"plan": {"reference": ["random", "gaussian"]}}
    table = T.sanity_table(model, summary)
    assert "| rise (masks=1000) | 5 |" in table and "| gradcam | 5 |" in table
    assert list(sanity_frame(model)["method"]) == ["rise (masks=1000)", "gradcam"]
    assert json.loads(json.dumps(D.collect(tmp_path / "none")["plan"]["sanity_params"])) == plan.SANITY_PARAMS


def test_evaluate_with_other_parameters_is_recorded_and_never_mixed(model, images, tmp_path):
    from explainers.evaluation import evaluate_image
    from explainers.run_folder import read_run_json

    half = {"attention_rollout": {"discard_ratio": 0.5}}
    evaluate(model, images, tmp_path / "half", methods="attention_rollout", params=half)
    evaluate(model, images, tmp_path / "default", methods="attention_rollout")
    assert read_run_json(tmp_path / "half" / "run.json")["methods"]["attention_rollout"]["discard_ratio"] == 0.5
    got = {r["image"]: float(r["insertion_auc"]) for r in read_csv(tmp_path / "half" / "results.csv")}
    default = {r["image"]: float(r["insertion_auc"]) for r in read_csv(tmp_path / "default" / "results.csv")}
    direct = {f.name: evaluate_image(model, f.name, f, ["attention_rollout"], steps=2,
                                     method_params=half)[0]["insertion_auc"] for f in sorted(images.iterdir())}
    assert got == pytest.approx(direct, abs=1e-12) and got != pytest.approx(default, abs=1e-6)
    with pytest.raises(RunFolderError, match="parameters of attention_rollout: discard_ratio: 0.5 in the folder"):
        evaluate(model, images, tmp_path / "half", methods="attention_rollout")


def test_evaluate_on_the_command_line_takes_param_and_refuses_a_bad_one_before_loading(model, images, tmp_path,
                                                                                       monkeypatch, capsys):
    import explainers.models
    from explainers.cli import main
    from explainers.run_folder import read_run_json

    base = ["evaluate", "--model", "tiny-vit", "--images", str(images), "--methods", "attention_rollout,random",
            "--steps", "2", "--quiet", "--out", str(tmp_path / "o")]
    loaded = []
    monkeypatch.setattr(explainers.models, "load_model", lambda *a, **k: loaded.append(1) or model)
    for bad, message in ((["--param", "random.seed=1"], "'random' is not one of the run's methods"),
                         (["--param", "attention_rollout.head_fusion=median"], "head_fusion")):
        assert main(base + bad) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert loaded == [] and not (tmp_path / "o").exists()
    assert main(base + ["--param", "attention_rollout.discard_ratio=0.5"]) == 0 and loaded == [1]
    assert read_run_json(tmp_path / "o" / "run.json")["methods"]["attention_rollout"]["discard_ratio"] == 0.5
