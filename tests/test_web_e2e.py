"""The page in a real headless Chromium against a real uvicorn server: pick photos, wait for the
results, check their size and color, move the before/after slider, download all as a zip; re-run with
new settings, remove and clear; what a screen reader is told; the API docs; and that nothing the page
or the docs do leaves the machine.

Needs the Debian packages ``chromium`` and ``chromium-driver`` and the pip package ``selenium``.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import make_photo, uvicorn_server

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
    for card in cards.values():  # the color hints panel stays shut until its button opens it
        assert not card.find_element(By.CLASS_NAME, "hints").is_displayed()
        assert not card.find_element(By.CLASS_NAME, "note").is_displayed()  # one page each
    assert cards["notes.txt"].get_attribute("data-state") == "error"
    assert "not an image" in cards["notes.txt"].find_element(By.CLASS_NAME, "status").text
    for name, size in sizes.items():
        card = cards[name]
        assert card.get_attribute("data-state") == "done", card.find_element(By.CLASS_NAME, "status").text
        link = card.find_element(By.CLASS_NAME, "download")
        assert link.get_attribute("download") == name.replace(".jpg", "_color.jpg")
        assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", link)  # all of it
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


def test_a_photo_the_browser_cannot_show_still_shows_its_result(server_url, browser, tmp_path):
    pages = [make_photo(120, 90, seed=i).convert("L") for i in (4, 5)]  # archives' scans: Chromium shows no TIFF
    pages[0].save(tmp_path / "scan.tiff", save_all=True, append_images=pages[1:])  # a letter's two pages
    open_page(browser, f"{server_url}/")
    pick(browser, tmp_path / "scan.tiff")
    wait_finished(browser, 1)
    card = browser.find_element(By.CLASS_NAME, "card")
    assert card.get_attribute("data-state") == "done" and "no-preview" in card.get_attribute("class")
    after = card.find_element(By.CLASS_NAME, "after")
    assert after.is_displayed()  # the colorized PNG, whole: there is no original to compare it with
    assert browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", after) == [120, 90]
    assert browser.execute_script("return getComputedStyle(arguments[0]).clipPath", after) == "none"
    assert not card.find_element(By.CLASS_NAME, "slider").is_displayed()
    assert not card.find_element(By.CLASS_NAME, "before").is_displayed()
    note = card.find_element(By.CLASS_NAME, "note")
    assert note.is_displayed() and note.text == "Only the first of its 2 pages (frames) was colorized."
    assert "scan.tiff: colorized. Only the first of its 2 pages" in announcements(browser)
    card.find_element(By.CLASS_NAME, "edit-hints").click()  # and pins can go on it
    assert card.find_element(By.CLASS_NAME, "pins").size["width"] > 0
    assert not console_errors(browser)


def test_before_and_after_download_side_by_side(server_url, browser, tmp_path):
    """A finished photo downloads as one JPEG to share: the original on the left, the colorized photo on the right;
    a scan the browser cannot show (TIFF) has the colorized photo's lightness on the left, which is its own."""
    gray = make_photo(160, 112, seed=7).convert("L")
    gray.save(tmp_path / "grandma.jpg", quality=95)
    gray.save(tmp_path / "scan.tif")
    open_page(browser, f"{server_url}/")
    pick(browser, tmp_path / "grandma.jpg", tmp_path / "scan.tif")
    wait_finished(browser, 2)
    for card in browser.find_elements(By.CLASS_NAME, "card"):
        name = card.find_element(By.CLASS_NAME, "name").text
        button = card.find_element(By.CLASS_NAME, "before-after")
        assert button.is_displayed() and button.get_attribute("aria-label").startswith(f"Download {name} before")
        button.click()
        saved = browser.download_dir / f"{Path(name).stem}_before_after.jpg"
        WebDriverWait(browser, 20).until(lambda _: saved.is_file() and saved.stat().st_size > 0)
        both = Image.open(saved)
        assert both.format == "JPEG" and both.size == (320, 112)
        left, right = both.crop((0, 0, 160, 112)), both.crop((160, 0, 320, 112))
        assert chroma(left) < 3 and chroma(right) > 10, name  # gray, then colorized
        lightness = np.abs(np.asarray(left.convert("L"), np.float32) - np.asarray(gray, np.float32)).mean()
        assert lightness < 6, (name, lightness)  # the original's
        assert f"{name}: before and after saved as {saved.name}" in announcements(browser)
    assert not console_errors(browser)


