"""The notebook preview (issue 5): rendering, sanitizing, limits, the view."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ckan.tests import factories, helpers

from jupyterhub_service.tests.fileserver import Route

DATA = Path(__file__).parent / "data"
DEMO_NOTEBOOK = Path(__file__).resolve().parents[3] / "dev" / "demo" / "explore.ipynb"


def demo_notebook_bytes() -> bytes:
    """The dev stack's demo notebook, or our own stand-in until it exists."""
    if DEMO_NOTEBOOK.exists():
        return DEMO_NOTEBOOK.read_bytes()
    return (DATA / "demo.ipynb").read_bytes()


def hostile_bytes() -> bytes:
    return (DATA / "hostile.ipynb").read_bytes()


def _render(raw: bytes, limit: int = 10 * 1024 * 1024) -> str:
    from ckanext.jupyternotebook import preview
    return preview.render_page(raw, "test", limit=limit)


# --------------------------------------------------------------------------
# rendering and sanitizing (no web request needed)


def test_demo_notebook_renders_its_cells_and_outputs():
    page = _render(demo_notebook_bytes())
    nb = json.loads(demo_notebook_bytes())
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            first_line = "".join(cell["source"]).splitlines()[0].lstrip("# ")
            assert first_line.split()[0] in page
    assert 'class="cell' in page


def test_rendered_page_has_no_script_event_handler_or_active_url():
    page = _render(hostile_bytes()).lower()
    assert "<script" not in page
    assert "onerror" not in page and "onload" not in page
    assert "onmouseover" not in page
    assert "javascript:" not in page
    for tag in ("<iframe", "<object", "<embed", "<form", "<svg", "<button"):
        assert tag not in page
    assert "pwned-js-output" not in page  # application/javascript dropped


def test_rendered_page_loads_nothing_from_the_network():
    page = _render(hostile_bytes())
    assert "http://127.0.0.1:9" not in page
    assert 'src="x"' not in page
    # images stay, inlined (our fixture has a PNG output)
    demo = _render((DATA / "demo.ipynb").read_bytes())
    assert 'src="data:image/png;base64,' in demo


def test_sanitizer_keeps_ordinary_markdown_and_tables():
    from ckanext.jupyternotebook import preview
    html = preview.sanitize_html(
        '<p><em>x</em> <a href="https://example.org/a">link</a> '
        '<a href="#sec">anchor</a></p><table><tr><td colspan="2">1</td>'
        '</tr></table>')
    assert "<em>x</em>" in html
    assert 'href="https://example.org/a"' in html
    assert 'href="#sec"' in html
    assert 'colspan="2"' in html


def test_sanitizer_keeps_safe_styles_and_drops_url_styles():
    from ckanext.jupyternotebook import preview
    html = preview.sanitize_html(
        '<span style="color: red; background-image: url(http://x/y)">a</span>')
    assert "color" in html
    assert "url(" not in html


def test_malformed_json_raises_malformed_notebook():
    from ckanext.jupyternotebook import preview
    with pytest.raises(preview.MalformedNotebook):
        preview.load_notebook(b'{"cells": [', limit=1000)


def test_json_that_is_not_a_notebook_raises_invalid_notebook():
    from ckanext.jupyternotebook import preview
    with pytest.raises(preview.InvalidNotebook):
        preview.load_notebook(b'{"hello": "world"}', limit=1000)
    with pytest.raises(preview.InvalidNotebook):
        preview.load_notebook(
            b'{"nbformat": 4, "nbformat_minor": 5, "cells": "nope",'
            b' "metadata": {}}', limit=1000)


def test_notebook_over_the_size_limit_raises_too_large():
    from ckanext.jupyternotebook import preview
    with pytest.raises(preview.NotebookTooLarge):
        preview.load_notebook(demo_notebook_bytes(), limit=100)


@pytest.mark.ckan_config("ckanext.jupyternotebook.preview_max_size", "1234")
def test_size_limit_comes_from_the_setting():
    from ckanext.jupyternotebook import preview
    assert preview.max_notebook_bytes() == 1234


