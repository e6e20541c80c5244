"""End to end in a real headless browser: Debian's chromium driven by playwright.

Starts ``streamlit run apps/workbench.py`` on a tiny analysed run, then: opens the app,
goes to the Head atlas, moves the checkpoint slider, opens a head by clicking its cell in
the grid, and finds the circuitsvis attention view drawn inside its iframe (from the JS
bundled in the circuitsvis wheel: the browser here has no internet). Screenshots of each
step go to ``$INTERP_SCREENSHOTS`` when it is set.

The browser is found at ``$INTERP_CHROMIUM``, else ``chromium`` on the PATH
(``scripts/install.sh --dev`` installs Debian's package where it can). A missing browser
fails the test rather than skipping it, so CI cannot pass without running it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from conftest import make_analysed_run

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "apps"))
from serve import CHROMIUM_ARGS, chromium_path, start_app  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_analysed_run(tmp_path_factory.mktemp("browser-runs"))
    proc, url = start_app(root, env=dict(os.environ, INTERP_CACHE=str(root.parent / "cache")))
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def browser_path() -> str:
    path = chromium_path()
    if not path:
        pytest.fail("the browser test needs Debian's chromium: run 'scripts/install.sh --dev' as root, "
                    "or 'apt-get install chromium', or set INTERP_CHROMIUM to a Chromium binary")
    return path


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(server)
        yield page
        browser.close()


def shot(page, name: str) -> None:
    folder = os.environ.get("INTERP_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def _view(page, name: str) -> None:
    page.locator("section[data-testid='stSidebar'] label").filter(has_text=name).first.click()
    page.get_by_role("heading", name=name.replace("Head detail", "Head ")).first.wait_for()


def test_open_atlas_move_slider_click_a_head_and_see_circuitsvis(page):
    page.get_by_text("interp workbench").first.wait_for()
    page.get_by_text("tiny").first.wait_for()  # the Runs table lists the run
    shot(page, "1-runs")

    _view(page, "Head atlas")
    caption = page.get_by_text("induction heads found").first
    caption.wait_for()
    last_step = caption.inner_text()
    slider = page.get_by_role("slider").first
    slider.focus()
    slider.press("Home")  # the first checkpoint
    page.wait_for_function("() => [...document.querySelectorAll('p')].some(p => p.innerText.startsWith('step 0,'))")
    assert caption.inner_text() != last_step

    # Click the grid cell of head 1.1 (vega draws each cell as an SVG path labelled with its data).
    cell = page.locator('[data-testid="stVegaLiteChart"] path[aria-label^="head: 1; layer: 1;"]').first
    cell.wait_for()
    shot(page, "2-atlas-step0")
    cell.click()
    page.get_by_role("heading", name="Attention pattern of head 1.1").wait_for()
    shot(page, "3-head-detail")

    frame = _circuitsvis_frame(page)
    # AttentionPattern draws a chart.js canvas: it must exist, have a size and hold pixels.
    drawn = frame.evaluate("""() => {
        const canvas = document.querySelector('[id^="circuits-vis"] canvas');
        if (!canvas || canvas.width < 50 || canvas.height < 50) return 0;
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let painted = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
        return painted / (canvas.width * canvas.height); }""")
    assert drawn > 0.2, f"the circuitsvis attention view is blank ({drawn:.0%} of its canvas painted)"


def _circuitsvis_frame(page, timeout: float = 60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for frame in page.frames:
            try:
                if frame.evaluate("() => !!document.querySelector('[id^=\"circuits-vis\"]')"):
                    frame.wait_for_function(
                        "() => document.querySelector('[id^=\"circuits-vis\"]').children.length > 0")
                    return frame
            except Exception:  # a frame detached while we looked; look again
                continue
        time.sleep(0.3)
    raise AssertionError("no iframe with a circuitsvis view appeared")
