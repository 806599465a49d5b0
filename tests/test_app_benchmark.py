"""The Benchmark page through ``AppTest``, on a constructed results tree with known answers
(tests/results_fixture.py, summarised by benchmarks/results_data.py): the ranking by the chosen metric with the
reference rows as the floor, each method's sanity verdict beside its scores, the curves, cost against
faithfulness on a log axis, the reading, the incomplete rows named; and the message when there are no results."""

from __future__ import annotations

import math
import sys

import pytest
from app_support import check_clean, offline_weights, open_page, plotly_specs  # noqa: F401
from conftest import ROOT
from results_fixture import build, small_plan  # noqa: F401

sys.path.insert(0, str(ROOT / "benchmarks"))
import results_data as D  # noqa: E402


@pytest.fixture
def fixture_results(small_plan, tmp_path, monkeypatch):  # noqa: F811
    from vit_explain_studio import settings

    D.write_json(build(tmp_path), tmp_path / "summary.json")
    monkeypatch.setattr(settings, "RESULTS", tmp_path)
    return tmp_path


def spec_titled(at, text: str) -> dict:
    return next(s for s in plotly_specs(at) if text in s["layout"]["title"]["text"])


def test_benchmark_page_ranks_methods_with_the_reference_floor_and_sanity_verdicts(fixture_results):
    at = open_page("benchmark")
    assert at.title[0].value == "Benchmark"
    assert any("`flat` beats neither reference row" in m.value for m in at.markdown)
    assert [w for w in at.warning] == [] and any("Complete" in s.value for s in at.success)  # Model One: complete
    rank = spec_titled(at, "Insertion AUC: mean and 95 % interval")
    traces = {t["name"]: t for t in rank["data"]}
    assert set(traces["sanity: pass"]["y"]) == {"good", "rise"} and traces["sanity: flagged"]["y"] == ["flat"]
    assert "random map (reference)" in traces and "gaussian map (reference)" in traces
    assert len(rank["layout"]["shapes"]) == 2  # the floor: one vertical line per reference row
    table = at.dataframe[0].value
    assert table.loc[table.method == "flat", "sanity"].item() == "flagged"
    assert table.loc[table.method == "good", "beats random on"].item() == "insertion and deletion"
    assert table.loc[table.method == "flat", "beats random on"].item() == "no"
    assert set(list(table.method)[-2:]) == {"flat", "random (reference)"}  # flat is the random map plus noise
    cost = spec_titled(at, "Cost against Deletion AUC")
    assert cost["layout"]["xaxis"]["type"] == "log"
    assert sorted(t for tr in cost["data"] for t in tr["text"]) == ["flat", "good", "rise"]
    labels = {a["text"]: a for a in cost["layout"]["annotations"] if "ax" in a}  # each point's label, at its point
    assert sorted(labels) == ["flat", "good", "rise"]
    point = {t: (x, y) for tr in cost["data"] for t, x, y in zip(tr["text"], tr["x"], tr["y"])}
    assert all(labels[m]["x"] == pytest.approx(math.log10(point[m][0])) and labels[m]["y"] == point[m][1]
               for m in labels)  # a log axis takes an annotation's x as log10
    ins = spec_titled(at, "Mean insertion curve")
    assert {t["name"] for t in ins["data"]} >= {"good", "random map", "gaussian map"}
    sanity = at.dataframe[1].value
    assert sanity.set_index("method").loc["rise", "images"] == 2
    assert sanity.set_index("method").loc["flat", "verdict"] == "flagged"
    assert list(sanity.columns[:2]) == ["method", "verdict"]  # in view on a phone, where the numbers scroll

    at.selectbox(key="bm.metric").set_value("deletion_auc").run()
    check_clean(at)
    order = list(at.dataframe[0].value.method)
    assert order.index("flat") > order.index("good")
    at.radio(key="bm.model").set_value("m2").run()
    check_clean(at)
    assert list(at.dataframe[0].value.images) == ["3 of 6", "3 of 6"]
    warning = at.warning[0].value
    assert "incomplete rows** for good (3 of 6), random (3 of 6)" in warning
    assert "not run yet** for flat, gaussian, rise" in warning


def test_benchmark_page_without_results_says_how_to_make_them(tmp_path, monkeypatch):
    from vit_explain_studio import settings

    monkeypatch.setattr(settings, "RESULTS", tmp_path)
    at = open_page("benchmark")
    assert "no reference results" in at.info[0].value and "results_tables.py --write" in at.info[0].value


