"""One HTTP download that cannot be turned against the machine running it.

Used by the bridge (preloading a session's data) and by the CKAN plugin (the
notebook preview), so it depends on the standard library, urllib3 and certifi
only::

    downloader = GuardedDownloader(max_bytes=..., timeout=..., allowlist=[...])
    with open(path, "wb") as sink:
        result = downloader.fetch(url, sink, trusted=False, validators=None)

What it guarantees for an untrusted URL (``trusted=False``):

- only http and https; at most ``MAX_REDIRECTS`` redirects, each hop checked
  like the first;
- each host is resolved once, every address is checked (loopback, private,
  link-local, CGNAT, multicast, reserved, and the same inside IPv4-mapped,
  6to4, NAT64 and Teredo addresses), and the connection goes to the checked
  address while the Host header and TLS SNI keep the name, so a DNS answer
  that changes between the check and the connection (rebinding) is never
  used; hosts in ``allowlist`` skip the address check;
- no proxy from the environment and no ``.netrc`` credentials: urllib3 reads
  neither, unlike requests;
- one deadline for the whole fetch (name resolution, every hop, the body),
  enforced by a timer that shuts the socket, so a server dripping one byte a
  second cannot hold a thread longer than ``timeout``;
- ``Accept-Encoding: identity``; a body that still arrives gzip- or
  deflate-encoded is inflated in bounded steps, and both the bytes received
  and the bytes produced are capped at ``max_bytes`` (a compression bomb stops
  at the cap, with at most one chunk in memory).

A trusted URL (one CKAN built itself) skips the address check only.
Failures raise ``FetchError`` whose message is shown to the user as it is.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterable
from urllib.parse import urljoin

import certifi
import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import NewConnectionError, TimeoutError as Urllib3Timeout

CHUNK_SIZE = 1 << 20
MAX_REDIRECTS = 5
USER_AGENT = "ckanext-jupyternotebook"
_REDIRECTS = {301, 302, 303, 307, 308}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class FetchError(Exception):
    """A download failed; the message is shown to the user as the reason."""


class TooLarge(FetchError):
    def __init__(self, limit: int, when: str = "") -> None:
        super().__init__(f"larger than the {human_size(limit)} limit{when}")
        self.limit = limit


class TimedOut(FetchError):
    pass


@dataclass
class Download:
    not_modified: bool = False
    size: int = 0  # bytes written to the sink (decoded)
    etag: str | None = None
    last_modified: str | None = None


def human_size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            break
        n /= 1024
    if unit == "bytes":
        return f"{int(n)} bytes"
    return f"{n:.1f}".rstrip("0").rstrip(".") + f" {unit}"


def forbidden_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address must not be fetched from, or None when it is public."""
    if ip.version == 6:
        embedded = [ip.ipv4_mapped, ip.sixtofour]
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.teredo:
            embedded.extend(ip.teredo)
        for inner in embedded:
            if inner is not None and forbidden_reason(inner):
                return forbidden_reason(inner)
    for attr, reason in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, attr):
            return reason
    if not ip.is_global:
        return "non-public"
    return None