# Drop a folder on the page as a browser does: entries (webkitGetAsEntry) to walk; its dataTransfer.files
# would hold one unreadable 0-byte "file" named after the folder. Photos are drawn on a canvas.
DROP_FOLDERS = """
const done = arguments[arguments.length - 1];
const png = (name, shade) => new Promise((resolve) => {
  const canvas = Object.assign(document.createElement("canvas"), { width: 64, height: 48 });
  const g = canvas.getContext("2d");
  g.fillStyle = `rgb(${shade}, ${shade}, ${shade})`;
  g.fillRect(0, 0, 64, 48);
  g.fillStyle = "#fff";
  g.fillRect(8, 8, 20, 20);
  canvas.toBlob((blob) => resolve(new File([blob], name, { type: "image/png" })));
});
const file = (f) => ({ isFile: true, isDirectory: false, name: f.name, file: (ok) => ok(f) });
const folder = (name, children) => ({ isFile: false, isDirectory: true, name, createReader: () => {
  const batches = [children.slice(0, 2), children.slice(2), []];  // readEntries answers in batches
  return { readEntries: (ok) => setTimeout(() => ok(batches.shift() || []), 0) };
} });
(async () => {
  const album = folder("Album 1952", [
    file(await png("page 10.png", 90)), file(new File(["notes"], "notes.txt", { type: "text/plain" })),
    file(await png("page 2.png", 120)), folder("loose", [file(await png("back.png", 60))]),
  ]);
  const items = [album, folder("empty", [])].map((entry) => ({ kind: "file", webkitGetAsEntry: () => entry }));
  const drop = new Event("drop", { bubbles: true, cancelable: true });
  Object.defineProperty(drop, "dataTransfer", { value: { items, files: [] } });
  document.getElementById("drop").dispatchEvent(drop);
  done();
})();
"""


def test_a_dropped_folder_gives_its_photos(server_url, browser):
    open_page(browser, f"{server_url}/")
    browser.execute_async_script(DROP_FOLDERS)
    wait_finished(browser, 4)
    cards = browser.find_elements(By.CLASS_NAME, "card")
    names = [c.find_element(By.CLASS_NAME, "name").text for c in cards]
    # by name, a subfolder in its place; no notes.txt
    assert names == ["back.png", "page 2.png", "page 10.png", "empty"]
    assert [c.get_attribute("data-state") for c in cards] == ["done", "done", "done", "error"]
    assert cards[3].find_element(By.CLASS_NAME, "status").text == "a folder with no photos in it"
    assert not console_errors(browser)


def test_a_file_that_cannot_be_read_is_not_blamed_on_the_server(server_url, browser, tmp_path):
    (tmp_path / "Album").mkdir()  # picked as a file (as a moved or deleted one): the browser cannot read it
    open_page(browser, f"{server_url}/")
    pick(browser, tmp_path / "Album")
    wait_finished(browser, 1)
    status = browser.find_element(By.CSS_SELECTOR, ".card .status").text
    assert status.startswith("could not be read from this computer") and "server" not in status


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


def test_a_limit_under_a_megapixel_is_not_shown_as_0(browser, tiny_model_file):
    """With --max-pixels 500000 the drop zone said the limit was "0 megapixels"."""
    with uvicorn_server(create_app(str(tiny_model_file), max_pixels=500_000)) as url:
        open_page(browser, f"{url}/")
        limits = browser.find_element(By.ID, "limits")
        WebDriverWait(browser, 10).until(lambda _: "pixels" in limits.text)
    assert "0.5 megapixels each" in limits.text
    heic = importlib.util.find_spec("pillow_heif") is not None  # the heif extra: the page names what it reads
    named = "JPEG, PNG, WebP, TIFF, BMP, GIF or HEIC" if heic else "JPEG, PNG, WebP, TIFF, BMP or GIF"
    assert limits.text.startswith(named)