@pytest.mark.parametrize("resource,expected", [
    ({"format": "ipynb"}, True),
    ({"format": "Jupyter Notebook"}, True),
    ({"format": "", "url": "http://x.org/a/analysis.IPYNB?raw=1"}, True),
    ({"format": "", "name": "analysis.ipynb", "url": "http://x.org/a"}, True),
    ({"format": "CSV", "url": "http://x.org/a.csv"}, False),
    ({}, False),
])
def test_can_view_accepts_notebooks_by_format_or_file_name(resource, expected):
    from ckanext.jupyternotebook import notebook_view
    assert notebook_view.can_view({"resource": resource}) is expected


def test_cache_returns_the_same_page_until_the_hash_changes():
    from ckanext.jupyternotebook import preview
    preview.cache.clear()
    reads = []

    def reader(resource):
        reads.append(resource["hash"])
        return demo_notebook_bytes()

    resource = {"id": "r1", "hash": "h1", "name": "n", "url_type": "upload"}
    first = preview.resource_preview(resource, reader)
    second = preview.resource_preview(resource, reader)
    assert first == second
    assert reads == ["h1"]
    preview.resource_preview(dict(resource, hash="h2"), reader)
    assert reads == ["h1", "h2"]


def test_cache_remembers_a_malformed_notebook_without_reading_again():
    from ckanext.jupyternotebook import preview
    preview.cache.clear()
    reads = []

    def reader(resource):
        reads.append(1)
        return b"not json"

    resource = {"id": "r2", "last_modified": "2024-01-01T00:00:00",
                "url_type": "upload"}
    for _ in range(2):
        with pytest.raises(preview.MalformedNotebook):
            preview.resource_preview(resource, reader)
    assert reads == [1]


def test_cache_drops_the_least_recently_used_page_beyond_its_byte_bound():
    from ckanext.jupyternotebook.preview.cache import PreviewCache
    cache = PreviewCache(max_bytes=100)
    cache.put(("a",), "a" * 40)
    cache.put(("b",), "b" * 40)
    assert cache.get(("a",)) == "a" * 40  # now b is the least recently used
    cache.put(("c",), "c" * 40)
    assert cache.get(("b",)) is None
    assert cache.get(("a",)) == "a" * 40 and cache.get(("c",)) == "c" * 40
    cache.put(("huge",), "h" * 101)  # larger than the whole cache: not kept
    assert cache.get(("huge",)) is None and len(cache) == 2


def test_cache_entries_with_a_time_to_live_expire_and_others_stay():
    from ckanext.jupyternotebook import preview
    from ckanext.jupyternotebook.preview.cache import PreviewCache
    now = [1000.0]
    cache = PreviewCache(max_bytes=10_000, timer=lambda: now[0])
    cache.put(("link",), "page", ttl=600)
    cache.put(("failed",), preview.NotebookUnavailable("down"), ttl=60)
    cache.put(("upload",), "kept")
    now[0] += 61
    assert cache.get(("failed",)) is None
    assert cache.get(("link",)) == "page"
    now[0] += 600
    assert cache.get(("link",)) is None
    assert cache.get(("upload",)) == "kept"


def test_link_resource_on_a_loopback_address_is_refused():
    from ckanext.jupyternotebook import preview
    with pytest.raises(preview.NotebookUnavailable):
        preview.read_resource({"id": "x", "url": "http://127.0.0.1:9/a.ipynb",
                               "url_type": ""}, limit=1000)


@pytest.mark.parametrize("style", [
    "width:expression(alert())",
    "width: expr\\65ssion(alert(1))",
    "width: expr/**/ession(alert(1))",
    "color: url(http://127.0.0.1:9/x)",
    "font-family: x @import 'http://127.0.0.1:9/x.css'",
    "width: javascript:alert(1)",
    "color: image-set('http://127.0.0.1:9/x.png' 1x)",
])
def test_sanitizer_drops_style_values_that_could_run_or_load_anything(style):
    from ckanext.jupyternotebook import preview
    html = preview.sanitize_html(f'<p style="{style}; color: red">a</p>')
    assert html == '<p style="color:red">a</p>'


def test_sanitizer_keeps_plain_style_values():
    from ckanext.jupyternotebook import preview
    html = preview.sanitize_html(
        '<table><tr><td style="text-align: right; background-color: rgb(1, 2, 3); width: 10px">'
        '1</td></tr></table>')
    assert 'text-align:right' in html.replace(" ", "")
    assert 'background-color:rgb(1,2,3)' in html.replace(" ", "")


# --------------------------------------------------------------------------
# reading link resources (real HTTP servers on 127.0.0.1)


