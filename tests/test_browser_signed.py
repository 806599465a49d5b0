"""Signed maps in a real browser (Chromium through Playwright, ``streamlit run app.py`` headless): AttnLRP drawn
symmetric in bwr with its labelled colour strip, then the contrast "bull mastiff rather than tiger cat" on
both.png (red on the dog, blue on the cat), each at 1440 and 390 pixels wide, saved to
``test-output/browser/signed-*.png``."""

from __future__ import annotations

import re

import numpy as np
import pytest
from browser_support import OUT, app_server, choose, chromium, wait_idle
from PIL import Image

pytestmark = pytest.mark.browser

WAIT_MS = 240_000
DESKTOP, PHONE = {"width": 1440, "height": 900}, {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server():
    with app_server("streamlit-signed.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _red_and_blue(path) -> tuple[int, int]:
    """Strongly red and strongly blue pixels of a screenshot (bwr's two ends, blended over the photo)."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((r > 170) & (g < 90) & (b < 90)).sum()), int(((b > 170) & (r < 90) & (g < 110)).sum())


def _shot(page, name: str, strip=None) -> str:
    """A screenshot of the viewport (on a phone, scrolled to the colour strip); returns its path."""
    wait_idle(page, WAIT_MS)
    page.wait_for_timeout(800)  # the layout settles
    if strip is not None:
        strip.scroll_into_view_if_needed()
    path = OUT / f"signed-{name}.png"
    page.screenshot(path=str(path))
    return path


def _attnlrp(browser, server, viewport):
    """A new session on the LRP page with AttnLRP chosen; returns (page, main, the colour strip)."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport=viewport)
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(server + "/chefer", timeout=60_000)
    main = page.locator("[data-testid=stMain]")
    expect(main.get_by_role("heading", name="Transformer attribution (LRP)")).to_be_visible(timeout=WAIT_MS)
    expect(main.locator("[data-testid=stImage] img").first).to_be_visible(timeout=WAIT_MS)
    wait_idle(page, WAIT_MS)
    main.get_by_text("AttnLRP", exact=True).click()
    strip = main.locator("[data-testid=stImage]", has_text="against · white = 0").first
    expect(strip).to_be_visible(timeout=WAIT_MS)
    expect(main.get_by_text("Signed map:", exact=False)).to_be_visible(timeout=WAIT_MS)
    wait_idle(page, WAIT_MS)
    return page, main, strip


def test_attnlrp_and_a_contrast_drawn_signed(server, browser):
    from playwright.sync_api import expect

    # desktop: AttnLRP drawn symmetric with bwr, its strip labelled, the sentence on red and blue
    page, main, strip = _attnlrp(browser, server, DESKTOP)
    expect(main.get_by_role("combobox", name="Scaling")).to_have_value("symmetric")
    expect(main.get_by_role("combobox", name="Colour map").first).to_have_value("bwr")
    red, _ = _red_and_blue(_shot(page, "attnlrp-1440"))
    assert red > 200, red

    # the contrast "bull mastiff rather than tiger cat": both animals at once, in two colours
    sidebar = page.locator("[data-testid=stSidebar]")
    choose(page, sidebar.get_by_role("combobox", name="Explain"), "Contrast: A rather than B", typed="Contrast")
    wait_idle(page, WAIT_MS)
    second = sidebar.get_by_role("combobox", name="…rather than (B)")
    expect(second).to_be_visible(timeout=WAIT_MS)
    choose(page, second, re.compile(r"^282 · tiger cat"), typed="tiger cat")
    sentence = main.get_by_text("Signed map:", exact=False)
    expect(sentence).to_contain_text("tiger cat rather than bull mastiff", timeout=WAIT_MS)
    strip = main.locator("[data-testid=stImage]", has_text="against · white = 0").first
    red, blue = _red_and_blue(_shot(page, "contrast-1440"))
    assert red > 200 and blue > 200, (red, blue)
    page.set_viewport_size(PHONE)  # the same session on a phone: the overlay, then its strip in view
    red, blue = _red_and_blue(_shot(page, "contrast-390", strip))
    assert red > 100 and blue > 100, (red, blue)
    assert main.locator("[data-testid=stException]").count() == 0
    assert not page.errors, page.errors
    page.close()

    # a phone from the start: AttnLRP for the predicted class
    page, main, strip = _attnlrp(browser, server, PHONE)
    red, _ = _red_and_blue(_shot(page, "attnlrp-390", strip))
    assert red > 100, red
    assert not page.errors, page.errors
    page.close()