# Redoc shows its makers' logo from their CDN and drops it when it cannot load (as offline); the CSP blocks it
REDOC_LOGO = "cdn.redoc.ly/redoc/logo-mini.svg' violates the following Content Security Policy"


@pytest.mark.parametrize("path, rendered", [("/docs", ".swagger-ui .opblock"), ("/redoc", ".api-content h2")])
def test_docs_render_offline(server_url, browser, path, rendered):
    open_page(browser, f"{server_url}{path}")
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, rendered))
    assert "/api/colorize" in browser.find_element(By.TAG_NAME, "body").text
    assert not console_errors(browser, REDOC_LOGO)  # no script errors, nothing else needed from elsewhere
    assert not off_machine_requests(browser, server_url)


def page_requests(driver: webdriver.Chrome) -> list[tuple[str, str]]:
    """(method, URL) of every request the browser sent since the performance log was last read."""
    sent = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            sent.append((message["params"]["request"]["method"], message["params"]["request"]["url"]))
    return sent


def wait_rendered(driver: webdriver.Chrome, card, hints: int, timeout: float = 30) -> None:
    status = card.find_element(By.CLASS_NAME, "hint-status")
    noun = "hint" if hints == 1 else "hints"
    WebDriverWait(driver, timeout).until(lambda _: status.text.startswith(f"updated with {hints} {noun} in"))
    assert "rendering" not in card.get_attribute("class")


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.int16)


