"""The one HTTP client for the bridge API of the JupyterHub sidecar.

Every call has a timeout, and every failure becomes a typed error that views
turn into a friendly page. The errors derive from CKAN's action errors, so the
action API answers with JSON (404, or 409 carrying ``code`` and ``message``)
instead of a 500.
"""
from __future__ import annotations

import datetime as dt
import logging
from email.utils import parsedate_to_datetime
from typing import Any, IO, Iterator

import requests

import ckan.plugins.toolkit as tk

from . import settings

log = logging.getLogger(__name__)


class BridgeError(tk.ValidationError):
    """The bridge answered with an error, or with something unexpected."""

    def __init__(self, message: str, code: str = "bridge_error",
                 status: int | None = None, body: dict | None = None):
        super().__init__({"message": [message], "code": [code]})
        self.message = message
        self.code = code
        self.status = status
        self.body = body or {}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class HubUnavailable(BridgeError):
    """The bridge or the hub cannot be reached, or did not start in time."""


class CapacityReached(BridgeError):
    """A cap is reached: guest_capacity, capacity, user_limit, rate_limited."""

    def __init__(self, message: str, code: str, status: int = 429,
                 body: dict | None = None, retry_after: int | None = None):
        super().__init__(message, code, status, body)
        self.retry_after = retry_after
        self.max = self.body.get("max")
        self.active = self.body.get("active")


class LaunchesBusy(HubUnavailable):
    """This CKAN process has as many launches in flight as it allows."""

    def __init__(self, retry_after: int):
        super().__init__(tk._("Many notebooks are starting right now. "
                              "Please try again in a moment."),
                         "busy", 503, {"retry_after": retry_after})
        self.retry_after = retry_after


class NotFound(tk.ObjectNotFound):
    """The bridge does not know this session."""

    def __init__(self, message: str = ""):
        super().__init__(message)
        self.message = message
        self.code = "not_found"


def parse_time(value) -> dt.datetime | None:
    """An ISO 8601 time from the bridge (``...Z``) as an aware datetime;
    None when empty or unreadable."""
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _seconds_until(value: Any) -> int | None:
    """Parse a Retry-After style value: seconds, ISO 8601 or an HTTP date."""
    if value is None or value == "":
        return None
    try:
        return max(0, int(float(value)))
    except (TypeError, ValueError):
        pass
    when = parse_time(value)
    if when is None:
        try:
            when = parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
    now = dt.datetime.now(dt.timezone.utc)
    return max(0, int((when - now).total_seconds()))


