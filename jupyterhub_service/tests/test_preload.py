"""Preloading into the shared cache, against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import os
import socket
import ssl
import stat
import threading
import tracemalloc
import zlib

import pytest
import urllib3.util.connection

from jupyterhub_service.guarded_download import forbidden_reason
from jupyterhub_service.preload import (
    Fetched,
    ResourceCache,
    ResourceSpec,
    populate_data_dir,
    safe_filename,
)

from .fileserver import FileServer, Route, make_tls_files

MiB = 1 << 20


@pytest.fixture
def server():
    s = FileServer().start()
    yield s
    s.stop()


@pytest.fixture
def other_server():
    s = FileServer().start()
    yield s
    s.stop()


@pytest.fixture
def make_cache(tmp_path):
    caches = []

    def make(**kw):
        options = dict(
            max_bytes=100 * MiB,
            max_resource_size=10 * MiB,
            download_timeout=30,
            fetch_allowlist=["127.0.0.1"],
        )
        options.update(kw)
        cache = ResourceCache(tmp_path / "cache", **options)
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        cache.close()


@pytest.fixture
def connections(monkeypatch):
    """Every address urllib3 connects to, so tests can prove none was tried."""
    seen = []
    real = urllib3.util.connection.create_connection

    def recording(address, *args, **kw):
        seen.append(address)
        return real(address, *args, **kw)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", recording)
    monkeypatch.setattr("urllib3.connection.connection.create_connection", recording)
    return seen


def spec(url, *, id="res-1", name="data.csv", fmt="CSV", source="external", **kw):
    return ResourceSpec(id=id, name=name, format=fmt, fetch_url=url, source=source, **kw)


def fetch(cache, *specs, dataset_id="ds-1"):
    return asyncio.run(cache.fetch_all(list(specs), dataset_id=dataset_id))


# -- downloading and reuse ---------------------------------------------------


def test_download_is_byte_identical_to_the_served_file(server, make_cache):
    body = os.urandom(3 * MiB + 123)
    server.routes["/big.bin"] = Route(body)
    [result] = fetch(make_cache(), spec(server.url("/big.bin"), source="ckan", hash="h1"))
    assert result.error is None
    assert result.path.read_bytes() == body
    assert result.downloaded_bytes == len(body)


def test_second_fetch_of_unchanged_resource_downloads_nothing(server, make_cache):
    server.routes["/a.csv"] = Route(b"a,b\n1,2\n")
    cache = make_cache()
    first = fetch(cache, spec(server.url("/a.csv"), source="ckan", hash="h1"))
    second = fetch(cache, spec(server.url("/a.csv"), source="ckan", hash="h1"))
    assert first[0].downloaded_bytes == 8
    assert second[0].downloaded_bytes == 0
    assert second[0].path == first[0].path
    assert len(server.hits) == 1


def test_second_fetch_keyed_on_last_modified_downloads_nothing(server, make_cache):
    server.routes["/a.csv"] = Route(b"a,b\n1,2\n")
    cache = make_cache()
    fetch(cache, spec(server.url("/a.csv"), source="ckan", last_modified="2024-01-01T00:00:00"))
    [again] = fetch(cache, spec(server.url("/a.csv"), source="ckan", last_modified="2024-01-01T00:00:00"))
    assert again.downloaded_bytes == 0
    assert len(server.hits) == 1


def test_changed_hash_downloads_again(server, make_cache):
    server.routes["/a.csv"] = Route(b"old\n")
    cache = make_cache()
    fetch(cache, spec(server.url("/a.csv"), source="ckan", hash="h1"))
    server.routes["/a.csv"] = Route(b"new!\n")
    [result] = fetch(cache, spec(server.url("/a.csv"), source="ckan", hash="h2"))
    assert result.downloaded_bytes == 5
    assert result.path.read_bytes() == b"new!\n"


def test_external_link_without_hash_is_reused_after_a_304_on_its_etag(server, make_cache):
    server.routes["/link.csv"] = Route(b"x,y\n3,4\n", etag='"v1"')
    cache = make_cache()
    [first] = fetch(cache, spec(server.url("/link.csv")))
    [second] = fetch(cache, spec(server.url("/link.csv")))
    assert first.downloaded_bytes == 8
    assert second.downloaded_bytes == 0
    assert second.path.read_bytes() == b"x,y\n3,4\n"
    assert server.hits[1].headers["if-none-match"] == '"v1"'
    assert server.hits[1].status == 304


def test_external_link_with_a_new_etag_is_downloaded_again(server, make_cache):
    server.routes["/link.csv"] = Route(b"old\n", etag='"v1"')
    cache = make_cache()
    fetch(cache, spec(server.url("/link.csv")))
    server.routes["/link.csv"] = Route(b"newer\n", etag='"v2"')
    [result] = fetch(cache, spec(server.url("/link.csv")))
    assert result.downloaded_bytes == 6
    assert result.path.read_bytes() == b"newer\n"


def test_external_link_is_revalidated_with_if_modified_since(server, make_cache):
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"
    server.routes["/lm.csv"] = Route(b"1\n", last_modified=stamp)
    cache = make_cache()
    fetch(cache, spec(server.url("/lm.csv")))
    [second] = fetch(cache, spec(server.url("/lm.csv")))
    assert second.downloaded_bytes == 0
    assert server.hits[1].headers["if-modified-since"] == stamp
    assert server.hits[1].status == 304


def test_link_without_validators_is_keyed_on_metadata_modified(server, make_cache):
    server.routes["/plain.csv"] = Route(b"1\n")
    cache = make_cache()
    fetch(cache, spec(server.url("/plain.csv"), metadata_modified="2024-05-01T10:00:00"))
    [second] = fetch(cache, spec(server.url("/plain.csv"), metadata_modified="2024-05-01T10:00:00"))
    assert second.downloaded_bytes == 0
    assert len(server.hits) == 1


def test_link_without_any_validator_is_downloaded_every_time(server, make_cache):
    server.routes["/plain.csv"] = Route(b"1\n")
    cache = make_cache()
    fetch(cache, spec(server.url("/plain.csv")))
    [second] = fetch(cache, spec(server.url("/plain.csv")))
    assert second.downloaded_bytes == 2
    assert len(server.hits) == 2


def test_concurrent_fetches_of_one_resource_download_it_once(server, make_cache):
    server.routes["/shared.csv"] = Route(b"z" * 5000, hold=threading.Event())
    cache = make_cache()

    async def scenario():
        resource = spec(server.url("/shared.csv"), source="ckan", hash="h1")
        tasks = [asyncio.create_task(cache.fetch_all([resource])) for _ in range(5)]
        while not server.hits:  # the first download is in flight, the others wait
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        server.routes["/shared.csv"].hold.set()
        return [r for [r] in await asyncio.gather(*tasks)]

    results = asyncio.run(scenario())
    assert len(server.hits) == 1
    assert sorted(r.downloaded_bytes for r in results) == [0, 0, 0, 0, 5000]
    assert {r.path for r in results} == {results[0].path}


def test_event_loop_keeps_running_while_a_download_is_in_flight(server, make_cache):
    server.routes["/held.csv"] = Route(b"1\n", hold=threading.Event())
    cache = make_cache()

    async def scenario():
        task = asyncio.create_task(cache.fetch_all([spec(server.url("/held.csv"), hash="h")]))
        while not server.hits:
            await asyncio.sleep(0.01)
        for _ in range(3):
            await asyncio.sleep(0)
        in_flight = not task.done()
        server.routes["/held.csv"].hold.set()
        return in_flight, await task

    in_flight, [result] = asyncio.run(scenario())
    assert in_flight
    assert result.error is None


def test_one_failing_resource_does_not_fail_the_others(server, make_cache):
    server.routes["/ok.csv"] = Route(b"ok\n")
    results = fetch(
        make_cache(),
        spec(server.url("/ok.csv"), id="r1", source="ckan", hash="h"),
        spec(server.url("/missing.csv"), id="r2", name="missing.csv", source="ckan", hash="h"),
        spec("", id="r3", name="nourl"),
    )
    assert results[0].error is None
    assert results[1].error == "HTTP 404"
    assert results[2].error == "no download URL"


def test_redirect_between_allowed_hosts_is_followed(server, make_cache):
    server.routes["/old"] = Route(location="/new")
    server.routes["/new"] = Route(b"moved\n")
    [result] = fetch(make_cache(), spec(server.url("/old"), hash="h"))
    assert result.error is None
    assert result.path.read_bytes() == b"moved\n"


def test_redirect_loop_fails_after_five_hops(server, make_cache):
    server.routes["/loop"] = Route(location="/loop")
    [result] = fetch(make_cache(), spec(server.url("/loop"), hash="h"))
    assert result.error == "too many redirects (more than 5)"
    assert len(server.hits) == 6


# -- limits --------------------------------------------------------------------


def test_content_length_over_the_limit_is_refused_before_the_body(server, make_cache):
    # Declares 10 GiB but sends 4 bytes: only the header can have refused it.
    server.routes["/huge"] = Route(b"tiny", content_length=10 << 30)
    cache = make_cache(max_resource_size=2 << 30)
    [result] = fetch(cache, spec(server.url("/huge"), hash="h"))
    assert result.error == "larger than the 2 GiB limit"
    assert result.path is None
    assert cache.entries() == []


def test_body_over_the_limit_without_content_length_is_aborted_mid_stream(server, make_cache, tmp_path):
    server.routes["/stream"] = Route(b"x" * (3 * MiB), content_length=None)
    cache = make_cache(max_resource_size=MiB)
    [result] = fetch(cache, spec(server.url("/stream"), hash="h"))
    assert result.error == "larger than the 1 MiB limit"
    assert cache.entries() == []
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


def test_stalled_download_times_out(server, make_cache):
    server.routes["/stall"] = Route(b"late", stall=30)
    [result] = fetch(make_cache(download_timeout=1), spec(server.url("/stall"), hash="h"))
    assert result.error == "timed out after 1 s"


def test_trickling_download_times_out(server, make_cache, tmp_path):
    server.routes["/slow"] = Route(b"." * 1000, trickle=0.05, content_length=None)
    cache = make_cache(download_timeout=1)
    [result] = fetch(cache, spec(server.url("/slow"), hash="h"))
    assert result.error == "timed out after 1 s"
    assert cache.entries() == []
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


def _gzip_of_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip stream
    block = bytes(MiB)
    return b"".join(packer.compress(block) for _ in range(size // MiB)) + packer.flush()


def test_gzip_bomb_sent_despite_identity_stops_at_the_cap_in_bounded_memory(server, make_cache, tmp_path):
    # 256 MiB of zeros in a 256 KiB gzip body, sent although we ask for identity
    bomb = _gzip_of_zeros(256 * MiB)
    server.routes["/bomb.csv"] = Route(bomb, headers={"Content-Encoding": "gzip"})
    cache = make_cache(max_resource_size=16 * MiB)
    tracemalloc.start()
    try:
        [result] = fetch(cache, spec(server.url("/bomb.csv"), hash="h"))
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert server.hits[0].headers["accept-encoding"] == "identity"
    assert result.error == "larger than the 16 MiB limit once decompressed"
    assert peak < 8 * MiB
    assert cache.entries() == []
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []
    populate_data_dir([result], tmp_path / "data")
    readme = (tmp_path / "data" / "README.md").read_text()
    assert "- data.csv (CSV): larger than the 16 MiB limit once decompressed" in readme


def test_compressed_body_over_the_cap_is_refused_before_inflating(server, make_cache):
    noise = os.urandom(2 * MiB)  # incompressible: the gzip body itself is over 1 MiB
    server.routes["/big.gz"] = Route(gzip.compress(noise), content_length=None,
                                     headers={"Content-Encoding": "gzip"})
    [result] = fetch(make_cache(max_resource_size=MiB), spec(server.url("/big.gz"), hash="h"))
    assert result.error == "larger than the 1 MiB limit"


@pytest.mark.parametrize("encoding, pack", [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),  # zlib-wrapped, as the standard says
    ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw, as some servers send it
])
def test_compressed_body_sent_despite_identity_is_stored_decoded(encoding, pack, server, make_cache):
    body = b"a,b\n" + b"1,2\n" * 1000
    server.routes["/z.csv"] = Route(pack(body), headers={"Content-Encoding": encoding})
    [result] = fetch(make_cache(), spec(server.url("/z.csv"), hash="h"))
    assert result.error is None
    assert result.path.read_bytes() == body
    assert result.downloaded_bytes == len(body)


def test_body_in_an_unsupported_encoding_is_refused(server, make_cache):
    server.routes["/b.csv"] = Route(b"\x1b\x00\x00", headers={"Content-Encoding": "br"})
    [result] = fetch(make_cache(), spec(server.url("/b.csv"), hash="h"))
    assert result.error == "the server sent the file compressed as 'br', which is not supported"


def test_truncated_gzip_body_is_refused(server, make_cache):
    server.routes["/cut.csv"] = Route(gzip.compress(os.urandom(5000))[:-100],
                                      headers={"Content-Encoding": "gzip"})
    [result] = fetch(make_cache(), spec(server.url("/cut.csv"), hash="h"))
    assert result.error == "the server sent a truncated compressed body"


# -- the SSRF guard ------------------------------------------------------------


@pytest.mark.parametrize(
    "host, kind",
    [
        ("127.0.0.1", "loopback"),
        ("localhost", "loopback"),
        ("[::1]", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("192.168.1.1", "private"),
        ("[fd00::1]", "private"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
    ],
)
def test_external_url_to_a_non_public_address_is_refused_without_connecting(host, kind, make_cache, connections):
    [result] = fetch(make_cache(fetch_allowlist=[]), spec(f"http://{host}:8/data.csv"))
    assert result.error.startswith("refused: ")
    assert f"resolves to a {kind} address" in result.error
    assert connections == []


def test_loopback_server_gets_no_request_from_a_refused_external_url(server, make_cache):
    server.routes["/a.csv"] = Route(b"secret\n")
    for url in (server.url("/a.csv"), server.url("/a.csv", host="localhost")):
        [result] = fetch(make_cache(fetch_allowlist=[]), spec(url))
        assert result.error.startswith("refused: ")
    assert server.hits == []


@pytest.mark.parametrize(
    "target",
    ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x", "http://192.168.0.1/x", "http://[::1]:9/x"],
)
def test_redirect_from_an_allowed_server_to_a_private_address_is_refused(target, server, make_cache, connections):
    server.routes["/go"] = Route(location=target)
    [result] = fetch(make_cache(), spec(server.url("/go"), hash="h"))
    assert result.error.startswith("refused: ")
    assert [address[1] for address in connections] == [server.port]


def test_redirect_from_an_allowed_server_to_localhost_never_reaches_it(server, other_server, make_cache):
    other_server.routes["/secret"] = Route(b"secret\n")
    server.routes["/go"] = Route(location=other_server.url("/secret", host="localhost"))
    [result] = fetch(make_cache(), spec(server.url("/go"), hash="h"))
    assert result.error.startswith("refused: localhost resolves to a loopback address")
    assert other_server.hits == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/x.csv", "gopher://127.0.0.1/"])
def test_non_http_url_is_refused(url, make_cache):
    [result] = fetch(make_cache(), spec(url, hash="h"))
    assert result.error == "refused: only http and https URLs are fetched"


def test_ckan_built_url_on_loopback_is_trusted(server, make_cache):
    server.routes["/jupyter/fetch/r1"] = Route(b"ok\n")
    [result] = fetch(make_cache(fetch_allowlist=[]), spec(server.url("/jupyter/fetch/r1?grant=x"), source="ckan", hash="h"))
    assert result.error is None


@pytest.fixture
def fake_dns(monkeypatch):
    """Names that resolve to chosen addresses, counting every lookup."""
    table: dict[str, str] = {}
    lookups: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kw):
        lookups.append(host)
        if host in table:
            family = socket.AF_INET6 if ":" in table[host] else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (table[host], port))]
        return real(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table, lookups


@pytest.fixture
def tls_server(tmp_path):
    ca, cert, key = make_tls_files(tmp_path, "files.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    s = FileServer(ssl_context=context).start()
    s.ca = str(ca)
    yield s
    s.stop()


def test_https_connects_to_the_checked_address_and_verifies_the_host_name(tls_server, make_cache, fake_dns):
    table, _ = fake_dns
    table["files.test"] = "127.0.0.1"
    tls_server.routes["/a.csv"] = Route(b"tls\n")
    cache = make_cache(fetch_allowlist=["files.test"], ca_bundle=tls_server.ca)
    [result] = fetch(cache, spec(f"https://files.test:{tls_server.port}/a.csv", hash="h"))
    assert result.error is None
    assert result.path.read_bytes() == b"tls\n"
    assert tls_server.hits[0].headers["host"] == f"files.test:{tls_server.port}"


def test_https_certificate_for_another_host_is_rejected(tls_server, make_cache, fake_dns):
    table, _ = fake_dns
    table["other.test"] = "127.0.0.1"
    tls_server.routes["/a.csv"] = Route(b"tls\n")
    cache = make_cache(fetch_allowlist=["other.test"], ca_bundle=tls_server.ca)
    [result] = fetch(cache, spec(f"https://other.test:{tls_server.port}/a.csv", hash="h"))
    assert result.path is None
    assert result.error.startswith("TLS certificate check failed: ")
    assert tls_server.hits == []


def test_connection_goes_to_the_checked_address_without_a_second_lookup(make_cache, fake_dns, monkeypatch):
    table, lookups = fake_dns
    table["public.test"] = "93.184.215.14"
    attempts = []

    def refuse(address, *args, **kw):  # records the target, sends nothing
        attempts.append(address)
        raise ConnectionRefusedError("test: no traffic leaves the machine")

    monkeypatch.setattr("urllib3.connection.connection.create_connection", refuse)
    [result] = fetch(make_cache(fetch_allowlist=[]), spec("http://public.test/a.csv"))
    assert lookups == ["public.test"]
    assert attempts == [("93.184.215.14", 80)]
    assert result.error.startswith("could not connect to public.test")


def test_name_resolving_to_a_private_address_is_refused(make_cache, fake_dns, connections):
    table, _ = fake_dns
    table["intranet.test"] = "10.20.30.40"
    [result] = fetch(make_cache(fetch_allowlist=[]), spec("http://intranet.test/a.csv"))
    assert result.error == "refused: intranet.test resolves to a private address (10.20.30.40)"
    assert connections == []


@pytest.mark.parametrize(
    "address, reason",
    [
        ("::ffff:10.0.0.1", "private"),
        ("2002:a00:1::", "private"),  # 6to4 wrapping 10.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 wrapping 169.254.169.254
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("fe80::1", "link-local"),
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_classification_sees_through_ipv6_wrappings(address, reason):
    assert forbidden_reason(ipaddress.ip_address(address)) == reason


def test_from_dict_treats_unmarked_urls_as_external_unless_trusted_prefix():
    d = {"id": "r", "name": "n", "format": "CSV", "fetch_url": "http://ckan.local/jupyter/fetch/r?grant=g", "size": "12"}
    assert ResourceSpec.from_dict(d).source == "external"
    assert ResourceSpec.from_dict(d, trusted_prefixes=["http://ckan.local/jupyter/fetch/"]).source == "ckan"
    assert ResourceSpec.from_dict({**d, "source": "ckan"}).source == "ckan"
    assert ResourceSpec.from_dict(d).size == 12


# -- the cache -----------------------------------------------------------------


def test_cache_dir_is_private_and_entries_are_read_only(server, make_cache, tmp_path):
    server.routes["/a.csv"] = Route(b"1\n")
    [result] = fetch(make_cache(), spec(server.url("/a.csv"), hash="h"))
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o444


def _fill(server, cache, names, size=1000):
    results = {}
    for name in names:
        server.routes[f"/{name}"] = Route(name.encode() * size)
        [results[name]] = fetch(cache, spec(server.url(f"/{name}"), id=name, hash="h"))
    return results


def test_evict_removes_least_recently_used_first_and_never_kept_entries(server, make_cache):
    cache = make_cache(max_bytes=2000)
    r = _fill(server, cache, ["a", "b", "c", "d"])
    fetch(cache, spec(server.url("/b"), id="b", hash="h"))  # b is now the most recent
    freed = cache.evict(keep={r["a"].cache_key})
    assert freed == 2000
    assert {e["resource_id"] for e in cache.entries()} == {"a", "b"}
    assert cache.total_bytes() == 2000


def test_evict_below_the_limit_removes_nothing(server, make_cache):
    cache = make_cache(max_bytes=10_000)
    _fill(server, cache, ["a", "b"])
    assert cache.evict(keep=set()) == 0
    assert len(cache.entries()) == 2


def test_clear_removes_one_datasets_entries_except_kept(server, make_cache):
    cache = make_cache()
    server.routes["/x"] = Route(b"x")
    kept, other, gone = (
        fetch(cache, spec(server.url("/x"), id=i, hash="h"), dataset_id=d)[0]
        for i, d in (("k", "ds-1"), ("o", "ds-2"), ("g", "ds-1"))
    )
    cache.clear(keep={kept.cache_key}, dataset_id="ds-1")
    assert {e["resource_id"] for e in cache.entries()} == {"k", "o"}


def test_evicted_entry_stays_readable_in_a_running_session(server, make_cache, tmp_path):
    cache = make_cache(max_bytes=0)
    r = _fill(server, cache, ["a"])
    populate_data_dir([r["a"]], tmp_path / "data")
    cache.evict(keep=set())
    assert cache.entries() == []
    assert (tmp_path / "data" / "data.csv").read_bytes() == b"a" * 1000


# -- file names and the data directory -----------------------------------------


@pytest.mark.parametrize(
    "name, fmt, expected",
    [
        ("../../etc/passwd", "", "passwd"),
        ("../../etc/passwd", "CSV", "passwd.csv"),
        ("..\\..\\boot.ini", "", "boot.ini"),
        (".bashrc", "", "bashrc"),
        ("..", "CSV", "resource-r1.csv"),
        ("bad\x00na\nme\x1b.csv", "csv", "bad_na_me.csv"),
        ("Population 2024.XLSX", "xlsx", "Population_2024.xlsx"),
        ("table", "text/tab-separated-values", "table.tsv"),
        ("report.csv", "", "report.csv"),
        ("README.md", "", "README-2.md"),
    ],
)
def test_safe_filename(name, fmt, expected):
    assert safe_filename(name, fmt, {"readme.md"}, fallback="r1") == expected


def test_safe_filenames_are_unique_within_one_dataset():
    taken: set[str] = set()
    names = [safe_filename("data.csv", "CSV", taken, fallback="r") for _ in range(3)]
    assert names == ["data.csv", "data-2.csv", "data-3.csv"]


def _fake(tmp_path, name, body=b"1,2\n", *, fmt="CSV", filename=None, error=None) -> Fetched:
    resource = ResourceSpec(id=name, name=name, format=fmt, fetch_url="http://x", source="ckan")
    if error:
        return Fetched(resource, filename or name, None, None, error, 0)
    source = tmp_path / "src" / f"{abs(hash(name))}"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(body)
    return Fetched(resource, filename or name, "k", source, None, len(body))


def test_populate_data_dir_makes_read_only_files_in_a_read_only_dir(tmp_path):
    data = tmp_path / "home" / "data"
    populate_data_dir([_fake(tmp_path, "a.csv"), _fake(tmp_path, "b.json", b"{}")], data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o555
    for name in ("a.csv", "b.json", "README.md"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o444
        assert (data / name).stat().st_uid == os.geteuid()
    assert (data / "b.json").read_bytes() == b"{}"


def test_populate_data_dir_hard_links_the_cache_file(tmp_path):
    item = _fake(tmp_path, "a.csv")
    populate_data_dir([item], tmp_path / "data")
    assert (tmp_path / "data" / "a.csv").stat().st_ino == item.path.stat().st_ino


def test_readme_lists_files_and_every_failure_with_its_reason(tmp_path):
    items = [
        _fake(tmp_path, "a.csv"),
        _fake(tmp_path, "huge.zip", fmt="ZIP", error="larger than the 2 GiB limit"),
        _fake(tmp_path, "meta.json", fmt="JSON", error="refused: metadata resolves to a link-local address (169.254.169.254)"),
    ]
    populate_data_dir(items, tmp_path / "data")
    readme = (tmp_path / "data" / "README.md").read_text()
    assert "`a.csv`" in readme
    assert "huge.zip (ZIP): larger than the 2 GiB limit" in readme
    assert "meta.json (JSON): refused: metadata resolves to a link-local address (169.254.169.254)" in readme
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["README.md", "a.csv"]


def test_traversal_resource_name_stays_inside_the_data_dir(server, make_cache, tmp_path):
    server.routes["/p"] = Route(b"root:x:0:0\n")
    [result] = fetch(make_cache(), spec(server.url("/p"), name="../../etc/passwd", fmt="", hash="h"))
    data = tmp_path / "home" / "data"
    populate_data_dir([result], data)
    assert result.filename == "passwd"
    assert sorted(p.name for p in data.iterdir()) == ["README.md", "passwd"]
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize("filename", ["..", ".", "../escape.csv", ".hidden", "README.md", "a/b.csv"])
def test_populate_data_dir_refuses_unsafe_file_names(filename, tmp_path):
    populate_data_dir([_fake(tmp_path, "x.csv", filename=filename)], tmp_path / "home" / "data")
    assert sorted(p.name for p in (tmp_path / "home" / "data").iterdir()) == ["README.md"]
    assert "unsafe file name" in (tmp_path / "home" / "data" / "README.md").read_text()
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["data"]


def test_populate_data_dir_can_refill_an_existing_read_only_dir(tmp_path):
    data = tmp_path / "data"
    populate_data_dir([], data)
    populate_data_dir([_fake(tmp_path, "a.csv")], data)
    assert (data / "a.csv").exists()
    assert stat.S_IMODE(data.stat().st_mode) == 0o555
