"""A real HTTP file server on 127.0.0.1 for the preload tests.

Routes serve bytes with optional ETag / Last-Modified (answering 304 to
matching conditional GETs), redirects, a missing Content-Length, a lying
Content-Length, a stall, or a trickle, over HTTP or HTTPS. Every request
is recorded. ``make_tls_files`` writes a throw-away CA and server certificate.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    etag: str | None = None
    last_modified: str | None = None
    location: str | None = None
    content_length: int | None | bool = True  # True: the real length; None: omit; int: that value
    stall: float = 0.0  # seconds of silence after the headers
    trickle: float = 0.0  # seconds between one-byte writes
    hold: threading.Event | None = None  # wait for this before sending the body
    headers: dict = field(default_factory=dict)  # sent as they are (e.g. Content-Encoding)


@dataclass
class Hit:
    path: str
    headers: dict
    status: int = 0


class FileServer:
    def __init__(self, ssl_context=None) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[Hit] = []
        self.stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        if ssl_context is not None:
            self._httpd.socket = ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def hits_for(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path.split("?", 1)[0] == path]

    def start(self) -> "FileServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler_for(server: FileServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            hit = Hit(self.path, {k.lower(): v for k, v in self.headers.items()})
            server.hits.append(hit)
            route = server.routes.get(self.path.split("?", 1)[0])
            if route is None:
                hit.status = 404
                self.send_error(404)
                return
            if route.location:
                hit.status = route.status if route.status in (301, 302, 303, 307, 308) else 302
                self.send_response(hit.status)
                self.send_header("Location", route.location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if (route.etag and hit.headers.get("if-none-match") == route.etag) or (
                route.last_modified and hit.headers.get("if-modified-since") == route.last_modified
            ):
                hit.status = 304
                self.send_response(304)
                self.end_headers()
                return
            hit.status = route.status
            self.send_response(route.status)
            if route.etag:
                self.send_header("ETag", route.etag)
            if route.last_modified:
                self.send_header("Last-Modified", route.last_modified)
            for name, value in route.headers.items():
                self.send_header(name, value)
            if route.content_length is True:
                self.send_header("Content-Length", str(len(route.body)))
            elif route.content_length is not None:
                self.send_header("Content-Length", str(route.content_length))
            self.end_headers()
            self.wfile.flush()
            if route.hold is not None:
                route.hold.wait(30)
            if route.stall:
                server.stopping.wait(route.stall)
            try:
                if route.trickle:
                    for i in range(len(route.body)):
                        if server.stopping.is_set():
                            return
                        self.wfile.write(route.body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(route.trickle)
                else:
                    self.wfile.write(route.body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


def make_tls_files(directory: Path, hostname: str) -> tuple[Path, Path, Path]:
    """A CA and a certificate for ``hostname`` signed by it: (ca, cert, key) PEM files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    validity = dict(not_valid_before=now - datetime.timedelta(days=1), not_valid_after=now + datetime.timedelta(days=2))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "preload test CA")])
    ca = (
        x509.CertificateBuilder(subject_name=ca_name, issuer_name=ca_name, public_key=ca_key.public_key(),
                                serial_number=x509.random_serial_number(), **validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder(subject_name=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]),
                                issuer_name=ca_name, public_key=key.public_key(),
                                serial_number=x509.random_serial_number(), **validity)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths
