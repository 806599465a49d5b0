"""The app in a real browser: ``streamlit run app.py`` headless on 127.0.0.1, driven with Playwright through
Chromium (``browser_support.chromium_path``: Debian's ``/usr/bin/chromium`` or Playwright's; ``make test``
installs one). The landing story (two maps for two classes), an upload, a page switch and a cheap slider,
Cancel on a long method, the phone layout, the model-field errors, the Evaluate state after a page switch,
and a screenshot of every page at 1440x900 and 390x844, all saved to ``test-output/browser/``."""

from __future__ import annotations

import pytest
from browser_support import OUT, app_server, choose, chromium, wait_idle
from conftest import ROOT, SAMPLES

pytestmark = pytest.mark.browser

WAIT_MS = 240_000  # the first model load and explanation on a busy 2-core CI machine
DESKTOP, PHONE = {"width": 1440, "height": 900}, {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server():
    with app_server("streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def new_page(browser, viewport=DESKTOP):
    page = browser.new_page(viewport=viewport)
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return page


def test_landing_story_upload_switch_page_slider(server, browser):
    from playwright.sync_api import expect

    page = new_page(browser, {"width": 1500, "height": 2000})
    page.goto(server, timeout=60_000)
    main = page.locator("[data-testid=stMain]")
    sidebar = page.locator("[data-testid=stSidebar]")

    # 1. the landing page: both.png explained for the bull mastiff and the tiger cat, side by side
    maps = main.locator("[data-testid=stImage]")
    expect(maps.filter(has_text="bull mastiff")).to_be_visible(timeout=WAIT_MS)
    expect(maps.filter(has_text="tiger cat")).to_be_visible(timeout=WAIT_MS)
    wait_idle(page, WAIT_MS)
    left, right = (maps.filter(has_text=t).bounding_box() for t in ("bull mastiff", "tiger cat"))
    assert abs(left["y"] - right["y"]) < 5 and right["x"] > left["x"] + left["width"] / 2  # side by side
    page.screenshot(path=str(OUT / "1-landing.png"))
    # one click explains another class in the right-hand map
    main.locator("[data-testid=stButtonGroup] button", has_text="boxer").click()
    expect(maps.filter(has_text="boxer")).to_be_visible(timeout=WAIT_MS)
    expect(maps.filter(has_text="bull mastiff")).to_be_visible()

    # 2. upload a photo
    sidebar.get_by_text("Upload", exact=True).click()
    data = (SAMPLES / "chelsea.png").read_bytes()
    sidebar.locator("input[type=file]").set_input_files(
        files=[{"name": "uploaded-cat.png", "mimeType": "image/png", "buffer": data}])
    expect(sidebar.get_by_text("uploaded-cat.png · 451×300")).to_be_visible(timeout=WAIT_MS)
    wait_idle(page, WAIT_MS)

    # 3. switch page: attention rollout (the upload stays selected); its class-agnostic map says so
    sidebar.get_by_role("link", name="Attention rollout").click()
    expect(main.get_by_role("heading", name="Attention rollout")).to_be_visible(timeout=WAIT_MS)
    overlay = main.locator("[data-testid=stImage] img").first
    expect(overlay).to_be_visible(timeout=WAIT_MS)
    expect(sidebar.get_by_text("uploaded-cat.png · 451×300")).to_be_visible()
    expect(main.get_by_text("class-agnostic", exact=False).first).to_be_visible(timeout=WAIT_MS)
    curves = main.locator(".js-plotly-plot", has_text="Insertion")
    expect(curves).to_be_visible(timeout=WAIT_MS)
    wait_idle(page, WAIT_MS)
    assert curves.locator(".scatterlayer .trace").count() >= 3  # the method and the two reference maps
    before = overlay.get_attribute("src")

    # 4. move a cheap slider: the discard ratio
    slider = main.locator("[data-testid=stSlider]", has_text="Discard ratio").get_by_role("slider")
    slider.focus()
    for _ in range(40):
        page.keyboard.press("ArrowLeft")
    expect(slider).to_have_attribute("aria-valuetext", "0.50", timeout=30_000)
    page.wait_for_function(
        "(src) => { const img = document.querySelector('[data-testid=stMain] [data-testid=stImage] img');"
        " return img && img.src !== src && img.complete && img.naturalWidth > 0; }", arg=before, timeout=WAIT_MS)
    wait_idle(page, WAIT_MS)
    expect(curves).to_have_count(1, timeout=60_000)
    page.screenshot(path=str(OUT / "2-attention-after-slider.png"))

    # 5. a long method can be cancelled while it runs
    sidebar.get_by_role("link", name="GradMask").click()
    expect(main.get_by_role("heading", name="GradMask")).to_be_visible(timeout=WAIT_MS)
    expect(main.locator("[data-testid=stImage]", has_text="GradMask").first).to_be_visible(timeout=WAIT_MS)
    wait_idle(page, WAIT_MS)
    masks = main.locator("[data-testid=stSlider]", has_text="Masks layer").get_by_role("slider")
    masks.focus()
    page.keyboard.press("End")  # 33 x 192 masked forward passes: long on any CPU
    main.get_by_role("button", name="Run").click()
    cancel = main.get_by_role("button", name="Cancel").first  # (a stale copy may show while the page reruns)
    expect(cancel).to_be_visible(timeout=WAIT_MS)
    cancel.click()
    # the previous result stays on the page, with the hint that the new values need Run
    expect(main.get_by_text("The result below is for the previous parameters", exact=False)).to_be_visible(
        timeout=WAIT_MS)
    expect(main.get_by_text("press Run", exact=False).first).to_be_visible()
    expect(main.locator("[data-testid=stImage]", has_text="GradMask").first).to_be_visible()
    wait_idle(page, WAIT_MS)
    page.screenshot(path=str(OUT / "3-gradmask-cancelled.png"))
    assert main.locator("[data-testid=stException]").count() == 0
    assert not page.errors, page.errors
    page.close()


def test_phone_layout_heatmap_on_the_first_screen(server, browser):
    from playwright.sync_api import expect

    page = new_page(browser, PHONE)
    for path in ("", "/attention"):
        page.goto(server + path, timeout=60_000)
        img = page.locator("[data-testid=stMain] [data-testid=stImage] img").first
        expect(img).to_be_visible(timeout=WAIT_MS)
        wait_idle(page, WAIT_MS)
        box = img.bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"], (path, box)
        assert box["width"] >= 0.8 * (PHONE["width"] - 40), (path, box)  # full width, not a thumbnail
    page.screenshot(path=str(OUT / "4-phone-attention.png"))
    assert not page.errors, page.errors
    page.close()


def test_model_field_errors_are_messages(server, browser):
    from playwright.sync_api import expect

    page = new_page(browser)
    page.goto(server, timeout=60_000)
    main, sidebar = page.locator("[data-testid=stMain]"), page.locator("[data-testid=stSidebar]")
    expect(main.locator("[data-testid=stImage]").first).to_be_visible(timeout=WAIT_MS)
    choose(page, sidebar.locator("[data-testid=stSelectbox]").first, "Other: timm name")
    field = sidebar.get_by_label("timm name, Hugging Face id, or local folder")
    for typed, words in (("resnet50", "could not be loaded"), ("/etc", "VIT_EXPLAIN_ALLOWED_PATHS")):
        field.fill(typed)
        field.press("Enter")
        expect(page.get_by_text(words, exact=False).first).to_be_visible(timeout=60_000)
        wait_idle(page, WAIT_MS)
        assert page.locator("[data-testid=stException]").count() == 0
        page.screenshot(path=str(OUT / f"5-model-error-{typed.strip('/')}.png"))
    assert not page.errors, page.errors
    page.close()


def test_evaluate_keeps_its_result_across_page_switches(server, browser):
    from playwright.sync_api import expect

    page = new_page(browser)
    page.goto(f"{server}/evaluate", timeout=60_000)
    main, sidebar = page.locator("[data-testid=stMain]"), page.locator("[data-testid=stSidebar]")
    run = main.get_by_role("button", name="Run the evaluation")
    expect(run).to_be_enabled(timeout=WAIT_MS)
    expect(sidebar.get_by_text("Target class")).to_have_count(0)  # no sidebar target on Evaluate
    wait_idle(page, WAIT_MS)
    run.click()
    expect(main.get_by_text("Summary (mean ± 95% confidence interval)")).to_be_visible(timeout=WAIT_MS)
    wait_idle(page, WAIT_MS)
    sidebar.get_by_role("link", name="Compare").click()
    expect(main.get_by_role("heading", name="Compare methods")).to_be_visible(timeout=WAIT_MS)
    sidebar.get_by_role("link", name="Evaluate").click()
    expect(main.get_by_text("Summary (mean ± 95% confidence interval)")).to_be_visible(timeout=WAIT_MS)
    expect(main.get_by_role("button", name="Summary CSV")).to_be_visible()
    page.screenshot(path=str(OUT / "6-evaluate-after-switch.png"), full_page=True)
    assert not page.errors, page.errors
    page.close()


def test_screenshots_of_every_page_at_both_widths(server, browser):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    from vit_explain_studio import settings

    keys = ["home", *(s.key for s in settings.EXPLAINER_PAGES if s.available()), "compare", "evaluate",
            "attention_browser"]
    if (ROOT / "vit_explain_studio" / "app_pages" / "sanity.py").exists():
        keys.append("sanity")

    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = new_page(browser, viewport)
        for key in keys:
            page.goto(server + ("" if key == "home" else f"/{key}"), timeout=60_000)
            expect(page.locator("[data-testid=stMain] h1").first).to_be_visible(timeout=WAIT_MS)
            page.wait_for_timeout(1500)  # the run has started (the status widget shows) before waiting for its end
            try:  # a many-pass method (RISE: thousands of masked passes) may still run: its progress is shown
                wait_idle(page, 120_000)
            except PlaywrightTimeout:
                pass
            page.screenshot(path=str(OUT / f"page-{key}-{name}.png"))
            assert page.locator("[data-testid=stException]").count() == 0, key
        assert not page.errors, page.errors
        page.close()


def test_attention_browser_click_a_patch(server, browser):
    """The attention browser: a click on a patch of the picker makes it the query (outlined, named in the
    caption); the layer slider redraws the head grid."""
    from playwright.sync_api import expect

    page = new_page(browser, {"width": 1440, "height": 1100})
    page.goto(f"{server}/attention_browser", timeout=60_000)
    main = page.locator("[data-testid=stMain]")
    heads = main.locator(".js-plotly-plot", has_text="every head")
    expect(heads).to_be_visible(timeout=WAIT_MS)
    wait_idle(page, WAIT_MS)
    assert heads.locator(".heatmaplayer .hm").count() == 3  # DeiT-Tiny: 3 heads
    picker = main.locator(".js-plotly-plot", has_text="Click a patch")
    area = picker.locator(".nsewdrag").first.bounding_box()
    page.mouse.click(area["x"] + area["width"] * 9.5 / 14, area["y"] + area["height"] * 5.5 / 14)
    expect(main.get_by_text("patch (row 5, column 9)", exact=False)).to_be_visible(timeout=60_000)
    wait_idle(page, WAIT_MS)
    slider = main.locator("[data-testid=stSlider]", has_text="Layer").get_by_role("slider")
    slider.focus()
    page.keyboard.press("Home")
    expect(main.get_by_text("layer 1 of 12", exact=False)).to_be_visible(timeout=60_000)
    wait_idle(page, WAIT_MS)
    page.screenshot(path=str(OUT / "7-attention-browser-patch.png"))
    assert main.locator("[data-testid=stException]").count() == 0
    assert not page.errors, page.errors
    page.close()