def test_hint_pins_rerender_without_the_network(server_url, browser, tmp_path):
    arr = np.full((120, 160), 60, np.uint8)
    arr[:, 80:] = 170  # two flat regions split by a sharp edge
    Image.fromarray(arr).save(tmp_path / "two.png")
    open_page(browser, f"{server_url}/")
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "model").text == "model: alpha")
    pick(browser, tmp_path / "two.png")
    wait_finished(browser, 1)
    card = browser.find_element(By.CLASS_NAME, "card")
    plain = pixels(result_of(browser, card))

    edit = card.find_element(By.CLASS_NAME, "edit-hints")
    assert edit.get_attribute("aria-expanded") == "false" and edit.get_attribute("aria-label") == "Color hints for two.png"
    edit.click()
    assert edit.get_attribute("aria-expanded") == "true"
    assert card.find_element(By.CLASS_NAME, "hints").is_displayed()
    assert browser.switch_to.active_element == card.find_element(By.CLASS_NAME, "hint-color")  # labelled "Pin color"
    assert card.find_element(By.CLASS_NAME, "hint-color-label").text.startswith("Pin color")
    swatch_names = [s.get_attribute("aria-label") for s in card.find_elements(By.CLASS_NAME, "swatch")]
    for name in ("sky", "foliage", "skin, fair", "skin, deep", "brick", "navy", "khaki"):
        assert any(label.startswith(f"{name} (#") for label in swatch_names), name
    toggle = card.find_element(By.CLASS_NAME, "confidence-toggle")
    label = card.find_element(By.CLASS_NAME, "show-confidence").text
    assert "where a hint would help most" in label and "not available" in label
    assert not toggle.is_enabled()  # the tiny model predicts ab directly: no confidence map
    page_requests(browser)  # forget the upload's requests

    # a click on the left region drops a pin there, in the photo's own pixels
    layer = card.find_element(By.CLASS_NAME, "pins")
    ActionChains(browser).move_to_element_with_offset(layer, -layer.size["width"] // 4, 0).click().perform()
    pins = card.find_elements(By.CLASS_NAME, "pin")
    assert len(pins) == 1 and pins[0].get_attribute("aria-pressed") == "true"
    x, y = (int(v) for v in re.search(r"at x (\d+), y (\d+)", pins[0].get_attribute("aria-label")).groups())
    assert abs(x - 40) <= 3 and abs(y - 60) <= 3
    assert "rendering" in card.get_attribute("class")  # shows it is updating
    wait_rendered(browser, card, 1)
    renders = [u for m, u in page_requests(browser) if m == "POST" and u.endswith("/render")]
    assert len(renders) == 1 and renders[0].startswith(f"{server_url}/api/photos/")
    blue = pixels(result_of(browser, card))
    assert np.abs(blue[:, :70] - plain[:, :70]).mean() > 5  # the hinted region took the pin's color
    assert np.abs(blue[:, 95:] - plain[:, 95:]).mean() < 2  # across the edge: as predicted
    assert "two.png: pin 1 added at x" in announcements(browser)

    # a swatch recolors the selected pin; so does the color input
    card.find_element(By.CSS_SELECTOR, '.swatch[aria-label^="brick"]').click()
    wait_rendered(browser, card, 1)
    assert "#9b4a33" in card.find_element(By.CLASS_NAME, "pin").get_attribute("aria-label")
    brick = pixels(result_of(browser, card))
    assert np.abs(brick[:, :70] - blue[:, :70]).mean() > 5
    color_input = card.find_element(By.CLASS_NAME, "hint-color")
    assert color_input.get_attribute("value") == "#9b4a33"
    browser.execute_script("arguments[0].value = '#2e7d32';"
                           "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));", color_input)
    wait_rendered(browser, card, 1)
    green = pixels(result_of(browser, card))
    assert np.abs(green[:, :70] - brick[:, :70]).mean() > 5

    # drag the pin further down the same region
    pin = card.find_element(By.CLASS_NAME, "pin")
    ActionChains(browser).drag_and_drop_by_offset(pin, 0, layer.size["height"] // 5).perform()
    assert len(card.find_elements(By.CLASS_NAME, "pin")) == 1  # a drag drops no second pin
    moved = re.search(r"at x (\d+), y (\d+)", card.find_element(By.CLASS_NAME, "pin").get_attribute("aria-label"))
    assert abs(int(moved.group(1)) - x) <= 3 and int(moved.group(2)) > y + 10
    wait_rendered(browser, card, 1)

    # download the hints: the CLI's --hints JSON
    card.find_element(By.CLASS_NAME, "save-hints").click()
    saved = browser.download_dir / "two.hints.json"
    WebDriverWait(browser, 20).until(lambda _: saved.is_file() and saved.stat().st_size > 0)
    hints = json.loads(saved.read_text())
    assert hints == [{"x": int(moved.group(1)), "y": int(moved.group(2)), "color": "#2e7d32"}]
    from colorize.hints import load_hints

    assert len(load_hints(saved)) == 1  # what `colorize two.png --hints two.hints.json` reads

    # the keyboard deletes the selected pin: the photo is back to the prediction
    pin = card.find_element(By.CLASS_NAME, "pin")
    pin.send_keys(Keys.DELETE)
    assert not card.find_elements(By.CLASS_NAME, "pin")
    wait_rendered(browser, card, 0)
    assert np.abs(pixels(result_of(browser, card)) - plain).max() <= 2
    assert "two.png: pin 1 removed; 0 left" in announcements(browser)

    # load the hints again: the same pin, the same photo
    card.find_element(By.CLASS_NAME, "hints-file").send_keys(str(saved))
    WebDriverWait(browser, 10).until(lambda _: len(card.find_elements(By.CLASS_NAME, "pin")) == 1)
    wait_rendered(browser, card, 1)
    assert np.abs(pixels(result_of(browser, card)) - green).max() <= 2
    assert "two.png: 1 hints loaded from two.hints.json" in announcements(browser)
    sent = page_requests(browser)
    assert len([u for m, u in sent if m == "POST" and u.endswith("/render")]) >= 5

    # a file with a hint outside the photo is refused, naming the problem; the pins stay
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"two.png": [{"x": 500, "y": 10, "color": "red"}]}))
    card.find_element(By.CLASS_NAME, "hints-file").send_keys(str(bad))
    status = card.find_element(By.CLASS_NAME, "hint-status")
    WebDriverWait(browser, 10).until(lambda _: "outside the 160x120 photo" in status.text)
    assert len(card.find_elements(By.CLASS_NAME, "pin")) == 1
    assert not console_errors(browser)
    sent += page_requests(browser)
    assert not [u for _, u in sent if not u.startswith((f"{server_url}/", "blob:", "data:"))]  # nothing off the machine


