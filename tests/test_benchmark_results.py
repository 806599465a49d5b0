"""The reference results kept as data: the docs tables and results/summary.json equal what
``benchmarks/results_tables.py`` makes from the committed files; the statistics, paired comparisons, reading,
sanity verdicts and coverage on a constructed tree with known answers (tests/results_fixture.py); the plan covers
every registered method; ``--check-complete`` finds a gap."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from results_fixture import build, small_plan  # noqa: F401  (a fixture)

sys.path.insert(0, str(ROOT / "benchmarks"))
import results_data as D  # noqa: E402
import results_tables as T  # noqa: E402
import run_reference as plan  # noqa: E402


def test_docs_and_summary_json_are_regenerated_from_the_committed_results():
    summary = D.collect()
    doc = T.DOC.read_text()
    assert T.docs_block(doc) == T.markdown(summary), "run: python benchmarks/results_tables.py --write"
    committed = json.loads((plan.RESULTS / "summary.json").read_text())
    assert committed == json.loads(json.dumps(summary)), "run: python benchmarks/results_tables.py --write"


def test_the_committed_results_cover_every_planned_pair():
    """Issue 25's bar: every (model, image, method) pair of the plan has its row without an error. The evaluation
    rows are counted here from results.csv (distinct images per method, against the image folder); the sanity
    part through ``gaps``, which ``--check-complete`` prints."""
    images = sorted(p.name for p in (ROOT / plan.IMAGES).iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
    assert len(images) == plan.EVAL_IMAGES
    for m in plan.MODELS:
        rows = pd.read_csv(plan.RESULTS / m.key / "evaluate" / "results.csv", dtype=str, keep_default_na=False)
        ok = rows[rows["error"] == ""]
        for method in plan.methods():
            got = sorted(set(ok.loc[ok["method"] == method, "image"]))
            assert got == images, f"{m.key} {method}: {len(got)} of {len(images)} images"
    assert D.gaps(D.collect()) == [], "resume with: python benchmarks/run_reference.py (docs/benchmark-results.md)"


def test_the_plan_covers_every_registered_method_with_relative_paths():
    assert plan.check_plan() == []
    cmds = plan.commands(device="cuda")
    text = [" ".join(c) for c in cmds]
    assert all("--device cuda" in t and f"--images {plan.IMAGES}" in t and "--weights ../shared/weights/" in t
               for t in text)
    ev = [t for t in text if " evaluate " in t]
    assert all("--extra-metrics" in t and "--limit 100" in t for t in ev)
    san = [t for t in text if " sanity " in t]
    assert all("--mode both" in t for t in san)
    heavy = ",".join(plan.TIERS[2][1])
    assert any(f"--methods {heavy} --limit 5" in t for t in san)  # the many-pass methods on fewer images
    cheap = plan.TIERS[0][1]  # the cheap tier of both models comes before any many-pass method
    first_heavy = next(i for i, t in enumerate(text) if "rise" in t)
    assert max(i for i, t in enumerate(text) if ",".join(cheap) in t) < first_heavy
    evaluated = [m for c in cmds if "evaluate" in c for m in c[c.index("--methods") + 1].split(",")]
    assert sorted(set(evaluated)) == sorted(plan.methods()) and len(evaluated) == 2 * len(plan.methods())


@pytest.mark.usefixtures("small_plan")
def test_means_intervals_and_paired_comparisons(tmp_path):
    from scipy import stats

    s = build(tmp_path)
    m1 = s["models"][0]["evaluate"]
    df = pd.read_csv(tmp_path / "m1" / "evaluate" / "results.csv")
    for method in ("good", "flat", "random"):
        v = df[df.method == method].insertion_auc.to_numpy()
        low, high = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
        got = m1["methods"][method]["metrics"]["insertion_auc"]
        assert got["n"] == 6 and got["mean"] == pytest.approx(v.mean(), abs=1e-6)
        assert got["ci95"] == pytest.approx((high - low) / 2, abs=1e-6)
    good, flat = m1["methods"]["good"]["versus"], m1["methods"]["flat"]["versus"]
    assert good["random"]["insertion_auc"]["better"] and good["random"]["deletion_auc"]["better"]
    assert good["random"]["insertion_auc"]["mean"] == pytest.approx(0.2, abs=0.03)
    assert not flat["random"]["insertion_auc"]["better"] and not flat["random"]["deletion_auc"]["better"]
    assert flat["gaussian"]["insertion_auc"]["worse"]
    assert len(m1["fractions"]) == 21 and m1["methods"]["good"]["curves"]["n"] == 6
    ins = m1["methods"]["random"]["curves"]["insertion"]
    assert ins[-1] == pytest.approx(df[df.method == "random"].insertion_auc.mean(), abs=1e-6)
    assert m1["leaders"]["insertion_auc"]["leader"] in ("good", "rise")
    assert "flat" not in m1["leaders"]["insertion_auc"]["tied"]


@pytest.mark.usefixtures("small_plan")
def test_reading_and_tables_say_what_the_numbers_say(tmp_path):
    s = build(tmp_path)
    one = " ".join(s["models"][0]["reading"])
    assert "`flat` beats neither reference row (the random map nor the centred Gaussian)" in one
    assert "flags `flat`" in one and "`good`" not in one.split("flags")[1]
    assert "reference maps (`random` and `gaussian`) are flagged" in one
    table = T.evaluation_table(s["models"][0], s)
    lines = [line.split(" | ")[0].strip("| ") for line in table.splitlines()[2:]]
    assert lines.index("*gaussian*") < lines.index("*random*") and lines.index("flat") > lines.index("good")
    row = next(line for line in table.splitlines() if line.startswith("| good |"))
    assert "| insertion and deletion | insertion and deletion | pass (4) | 6 |" in row
    sanity = T.sanity_table(s["models"][0], s)
    row = next(line for line in sanity.splitlines() if line.startswith("| flat |"))
    assert row.split(" | ")[1:4] == ["4", "0.95", "0.90"] and row.endswith("**flagged** |")
    rise = next(line for line in sanity.splitlines() if line.startswith("| rise |"))
    assert rise.split(" | ")[1] == "2" and rise.endswith("| pass |")
    text = T.markdown(s)
    assert "| Model One | evaluate | 5 of 5 | 30 of 30 | — |" in text
    assert ("| Model Two | evaluate | 0 of 5 | 6 of 30 | good 3/6, random 3/6; not started: flat, gaussian, rise |"
            in text)
    assert "| Model Two | sanity | 0 of 5 | 0 of 18 | not started |" in text


def test_reading_names_the_methods_within_the_leaders_interval_in_number():
    from vit_explain_studio.results_summary import reading

    def model(tied):
        stat = {"n": 5, "mean": 0.5, "ci95": 0.1}
        methods = {m: {"images": 5, "metrics": {"insertion_auc": stat}} for m in ["a", *tied, "z"]}
        ev = {"images": 5, "correct": 4, "methods": methods,
              "leaders": {"insertion_auc": {"leader": "a", "tied": tied}}}
        return " ".join(reading({"title": "M", "evaluate": ev, "sanity": {"methods": {}}}))

    assert "`b` is within its paired 95 % interval, so the lead over it is not established." in model(["b"])
    assert ("`b` and `c` are within its paired 95 % interval, so the lead over them is not established."
            in model(["b", "c"]))
    assert "`a` leads (0.500 ± 0.100) and is ahead of every other method" in model([])


@pytest.mark.usefixtures("small_plan")
def test_reading_of_a_partial_run_says_the_means_are_over_different_images(tmp_path):
    complete = " ".join(build(tmp_path)["models"][0]["reading"])
    assert "do not have the same images" not in complete and "on its" not in complete
    folder = tmp_path / "m1" / "evaluate"  # good and rise (the two leading profiles) keep only the first 3 images
    for name in ("results.csv", "curves.csv"):
        df = pd.read_csv(folder / name, dtype=str, keep_default_na=False)
        late = df.method.isin(["good", "rise"]) & ~df.image.isin(df.image.unique()[:3])
        df[~late].to_csv(folder / name, index=False)
    partial = D.collect(tmp_path, plan.MODELS)["models"][0]
    assert {m: e["images"] for m, e in partial["evaluate"]["methods"].items()} == {
        "good": 3, "flat": 6, "rise": 3, "random": 6, "gaussian": 6}
    text = " ".join(partial["reading"])
    assert "do not have the same images yet (3 to 6 each" in text
    assert partial["evaluate"]["leaders"]["insertion_auc"]["leader"] in ("good", "rise")
    assert "leads (" in text and text.count(", on its 3 images)") == 2  # both AUCs' leaders have 3 of 6


@pytest.mark.usefixtures("small_plan")
def test_cost_is_the_median_of_the_rows_in_the_table_and_the_chart(tmp_path):
    from vit_explain_studio import benchmark_plots as bp

    build(tmp_path)
    path = tmp_path / "m1" / "evaluate" / "results.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    first = df.index[df.method == "good"][0]  # one row timed on a loaded machine: 100 times the others
    df.loc[first, "seconds"] = repr(100 * float(df.loc[first, "seconds"]))
    df.to_csv(path, index=False)
    s = D.collect(tmp_path, plan.MODELS)
    model = s["models"][0]
    rows = df[df.method == "good"].seconds.astype(float)
    sec = model["evaluate"]["methods"]["good"]["metrics"]["seconds"]
    assert sec["median"] == pytest.approx(rows.median(), rel=1e-5) and sec["mean"] > 10 * sec["median"]
    row = next(line for line in T.evaluation_table(model, s).splitlines() if line.startswith("| good |"))
    assert row.split(" | ")[5] == f"{rows.median():.2f}"
    fig = bp.cost(model, "deletion_auc", "Deletion AUC", tuple(plan.REFERENCE))
    xs = {m: x for t in fig.data for m, x in zip(t.text, t.x)}
    assert xs["good"] == pytest.approx(rows.median(), rel=1e-5)


@pytest.mark.usefixtures("small_plan")
def test_check_complete_reports_a_constructed_gap(tmp_path, capsys):
    s = build(tmp_path, m2_images=6)
    assert not [g for g in D.gaps(s) if g.startswith("m1 ")]
    assert "m2 evaluate flat: 0 of 6 images" in D.gaps(s) and "m2 sanity good: 0 of 4 images" in D.gaps(s)
    path = tmp_path / "m1" / "evaluate" / "results.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if not line.startswith("img_003.JPEG,flat,")))
    assert T.main(["--check-complete", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "m1 evaluate flat: 5 of 6 images" in out.splitlines()
    assert not [line for line in out.splitlines() if line.startswith("m1 ") and "flat" not in line
                and "hours still to run" not in line]
    # the time still to run: each missing pair at its method's median on that model (m2's flat and the reference
    # rows it lacks take m1's medians), the explanation's seconds and the metrics' together
    rows = D.read_results(path)

    def median(model_rows, m):
        return float(np.median([float(r["seconds"]) + float(r["metric_seconds"]) for r in model_rows
                                if r["method"] == m]))

    s = D.collect(tmp_path)
    m2 = D.read_results(tmp_path / "m2" / "evaluate" / "results.csv")
    want_m2 = sum((6 - c["done"]) * median(m2 if c["done"] else rows, m)
                  for m, c in s["models"][1]["coverage"]["evaluate"].items() if c["done"] < 6)
    est = D.remaining_evaluation(s, tmp_path)
    assert est["m1"] == pytest.approx(median(rows, "flat")) and est["m2"] == pytest.approx(want_m2)
    assert f"m2 evaluate: about {want_m2 / 3600:.1f} hours still to run" in out


@pytest.mark.usefixtures("small_plan")
def test_write_replaces_only_the_generated_block(tmp_path, monkeypatch):
    build(tmp_path)
    doc = tmp_path / "page.md"
    doc.write_text(f"# Title\n\nHand-written.\n\n{T.BEGIN}\nstale table\n{T.END}\n\nAfter.\n")
    monkeypatch.setattr(T, "DOC", doc)
    assert T.main(["--write", "--root", str(tmp_path)]) == 0
    text = doc.read_text()
    assert text.startswith("# Title\n\nHand-written.\n\n") and text.endswith(f"{T.END}\n\nAfter.\n")
    assert "stale table" not in text and T.docs_block(text) == T.markdown(D.collect(tmp_path, plan.MODELS))
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["models"][0]["evaluate"]["methods"]["good"]["images"] == 6
    assert np.isfinite(saved["models"][0]["sanity"]["methods"]["good"]["top_half"])