def meet(r, o, tol: float = 0.0) -> bool:
    """Whether boxes (x0, y0, x1, y1) overlap by more than ``tol`` pixels each way."""
    return min(r[2], o[2]) > max(r[0], o[0]) + tol and min(r[3], o[3]) > max(r[1], o[1]) + tol


def test_cost_labels_stay_apart_and_inside_the_plot():
    """Crowded points (three within a few pixels, as the rollouts are on DeiT-Tiny) get labels that overlap
    neither one another nor any point and stay inside the plot; Plotly's fixed text positions overlapped."""
    from vit_explain_studio.benchmark_plots import label_offsets, plot_pixels

    xs, ys = [0.086, 0.09, 0.093, 0.158, 2.5, 70.0], [0.280, 0.278, 0.283, 0.291, 0.2, 0.21]
    names = ["attention_last_layer", "attention_rollout", "chefer_rollout", "gradcam_pp", "gradmask", "rise"]
    width, height = 860, 320
    offsets = label_offsets(xs, ys, names, width=width, height=height)
    px, py = plot_pixels(xs, ys, width, height)
    assert (px.min(), px.max(), py.min(), py.max()) == pytest.approx((43, 817, 16, 304))  # 5 % padding each side
    boxes = [(a + dx - 3 * len(n), b + dy - 6.5, a + dx + 3 * len(n), b + dy + 6.5)
             for a, b, (dx, dy), n in zip(px, py, offsets, names)]
    points = [(a - 5, b - 5, a + 5, b + 5) for a, b in zip(px, py)]

    assert not [(i, j) for i in range(6) for j in range(i + 1, 6) if meet(boxes[i], boxes[j])]
    assert not [(i, j) for i in range(6) for j in range(6) if meet(boxes[i], points[j])]
    assert all(r[0] >= 0 and r[1] >= 0 and r[2] <= width and r[3] <= height for r in boxes)


def test_cost_labels_keep_off_the_reference_lines():
    """A point just under a reference row's line (full LRP under the random map's line on DeiT-Tiny): its label
    goes where it crosses neither the line nor the line's name at its right end; placed without the line, it
    would sit across it."""
    from vit_explain_studio.benchmark_plots import label_offsets, plot_pixels

    xs, ys, names = [0.3, 0.08, 70.0], [0.345, 0.2, 0.21], ["lrp_full", "gradcam", "rise"]
    width, height, line = 860, 320, 13.0
    ref = 0.3475
    px, py = plot_pixels([*xs, xs[0]], [*ys, ref], width, height, (ref,))
    y_line = py[-1]

    def box(off):
        return (px[0] + off[0] - 3 * len(names[0]), py[0] + off[1] - line / 2,
                px[0] + off[0] + 3 * len(names[0]), py[0] + off[1] + line / 2)

    crossed = box(label_offsets(xs, ys, names, width, height)[0])  # the line ignored (though the axis spans it)
    assert crossed[1] < y_line < crossed[3]
    placed = box(label_offsets(xs, ys, names, width, height, y_also=(ref,))[0])
    assert not placed[1] - 2 < y_line < placed[3] + 2
    assert not meet(placed, (width - 72, y_line - line - 2, width, y_line))
    assert placed[0] >= 0 and placed[1] >= 0 and placed[2] <= width and placed[3] <= height