@pytest.fixture
def files():
    from jupyterhub_service.tests.fileserver import FileServer
    server = FileServer().start()
    yield server
    server.stop()


@pytest.fixture
def proxy():
    from jupyterhub_service.tests.fileserver import FileServer
    server = FileServer().start()
    yield server
    server.stop()


@pytest.fixture
def rebinding_dns(monkeypatch):
    """rebind.test answers a public address first, then loopback: a check
    followed by a second lookup would connect to 127.0.0.1. Connections to
    any address other than loopback are refused on this machine, so nothing
    leaves it."""
    import ipaddress
    import socket

    import urllib3.util.connection

    lookups, refused = [], []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = urllib3.util.connection.create_connection

    def getaddrinfo(host, port, *args, **kw):
        if host != "rebind.test":
            return real_getaddrinfo(host, port, *args, **kw)
        lookups.append(host)
        address = "93.184.215.14" if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    def loopback_only(address, *args, **kw):
        try:
            public = not ipaddress.ip_address(address[0]).is_loopback
        except ValueError:
            public = False  # a name: resolved (by our getaddrinfo) inside
        if public:
            refused.append(address)
            raise ConnectionRefusedError("test: no traffic leaves the machine")
        return real_connect(address, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(urllib3.util.connection, "create_connection", loopback_only)
    return lookups, refused


def test_link_preview_connects_to_the_address_it_checked_not_a_second_lookup(files, rebinding_dns):
    from ckanext.jupyternotebook import preview
    lookups, refused = rebinding_dns
    files.routes["/nb.ipynb"] = Route(demo_notebook_bytes())
    with pytest.raises(preview.NotebookUnavailable):
        preview.read_resource({"id": "x", "url_type": "",
                               "url": f"http://rebind.test:{files.port}/nb.ipynb"}, limit=10**6)
    assert files.hits == []
    assert lookups == ["rebind.test"]
    assert refused == [("93.184.215.14", files.port)]


@pytest.mark.ckan_config("ckanext.jupyternotebook.fetch_allowlist", "127.0.0.1")
def test_link_preview_ignores_proxy_variables_and_netrc(files, proxy, monkeypatch, tmp_path):
    from ckanext.jupyternotebook import preview
    files.routes["/nb.ipynb"] = Route(demo_notebook_bytes())
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, proxy.url(""))
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(netrc))
    raw = preview.read_resource({"id": "x", "url_type": "", "url": files.url("/nb.ipynb")},
                                limit=10**6)
    assert raw == demo_notebook_bytes()
    assert proxy.hits == []
    assert "authorization" not in files.hits[0].headers


@pytest.mark.ckan_config("ckanext.jupyternotebook.fetch_allowlist", "127.0.0.1")
def test_link_preview_of_a_slow_drip_server_ends_at_one_deadline(files, monkeypatch):
    import time
    from ckanext.jupyternotebook import preview
    from ckanext.jupyternotebook.preview import fetch
    # 400 bytes at one per 50 ms: every read is quick, the whole takes 20 s
    files.routes["/slow.ipynb"] = Route(b"{" + b" " * 399, trickle=0.05, content_length=None)
    monkeypatch.setattr(fetch, "READ_URL_SECONDS", 1)
    started = time.monotonic()
    with pytest.raises(preview.NotebookUnavailable, match="timed out after 1 s"):
        preview.read_resource({"id": "x", "url_type": "", "url": files.url("/slow.ipynb")},
                              limit=10**6)
    assert time.monotonic() - started < 3


@pytest.mark.ckan_config("ckanext.jupyternotebook.fetch_allowlist", "127.0.0.1")
def test_failed_link_read_is_remembered_and_not_retried_at_once(files, monkeypatch):
    from ckanext.jupyternotebook import preview
    from ckanext.jupyternotebook.preview import fetch
    preview.cache.clear()
    files.routes["/stall.ipynb"] = Route(b"{}", stall=30)
    monkeypatch.setattr(fetch, "READ_URL_SECONDS", 1)
    resource = {"id": "r-stall", "url_type": "", "url": files.url("/stall.ipynb"),
                "metadata_modified": "2024-01-01T00:00:00"}
    for _ in range(3):
        with pytest.raises(preview.NotebookUnavailable):
            preview.resource_preview(resource)
    assert len(files.hits) == 1


# --------------------------------------------------------------------------
# through CKAN


def _sysadmin_name() -> str:
    return factories.Sysadmin()["name"]


