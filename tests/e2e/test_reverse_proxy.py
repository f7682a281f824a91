"""Guests behind a reverse proxy (issue 10 item 7): a real nginx from Debian
in front of the real CKAN. CKAN believes X-Forwarded-For only from the
addresses in ``trusted_proxies`` (the test stack trusts 127.0.0.2).

One nginx serves two ports: one connects to CKAN from 127.0.0.2 (trusted),
the other from 127.0.0.3 (not trusted). Both add the client's address to
X-Forwarded-For, as a production nginx does."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
import requests

from dev.testing import Browser

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

CONF = """
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    proxy_read_timeout 300s;
    server {{
        listen 127.0.0.1:{trusted_port};
        location / {{
            proxy_pass http://127.0.0.1:{ckan_port};
            proxy_bind 127.0.0.2;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
    server {{
        listen 127.0.0.1:{untrusted_port};
        location / {{
            proxy_pass http://127.0.0.1:{ckan_port};
            proxy_bind 127.0.0.3;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def nginx(portal, tmp_path_factory):
    assert shutil.os.access(NGINX, shutil.os.X_OK), \
        "nginx is not installed (dev/system-deps.sh installs nginx-light)"
    directory = tmp_path_factory.mktemp("nginx")
    ports = {"trusted_port": _free_port(), "untrusted_port": _free_port()}
    conf = directory / "nginx.conf"
    conf.write_text(CONF.format(dir=directory, ckan_port=portal.stack.ckan_port, **ports))
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(directory)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"http://127.0.0.1:{ports['untrusted_port']}/api/3/action/status_show",
                             timeout=5).raise_for_status()
                break
            except requests.RequestException:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("nginx did not start: "
                                         + (directory / "error.log").read_text())
                time.sleep(0.2)
        yield {name: f"http://127.0.0.1:{port}" for name, port in
               (("trusted", ports["trusted_port"]), ("untrusted", ports["untrusted_port"]))}
    finally:
        proc.terminate()
        proc.wait(10)


class _FromAddress(requests.adapters.HTTPAdapter):
    """Connect from one loopback address: each is a different visitor."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def _visitor(address: str, forwarded_for: str | None = None) -> Browser:
    browser = Browser()
    browser.http.mount("http://", _FromAddress(address))
    if forwarded_for:
        browser.http.headers["X-Forwarded-For"] = forwarded_for
    return browser


def _launch(browser: Browser, ckan_url: str, dataset: str) -> requests.Response:
    return browser.open_in_jupyter(ckan_url, dataset, allow_redirects=False)


def test_two_visitors_behind_a_trusted_proxy_get_separate_rate_buckets(portal, bridge, nginx):
    bridge.put_settings(guest_rate_limit=1)
    first = _launch(_visitor("127.0.0.4"), nginx["trusted"], portal.dataset)
    second = _launch(_visitor("127.0.0.5"), nginx["trusted"], portal.dataset)
    assert (first.status_code, second.status_code) == (303, 303), second.text[:300]
    assert len(bridge.sessions()) == 2


def test_a_visitor_cannot_pick_a_bucket_by_sending_its_own_x_forwarded_for(portal, bridge, nginx):
    # nginx appends the real peer (127.0.0.8); the forged entries to its left
    # are never reached when the header is read from the right
    bridge.put_settings(guest_rate_limit=1)
    first = _launch(_visitor("127.0.0.8", "198.51.100.1"), nginx["trusted"], portal.dataset)
    second = _launch(_visitor("127.0.0.8", "198.51.100.2"), nginx["trusted"], portal.dataset)
    assert (first.status_code, second.status_code) == (303, 429)


def test_visitors_behind_an_untrusted_proxy_share_one_bucket_and_the_admin_is_warned(
        portal, bridge, nginx):
    import redis
    # forget a warning an earlier run left, so the page's warning is this run's
    redis.Redis.from_url(f"redis://localhost:6379/{portal.stack.redis_db}").delete(
        "ckanext.jupyternotebook.untrusted_forwarded_for")
    bridge.put_settings(guest_rate_limit=1)
    first = _launch(_visitor("127.0.0.6"), nginx["untrusted"], portal.dataset)
    second = _launch(_visitor("127.0.0.7"), nginx["untrusted"], portal.dataset)
    assert (first.status_code, second.status_code) == (303, 429)
    assert "started from your address too often" in second.text
    admin_page = requests.get(f"{portal.url}/ckan-admin/jupyter", timeout=60,
                              headers={"Authorization": portal.seed["api_token"]})
    assert admin_page.status_code == 200
    assert 'data-untrusted-proxy="127.0.0.3"' in admin_page.text
    assert "which is not a trusted proxy" in admin_page.text