def test_phone_labels_never_overlap_and_the_best_are_placed_first():
    """In a plot too small for every label (a phone's), ``drop`` leaves out the labels that find no free place
    instead of overlapping: the placed ones overlap neither one another nor a point and stay inside; the first
    in ``order`` always gets its place, and without ``drop`` every label is placed."""
    from vit_explain_studio.benchmark_plots import label_offsets, plot_pixels

    rng = __import__("numpy").random.default_rng(0)
    n = 30
    xs, ys = list(10 ** rng.uniform(-1.5, 2, n)), list(rng.uniform(0.15, 0.35, n))
    names = [f"method_number_{i}" for i in range(n)]
    width, height, char, line = 250, 470, 5.4, 11.7
    order = list(range(n))[::-1]
    offsets = label_offsets(xs, ys, names, width, height, char_px=char, line_px=line, order=order, drop=True)
    placed = [i for i in range(n) if offsets[i] is not None]
    assert offsets[order[0]] is not None and 10 <= len(placed) < n  # crowded: some left out, most not
    px, py = plot_pixels(xs, ys, width, height)
    box = {i: (px[i] + offsets[i][0] - char * len(names[i]) / 2, py[i] + offsets[i][1] - line / 2,
               px[i] + offsets[i][0] + char * len(names[i]) / 2, py[i] + offsets[i][1] + line / 2) for i in placed}

    assert not [(i, j) for i in placed for j in placed if i < j and meet(box[i], box[j], 1e-6)]
    dots = [(a - 5, b - 5, a + 5, b + 5) for a, b in zip(px, py)]
    assert not [(i, j) for i in placed for j in range(n) if meet(box[i], dots[j], 1e-6)]
    assert all(r[0] >= 0 and r[1] >= 0 and r[2] <= width and r[3] <= height for r in box.values())
    # a label is left out only when none of its places (8 directions x 4 distances) was free of the points and of
    # the labels placed before it, inside the plot
    for k, i in enumerate(order):
        if offsets[i] is not None:
            continue
        w = char * len(names[i])
        taken = [(px[j] - 5, py[j] - 5, px[j] + 5, py[j] + 5) for j in range(n)] + \
            [box[j] for j in order[:k] if j in box]
        for gap in (4, 16, 30, 46):
            for cx, cy in ((0, 1), (1, 0), (-1, 0), (0, -1), (0.7, 0.7), (-0.7, 0.7), (0.7, -0.7), (-0.7, -0.7)):
                a, b = px[i] + cx * (w / 2 + gap), py[i] + cy * (line / 2 + gap)
                r = (a - w / 2, b - line / 2, a + w / 2, b + line / 2)
                inside = r[0] >= 0 and r[1] >= 0 and r[2] <= width and r[3] <= height
                assert not inside or any(meet(r, o, 1e-6) for o in taken), (names[i], gap, cx, cy)
    assert None not in label_offsets(xs, ys, names, width, height, char_px=char, line_px=line)


@pytest.mark.parametrize("headers, phone", [
    ({"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
                    "Gecko) Version/18.0 Mobile/15E148 Safari/604.1"}, True),
    ({"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
      "sec-ch-ua-mobile": "?1"}, True),
    ({"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
      "Sec-CH-UA-Mobile": "?0"}, False),
    ({}, False),
])
def test_a_phone_is_told_by_its_request_headers(monkeypatch, headers, phone):
    import streamlit as st
    from streamlit.runtime.context import StreamlitHeaders

    from vit_explain_studio.benchmark_view import on_phone

    monkeypatch.setattr(st, "context", type("Context", (), {"headers": StreamlitHeaders(headers.items())})())
    assert on_phone() is phone


def test_the_phone_cost_chart_names_the_methods_it_leaves_unlabelled(fixture_results):
    """Drawn for a phone, the cost chart is taller, its labels smaller, and the crowded methods that get no label
    are named in ``meta`` (the page lists them under the chart); the desktop drawing labels every method."""
    import json

    from vit_explain_studio import benchmark_plots as bp

    data = json.loads((fixture_results / "summary.json").read_text())
    model, ref = data["models"][0], tuple(data["plan"]["reference"])
    # twenty more methods crowded around one spot: on a phone's plot some labels find no free place
    methods = model["evaluate"]["methods"]
    for i in range(20):
        methods[f"crowd_{i}"] = json.loads(json.dumps(methods["good"]))
        methods[f"crowd_{i}"]["metrics"]["seconds"]["mean"] = 1.0 + i / 100
        methods[f"crowd_{i}"]["metrics"]["deletion_auc"]["mean"] = 0.2 + i / 1000
    desktop = bp.cost(model, "deletion_auc", "Deletion AUC", ref)
    phone = bp.cost(model, "deletion_auc", "Deletion AUC", ref, phone=True)
    assert desktop.layout.meta["unlabelled"] == [] and desktop.layout.height < phone.layout.height
    assert len([a for a in desktop.layout.annotations if a.showarrow]) == len(methods) - len(ref)
    labels = {a.text: a.font.size for a in phone.layout.annotations if a.showarrow}
    left = phone.layout.meta["unlabelled"]
    assert left and not set(labels) & set(left) and len(labels) + len(left) == len(methods) - len(ref)
    assert set(labels.values()) == {9}