def test_a_pin_added_with_the_keyboard_moves_with_the_arrow_keys(server_url, browser, tmp_path):
    """"Add a pin at the center" left the focus on the button, so the arrow keys the help names for the selected
    pin scrolled the page instead: a keyboard user could add a pin but not move it."""
    Image.fromarray(np.full((120, 160), 90, np.uint8)).save(tmp_path / "flat.png")
    open_page(browser, f"{server_url}/")
    pick(browser, tmp_path / "flat.png")
    wait_finished(browser, 1)
    card = browser.find_element(By.CLASS_NAME, "card")
    card.find_element(By.CLASS_NAME, "edit-hints").click()
    card.find_element(By.CLASS_NAME, "add-pin").send_keys(Keys.ENTER)
    WebDriverWait(browser, 10).until(lambda _: len(card.find_elements(By.CLASS_NAME, "pin")) == 1)
    ActionChains(browser).send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT, Keys.ARROW_DOWN).perform()
    label = card.find_element(By.CLASS_NAME, "pin").get_attribute("aria-label")
    assert "at x 78, y 61" in label, label
    ActionChains(browser).send_keys(Keys.DELETE).perform()
    assert not card.find_elements(By.CLASS_NAME, "pin")


def test_arrow_keys_move_a_pin_on_a_large_photo_visibly(server_url, browser, tmp_path):
    """A step was one of the photo's pixels whatever its size: on a scan shown at a fifth of its width a press
    moved the pin a fifth of a screen pixel (nothing to see), Shift+arrow two; crossing the photo took hundreds."""
    Image.fromarray(np.full((1200, 2400), 90, np.uint8)).save(tmp_path / "large.png")
    open_page(browser, f"{server_url}/")
    pick(browser, tmp_path / "large.png")
    wait_finished(browser, 1, timeout=60)
    card = browser.find_element(By.CLASS_NAME, "card")
    card.find_element(By.CLASS_NAME, "edit-hints").click()
    card.find_element(By.CLASS_NAME, "add-pin").send_keys(Keys.ENTER)
    pin = card.find_element(By.CLASS_NAME, "pin")
    shown = card.find_element(By.CLASS_NAME, "pins").size["width"]
    start = pin.location["x"]
    ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
    assert pin.location["x"] - start >= 1, (shown, pin.get_attribute("aria-label"))  # a screen pixel at least
    ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.ARROW_RIGHT).key_up(Keys.SHIFT).perform()
    assert pin.location["x"] - start >= 10, (shown, pin.get_attribute("aria-label"))


def test_confidence_overlay_shows_where_a_hint_would_help(browser, tmp_path, tiny_bins_model_file):
    make_photo(96, 64, seed=3).convert("L").save(tmp_path / "g.png")
    with uvicorn_server(create_app(str(tiny_bins_model_file), workers=1, queue_size=2)) as url:
        open_page(browser, f"{url}/")
        WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "model").text.startswith("model: "))
        pick(browser, tmp_path / "g.png")
        wait_finished(browser, 1, timeout=120)
        card = browser.find_element(By.CLASS_NAME, "card")
        card.find_element(By.CLASS_NAME, "edit-hints").click()
        toggle = card.find_element(By.CLASS_NAME, "confidence-toggle")
        overlay = card.find_element(By.CLASS_NAME, "confidence")
        assert toggle.is_enabled() and not overlay.is_displayed()
        page_requests(browser)
        toggle.click()
        WebDriverWait(browser, 30).until(lambda _: overlay.is_displayed() and browser.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", overlay))
        assert browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]",
                                      overlay) == [96, 64]
        assert "where a hint would help most" in overlay.get_attribute("alt")
        assert any(m == "GET" and u.endswith("/confidence") for m, u in page_requests(browser))
        toggle.click()
        assert not overlay.is_displayed()
        assert not console_errors(browser)