class _Transfer:
    """A fetch's current connection, so a timer can cut it at the deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._response = None

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if self.cancelled.is_set() or left <= 0:
            raise TimedOut()
        return left

    def attach(self, response) -> None:
        with self._lock:
            self._response = response
            if self.cancelled.is_set():
                self._shutdown()

    def cancel(self) -> None:
        with self._lock:
            self.cancelled.set()
            self._shutdown()

    def _shutdown(self) -> None:
        # Unblocks a read that is waiting on the socket in the fetching thread.
        try:
            if self._response is not None:
                self._response.shutdown()
        except (ValueError, RuntimeError, OSError):
            pass


class _Inflater:
    """Decodes one Content-Encoding in bounded steps."""

    def __init__(self, encoding: str) -> None:
        # 47 = 32 + 15: zlib or gzip header, detected; deflate is zlib-wrapped
        # by the standard, raw by some servers (retried below)
        self._raw_fallback = encoding == "deflate"
        self._d = zlib.decompressobj(47 if encoding in ("gzip", "x-gzip") else 15)
        self._started = False

    def feed(self, data: bytes, max_out: int):
        """Yield decoded pieces of at most ``max_out`` bytes each."""
        while data:
            try:
                out = self._d.decompress(data, max_out)
            except zlib.error:
                if self._raw_fallback and not self._started:
                    self._d, self._raw_fallback = zlib.decompressobj(-15), False
                    continue
                raise FetchError("the server sent a damaged compressed body") from None
            self._started = True
            data = self._d.unconsumed_tail
            if out:
                yield out
            if self._d.eof:
                return

    def finish(self) -> None:
        if self._started and not self._d.eof:
            raise FetchError("the server sent a truncated compressed body")


class GuardedDownloader:
    def __init__(
        self,
        *,
        max_bytes: int,
        timeout: float,
        allowlist: Iterable[str] = (),
        ca_bundle: str | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.allowlist = {h.strip().lower().strip("[]") for h in allowlist if h.strip()}
        self.ca_bundle = ca_bundle or certifi.where()
        self.user_agent = user_agent

    def fetch(self, url: str, sink: BinaryIO, *, trusted: bool = False,
              validators: dict | None = None) -> Download:
        """GET ``url`` into ``sink``; raises FetchError. ``validators`` (etag,
        last_modified) make it conditional: a 304 gives ``not_modified``."""
        transfer = _Transfer(time.monotonic() + self.timeout)
        timer = threading.Timer(self.timeout, transfer.cancel)
        timer.daemon = True
        timer.start()
        try:
            return self._follow(url, sink, trusted, validators, transfer)
        except TimedOut:
            raise TimedOut(f"timed out after {self.timeout:g} s") from None
        except (Urllib3Timeout, socket.timeout):
            raise TimedOut(f"timed out after {self.timeout:g} s") from None
        except (urllib3.exceptions.SSLError, ssl.SSLError) as exc:
            raise FetchError(f"TLS certificate check failed: {_describe(exc)}") from None
        except (Urllib3Error, OSError) as exc:
            if transfer.cancelled.is_set():
                raise TimedOut(f"timed out after {self.timeout:g} s") from None
            raise FetchError(f"download failed: {_describe(exc)}") from None
        finally:
            timer.cancel()

    def _follow(self, url, sink, trusted, validators, transfer) -> Download:
        headers = {"Accept-Encoding": "identity", "User-Agent": self.user_agent}
        if validators:
            if validators.get("etag"):
                headers["If-None-Match"] = validators["etag"]
            if validators.get("last_modified"):
                headers["If-Modified-Since"] = validators["last_modified"]
        for _hop in range(MAX_REDIRECTS + 1):
            response, pool = self._open(url, headers, trusted, transfer)
            try:
                if response.status in _REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise FetchError(f"HTTP {response.status} without a Location")
                    url = urljoin(url, location)
                    continue
                if response.status == 304 and validators:
                    return Download(not_modified=True)
                if response.status != 200:
                    raise FetchError(f"HTTP {response.status}")
                size = self._stream(response, sink, transfer)
                return Download(
                    size=size,
                    etag=response.headers.get("ETag"),
                    last_modified=response.headers.get("Last-Modified"),
                )
            finally:
                response.close()
                pool.close()
        raise FetchError(f"too many redirects (more than {MAX_REDIRECTS})")

    def _stream(self, response, sink: BinaryIO, transfer: _Transfer) -> int:
        limit = self.max_bytes
        length = response.headers.get("Content-Length", "")
        if length.strip().isdigit() and int(length) > limit:
            raise TooLarge(limit)
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        if encoding in ("", "identity"):
            inflater = None
        elif encoding in ("gzip", "x-gzip", "deflate"):
            inflater = _Inflater(encoding)
        else:
            raise FetchError(f"the server sent the file compressed as {encoding[:40]!r}, "
                             "which is not supported")
        received = written = 0
        while True:
            transfer.remaining()
            chunk = response.read1(CHUNK_SIZE)
            if not chunk:
                break
            received += len(chunk)
            if received > limit:
                raise TooLarge(limit)
            pieces = [chunk] if inflater is None else inflater.feed(chunk, CHUNK_SIZE)
            for piece in pieces:
                written += len(piece)
                if written > limit:
                    raise TooLarge(limit, " once decompressed" if inflater else "")
                sink.write(piece)
                transfer.remaining()
        if inflater is not None:
            inflater.finish()
        transfer.remaining()
        return written

    def _open(self, url: str, headers: dict, trusted: bool, transfer: _Transfer):
        """GET one hop, connected to a checked address; returns (response, pool)."""
        parts = urllib3.util.parse_url(url)
        scheme = (parts.scheme or "").lower()
        if scheme not in ("http", "https"):
            raise FetchError("refused: only http and https URLs are fetched")
        host = (parts.host or "").strip("[]").lower()
        if not host:
            raise FetchError("refused: the URL has no host")
        port = parts.port or (443 if scheme == "https" else 80)
        addresses = self._resolve(host, port, trusted, transfer)

        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
        last_error: Exception | None = None
        for address in addresses:
            remaining = transfer.remaining()
            timeout = urllib3.Timeout(connect=min(remaining, 30.0), read=remaining)
            if scheme == "https":
                pool = urllib3.HTTPSConnectionPool(
                    address, port, timeout=timeout, retries=False, maxsize=1,
                    server_hostname=host, assert_hostname=host,
                    cert_reqs="CERT_REQUIRED", ca_certs=self.ca_bundle,
                )
            else:
                pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)
            try:
                response = pool.urlopen(
                    "GET", parts.request_uri, headers={**headers, "Host": netloc},
                    redirect=False, retries=False, preload_content=False,
                    decode_content=False, assert_same_host=False, release_conn=False,
                )
            except (NewConnectionError, urllib3.exceptions.ConnectTimeoutError) as exc:
                pool.close()
                last_error = exc
                continue
            except BaseException:
                pool.close()
                raise
            transfer.attach(response)
            return response, pool
        raise FetchError(f"could not connect to {host}: {_describe(last_error)}")

    def _resolve(self, host: str, port: int, trusted: bool, transfer: _Transfer) -> list[str]:
        """Resolve once, within the deadline; unless trusted or allowlisted,
        refuse unless every address is public."""
        infos = _getaddrinfo_within(host, port, transfer.remaining())
        addresses = list(dict.fromkeys(info[4][0].split("%", 1)[0] for info in infos))
        if not trusted and host not in self.allowlist:
            for address in addresses:
                reason = forbidden_reason(ipaddress.ip_address(address))
                if reason:
                    raise FetchError(f"refused: {host} resolves to a {reason} address ({address})")
        return addresses


def _getaddrinfo_within(host: str, port: int, seconds: float) -> list:
    # getaddrinfo has no timeout of its own; a thread bounds the wait (the
    # lookup itself may finish later, harmlessly)
    result: dict = {}

    def lookup() -> None:
        try:
            result["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            result["error"] = exc

    try:
        ipaddress.ip_address(host)
        lookup()  # a literal address: nothing to wait for
    except ValueError:
        thread = threading.Thread(target=lookup, daemon=True, name="resolve")
        thread.start()
        thread.join(seconds)
        if thread.is_alive():
            raise TimedOut()
    if "error" in result:
        raise FetchError(f"host not found: {host}")
    return result["infos"]


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no address"
    reason = getattr(exc, "reason", None) or exc
    text = str(reason).strip() or type(reason).__name__
    return text[:200]
