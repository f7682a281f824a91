"""A Solr stand-in for development and tests only.

CKAN 2.12 cannot save a dataset without a search index, and Solr cannot be
installed on the machines this project is developed on. This server accepts
every index update and answers every query with no hits, which is enough for
CKAN to create, show and update datasets (``package_show`` falls back to the
database when the index has no hit). Production uses real Solr.

    python dev/solr_standin.py --port 8983
"""
from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# CKAN's start-up check reads the schema's name attribute ("ckan-X.Y"):
# 2.11 is the newest that CKAN 2.10, 2.11 and 2.12 all accept.
SCHEMA_XML = b"""<?xml version="1.0" encoding="UTF-8" ?>
<schema name="ckan-2.11" version="1.6">
  <uniqueKey>index_id</uniqueKey>
</schema>
"""


def _empty_result(params: dict[str, list[str]]) -> dict:
    facet_fields = {field: [] for field in params.get("facet.field", [])}
    body: dict = {
        "responseHeader": {"status": 0, "QTime": 0, "params": {}},
        "response": {"numFound": 0, "start": 0, "numFoundExact": True,
                     "docs": []},
        "facet_counts": {
            "facet_queries": {},
            "facet_fields": facet_fields,
            "facet_ranges": {},
            "facet_intervals": {},
            "facet_heatmaps": {},
        },
        "highlighting": {},
    }
    if params.get("stats.field"):
        body["stats"] = {"stats_fields": {
            field: None for field in params["stats.field"]}}
    return body


class SolrStandinHandler(BaseHTTPRequestHandler):
    server_version = "SolrStandin/1.0"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - quiet by default
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def _params(self) -> dict[str, list[str]]:
        parts = urlsplit(self.path)
        params = parse_qs(parts.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type", "")
        # pysolr POSTs long queries as a form body
        if body and "x-www-form-urlencoded" in content_type:
            for key, values in parse_qs(
                    body.decode("utf-8", "replace"),
                    keep_blank_values=True).items():
                params.setdefault(key, []).extend(values)
        return params

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _answer(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        params = self._params()
        if path.endswith("/schema") or path.endswith("/admin/file"):
            self._send(200, SCHEMA_XML, "application/xml; charset=utf-8")
        elif path.endswith("/select") or path.endswith("/query"):
            body = json.dumps(_empty_result(params)).encode()
            self._send(200, body, "application/json; charset=utf-8")
        elif path.endswith("/admin/ping"):
            body = json.dumps({"responseHeader": {"status": 0},
                               "status": "OK"}).encode()
            self._send(200, body, "application/json; charset=utf-8")
        else:
            # /update, /update/json, commits, deletes: accept and forget
            body = json.dumps(
                {"responseHeader": {"status": 0, "QTime": 0}}).encode()
            self._send(200, body, "application/json; charset=utf-8")

    do_GET = _answer
    do_POST = _answer


def make_server(port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), SolrStandinHandler)
    server.daemon_threads = True
    return server


def start_in_thread(port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve in a daemon thread; stop with ``server.shutdown()``."""
    server = make_server(port, host)
    thread = threading.Thread(target=server.serve_forever,
                              name=f"solr-standin-{port}", daemon=True)
    thread.start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8983)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    server = make_server(args.port, args.host)
    server.verbose = args.verbose
    print(f"Solr stand-in on http://{args.host}:{args.port}/solr/ckan",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
