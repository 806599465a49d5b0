"""Signed maps in a real browser (Chromium through Playwright, ``streamlit run app.py`` headless): AttnLRP drawn
symmetric in bwr with its labelled colour strip, then the contrast "bull mastiff rather than tiger cat" on
both.png (red on the dog, blue on the cat), each at 1440 and 390 pixels wide, saved to
``test-output/browser/signed-*.png``."""

from __future__ import annotations

import re

import numpy as np
import pytest
from browser_support import launch, streamlit_server, wait_idle
from conftest import ROOT, WEIGHTS, _require
from PIL import Image

pytestmark = pytest.mark.browser

OUT = ROOT / "test-output" / "browser"
WAIT_MS = 240_000
DESKTOP, PHONE = {"width": 1440, "height": 900}, {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server():
    OUT.mkdir(parents=True, exist_ok=True)
    with streamlit_server(env={"VIT_EXPLAIN_WEIGHTS": str(_require(WEIGHTS))},
                          log_path=OUT / "streamlit-signed.log") as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()


def _red_and_blue(path) -> tuple[int, int]:
    """Strongly red and strongly blue pixels of a screenshot (bwr's two ends, blended over the photo)."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((r > 170) & (g < 90) & (b < 90)).sum()), int(((b > 170) & (r < 90) & (g < 110)).sum())


def _both_widths(page, name: str, strip) -> list:
    """Screenshots at 1440 and 390 pixels wide (the overlay and its strip in view); returns the paths."""
    paths = []
    for label, size in (("1440", DESKTOP), ("390", PHONE)):
        page.set_viewport_size(size)
        wait_idle(page, WAIT_MS)
        page.wait_for_timeout(800)  # the layout settles after the resize
        if label == "390":
            strip.scroll_into_view_if_needed()
        path = OUT / f"signed-{name}-{label}.png"
        page.screenshot(path=str(path))
        paths.append(path)
    page.set_viewport_size(DESKTOP)
    return paths


def test_attnlrp_and_a_contrast_drawn_signed(server, browser):
    from playwright.sync_api import expect

    page = browser.new_page(viewport=DESKTOP)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/chefer", timeout=60_000)
    main = page.locator("[data-testid=stMain]")
    sidebar = page.locator("[data-testid=stSidebar]")
    expect(main.get_by_role("heading", name="Transformer attribution (LRP)")).to_be_visible(timeout=WAIT_MS)
    expect(main.locator("[data-testid=stImage] img").first).to_be_visible(timeout=WAIT_MS)
    wait_idle(page, WAIT_MS)
    main.get_by_text("Compute curves").click()  # the curves are not what this test looks at
    wait_idle(page, WAIT_MS)

    # AttnLRP: symmetric, bwr, a labelled strip and the sentence on red and blue
    main.get_by_text("AttnLRP", exact=True).click()
    strip = main.locator("[data-testid=stImage]", has_text="against · white = 0").first
    expect(strip).to_be_visible(timeout=WAIT_MS)
    expect(main.get_by_text("Signed map:", exact=False)).to_be_visible(timeout=WAIT_MS)
    expect(main.locator("[data-testid=stSelectbox]", has_text="Scaling")).to_contain_text("symmetric")
    wait_idle(page, WAIT_MS)
    for path in _both_widths(page, "attnlrp", strip):
        red, _ = _red_and_blue(path)
        assert red > 200, (path, red)

    # the contrast "bull mastiff rather than tiger cat": both animals at once, in two colours
    sidebar.locator("[data-testid=stSelectbox]").first.click()
    page.get_by_role("option", name="Contrast: A rather than B").click()
    wait_idle(page, WAIT_MS)
    second = sidebar.locator("[data-testid=stSelectbox]", has_text="rather than (B)")
    expect(second).to_be_visible(timeout=WAIT_MS)
    second.click()
    page.keyboard.type("tiger cat")
    page.get_by_role("option", name=re.compile(r"^282 · tiger cat")).click()
    expect(main.get_by_text("rather than tiger cat", exact=False).first).to_be_visible(timeout=WAIT_MS)
    sentence = main.get_by_text("Signed map:", exact=False)
    expect(sentence).to_contain_text("tiger cat rather than bull mastiff", timeout=WAIT_MS)
    wait_idle(page, WAIT_MS)
    strip = main.locator("[data-testid=stImage]", has_text="against · white = 0").first
    for path in _both_widths(page, "contrast", strip):
        red, blue = _red_and_blue(path)
        assert red > 200 and blue > 200, (path, red, blue)
    assert main.locator("[data-testid=stException]").count() == 0
    assert not errors, errors
    page.close()
