"""A hostile notebook runs nothing, in a real headless Chromium (issue 5).

The notebook's markdown and outputs carry <script>, onerror=, javascript:
URLs, SVG with scripts and application/javascript outputs. Each payload, if
it ever ran, would change document.title, set a cookie and log "PWNED" to
the console. We look for all three, and at the DOM, both on CKAN's resource
page (preview in its sandboxed iframe) and with the preview URL opened
directly.

CKAN is served for real over HTTP (werkzeug, threaded) from the test app, on
a free 127.0.0.1 port.
"""
from __future__ import annotations

import shutil
import socket
import threading
from pathlib import Path

import pytest

from ckan.tests import factories

DATA = Path(__file__).parent / "data"
MARKER = "PWNED"

pytestmark = [
    pytest.mark.skipif(not shutil.which("chromedriver"),
                       reason="chromium-driver is not installed"),
    pytest.mark.usefixtures("with_plugins", "clean_db"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ckan_server(app, ckan_config):
    """The test app behind a real HTTP server; yields its base URL."""
    from werkzeug.serving import make_server

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    ckan_config["ckan.site_url"] = base
    server = make_server("127.0.0.1", port, app.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    thread.join(10)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run",
                "--window-size=1280,1000"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")),
                              options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def hostile_resource(create_with_upload):
    sysadmin = factories.Sysadmin()
    org = factories.Organization()
    dataset = factories.Dataset(owner_org=org["id"])
    resource = create_with_upload(
        (DATA / "hostile.ipynb").read_bytes(), "hostile.ipynb",
        package_id=dataset["id"], name="hostile.ipynb", url="hostile.ipynb",
        context={"user": sysadmin["name"]})
    return dataset, resource


def _console(driver) -> list[str]:
    return [entry.get("message", "") for entry in driver.get_log("browser")]


def _wait_loaded(driver) -> None:
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete")


_ACTIVE_CONTENT_JS = """
const all = Array.from(document.querySelectorAll('*'));
return {
  scripts: document.querySelectorAll('script').length,
  handlers: all.filter(e => Array.from(e.attributes)
                        .some(a => a.name.toLowerCase().startsWith('on'))).length,
  js_urls: all.filter(e => Array.from(e.attributes)
                        .some(a => /^\\s*javascript:/i.test(a.value))).length,
  embeds: document.querySelectorAll('iframe,object,embed,form,svg,frame').length,
  remote_imgs: Array.from(document.images)
                 .filter(i => i.getAttribute('src') &&
                              !i.getAttribute('src').startsWith('data:')).length,
  title: document.title,
  origin: String(window.origin),
  text: document.body ? document.body.innerText : ''
};
"""


def _assert_nothing_ran(driver, console: list[str]) -> None:
    assert MARKER not in driver.title
    assert not [c for c in driver.get_cookies() if MARKER in c["name"]
                or MARKER in str(c.get("value"))]
    assert not [line for line in console if MARKER in line], console


def _inspect_preview_document(driver) -> dict:
    """The preview's DOM, read through WebDriver's element API.

    Script cannot run in the sandboxed document (that is the point), so
    WebDriver's execute_script may not either; fall back to find_elements.
    """
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    try:
        return driver.execute_script(_ACTIVE_CONTENT_JS)
    except WebDriverException:
        pass
    all_elements = driver.find_elements(By.CSS_SELECTOR, "*")
    handlers = js_urls = 0
    for element in all_elements:
        for name in ("onerror", "onload", "onmouseover", "onclick"):
            if element.get_attribute(name) is not None:
                handlers += 1
        for name in ("href", "src", "data", "action"):
            value = element.get_attribute(name) or ""
            if value.strip().lower().startswith("javascript:"):
                js_urls += 1
    return {
        "scripts": len(driver.find_elements(By.TAG_NAME, "script")),
        "handlers": handlers,
        "js_urls": js_urls,
        "embeds": len(driver.find_elements(
            By.CSS_SELECTOR, "iframe,object,embed,form,svg,frame")),
        "remote_imgs": len([i for i in driver.find_elements(By.TAG_NAME, "img")
                            if (i.get_attribute("src") or "data:")
                            and not (i.get_attribute("src") or "data:")
                            .startswith("data:")]),
        "title": driver.title,
        "origin": None,
        "text": driver.find_element(By.TAG_NAME, "body").text,
    }


def _assert_clean_preview(doc: dict) -> None:
    assert "Some ordinary markdown survives" in doc["text"]  # it rendered
    assert doc["scripts"] == 0
    assert doc["handlers"] == 0
    assert doc["js_urls"] == 0
    assert doc["embeds"] == 0
    assert doc["remote_imgs"] == 0
    assert MARKER not in doc["title"]
    if doc["origin"] is not None:
        assert doc["origin"] == "null"  # sandboxed: an opaque origin


def test_hostile_notebook_runs_nothing_on_the_resource_page(
        ckan_server, browser, hostile_resource):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    dataset, resource = hostile_resource
    browser.get(f"{ckan_server}/dataset/{dataset['name']}/resource/"
                f"{resource['id']}")
    _wait_loaded(browser)
    # the console capture works: a log line from the (trusted) page shows up
    browser.execute_script("console.log('console-canary')")

    frame = WebDriverWait(browser, 30).until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, "iframe.jupyternotebook-preview")))
    sandbox = frame.get_attribute("sandbox")
    assert sandbox is not None
    assert "allow-scripts" not in sandbox
    assert "allow-same-origin" not in sandbox
    title_before = browser.title

    browser.switch_to.frame(frame)
    WebDriverWait(browser, 30).until(lambda d: "Some ordinary" in d.find_element(
        By.TAG_NAME, "body").text)
    doc = _inspect_preview_document(browser)
    browser.switch_to.default_content()

    console = _console(browser)
    assert any("console-canary" in line for line in console)
    _assert_clean_preview(doc)
    _assert_nothing_ran(browser, console)
    assert browser.title == title_before


def test_hostile_notebook_runs_nothing_with_the_preview_url_opened_directly(
        ckan_server, browser, hostile_resource):
    dataset, resource = hostile_resource
    # a cookie on CKAN's origin that a script would be able to read or change
    browser.get(f"{ckan_server}/api/3/action/status_show")
    browser.add_cookie({"name": "canary", "value": "intact", "path": "/"})

    browser.get(f"{ckan_server}/dataset/{dataset['name']}/resource/"
                f"{resource['id']}/jupyter/preview")
    _wait_loaded(browser)
    doc = _inspect_preview_document(browser)
    console = _console(browser)

    _assert_clean_preview(doc)
    assert browser.title == "hostile.ipynb"
    _assert_nothing_ran(browser, console)
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    assert cookies.get("canary") == "intact"


def test_demo_notebook_preview_shows_its_content_in_the_browser(
        ckan_server, browser, create_with_upload):
    from selenium.webdriver.common.by import By
    from .test_preview import demo_notebook_bytes

    sysadmin = factories.Sysadmin()
    dataset = factories.Dataset(owner_org=factories.Organization()["id"])
    resource = create_with_upload(
        demo_notebook_bytes(), "explore.ipynb", package_id=dataset["id"],
        name="explore.ipynb", url="explore.ipynb",
        context={"user": sysadmin["name"]})
    browser.get(f"{ckan_server}/dataset/{dataset['name']}/resource/"
                f"{resource['id']}/jupyter/preview")
    _wait_loaded(browser)
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "In [" in text or "In\xa0[" in text
    images = browser.find_elements(By.TAG_NAME, "img")
    assert all((i.get_attribute("src") or "").startswith("data:image/")
               for i in images)
