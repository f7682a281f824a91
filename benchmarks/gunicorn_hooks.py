"""gunicorn config for the benchmark's CKAN: one line per response, written
straight to a file (CKAN's logging setup silences gunicorn's access log):
epoch, status, bytes sent, seconds to stream, request path with query.

Loaded through GUNICORN_CMD_ARGS="-c benchmarks/gunicorn_hooks.py"; the
file named by BENCH_CKAN_ACCESS_LOG receives the lines.
"""

import os
import threading
import time

_lock = threading.Lock()
_path = os.environ.get("BENCH_CKAN_ACCESS_LOG", "")


def pre_request(worker, req):
    req.bench_started = time.monotonic()


def post_request(worker, req, environ, resp):
    if not _path:
        return
    took = time.monotonic() - getattr(req, "bench_started", time.monotonic())
    target = req.path + ("?" + req.query if req.query else "")
    # a file sent with sendfile(2) leaves resp.sent at 0: it was sent whole
    sent = resp.sent or (resp.response_length or 0 if resp.status_code == 200 else 0)
    line = f"{time.time():.3f} {resp.status_code} {sent} {took:.6f} {req.method} {target}\n"
    with _lock, open(_path, "a") as f:
        f.write(line)