def _notebook_resource(create_with_upload, data: bytes, name="analysis.ipynb",
                       **extra):
    extra.setdefault("owner_org", factories.Organization()["id"])
    dataset = factories.Dataset(**extra)
    resource = create_with_upload(data, name, package_id=dataset["id"],
                                  name=name, url="analysis.ipynb",
                                  context={"user": _sysadmin_name()})
    return dataset, resource


@pytest.mark.usefixtures("with_plugins", "non_clean_db")
def test_new_ipynb_resource_gets_the_view_by_default(create_with_upload):
    _dataset, resource = _notebook_resource(create_with_upload,
                                            demo_notebook_bytes())
    views = helpers.call_action("resource_view_list", id=resource["id"])
    assert [v["view_type"] for v in views] == ["jupyter_notebook"]


@pytest.mark.usefixtures("with_plugins", "non_clean_db")
def test_csv_resource_gets_no_notebook_view(create_with_upload):
    dataset = factories.Dataset(owner_org=factories.Organization()["id"])
    resource = create_with_upload(b"a,b\n1,2\n", "t.csv",
                                  package_id=dataset["id"], url="t.csv",
                                  context={"user": _sysadmin_name()})
    views = helpers.call_action("resource_view_list", id=resource["id"])
    assert "jupyter_notebook" not in [v["view_type"] for v in views]


@pytest.mark.usefixtures("with_plugins", "non_clean_db")
def test_preview_url_serves_the_demo_notebook_sandboxed(app,
                                                        create_with_upload):
    dataset, resource = _notebook_resource(create_with_upload,
                                           demo_notebook_bytes())
    url = f"/dataset/{dataset['name']}/resource/{resource['id']}/jupyter/preview"
    response = app.get(url)
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert csp.startswith("sandbox;")
    assert "default-src 'none'" in csp and "img-src data:" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert 'class="cell' in response.body
    assert "<script" not in response.body.lower()


@pytest.mark.usefixtures("with_plugins", "non_clean_db")
def test_resource_page_embeds_the_preview_in_a_sandboxed_iframe(
        app, create_with_upload):
    dataset, resource = _notebook_resource(create_with_upload,
                                           demo_notebook_bytes())
    body = app.get(f"/dataset/{dataset['name']}/resource/{resource['id']}").body
    assert 'class="jupyternotebook-preview"' in body
    assert 'sandbox=""' in body
    assert "allow-same-origin" not in body
    assert f"/resource/{resource['id']}/jupyter/preview" in body


@pytest.mark.usefixtures("with_plugins", "non_clean_db")
def test_resource_page_has_a_run_this_notebook_post_form_with_csrf(
        app, create_with_upload):
    dataset, resource = _notebook_resource(create_with_upload,
                                           demo_notebook_bytes())
    body = app.get(f"/dataset/{dataset['name']}/resource/{resource['id']}").body
    action = f"/dataset/{dataset['name']}/resource/{resource['id']}/jupyter"
    assert f'action="{action}"' in body
    assert "Run this notebook" in body
    form = body[body.index(f'action="{action}"'):]
    form = form[:form.index("</form>")]
    assert 'method="post"' in body[body.rindex("<form", 0, body.index(f'action="{action}"')):body.index(f'action="{action}"')]
    assert "_csrf_token" in form


@pytest.mark.usefixtures("with_plugins", "non_clean_db")
def test_malformed_notebook_gives_a_friendly_message_in_the_view(
        app, create_with_upload):
    dataset, resource = _notebook_resource(create_with_upload,
                                           b'{"cells": [ broken')
    response = app.get(
        f"/dataset/{dataset['name']}/resource/{resource['id']}")
    assert response.status_code == 200
    assert "jupyternotebook-preview-error" in response.body
    assert "not a valid Jupyter notebook" in response.body
    preview = app.get(f"/dataset/{dataset['name']}/resource/"
                      f"{resource['id']}/jupyter/preview")
    assert preview.status_code == 200
    assert "not a valid Jupyter notebook" in preview.body


def _preview_and_resource_page(app, dataset, resource):
    page = app.get(f"/dataset/{dataset['name']}/resource/{resource['id']}")
    frame = app.get(f"/dataset/{dataset['name']}/resource/{resource['id']}/jupyter/preview")
    assert page.status_code == 200 and frame.status_code == 200
    return page.body, frame.body


