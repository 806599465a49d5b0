"""A text prompt in a real browser (issue 11): the app serves a tiny randomly initialised CLIP (HF ``CLIPModel`` with
its tokenizer, saved to a folder and set as the default model), the sidebar offers the zero-shot top-5 and a prompt
field; typing "a dog" redraws the map and its caption. Screenshots at 1440x900 and 390x844 go to
``test-output/browser/`` with the other browser tests'."""

from __future__ import annotations

import pytest
import test_browser
from browser_support import choose, streamlit_server, wait_idle
from conftest import ROOT
from test_app_targets import save_tiny_clip

pytestmark = pytest.mark.browser

OUT = ROOT / "test-output" / "browser"
WAIT_MS = 240_000
DESKTOP, PHONE = {"width": 1440, "height": 900}, {"width": 390, "height": 844}
browser = test_browser.browser  # the shared headless Chromium fixture


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = save_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")
    OUT.mkdir(parents=True, exist_ok=True)
    env = {"VIT_EXPLAIN_MODEL": str(folder), "VIT_EXPLAIN_WEIGHTS": str(folder),
           "VIT_EXPLAIN_ALLOWED_PATHS": str(folder.parent)}
    with streamlit_server(env=env, log_path=OUT / "streamlit-text.log") as (url, _):
        yield url


def _open_gradients(browser, server, viewport):
    from playwright.sync_api import expect

    page = browser.new_page(viewport=viewport)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/gradients", timeout=60_000)
    main = page.locator("[data-testid=stMain]")
    expect(main.get_by_text("Explained", exact=False).first).to_be_visible(timeout=WAIT_MS)
    wait_idle(page, WAIT_MS)
    return page, main, errors


def test_typing_a_prompt_changes_the_map_and_caption(server, browser):
    from playwright.sync_api import expect

    page, main, errors = _open_gradients(browser, server, DESKTOP)
    sidebar = page.locator("[data-testid=stSidebar]")
    expect(sidebar.get_by_text("Zero-shot top-5")).to_be_visible()
    pills = sidebar.locator("[data-testid=stElementContainer]", has_text="Zero-shot top-5").locator(
        "button", has_text="%")
    assert pills.count() == 5  # the five labels, one click each
    caption = main.get_by_text("Explained **", exact=False)
    first = main.locator("[data-testid=stCaptionContainer]", has_text="Explained").first.inner_text()
    assert "text: '" in first and "a dog" not in first
    overlay = main.locator("[data-testid=stImage] img").first
    before = overlay.get_attribute("src")

    box = sidebar.get_by_role("textbox", name="…or type a prompt")
    box.fill("a dog")
    box.press("Enter")
    expect(main.locator("[data-testid=stCaptionContainer]", has_text="text: 'a dog'").first).to_be_visible(
        timeout=WAIT_MS)
    page.wait_for_function(
        "(src) => { const img = document.querySelector('[data-testid=stMain] [data-testid=stImage] img');"
        " return img && img.src !== src && img.complete && img.naturalWidth > 0; }", arg=before, timeout=WAIT_MS)
    wait_idle(page, WAIT_MS)
    assert caption.count() == 0  # the markdown is rendered, not shown raw
    assert not page.locator("[data-testid=stException]").count()
    page.screenshot(path=str(OUT / "text-prompt-desktop.png"))
    # "similar to a region": the region is outlined on the image in the sidebar, the caption names it
    choose(page, sidebar.get_by_role("combobox", name="Explain"), "Similar to a region")
    expect(main.locator("[data-testid=stCaptionContainer]", has_text="similarity to patch rows 4–10").first
           ).to_be_visible(timeout=WAIT_MS)
    expect(sidebar.get_by_text("The region: rows 4–10, columns 4–10")).to_be_visible()
    wait_idle(page, WAIT_MS)
    sidebar.get_by_text("The region: rows").scroll_into_view_if_needed()
    page.screenshot(path=str(OUT / "text-region-desktop.png"))
    assert not errors, errors
    page.close()

    # the phone layout: the sidebar is collapsed, the map and its caption come first
    page, main, errors = _open_gradients(browser, server, PHONE)
    img = main.locator("[data-testid=stImage] img").first
    expect(img).to_be_visible(timeout=WAIT_MS)
    bb = img.bounding_box()
    assert bb["width"] <= PHONE["width"] and bb["x"] >= 0
    page.screenshot(path=str(OUT / "text-prompt-phone.png"))
    page.get_by_test_id("stExpandSidebarButton").click()
    sidebar = page.locator("[data-testid=stSidebar]")
    expect(sidebar.get_by_text("Zero-shot top-5")).to_be_visible(timeout=30_000)
    sidebar.get_by_text("Zero-shot top-5").scroll_into_view_if_needed()
    page.screenshot(path=str(OUT / "text-prompt-phone-sidebar.png"))
    assert not errors, errors
    page.close()
