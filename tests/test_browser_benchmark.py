"""The Benchmark page in a real browser (Chromium through Playwright, ``streamlit run app.py`` headless) on a
constructed results tree (tests/results_fixture.py, via ``VIT_EXPLAIN_RESULTS``): the page draws its charts and
tables without an error at desktop (1440 px) and phone (390 px) width, the phone layout does not scroll sideways,
a phone's browser (told by its User-Agent) gets the cost chart drawn for a phone (taller), and both are saved
to ``test-output/browser/benchmark-*.png``."""

from __future__ import annotations

import sys
import time

import pytest
from browser_support import OUT, app_server, chromium, wait_idle
from conftest import ROOT
from results_fixture import build

pytestmark = pytest.mark.browser

sys.path.insert(0, str(ROOT / "benchmarks"))
import results_data as D  # noqa: E402
import run_reference as plan  # noqa: E402

WAIT_MS = 240_000
# tall enough for the whole page in one screenshot (Streamlit scrolls its main area, not the document)
VIEWPORTS = {"desktop": {"width": 1440, "height": 2800}, "phone": {"width": 390, "height": 5200}}
# the phone as a phone's browser presents itself (a Pixel's Chrome): the cost chart is drawn for it
PHONE = {"user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
                       "Chrome/131.0.0.0 Mobile Safari/537.36", "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:  # the small plan of tests/test_benchmark_results.py
        mp.setattr(plan, "TIERS", (("cheap", ("good", "flat", "random", "gaussian")), ("heavy", ("rise",))))
        mp.setattr(plan, "MODELS", (plan.Model("m1", "Model One", ""), plan.Model("m2", "Model Two", "")))
        mp.setattr(plan, "EVAL_IMAGES", 6)
        mp.setattr(plan, "SANITY_IMAGES", 4)
        mp.setattr(plan, "HEAVY_SANITY_IMAGES", 2)
        D.write_json(build(root), root / "summary.json")
    with app_server("streamlit-benchmark.log", env={"VIT_EXPLAIN_RESULTS": str(root)}) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def test_benchmark_page_at_desktop_and_phone_width(server, browser):
    from playwright.sync_api import expect

    for name, viewport in VIEWPORTS.items():
        page = browser.new_page(viewport=viewport, **(PHONE if name == "phone" else {}))
        errors = []
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        t0 = time.perf_counter()
        page.goto(server + "/benchmark", timeout=60_000)
        main = page.locator("[data-testid=stMain]")
        expect(main.locator("h1").first).to_have_text("Benchmark", timeout=WAIT_MS)
        expect(main.locator(".js-plotly-plot").first).to_be_visible(timeout=WAIT_MS)
        print(f"{name}: ranking chart visible {time.perf_counter() - t0:.2f} s after the request")
        page.wait_for_timeout(1000)
        wait_idle(page, WAIT_MS)
        expect(main.locator(".js-plotly-plot")).to_have_count(4)  # ranking, two curves, cost
        expect(main.locator("[data-testid=stDataFrame]")).to_have_count(2)  # ranking and sanity tables
        expect(main.get_by_text("Complete: every method on every planned image.")).to_be_visible()
        assert main.locator("[data-testid=stException]").count() == 0
        cost_height = main.locator(".js-plotly-plot").nth(3).bounding_box()["height"]
        assert cost_height == pytest.approx(640 if name == "phone" else 480, abs=2), (name, cost_height)
        if name == "phone":
            width = page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= viewport["width"] + 1, width
        page.screenshot(path=str(OUT / f"benchmark-{name}.png"))
        assert not errors, errors
        page.close()