@pytest.mark.usefixtures("with_plugins", "non_clean_db")
@pytest.mark.parametrize("filename,cells,texts", [
    ("v3_rainfall.ipynb", 5, ["Rainfall by station", "from the v3 era", "25.6",
                              'src="data:image/png;base64,']),
    ("v3_no_metadata.ipynb", 5, ["Rainfall by station", "without notebook metadata"]),
    ("v4_bad_cell_ids.ipynb", 4, ["Duplicated ids", "invalid id cell", "Last cell"]),
    ("v4_5_invalid_metadata.ipynb", 2, ["Odd metadata"]),
])
def test_notebooks_nbformat_can_upgrade_or_repair_are_previewed(
        app, create_with_upload, filename, cells, texts):
    dataset, resource = _notebook_resource(create_with_upload, (DATA / filename).read_bytes())
    page, frame = _preview_and_resource_page(app, dataset, resource)
    assert "jupyternotebook-preview-error" not in page
    assert "not a valid Jupyter notebook" not in frame
    assert frame.count('class="cell ') == cells
    for text in texts:
        assert text in frame


@pytest.mark.usefixtures("with_plugins", "non_clean_db")
@pytest.mark.parametrize("data,why", [
    ((DATA / "not_a_notebook.json").read_bytes(), "its structure does not follow the notebook format"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "it is not readable JSON"),
])
def test_files_that_are_not_notebooks_get_the_not_a_valid_notebook_message(
        app, create_with_upload, data, why):
    dataset, resource = _notebook_resource(create_with_upload, data)
    page, frame = _preview_and_resource_page(app, dataset, resource)
    for body in (page, frame):
        assert "This file is not a valid Jupyter notebook: " + why in body
    assert 'class="cell' not in frame


@pytest.mark.usefixtures("with_plugins", "non_clean_db")
@pytest.mark.ckan_config("ckanext.jupyternotebook.preview_max_size", "500")
def test_oversized_notebook_gives_a_friendly_message_in_the_view(
        app, create_with_upload):
    dataset, resource = _notebook_resource(create_with_upload,
                                           demo_notebook_bytes())
    response = app.get(
        f"/dataset/{dataset['name']}/resource/{resource['id']}")
    assert response.status_code == 200
    assert "too large to preview (the limit is 500 bytes)" in response.body


@pytest.mark.usefixtures("with_plugins", "non_clean_db")
def test_preview_of_a_private_dataset_is_refused_to_anonymous(
        app, create_with_upload):
    dataset, resource = _notebook_resource(
        create_with_upload, demo_notebook_bytes(), private=True)
    response = app.get(f"/dataset/{dataset['id']}/resource/"
                       f"{resource['id']}/jupyter/preview")
    assert response.status_code in (403, 404)


@pytest.mark.usefixtures("with_plugins", "non_clean_db")
def test_preview_of_a_resource_of_another_dataset_is_not_found(
        app, create_with_upload):
    _dataset, resource = _notebook_resource(create_with_upload,
                                            demo_notebook_bytes())
    other = factories.Dataset(owner_org=factories.Organization()["id"])
    response = app.get(f"/dataset/{other['id']}/resource/"
                       f"{resource['id']}/jupyter/preview")
    assert response.status_code == 404


@pytest.mark.usefixtures("with_plugins", "non_clean_db")
@pytest.mark.parametrize("locale,text", [
    ("ru", "Запустить этот блокнот"),
    ("ko_KR", "이 노트북 실행"),
    ("pt_BR", "Executar este notebook"),
])
def test_resource_view_is_translated(app, create_with_upload, locale, text):
    dataset, resource = _notebook_resource(create_with_upload,
                                           demo_notebook_bytes())
    body = app.get(f"/{locale}/dataset/{dataset['name']}/resource/"
                   f"{resource['id']}").body
    assert text in body


def test_default_views_gain_the_notebook_view_unless_turned_off():
    from ckanext.jupyternotebook import notebook_view
    config = {"ckan.views.default_views": "image_view datatables_view"}
    notebook_view.add_to_default_views(config)
    assert config["ckan.views.default_views"] == [
        "image_view", "datatables_view", "jupyter_notebook"]
    config = {"ckan.views.default_views": "image_view",
              "ckanext.jupyternotebook.default_view": "false"}
    notebook_view.add_to_default_views(config)
    assert config["ckan.views.default_views"] == "image_view"
