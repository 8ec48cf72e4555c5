"""A client for upstream's APIs (PyPI or piw-fake-pypi): the XML-RPC changelog and the JSON API.

Failures are sorted into what callers act on: :class:`RateLimited` (HTTP 429 or XML-RPC fault
-32500, as PyPI sends them) and :class:`Unavailable` (5xx, timeouts, refused connections) both
mean "back off and try again"; anything else is :class:`UpstreamError`.
"""

from __future__ import annotations

import xmlrpc.client
from typing import Any

import requests

RATE_LIMIT_FAULT = -32500
USER_AGENT = "piw (https://github.com/piw; wheel index for Raspberry Pi)"


class UpstreamError(Exception):
    """Upstream answered something we cannot use."""

    retry_after: float | None = None


class RateLimited(UpstreamError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(UpstreamError):
    pass


def backoff_delay(failures: int, retry_after: float | None = None, base: float = 1.0,
                  cap: float = 300.0) -> float:
    """Seconds to wait after the *failures*-th failure in a row (exponential, capped);
    a server's Retry-After wins when it asks for longer."""
    delay = min(cap, base * 2 ** max(0, failures - 1))
    if retry_after is not None:
        delay = max(delay, min(cap, retry_after))
    return delay


def _retry_after(resp: requests.Response) -> float | None:
    try:
        return float(resp.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


class UpstreamClient:
    """Speaks to ``{base}/pypi`` (XML-RPC) and ``{base}/pypi/<name>/json``."""

    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.http.headers["User-Agent"] = USER_AGENT

    def _call(self, method: str, *params: Any) -> Any:
        body = xmlrpc.client.dumps(params, method, allow_none=True)
        try:
            resp = self.http.post(f"{self.base_url}/pypi", data=body.encode(),
                                  headers={"Content-Type": "text/xml"}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise Unavailable(f"{method}: {exc}") from exc
        if resp.status_code == 429:
            raise RateLimited(f"{method}: HTTP 429", _retry_after(resp))
        if resp.status_code >= 500:
            raise Unavailable(f"{method}: HTTP {resp.status_code}")
        if resp.status_code != 200:
            raise UpstreamError(f"{method}: HTTP {resp.status_code}")
        try:
            (result,), _ = xmlrpc.client.loads(resp.content, use_builtin_types=True)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == RATE_LIMIT_FAULT:
                raise RateLimited(f"{method}: {fault.faultString}") from fault
            raise UpstreamError(f"{method}: fault {fault.faultCode}: {fault.faultString}"
                                ) from fault
        except Exception as exc:  # expat errors, wrong shapes
            raise UpstreamError(f"{method}: unreadable answer: {exc}") from exc
        return result

    def changelog_since_serial(self, serial: int) -> list[Any]:
        """Rows ``[name, version, timestamp, action, serial]`` after *serial* (≤ 50,000)."""
        rows = self._call("changelog_since_serial", serial)
        if not isinstance(rows, list):
            raise UpstreamError(f"changelog_since_serial: expected a list, got {type(rows)}")
        return rows

    def changelog_last_serial(self) -> int:
        return int(self._call("changelog_last_serial"))

    def project_json(self, name: str, version: str | None = None) -> dict[str, Any] | None:
        """PyPI's JSON API for a project (or one version of it); None when upstream has none."""
        path = f"/pypi/{name}/json" if version is None else f"/pypi/{name}/{version}/json"
        try:
            resp = self.http.get(self.base_url + path, timeout=self.timeout)
        except requests.RequestException as exc:
            raise Unavailable(f"GET {path}: {exc}") from exc
        if resp.status_code == 404:
            return None
        if resp.status_code == 429:
            raise RateLimited(f"GET {path}: HTTP 429", _retry_after(resp))
        if resp.status_code >= 500:
            raise Unavailable(f"GET {path}: HTTP {resp.status_code}")
        resp.raise_for_status()
        return resp.json()
