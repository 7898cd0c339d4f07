"""``sosc-app``: the page's functions, and the page itself in a real headless browser.

The browser test needs the ``app`` extra (Gradio), selenium (dev extra) and Debian's
``chromium`` and ``chromium-driver`` (``apt-get install -y chromium chromium-driver``); it is
skipped, saying which is missing, without them, unless ``CI=true`` (as ``.ci/run`` runs: ``make
test`` installs all of it) or ``SOSC_REQUIRE_BROWSER=1``, which turn the skip into a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from sosc import app
from sosc.errors import SoscError

SHIFT = (40, 30)  # the target is the source cropped by (dx, dy): each point moves by -SHIFT
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,1800")


@pytest.fixture(scope="module")
def cat_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    image = skdata.chelsea()  # 451 x 300
    Image.fromarray(image).save(folder / "src.png")
    Image.fromarray(image[SHIFT[1]:, SHIFT[0]:]).save(folder / "trg.png")
    return folder / "src.png", folder / "trg.png"


class TestPageFunctions:
    def test_run_match_gives_the_figure_the_table_and_the_json(self, cat_pair):
        src, trg = (np.asarray(Image.open(p)) for p in cat_pair)
        figure, table, text, status = app.run_match(src, trg, "150,100 300,150", app.FEATURE, None, True)
        result = json.loads(text)
        assert figure.dtype == np.uint8 and figure.shape[1] > 600
        assert [row[0] for row in table] == [1, 2] and table[0][5:7] == result["kps"][0]
        truth = np.array([[150, 100], [300, 150]]) - SHIFT
        assert np.abs(np.array(result["kps"]) - truth).max() < 0.05 * 451
        assert result["trg_size"] == [270, 411] and "KBC" in status

    def test_user_mistakes_are_named(self, cat_pair):
        src = np.asarray(Image.open(cat_pair[0]))
        with pytest.raises(SoscError, match="target image: drop an image"):
            app.run_match(src, None, "1,1", app.FEATURE, None, True)
        with pytest.raises(SoscError, match="click on the source image"):
            app.run_match(src, src, " ", app.FEATURE, None, True)
        with pytest.raises(SoscError, match="checkpoint 'nope.ckpt' not found"):
            app.run_match(src, src, "1,1", app.CHECKPOINT, "nope.ckpt", True)

    def test_points_round_trip_and_are_drawn(self):
        assert np.allclose(app.read_points(app.format_points([[1.25, 2], [3, 4]])), [[1.2, 2.0], [3.0, 4.0]])
        image = np.zeros((50, 60, 3), np.uint8)
        drawn = app.draw_points(image, [[30, 25]])
        assert drawn.shape == image.shape and drawn[25, 30].tolist() == [0x4D, 0xA3, 0xFF]  # keypoint 1's colour

    def test_help_needs_no_gradio(self):
        out = subprocess.run([sys.executable, "-m", "sosc.app", "--help"], capture_output=True, text=True, check=True)
        assert "--port" in out.stdout and "offline" in out.stdout


def missing_for_the_browser_test() -> str | None:
    for module, extra in (("gradio", "the app extra: pip install -e '.[app]'"),
                          ("selenium", "selenium (dev extra): pip install -e '.[dev]'")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed ({extra})"
    for path, package in ((CHROMIUM, "chromium"), (DRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: apt-get install -y chromium chromium-driver ({package})"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """``python -m sosc.app`` on a free port of 127.0.0.1; yields its URL."""
    missing = missing_for_the_browser_test()
    if missing:
        if os.environ.get("SOSC_REQUIRE_BROWSER", "") not in ("", "0") or os.environ.get("CI") == "true":
            pytest.fail(f"the browser test must run here (CI=true or SOSC_REQUIRE_BROWSER=1) but {missing}")
        pytest.skip(missing)
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "sosc.app", "--port", str(port)], stdout=log,
                              stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sosc-app did not serve {url}:\n" + (tmp_path / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_the_page_in_a_real_browser(served, browser, cat_pair, tmp_path):
    """Load the page, drop both images, click three source points (and undo one), match, read
    the predicted coordinates off the page; nothing but 127.0.0.1 is contacted."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def find(css):
        return browser.find_element(By.CSS_SELECTOR, css)

    def points_text():
        return find("#src-kps textarea, #src-kps input").get_attribute("value").split()

    browser.get(served)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#src-image input[type=file]"))
    find("#src-image input[type=file]").send_keys(str(cat_pair[0]))
    find("#trg-image input[type=file]").send_keys(str(cat_pair[1]))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#src-image img") and
               d.find_elements(By.CSS_SELECTOR, "#trg-image img"))

    clicks = [(0.33, 0.33), (0.9, 0.9), (0.66, 0.5), (0.45, 0.7)]
    count = 0
    for k, (fx, fy) in enumerate(clicks):
        image = find("#src-image img")
        width, height = image.size["width"], image.size["height"]
        ActionChains(browser).move_to_element_with_offset(image, round((fx - 0.5) * width),
                                                          round((fy - 0.5) * height)).click().perform()
        count += 1
        wait.until(lambda d, n=count: len(points_text()) == n)
        if k == 1:  # a slip: undo it
            find("#undo").click()
            count -= 1
            wait.until(lambda d, n=count: len(points_text()) == n)
    clicked = np.array([[float(v) for v in p.split(",")] for p in points_text()])
    scale = 451 / width  # the page shows the image at width px
    expected = np.array([[fx * 451, fy * 300] for fx, fy in (clicks[0], clicks[2], clicks[3])])
    assert np.abs(clicked - expected).max() <= 2 * scale + 1, (clicked, expected)

    find("#match").click()
    result_box = "#result-json textarea"
    WebDriverWait(browser, 180).until(lambda d: find(result_box).get_attribute("value"))
    result = json.loads(find(result_box).get_attribute("value"))
    assert result["src_kps"] == clicked.tolist() and len(result["kps"]) == 3
    truth = clicked - SHIFT
    assert np.abs(np.array(result["kps"]) - truth).max() < 0.05 * 451, (result["kps"], truth)
    # the table shows the same predictions
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#table [role=row][data-index]")) == 3)
    for row in range(3):  # the "with KBC x, y" columns
        cells = [find(f'#table [role=gridcell][data-row="{row}"][data-col="{col}"]').text for col in (5, 6)]
        assert [float(c) for c in cells] == pytest.approx(result["kps"][row], abs=0.01)
    figure = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#figure img"))[0]
    assert int(figure.get_attribute("naturalWidth")) > 600
    assert "KBC" in find("#status").text
    browser.save_screenshot(str(tmp_path / "page.png"))

    # offline: every request the page made went to the app itself
    urls = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            urls.add(message["params"].get("request", {}).get("url") or message["params"].get("url", ""))
    outside = sorted(u for u in urls if u.split(":")[0] in ("http", "https", "ws", "wss")
                     and u.split("/")[2].split(":")[0] not in ("127.0.0.1", "localhost"))
    assert not outside, outside