class HubClient:
    def __init__(self, api_url: str, token: str, timeout: float = 10,
                 launch_timeout: float = 180,
                 http: requests.Session | None = None):
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.launch_timeout = launch_timeout
        self.http = http or requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.http.headers["Accept"] = "application/json"

    @classmethod
    def from_config(cls) -> "HubClient":
        return cls(
            settings.get("api_url"),
            settings.get("api_token"),
            timeout=settings.get("request_timeout"),
            launch_timeout=settings.get("launch_timeout"),
        )

    # sessions

    def create_session(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start (or get back) a session; waits until the server is ready."""
        return self._call("POST", "/api/sessions", json=request,
                          timeout=self.launch_timeout)

    def list_sessions(self, user_id: str | None = None) -> list[dict]:
        params = {"user_id": user_id} if user_id else None
        return self._call("GET", "/api/sessions", params=params)["sessions"]

    def get_session(self, session_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/sessions/{_path(session_id)}")

    def delete_session(self, session_id: str) -> None:
        self._call("DELETE", f"/api/sessions/{_path(session_id)}")

    # keeping work (issue 13)

    def extend_session(self, session_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/sessions/{_path(session_id)}/extend")

    def session_file(self, session_id: str, path: str, dest: IO[bytes],
                     max_bytes: int) -> int:
        """Stream one file of a session's home into ``dest``; returns its
        size. The bridge refuses (413 ``too_large``) a file bigger than
        ``max_bytes``; bytes past it are refused here too."""
        return self._download_capped(
            f"/api/sessions/{_path(session_id)}/files", dest, max_bytes,
            "The file", params={"path": path, "max_bytes": max_bytes})

    # report runs (issue 14)

    def create_run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start a headless run of a notebook in a session of its own."""
        return self._call("POST", "/api/runs", json=request,
                          timeout=self.launch_timeout)

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/runs/{_path(run_id)}")

    def delete_run(self, run_id: str) -> None:
        """Stop a run and remove its server (also after a finished run)."""
        self._call("DELETE", f"/api/runs/{_path(run_id)}",
                   timeout=self.launch_timeout)

    def download_run_file(self, run_id: str, what: str, dest: IO[bytes],
                          max_bytes: int) -> int:
        """Stream the executed notebook (``what="notebook"``) or an artifact
        (``what="artifacts/<name>"``) into ``dest``; returns its size.
        BridgeError ``too_large`` past ``max_bytes``."""
        return self._download_capped(
            f"/api/runs/{_path(run_id)}/" + "/".join(_path(part) for part in what.split("/")),
            dest, max_bytes, what)

    # workspaces (issue 13)

    def list_workspaces(self, user_id: str | None = None) -> list[dict]:
        params = {"user_id": user_id} if user_id else None
        return self._call("GET", "/api/workspaces", params=params)["workspaces"]

    def delete_workspace(self, user_id: str) -> None:
        self._call("DELETE", f"/api/workspaces/{_path(user_id)}",
                   timeout=self.launch_timeout)

    def workspace_zip(self, user_id: str) -> Iterator[bytes]:
        """The workspace as a zip, in chunks; errors are raised before the
        first chunk, so a view can still answer with a page."""
        response = self._open_stream(f"/api/workspaces/{_path(user_id)}/download")

        def chunks() -> Iterator[bytes]:
            with response:
                yield from response.iter_content(1 << 16)

        return chunks()

    # streamed downloads

    def _open_stream(self, path: str, params: dict | None = None) -> requests.Response:
        """A streamed GET of the bridge whose status is checked: a bridge
        error is raised (the response closed) before any byte is read."""
        url = f"{self.api_url}{path}"
        try:
            response = self.http.get(url, params=params, stream=True,
                                     timeout=self.launch_timeout)
        except requests.RequestException as err:
            log.warning("bridge unreachable: GET %s: %s", url, err)
            raise HubUnavailable("The notebook service cannot be reached.",
                                 "hub_unavailable") from err
        if not response.ok:
            try:
                body = response.json()
            except ValueError:
                body = {}
            response.close()
            _raise_for(response, body if isinstance(body, dict) else {})
        return response

    def _download_capped(self, path: str, dest: IO[bytes], max_bytes: int,
                         what: str, params: dict | None = None) -> int:
        """Stream a bridge download into ``dest``; returns its size.
        BridgeError ``too_large`` (413) once it passes ``max_bytes``, whatever
        the bridge said it would send."""
        response = self._open_stream(path, params)
        size = 0
        try:
            with response:
                for chunk in response.iter_content(1 << 16):
                    size += len(chunk)
                    if size > max_bytes:
                        raise BridgeError(f"{what} is larger than {max_bytes} bytes.",
                                          "too_large", 413)
                    dest.write(chunk)
        except requests.RequestException as err:
            log.warning("bridge stream broken: GET %s: %s", path, err)
            raise HubUnavailable("The notebook service cannot be reached.",
                                 "hub_unavailable") from err
        return size

    # the sidecar

    def capacity(self) -> dict[str, Any]:
        return self._call("GET", "/api/capacity")

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/api/health")

    def get_settings(self) -> dict[str, Any]:
        return self._call("GET", "/api/settings")

    def put_settings(self, values: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", "/api/settings", json=values)

    def _call(self, method: str, path: str, timeout: float | None = None,
              **kwargs: Any) -> Any:
        url = self.api_url + path
        try:
            response = self.http.request(
                method, url, timeout=timeout or self.timeout, **kwargs)
        except requests.Timeout as err:
            log.warning("bridge timed out: %s %s: %s", method, url, err)
            raise HubUnavailable(
                "The notebook service did not answer in time.",
                "timeout") from err
        except requests.RequestException as err:
            log.warning("bridge unreachable: %s %s: %s", method, url, err)
            raise HubUnavailable(
                "The notebook service cannot be reached.",
                "hub_unavailable") from err

        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.ok and isinstance(body, dict):
            return body
        if response.ok:
            raise BridgeError("The notebook service sent an unexpected "
                              "answer.", "bad_response", response.status_code)
        _raise_for(response, body if isinstance(body, dict) else {})


def _raise_for(response: requests.Response, body: dict) -> None:
    """The exception a bridge error answer becomes."""
    status = response.status_code
    code = str(body.get("error") or "http_%d" % status)
    message = str(body.get("message") or response.reason or code)
    if status == 404:
        raise NotFound(message)
    if status == 429:
        retry_after = _seconds_until(body.get("retry_after"))
        if retry_after is None:
            retry_after = _seconds_until(
                response.headers.get("Retry-After"))
        raise CapacityReached(message, code, status, body, retry_after)
    if status in (502, 503, 504):
        raise HubUnavailable(message, code, status, body)
    if status == 401:
        log.error("the bridge refused CKAN's token; check %s",
                  settings.key("api_token"))
    raise BridgeError(message, code, status, body)


def _path(value: str) -> str:
    return requests.utils.quote(str(value), safe="")
