"""The page in a real headless Chromium against a real uvicorn server: pick photos, wait for the
results, check their size and color, move the before/after slider, download all as a zip; re-run with
new settings, remove and clear; what a screen reader is told; the API docs; and that nothing the page
or the docs do leaves the machine.

Needs the Debian packages ``chromium`` and ``chromium-driver`` and the pip package ``selenium``.
"""

from __future__ import annotations

import base64
import io
import json
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
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
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
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.download_dir = downloads
    yield driver
    driver.quit()


def fetch_bytes(driver: webdriver.Chrome, url: str) -> bytes:
    data = driver.execute_async_script(FETCH_BYTES, url)
    assert not data.startswith("error:"), data
    return base64.b64decode(data)


def open_page(driver: webdriver.Chrome, url: str) -> None:
    """Load ``url`` with the browser's console and network logs emptied first."""
    driver.get_log("browser")
    driver.get_log("performance")
    driver.get(url)


def off_machine_requests(driver: webdriver.Chrome, server_url: str) -> list[str]:
    """Every URL the browser asked for since the logs were last read that is not this server's, less
    those the page's CSP blocked before they were sent."""
    urls, blocked = {}, set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message["params"]
        if message["method"] == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.loadingFailed" and params.get("blockedReason") == "csp":
            blocked.add(params["requestId"])
    assert any(u.startswith(server_url) for u in urls.values()), "no requests were logged"
    return [u for i, u in urls.items() if i not in blocked and not u.startswith((f"{server_url}/", "blob:", "data:"))]


