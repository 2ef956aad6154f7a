"""The page in a real headless Chromium against a real uvicorn server: pick photos, wait for the
results, check their size and color, move the before/after slider, download all as a zip.

Needs the Debian packages ``chromium`` and ``chromium-driver`` and the pip package ``selenium``.
"""

from __future__ import annotations

import base64
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_photo, uvicorn_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,900"]
SCREENSHOT_COPY = Path(tempfile.gettempdir()) / "web_screenshot.png"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()),
    reason="needs a headless Chromium: apt-get install chromium chromium-driver")
pytest.importorskip("selenium", reason="needs selenium: pip install selenium")
pytest.importorskip("uvicorn")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from colorize.web import create_app  # noqa: E402

# fetch a blob: URL inside the page and hand its bytes back as base64
FETCH_BYTES = """
const [url, done] = arguments;
fetch(url).then((r) => r.arrayBuffer()).then((buf) => {
  const bytes = new Uint8Array(buf);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  done(btoa(s));
}).catch((e) => done("error: " + e));
"""


def chroma(img: Image.Image) -> float:
    arr = np.asarray(img.convert("RGB"), dtype=np.float32)
    return float((arr.max(axis=2) - arr.min(axis=2)).mean())


@pytest.fixture(scope="module")
def server_url(tiny_model_file):
    """A real uvicorn server on a free loopback port, in a thread."""
    with uvicorn_server(create_app(str(tiny_model_file), workers=1, queue_size=4)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a fresh profile; downloads land in ``browser.download_dir``."""
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.download_dir = downloads
    yield driver
    driver.quit()


def fetch_bytes(driver: webdriver.Chrome, url: str) -> bytes:
    data = driver.execute_async_script(FETCH_BYTES, url)
    assert not data.startswith("error:"), data
    return base64.b64decode(data)


def test_page_colorizes_compares_and_zips(server_url, browser, tmp_path):
    sizes = {"portrait.jpg": (120, 168), "landscape.jpg": (160, 112)}
    files = []
    for i, (name, (w, h)) in enumerate(sizes.items()):
        make_photo(w, h, seed=i).convert("L").save(tmp_path / name, quality=90)
        files.append(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a photo")
    files.append(tmp_path / "notes.txt")

    browser.get(f"{server_url}/")
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "model").text == "model: alpha")
    browser.find_element(By.ID, "file-input").send_keys("\n".join(str(f) for f in files))
    WebDriverWait(browser, 60).until(lambda d: len(d.find_elements(
        By.CSS_SELECTOR, '.card[data-state="done"], .card[data-state="error"]')) == len(files))

    cards = {c.find_element(By.CLASS_NAME, "name").text: c for c in browser.find_elements(By.CLASS_NAME, "card")}
    assert cards["notes.txt"].get_attribute("data-state") == "error"
    assert "not an image" in cards["notes.txt"].find_element(By.CLASS_NAME, "status").text
    for name, size in sizes.items():
        card = cards[name]
        assert card.get_attribute("data-state") == "done", card.find_element(By.CLASS_NAME, "status").text
        link = card.find_element(By.CLASS_NAME, "download")
        assert link.get_attribute("download") == name.replace(".jpg", "_color.jpg")
        result = Image.open(io.BytesIO(fetch_bytes(browser, link.get_attribute("href"))))
        assert result.format == "JPEG" and result.size == size
        assert chroma(result) > 10
        shown = browser.execute_script("const i = arguments[0]; return [i.naturalWidth, i.naturalHeight];",
                                       card.find_element(By.CLASS_NAME, "after"))
        assert tuple(shown) == size
    assert browser.find_element(By.ID, "summary").text == "2 of 3 done, 1 failed"

    # click at 25% of the width of a photo: the slider under the pointer moves the divider there
    compare = cards["landscape.jpg"].find_element(By.CLASS_NAME, "compare")
    ActionChains(browser).move_to_element_with_offset(compare, -compare.size["width"] // 4, 0).click().perform()
    pos = browser.execute_script("return arguments[0].style.getPropertyValue('--pos');", compare)
    assert 20 <= float(pos.rstrip("%")) <= 30

    browser.find_element(By.ID, "zip").click()
    archive = browser.download_dir / "colorized.zip"
    WebDriverWait(browser, 20).until(lambda _: archive.is_file() and archive.stat().st_size > 0)
    with zipfile.ZipFile(archive) as z:
        assert z.testzip() is None  # every CRC checks out
        assert sorted(z.namelist()) == ["landscape_color.jpg", "portrait_color.jpg"]
        for name, size in sizes.items():
            assert Image.open(io.BytesIO(z.read(name.replace(".jpg", "_color.jpg")))).size == size

    shot = tmp_path / "web_screenshot.png"
    assert browser.save_screenshot(str(shot))
    shutil.copy(shot, SCREENSHOT_COPY)
    problems = [e["message"] for e in browser.get_log("browser")
                if e["level"] == "SEVERE" and "status of 415" not in e["message"]]
    assert not problems, problems  # no script errors, no resource blocked by the page's CSP
