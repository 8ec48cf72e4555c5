"""A client for upstream's APIs (PyPI or piw-fake-pypi): the XML-RPC changelog and the JSON API.

Failures are sorted into what callers act on: :class:`RateLimited` (HTTP 429 or XML-RPC fault
-32500, as PyPI sends them) and :class:`Unavailable` (5xx, timeouts, refused connections) both
mean "back off and try again"; anything else is :class:`UpstreamError`.
"""

from __future__ import annotations

import html
import re
import xmlrpc.client
from typing import Any

import requests

RATE_LIMIT_FAULT = -32500
USER_AGENT = "piw (https://github.com/piw; wheel index for Raspberry Pi)"


# The changelog is an array of flat arrays of strings, ints and nils. Parsing that with
# xmlrpc.client costs a Python callback per XML element (1.2 s per 50,000 rows); one regex pass
# does it ~5x faster. Anything else in the body (faults, structs, other scalar types) goes to
# xmlrpc.client, so the fast path can only ever be a shortcut, never a different answer.
_TOKENS = re.compile(
    r"<array>|</array>"
    r"|<value>(?:<string>([^<]*)</string>|<(?:int|i4|i8)>\s*([-+]?\d+)\s*</(?:int|i4|i8)>"
    r"|(<nil/>)|([^<]*))</value>")
_UNUSUAL = re.compile(r"<(?!/?(?:\?xml|methodResponse|params|param|value|array|data|string|int"
                      r"|i4|i8|nil)\b)|<string/>|<data/>|<array/>")


def parse_changelog(body: bytes) -> list[Any] | None:
    """Fast path for ``changelog_since_serial``'s answer; None when the body is not of the
    plain shape (the caller then uses xmlrpc.client)."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return None
    if _UNUSUAL.search(text):
        return None
    stack: list[list[Any]] = [[]]
    for m in _TOKENS.finditer(text):
        token = m.group(0)
        if token == "<array>":
            stack.append([])
        elif token == "</array>":
            if len(stack) < 2:
                return None
            done = stack.pop()
            stack[-1].append(done)
        else:
            string, number, nil, bare = m.groups()
            if number is not None:
                stack[-1].append(int(number))
            elif nil is not None:
                stack[-1].append(None)
            else:
                value = string if string is not None else bare
                stack[-1].append(html.unescape(value) if "&" in value else value)
    if len(stack) != 1 or len(stack[0]) != 1 or not isinstance(stack[0][0], list):
        return None
    return stack[0][0]


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

    def _call(self, method: str, *params: Any, fast: bool = False) -> Any:
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
        if fast and (rows := parse_changelog(resp.content)) is not None:
            return rows
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
        rows = self._call("changelog_since_serial", serial, fast=True)
        if not isinstance(rows, list):
            raise UpstreamError(f"changelog_since_serial: expected a list, got {type(rows)}")
        return rows

    def changelog_last_serial(self) -> int:
        serial = self._call("changelog_last_serial")
        if not isinstance(serial, int) or isinstance(serial, bool):
            raise UpstreamError(f"changelog_last_serial: expected an int, got "
                                f"{type(serial).__name__}")
        return serial

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
        if resp.status_code != 200:
            raise UpstreamError(f"GET {path}: HTTP {resp.status_code}")
        try:
            data = resp.json()
        except ValueError as exc:
            raise UpstreamError(f"GET {path}: unreadable answer: {exc}") from exc
        # a project's JSON is an object; anything else says nothing about it
        return data if isinstance(data, dict) else {}
