"""The "Inside the model" page in a real browser (Chromium via Playwright, ``streamlit run app.py`` on 127.0.0.1):
the three views at 1440 px and 390 px, a click on a cell of the head grid showing that head's attention;
screenshots in ``test-output/browser/inside-*.png``."""

from __future__ import annotations

import pytest
from browser_support import OUT, app_server, chromium, wait_idle

pytestmark = pytest.mark.browser

WAIT_MS = 240_000
DESKTOP, PHONE = {"width": 1440, "height": 1000}, {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server():
    with app_server("streamlit-inside.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _open(browser, server, viewport):
    from playwright.sync_api import expect

    page = browser.new_page(viewport=viewport)
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(f"{server}/inside", timeout=60_000)
    main = page.locator("[data-testid=stMain]")
    expect(main.locator(".js-plotly-plot", has_text="Logit lens")).to_be_visible(timeout=WAIT_MS)
    wait_idle(page, WAIT_MS)
    return page, main


CHARTS = {"Logit lens": "Logit lens:", "Head importance": "one head removed", "Artefact tokens": "Token norms after"}


def _view(page, main, label: str, ready: str):
    """Switch the view; wait for its text and chart, for the other views' charts to be gone, and for the images."""
    from playwright.sync_api import expect

    main.locator("[data-testid=stButtonGroup]").get_by_text(label, exact=True).click()
    expect(main.get_by_text(ready, exact=False).first).to_be_visible(timeout=WAIT_MS)
    expect(main.locator(".js-plotly-plot", has_text=CHARTS[label]).first).to_be_visible(timeout=WAIT_MS)
    for other, title in CHARTS.items():
        if other != label:
            expect(main.locator(".js-plotly-plot", has_text=title)).to_have_count(0, timeout=WAIT_MS)
    wait_idle(page, WAIT_MS)
    page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=60_000)


def _clean(page, main):
    assert main.locator("[data-testid=stException]").count() == 0
    assert not page.errors, page.errors


def test_inside_page_desktop_click_a_head(server, browser):
    from playwright.sync_api import expect

    page, main = _open(browser, server, DESKTOP)
    assert main.locator("[data-testid=stImage] img").count() >= 12  # one tile per block of DeiT-Tiny
    page.screenshot(path=str(OUT / "inside-lens-desktop.png"), full_page=True)
    _view(page, main, "Head importance", "Click a cell")
    grid = main.locator(".js-plotly-plot", has_text="one head removed")
    area = grid.locator(".nsewdrag").first.bounding_box()
    L, H = 12, 3
    page.mouse.click(area["x"] + area["width"] * 1.5 / H, area["y"] + area["height"] * 3.5 / L)  # block 4, head 2
    expect(main.get_by_text("Block 4, head 2", exact=False)).to_be_visible(timeout=60_000)
    wait_idle(page, WAIT_MS)
    page.screenshot(path=str(OUT / "inside-heads-desktop.png"), full_page=True)
    _view(page, main, "Artefact tokens", "high-norm token")
    page.screenshot(path=str(OUT / "inside-norms-desktop.png"), full_page=True)
    _clean(page, main)
    page.close()


def test_inside_page_phone(server, browser):
    page, main = _open(browser, server, PHONE)
    page.screenshot(path=str(OUT / "inside-lens-phone.png"), full_page=True)
    _view(page, main, "Head importance", "Click a cell")
    page.screenshot(path=str(OUT / "inside-heads-phone.png"), full_page=True)
    _view(page, main, "Artefact tokens", "high-norm token")
    page.screenshot(path=str(OUT / "inside-norms-phone.png"), full_page=True)
    _clean(page, main)
    page.close()
