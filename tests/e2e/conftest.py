"""The portal for end-to-end tests: a real CKAN server (gunicorn, its own
database) in front of the test hub and bridge."""

from __future__ import annotations

import pytest
from ckanapi import RemoteCKAN


class Portal:
    def __init__(self, stack, seed):
        self.stack = stack
        self.url = stack.ckan_url
        self.seed = seed
        self.dataset = seed["dataset"]
        self.sysadmin = RemoteCKAN(self.url, apikey=seed["api_token"])

    def api(self, token: str | None = None) -> RemoteCKAN:
        return RemoteCKAN(self.url, apikey=token)


@pytest.fixture(scope="session")
def portal(hub_stack):
    seed = hub_stack.init_ckan()
    hub_stack.start_ckan()
    yield Portal(hub_stack, seed)
    hub_stack.stop_process("ckan")


@pytest.fixture
def chromium(tmp_path):
    """A headless Chromium (selenium) that saves downloads in
    ``tmp_path / "downloads"``; skipped where chromium-driver is missing."""
    import shutil

    if not shutil.which("chromedriver"):
        pytest.skip("chromium-driver is not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(120)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()
