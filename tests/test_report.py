"""What a reader of the tiny study's report.html sees in a 1400 x 900 browser window and on a 390 x 844 phone
(headless Chromium): the front page opens on its title, the answer and the verdict table, and every figure and
table is seen from its top.

Snakemake's report centres its main pane vertically, so anything taller than the window loses its top, out of
reach of the scroll bar: only a browser shows that, not the HTML's text.
"""

import json
import os

import pytest

from browser import Browser, find_chromium

WINDOW = (1400, 900)
PHONE = (390, 844)

pytestmark = pytest.mark.skipif(
    find_chromium() is None and not os.environ.get("CI"),
    reason="chromium is not installed (Debian: apt-get install chromium, as .ci/run does); on CI it must run",
)

# Resolves once the selector matches an element for which `ready` holds (an image: decoded), else fails after 10 s.
WAIT_FOR = """new Promise((resolve, reject) => {
    const start = Date.now();
    (function poll() {
        const el = document.querySelector(%s);
        if (el && (el.tagName !== "IMG" || (el.complete && el.naturalWidth > 0))) resolve(true);
        else if (Date.now() - start > 10000) reject(new Error("not shown: " + %s));
        else setTimeout(poll, 50);
    })();
})"""
RECT = "JSON.stringify(document.querySelector(%s).getBoundingClientRect())"


def wait_for(browser, selector):
    browser.evaluate(WAIT_FOR % (json.dumps(selector), json.dumps(selector)))


def rect(browser, selector) -> dict:
    return json.loads(browser.evaluate(RECT % json.dumps(selector)))


def show(browser, path, content):
    """Open a result as its eye button in the report's menu does (the same call of the report's app)."""
    browser.evaluate(
        f"app.setView({{content: {json.dumps(content)}, contentPath: results[{json.dumps(path)}].data_uri,"
        f" resultPath: {json.dumps(path)}}})"
    )


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    """Where the screenshots go, to look at when a test fails (under pytest's --basetemp)."""
    return tmp_path_factory.mktemp("report_screenshots")


@pytest.mark.parametrize("window", [WINDOW, PHONE], ids=["desktop", "phone"])
def test_the_front_page_opens_on_its_title_the_answer_and_the_verdict_table(tiny_report, screenshots, window):
    with Browser(*window) as browser:
        browser.open(tiny_report)
        wait_for(browser, ".prose table")
        browser.screenshot(screenshots / f"front_page_{window[0]}.png")
        width, height = browser.evaluate("innerWidth"), browser.evaluate("innerHeight")
        title, table = rect(browser, ".prose h1"), rect(browser, ".prose table")
        answer = rect(browser, ".prose h1 ~ p")  # the answer's first sentence, right below the title
        assert "is the encoder really" in browser.evaluate("document.querySelector('.prose h1').textContent")
        first = browser.evaluate("document.querySelector('.prose h1 ~ p').textContent")
        assert first.startswith("Is the encoder what encodes?"), first
        for box in (title, answer, table):  # wholly inside the first screen, neither cut above nor at a side
            inside = 0 <= box["top"] and box["bottom"] <= height and 0 <= box["left"] and box["right"] <= width
            assert inside, (box, window)
        assert title["bottom"] <= answer["top"] <= table["top"]


def test_every_figure_and_table_is_seen_from_its_top(tiny_report, screenshots):
    with Browser(*WINDOW) as browser:
        browser.open(tiny_report)
        wait_for(browser, ".prose h1")
        items = json.loads(
            browser.evaluate("JSON.stringify(Object.entries(results).map(([p, r]) => [p, r.mime_type]))")
        )
        figures = [path for path, mime in items if mime == "image/png"]
        pages = [path for path, mime in items if mime == "text/html"]
        assert len(figures) > 15 and "results/paper/findings.html" in pages and len(pages) == 5, items
        height, cut = browser.evaluate("innerHeight"), []
        for path in figures:
            show(browser, path, "img")
            wait_for(browser, f'img[src="{browser.evaluate(f"results[{json.dumps(path)}].data_uri")}"]')
            box = rect(browser, "img")
            if box["top"] < 0 or box["bottom"] > height:
                browser.screenshot(screenshots / (path.replace("/", "_")))
                cut.append((path, round(box["top"]), round(box["height"])))
        assert not cut, f"figures that lose their top in a {WINDOW} window (path, top, height): {cut}"
        for path in pages:  # an HTML result scrolls in a frame of its own: the frame must fit
            show(browser, path, "html")
            wait_for(browser, "iframe")
            box = rect(browser, "iframe")
            assert box["top"] >= 0 and box["bottom"] <= height, (path, box)
        browser.screenshot(screenshots / "last_table.png")
