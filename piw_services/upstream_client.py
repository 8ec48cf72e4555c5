"""A client for upstream's APIs (PyPI or piw-fake-pypi): the XML-RPC changelog and the JSON API.

Failures are sorted into what callers act on: :class:`RateLimited` (wait what upstream says,
then go on) and :class:`Unavailable` (5xx, timeouts, refused connections: back off and try
again); :class:`Refused` (upstream answers a fault that is not a rate limit: a method disabled
or removed, or a server error) is told apart, because waiting a little will not end it; any
other unusable answer is :class:`UpstreamError`.

How warehouse faults (warehouse/legacy/api/xmlrpc/views.py, read 2026-12): everything goes out
with HTTP 200. Its ``ratelimit()`` decorator raises ``XMLRPCWrappedError(HTTPTooManyRequests(
"... too many requests by the client. Limit may reset in N seconds."))``, fault -32500, and its
egress tween (warehouse/rate_limiting/headers.py) adds ``RateLimit: "xmlrpc.client";r=0;t=N``.
The same code -32500 carries every deprecated or disabled method (``changelog``,
``list_packages``, ``package_releases``...: ``RuntimeError: ... deprecated`` or ``ValueError``)
and, through pyramid_rpc, any server error ("application error"); an unknown method is -32601.
So a -32500 is a rate limit only when its text says so. A CDN in front may also answer HTTP 429
with Retry-After.
"""

from __future__ import annotations

import html
import importlib.metadata
import re
import xmlrpc.client
from typing import Any

import requests

RATE_LIMIT_FAULT = -32500
#: A fault text that means "too many requests" (warehouse's HTTPTooManyRequests message).
_RATE_LIMITED_TEXT = re.compile(r"TooManyRequests|too many requests", re.IGNORECASE)
_RESETS_IN = re.compile(r"reset in (\d+) seconds")
#: ``RateLimit: "xmlrpc.client";r=0;t=42`` (draft-ietf-httpapi-ratelimit-headers-10)
_RATELIMIT_T = re.compile(r"\bt=(\d+)")


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


class Refused(UpstreamError):
    """Upstream answered a fault that is not a rate limit: the method is disabled, removed or
    failing on its side. Retrying soon will not help; an operator should know."""


def user_agent(contact: str) -> str:
    """What we call ourselves upstream: piw, its version, and the operator's contact (from
    ``UPSTREAM_CONTACT``), so PyPI's admins can reach a misbehaving mirror's operator."""
    try:
        version = importlib.metadata.version("piw")
    except importlib.metadata.PackageNotFoundError:
        version = "dev"
    who = f"; contact: {contact}" if contact else "; no contact configured"
    return f"piw/{version} (wheel index for Raspberry Pi{who})"


def backoff_delay(failures: int, retry_after: float | None = None, base: float = 1.0,
                  cap: float = 300.0) -> float:
    """Seconds to wait after the *failures*-th failure in a row (exponential, capped);
    a server's Retry-After wins when it asks for longer."""
    delay = min(cap, base * 2 ** max(0, failures - 1))
    if retry_after is not None:
        delay = max(delay, min(cap, retry_after))
    return delay


def _retry_after(resp: requests.Response) -> float | None:
    """Seconds upstream asks us to wait: Retry-After, else the RateLimit header's ``t``."""
    try:
        return float(resp.headers["Retry-After"])
    except (KeyError, ValueError):
        pass
    match = _RATELIMIT_T.search(resp.headers.get("RateLimit", ""))
    return float(match.group(1)) if match else None


def fault_error(method: str, fault: xmlrpc.client.Fault, resp: requests.Response
                ) -> UpstreamError:
    """What an XML-RPC fault means: a rate limit only when it says so (see module doc)."""
    text = str(fault.faultString)[:500]
    if fault.faultCode == RATE_LIMIT_FAULT and _RATE_LIMITED_TEXT.search(text):
        match = _RESETS_IN.search(text)
        retry_after = float(match.group(1)) if match else _retry_after(resp)
        return RateLimited(f"{method}: {text}", retry_after)
    return Refused(f"upstream refuses {method}: fault {fault.faultCode}: {text}")


class UpstreamClient:
    """Speaks to ``{base}/pypi`` (XML-RPC) and ``{base}/pypi/<name>/json``."""

    def __init__(self, base_url: str, timeout: float = 60.0, contact: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.http.headers["User-Agent"] = user_agent(contact)

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
            raise fault_error(method, fault, resp) from fault
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