def console_errors(driver: webdriver.Chrome, *expected: str) -> list[str]:
    """SEVERE console messages (script errors, anything the CSP blocked), less the ``expected`` ones."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(x in e["message"] for x in expected)]


def pick(driver: webdriver.Chrome, *files: Path) -> None:
    driver.find_element(By.ID, "file-input").send_keys("\n".join(str(f) for f in files))


def wait_finished(driver: webdriver.Chrome, count: int, timeout: float = 60) -> None:
    WebDriverWait(driver, timeout).until(lambda d: len(d.find_elements(
        By.CSS_SELECTOR, '.card[data-state="done"], .card[data-state="error"]')) == count)


def result_of(driver: webdriver.Chrome, card) -> Image.Image:
    link = card.find_element(By.CLASS_NAME, "download")
    return Image.open(io.BytesIO(fetch_bytes(driver, link.get_attribute("href"))))


def announcements(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.ID, "announcer").get_attribute("textContent")


def test_page_colorizes_compares_and_zips(server_url, browser, tmp_path):
    sizes = {"portrait.jpg": (120, 168), "landscape.jpg": (160, 112)}
    files = []
    for i, (name, (w, h)) in enumerate(sizes.items()):
        make_photo(w, h, seed=i).convert("L").save(tmp_path / name, quality=90)
        files.append(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a photo")
    files.append(tmp_path / "notes.txt")

    open_page(browser, f"{server_url}/")
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "model").text == "model: alpha")
    pick(browser, *files)
    wait_finished(browser, len(files))

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
        assert card.find_element(By.CLASS_NAME, "before").get_attribute("alt") == f"{name}, original"
        assert card.find_element(By.CLASS_NAME, "after").get_attribute("alt") == f"{name}, colorized"
        slider = card.find_element(By.CLASS_NAME, "slider")
        assert slider.get_attribute("aria-label") == f"Compare original and colorized {name}"
        assert slider.get_attribute("aria-valuetext") == "50% original, 50% colorized"
        assert not card.find_element(By.CLASS_NAME, "badge").is_displayed()  # it was gray
    assert browser.find_element(By.ID, "summary").text == "2 of 3 done, 1 failed"
    heard = announcements(browser)  # the live log a screen reader reads out
    assert "portrait.jpg: colorized" in heard and "landscape.jpg: colorized" in heard
    assert "notes.txt: failed: notes.txt: not an image" in heard
    assert "All photos finished: 2 done, 1 failed" in heard
    assert browser.find_element(By.ID, "announcer").get_attribute("aria-live") == "polite"

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
    problems = console_errors(browser, "status of 415")
    assert not problems, problems  # no script errors, no resource blocked by the page's CSP
    assert not off_machine_requests(browser, server_url)


def test_rerun_remove_clear_and_the_color_badge(server_url, browser, tmp_path):
    make_photo(96, 64, seed=1).convert("L").save(tmp_path / "gray.png")
    make_photo(96, 64, seed=2).save(tmp_path / "color.png")  # already in color
    open_page(browser, f"{server_url}/")
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "model").text == "model: alpha")
    pick(browser, tmp_path / "gray.png", tmp_path / "color.png")
    wait_finished(browser, 2)
    cards = {c.find_element(By.CLASS_NAME, "name").text: c for c in browser.find_elements(By.CLASS_NAME, "card")}
    badge = cards["color.png"].find_element(By.CLASS_NAME, "badge")
    assert badge.is_displayed() and badge.text == "had color"
    assert "already had color" in cards["color.png"].find_element(By.CLASS_NAME, "after").get_attribute("alt")
    assert not cards["gray.png"].find_element(By.CLASS_NAME, "badge").is_displayed()
    assert "color.png: colorized; it already had color" in announcements(browser)
    assert chroma(result_of(browser, cards["gray.png"])) > 10
    rerun_all = browser.find_element(By.ID, "rerun-all")
    assert not rerun_all.is_enabled()  # nothing was made with other settings yet

    # saturation 0 and another working size: both photos are now stale; re-run one, then the rest
    browser.find_element(By.ID, "saturation").send_keys(Keys.HOME)
    assert browser.find_element(By.ID, "saturation-value").text == "0.00"
    Select(browser.find_element(By.ID, "size")).select_by_value("384")
    assert rerun_all.is_enabled() and rerun_all.text == "Re-run 2 with these settings"
    settings = cards["gray.png"].find_element(By.CLASS_NAME, "settings")
    assert settings.text == "saturation 1.00, size 256 (default) · settings changed since"
    cards["gray.png"].find_element(By.CLASS_NAME, "rerun").click()
    WebDriverWait(browser, 30).until(lambda _: cards["gray.png"].get_attribute("data-state") == "done"
                                     and settings.text == "saturation 0.00, size 384")
    assert chroma(result_of(browser, cards["gray.png"])) < 3  # no chroma: the gray photo back
    assert "gray.png: re-running with saturation 0.00, size 384" in announcements(browser)
    assert rerun_all.text == "Re-run 1 with these settings"
    rerun_all.click()
    WebDriverWait(browser, 30).until(lambda _: not rerun_all.is_enabled()
                                     and cards["color.png"].get_attribute("data-state") == "done")
    assert chroma(result_of(browser, cards["color.png"])) < 3

    # remove one (focus moves on to the next photo), then clear the rest
    cards["gray.png"].find_element(By.CLASS_NAME, "remove").click()
    assert [c.find_element(By.CLASS_NAME, "name").text for c in browser.find_elements(By.CLASS_NAME, "card")] == \
        ["color.png"]
    assert browser.switch_to.active_element == cards["color.png"].find_element(By.CLASS_NAME, "remove")
    assert "gray.png: removed" in announcements(browser)
    assert browser.find_element(By.ID, "summary").text == "1 of 1 done"
    browser.find_element(By.ID, "clear").click()
    assert not browser.find_elements(By.CLASS_NAME, "card")
    assert browser.find_element(By.ID, "summary").text == ""
    assert not browser.find_element(By.ID, "zip").is_enabled() and not browser.find_element(By.ID, "clear").is_enabled()
    assert "All 1 photos removed" in announcements(browser)
    assert not console_errors(browser)
    assert not off_machine_requests(browser, server_url)


def test_remove_cancels_a_photo_in_progress(server_url, browser, tmp_path):
    names = [f"p{i}.jpg" for i in range(6)]
    for i, name in enumerate(names):
        make_photo(160, 120, seed=i).convert("L").save(tmp_path / name, quality=90)
    open_page(browser, f"{server_url}/")
    pick(browser, *(tmp_path / n for n in names))
    browser.find_element(By.CSS_SELECTOR, ".card:last-child .remove").click()  # still waiting its turn
    browser.find_element(By.ID, "clear").click()  # some are uploading or being colorized
    assert not browser.find_elements(By.CLASS_NAME, "card")
    pick(browser, tmp_path / names[0])  # the page goes on working
    wait_finished(browser, 1)
    assert browser.find_element(By.ID, "summary").text == "1 of 1 done"
    assert not console_errors(browser)


def test_working_size_is_explained(server_url, browser):
    open_page(browser, f"{server_url}/")
    select = browser.find_element(By.ID, "size")
    help_text = browser.find_element(By.ID, select.get_attribute("aria-describedby"))
    assert "long side" in help_text.get_attribute("textContent") and not help_text.is_displayed()
    tip = browser.find_element(By.CLASS_NAME, "tip-button")
    assert tip.get_attribute("aria-describedby") == help_text.get_attribute("id")
    tip.send_keys("")  # keyboard focus shows it, as hovering does
    assert help_text.is_displayed()
    ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h1")).perform()
    browser.execute_script("document.activeElement.blur()")
    assert not help_text.is_displayed()


# Redoc shows its makers' logo from their CDN and drops it when it cannot load (as offline); the CSP blocks it
REDOC_LOGO = "cdn.redoc.ly/redoc/logo-mini.svg' violates the following Content Security Policy"


@pytest.mark.parametrize("path, rendered", [("/docs", ".swagger-ui .opblock"), ("/redoc", ".api-content h2")])
def test_docs_render_offline(server_url, browser, path, rendered):
    open_page(browser, f"{server_url}{path}")
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, rendered))
    assert "/api/colorize" in browser.find_element(By.TAG_NAME, "body").text
    assert not console_errors(browser, REDOC_LOGO)  # no script errors, nothing else needed from elsewhere
    assert not off_machine_requests(browser, server_url)
