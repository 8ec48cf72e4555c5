"""piw-fake-pypi: a stand-in for PyPI that speaks PyPI's real protocols.

Real clients (``xmlrpc.client``, ``requests``, ``pip wheel``/``pip download``)
talk to it unchanged, so tests, the demo and benchmarks exercise the same code
paths as production:

* XML-RPC at ``POST /pypi`` (and ``/RPC2``): ``changelog_since_serial``,
  ``changelog_last_serial``, ``list_packages_with_serial``, with failure
  injection (429/500/503/fault) to exercise clients' back-off;
* PEP 503 simple index at ``/simple/`` and files at ``/packages/<filename>``;
* the JSON API at ``/pypi/<name>/json`` and ``/pypi/<name>/<version>/json``;
* a JSON control API under ``/_control/`` to append events, inject failures
  and read counters while a test runs.

What it imitates of warehouse (pypi/warehouse, read at 6b62157, 2026-08; each point has a
test in tests/fake_pypi or tests/upstream):

* ``changelog_since_serial`` / ``changelog_last_serial``
  (warehouse/legacy/api/xmlrpc/views.py): rows ``(name, version, timestamp, action, id)``,
  at most 50,000 after the serial, ordered by id; the action passed through
  ``_clean_for_xml`` (non-ASCII as character references, ``jürgen`` -> the text
  ``j&#252;rgen``; see log.clean_for_xml). Every answer is HTTP 200, faults included.
* Faults (same file): the rate limit is fault -32500
  ``HTTPTooManyRequests: ... Limit may reset in N seconds.``, with the ``RateLimit`` and
  ``RateLimit-Policy`` headers of warehouse/rate_limiting/headers.py (mode ``fault``); the
  methods warehouse turned off answer -32500 with its own words (``changelog``,
  ``list_packages``, ``package_data``, ... in :data:`TURNED_OFF`; mode ``disabled`` answers
  ``changelog_since_serial`` so); any server error is pyramid_rpc's -32500
  ``application error`` (mode ``error``); an unknown method -32601, bad parameters -32602. A
  CDN in front answers HTTP 429 with Retry-After (mode ``429``); 500 and 503 too.
* Quarantine (warehouse/utils/project.py writes ``project quarantined``, ``project quarantine
  cleared``, ``release quarantined``, ``release quarantine cleared``;
  warehouse/packaging/utils.py and legacy/api/json.py filter ``QuarantineEnter``): a
  quarantined release is on no simple page and 404 in the JSON API (the project's JSON then
  shows the latest other release); a quarantined project is 404 everywhere and leaves the
  root index, until cleared.
* The JSON API (warehouse/legacy/api/json.py): ``/pypi/<name>/json`` and
  ``/pypi/<name>/<version>/json``; a name that is not the normalized one is answered 301 to
  it, as ``json_project``/``json_release`` do; a version is also found by its canonical form.
* History (history.py): every journal action warehouse writes today, from ``create`` to
  team roles, invitations and quarantines (grep ``JournalEntry(`` in warehouse).

Not imitated: legacy ``rename from`` moving releases (the log keeps old and new names apart),
authentication, ``list_packages_with_serial``'s caching, and the CDN's own caching of pages.
"""

from __future__ import annotations

import argparse
import html
import importlib.metadata
import json
import logging
import math
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import xmlrpc.client
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from os import PathLike
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from packaging.version import InvalidVersion, Version

from builders.commandline import command_parser, configure_logging

from .buildreqs import write_build_requirements
from .catalog import (
    GENERATED_DIRNAME,
    Catalog,
    FileStore,
    ServedFile,
    ServedProject,
    ServedRelease,
    ViewCache,
)
from .history import scenarios, write_scenario
from .log import EventLog, EventLogError, marshal_value

logger = logging.getLogger(__name__)

#: Failure modes of XML-RPC calls: "429" a CDN's HTTP 429 with Retry-After; "500"/"503"
#: server errors; "fault" warehouse's rate limit (fault -32500, HTTP 200, RateLimit headers);
#: "disabled" the call answered as warehouse answers a method it turned off (fault -32500,
#: ``RuntimeError: ... deprecated``); "error" pyramid_rpc's fault for any server error.
FAIL_MODES = ("429", "500", "503", "fault", "disabled", "error")
XMLRPC_PATHS = ("/pypi", "/pypi/", "/RPC2", "/RPC2/")
TOO_MANY_REQUESTS = (
    "HTTPTooManyRequests: The action could not be performed because there were too many "
    "requests by the client. Limit may reset in {retry_after} seconds."
)
XMLRPC_DEPRECATION_URL = "https://warehouse.pypa.io/api-reference/xml-rpc.html#deprecated-methods"
#: warehouse's answer to a method it has turned off (views.py: package_data, package_urls...)
DISABLED = f"RuntimeError: This API has been deprecated. See {XMLRPC_DEPRECATION_URL} " \
           "for more information."
#: What warehouse answers the methods it has turned off, by name (views.py, 2026).
TURNED_OFF = {
    "changelog": "ValueError: The changelog method has been deprecated, use "
                 "changelog_since_serial instead.",
    "system.multicall": "ValueError: MultiCall requests have been deprecated, use individual "
                        "requests instead.",
    "package_data": DISABLED,
    "package_urls": DISABLED,
    "top_packages": "RuntimeError: This API has been removed. Use BigQuery instead. "
                    f"See {XMLRPC_DEPRECATION_URL} for more information.",
    "list_packages": "RuntimeError: PyPI no longer supports the XMLRPC list_packages method. "
                     f"Use Simple API instead. See {XMLRPC_DEPRECATION_URL} for more "
                     "information.",
}
#: pyramid_rpc's XmlRpcApplicationError: any exception in a view (warehouse's exception_view).
APPLICATION_ERROR = "application error"
_MAX_BODY = 256 * 1024 * 1024
_RESPONSE_HEAD = b"<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n"
_RESPONSE_TAIL = b"</param>\n</params>\n</methodResponse>\n"


class _XMLRPCFault(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _fault_body(code: int, message: str) -> bytes:
    return xmlrpc.client.dumps(xmlrpc.client.Fault(code, message), methodresponse=True).encode(
        "utf-8"
    )


def _iso(timestamp: int) -> tuple[str, str]:
    try:
        when = datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError):  # absurd timestamps in a test log
        when = datetime.fromtimestamp(0, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S"), when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def latest_release(releases: Mapping[str, ServedRelease]) -> ServedRelease | None:
    """The release PyPI's JSON API calls current.

    Like warehouse: the highest non-yanked version, preferring final releases
    over pre-releases; invalid versions are ignored unless nothing else exists.
    """
    valid: list[tuple[Version, ServedRelease]] = []
    for text, release in releases.items():
        try:
            valid.append((Version(text), release))
        except InvalidVersion:
            pass
    live = [item for item in valid if not item[1].yanked]
    for pool in ([i for i in live if not i[0].is_prerelease], live, valid):
        if pool:
            return max(pool, key=lambda item: item[0])[1]
    return next(reversed(list(releases.values())), None)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: FakePyPI

    def __init__(self, address: tuple[str, int], app: FakePyPI) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Track live connections so :meth:`FakePyPI.stop` can close keep-alive ones."""
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def close_connections(self) -> None:
        """Shut down every connection still open (idle keep-alive clients)."""
        with self._open_lock:
            connections = list(self._open)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "piw-fake-pypi"
    timeout = 60
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _HTTPServer

    # -- plumbing -----------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        """Request logs go to DEBUG so the server is quiet unless asked (-v)."""
        logger.debug("%s - " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        """Serve the indexes, files and control stats."""
        self._dispatch()

    def do_HEAD(self) -> None:
        """Like GET without the body (pip and curl -I use it)."""
        self._dispatch()

    def do_POST(self) -> None:
        """XML-RPC and the control API."""
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            logger.exception("error handling %s %s", self.command, self.path)
            self.close_connection = True
            try:
                self._send(500, b"Internal Server Error\n", "text/plain")
            except OSError:
                pass

    def _send(
        self,
        status: int,
        body: bytes | Sequence[bytes],
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        chunks = [body] if isinstance(body, bytes) else list(body)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(sum(len(chunk) for chunk in chunks)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            for chunk in chunks:
                self.wfile.write(chunk)

    def _json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(obj, indent=None, separators=(",", ":")).encode("utf-8")
        self._send(status, body, "application/json", headers)

    def _not_found(self, json_body: bool = False) -> None:
        if json_body:
            self._json(404, {"message": "Not Found"})
        else:
            self._send(404, b"<html><body><h1>404 Not Found</h1></body></html>\n", "text/html")

    def _redirect(self, location: str) -> None:
        self._send(301, b"", "text/html", {"Location": location})

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            self._send(411, b"Content-Length required\n", "text/plain")
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self.close_connection = True
            self._send(400, b"bad Content-Length\n", "text/plain")
            return None
        return self.rfile.read(length)

    @property
    def app(self) -> FakePyPI:
        return self.server.app

    def _base_url(self) -> str:
        host = self.headers.get("Host")
        return f"http://{host}" if host else self.app.url

    # -- routing -------------------------------------------------------------

    def _route(self) -> None:
        path = urlsplit(self.path).path
        method = self.command
        if method == "POST":
            body = self._read_body()
            if body is None:
                return
            if path in XMLRPC_PATHS:
                self._xmlrpc(body)
            elif path == "/_control/events":
                self._control_events(body)
            elif path == "/_control/fail":
                self._control_fail(body)
            else:
                self._not_found(json_body=path.startswith("/_control/"))
            return
        if path in XMLRPC_PATHS:
            self._send(405, b"XML-RPC only accepts POST\n", "text/plain", {"Allow": "POST"})
        elif path == "/_control/stats":
            self._json(200, self.app.stats())
        elif path == "/simple":
            self._redirect("/simple/")
        elif path == "/simple/":
            self._simple_index()
        elif path.startswith("/simple/"):
            self._simple_project(path[len("/simple/") :])
        elif path.startswith("/packages/"):
            self._package(path[len("/packages/") :])
        elif path.startswith("/pypi/") and path.endswith("/json"):
            parts = [unquote(part) for part in path[len("/pypi/") : -len("/json")].split("/")]
            if len(parts) == 1 and parts[0]:
                self._json_project(parts[0])
            elif len(parts) == 2 and all(parts):
                self._json_release(parts[0], parts[1])
            else:
                self._not_found(json_body=True)
        else:
            self._not_found()

    # -- XML-RPC ------------------------------------------------------------

    def _xmlrpc(self, body: bytes) -> None:
        app = self.app
        failure = app._begin_xmlrpc_call()
        if failure is not None:
            self._serve_failure(*failure)
            return
        try:
            try:
                params, method = xmlrpc.client.loads(body)
            except Exception as exc:
                raise _XMLRPCFault(-32700, f"parse error. not well formed: {exc}") from None
            chunks, rows = app._call(method, params)
        except _XMLRPCFault as fault:
            self._send(200, _fault_body(fault.code, fault.message), "text/xml")
            return
        app._count(rows_served=rows)
        self._send(200, [_RESPONSE_HEAD, *chunks, _RESPONSE_TAIL], "text/xml")

    def _serve_failure(self, mode: str, retry_after: int) -> None:
        message = TOO_MANY_REQUESTS.format(retry_after=retry_after)
        if mode == "429":
            self._send(
                429,
                (message + "\n").encode("utf-8"),
                "text/plain",
                {"Retry-After": str(retry_after)},
            )
        elif mode in ("500", "503"):
            status = HTTPStatus(int(mode))
            self._send(
                status,
                f"{status.value} {status.phrase}\n".encode(),
                "text/plain",
                {"Retry-After": str(retry_after)} if mode == "503" else None,
            )
        elif mode == "fault":
            # warehouse/rate_limiting/headers.py: its tween adds these to the fault's answer
            self._send(200, _fault_body(-32500, message), "text/xml",
                       {"RateLimit": f'"xmlrpc.client";r=0;t={retry_after}',
                        "RateLimit-Policy": '"xmlrpc.client";q=120;w=60;pk=:ip:'})
        else:
            text = DISABLED if mode == "disabled" else APPLICATION_ERROR
            self._send(200, _fault_body(-32500, text), "text/xml")

    # -- control API -----------------------------------------------------------

    def _control_events(self, body: bytes) -> None:
        try:
            rows = json.loads(body or b"null")
            if isinstance(rows, dict):
                rows = [rows]
            if not isinstance(rows, list):
                raise EventLogError("expected a JSON list of event objects")
            last = self.app.append(rows)
        except (ValueError, EventLogError) as exc:
            self._json(400, {"error": str(exc)})
            return
        self._json(200, {"last_serial": last})

    def _control_fail(self, body: bytes) -> None:
        try:
            spec = json.loads(body or b"null")
            if not isinstance(spec, dict):
                raise ValueError('expected {"mode": ..., "count": N, "retry_after": S}')
            self.app.fail_next(spec.get("mode", ""), spec.get("count", 1), spec.get("retry_after"))
        except (ValueError, TypeError) as exc:
            self._json(400, {"error": str(exc)})
            return
        self._json(200, {"pending": self.app.pending_failures()})

    # -- simple index -------------------------------------------------------------

    def _simple_index(self) -> None:
        names = self.app.catalog().names()
        links = "".join(
            f'    <a href="/simple/{quote(canonical)}/">{html.escape(names[canonical])}</a>\n'
            for canonical in sorted(names)
        )
        page = (
            "<!DOCTYPE html>\n<html>\n  <head>\n"
            '    <meta name="pypi:repository-version" content="1.0">\n'
            "    <title>Simple index</title>\n  </head>\n  <body>\n"
            f"{links}  </body>\n</html>\n"
        )
        self._send(
            200,
            page.encode("utf-8"),
            "text/html; charset=utf-8",
            {"X-PyPI-Last-Serial": str(self.app.log.last_serial)},
        )

    def _simple_project(self, rest: str) -> None:
        name, slash, extra = unquote(rest).partition("/")
        if extra or not name:
            self._not_found()
            return
        catalog = self.app.catalog()
        project = catalog.project(name)
        if project is None:
            self._not_found()
            return
        if name != project.canonical or not slash:
            self._redirect(f"/simple/{quote(project.canonical)}/")
            return
        anchors = []
        files = [f for release in project.releases.values() for f in release.files]
        for served in sorted(files, key=lambda f: f.filename):
            digests = self.app.store.digests(served)
            href = f"../../packages/{quote(served.filename)}#sha256={digests.sha256}"
            attrs = f'href="{html.escape(href)}"'
            if served.requires_python:
                attrs += f' data-requires-python="{html.escape(served.requires_python)}"'
            if served.yanked:
                attrs += f' data-yanked="{html.escape(served.yanked_reason or "")}"'
            anchors.append(f"    <a {attrs}>{html.escape(served.filename)}</a><br />\n")
        title = html.escape(project.name)
        page = (
            "<!DOCTYPE html>\n<html>\n  <head>\n"
            '    <meta name="pypi:repository-version" content="1.0">\n'
            f"    <title>Links for {title}</title>\n  </head>\n  <body>\n"
            f"    <h1>Links for {title}</h1>\n{''.join(anchors)}  </body>\n</html>\n"
        )
        self._send(
            200,
            page.encode("utf-8"),
            "text/html; charset=utf-8",
            {"X-PyPI-Last-Serial": str(project.last_serial)},
        )

    # -- files -------------------------------------------------------------------

    def _package(self, rest: str) -> None:
        filename = unquote(rest)
        if not filename or any(bad in filename for bad in ("/", "\\", "..", "\x00")):
            self._not_found()
            return
        served = self.app.catalog().file(filename)
        if served is None:
            self._not_found()
            return
        path = self.app.store.path(served)
        with open(path, "rb") as fh:
            size = path.stat().st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if self.command != "HEAD":
                shutil.copyfileobj(fh, self.wfile, 1024 * 1024)
                self.app._count(files_served=1)

    # -- JSON API ---------------------------------------------------------------------

    def _file_dict(self, served: ServedFile) -> dict[str, Any]:
        digests = self.app.store.digests(served)
        upload_time, upload_time_iso = _iso(served.upload_time)
        return {
            "comment_text": "",
            "digests": {
                "blake2b_256": digests.blake2b_256,
                "md5": digests.md5,
                "sha256": digests.sha256,
            },
            "downloads": -1,
            "filename": served.filename,
            "has_sig": False,
            "md5_digest": digests.md5,
            "packagetype": served.packagetype,
            "python_version": served.python_version,
            "requires_python": served.requires_python,
            "size": digests.size,
            "upload_time": upload_time,
            "upload_time_iso_8601": upload_time_iso,
            "url": f"{self._base_url()}/packages/{quote(served.filename)}",
            "yanked": served.yanked,
            "yanked_reason": served.yanked_reason if served.yanked else None,
        }

    def _info(self, project: ServedProject, release: ServedRelease) -> dict[str, Any]:
        base = self._base_url()
        return {
            "author": "",
            "author_email": "",
            "classifiers": [],
            "description": "",
            "home_page": "",
            "license": "",
            "name": project.name,
            "package_url": f"{base}/project/{project.canonical}/",
            "project_url": f"{base}/project/{project.canonical}/",
            "project_urls": None,
            "release_url": f"{base}/project/{project.canonical}/{release.version}/",
            "requires_dist": None,
            "requires_python": release.requires_python,
            "summary": release.summary,
            "version": release.version,
            "yanked": release.yanked,
            "yanked_reason": release.yanked_reason if release.yanked else None,
        }

    def _json_project(self, name: str) -> None:
        project = self.app.catalog().project(name)
        release = None if project is None else latest_release(project.releases)
        if project is None or release is None:
            self._not_found(json_body=True)
            return
        if name != project.canonical:  # warehouse/legacy/api/json.py json_project
            self._redirect(f"/pypi/{quote(project.canonical)}/json")
            return
        releases = {
            version: [self._file_dict(f) for f in rel.files]
            for version, rel in project.releases.items()
        }
        self._json(
            200,
            {
                "info": self._info(project, release),
                "last_serial": project.last_serial,
                "releases": releases,
                "urls": [self._file_dict(f) for f in release.files],
                "vulnerabilities": [],
            },
            {"X-PyPI-Last-Serial": str(project.last_serial)},
        )

    def _json_release(self, name: str, version: str) -> None:
        project = self.app.catalog().project(name)
        release = None if project is None else project.releases.get(version)
        if project is not None and release is None:
            try:
                wanted = Version(version)
            except InvalidVersion:
                wanted = None
            for text, candidate in project.releases.items():
                try:
                    if wanted is not None and Version(text) == wanted:
                        release = candidate
                        break
                except InvalidVersion:
                    pass
        if project is None or release is None:
            self._not_found(json_body=True)
            return
        if name != project.canonical:  # warehouse/legacy/api/json.py json_release
            self._redirect(f"/pypi/{quote(project.canonical)}/{quote(version)}/json")
            return
        self._json(
            200,
            {
                "info": self._info(project, release),
                "last_serial": project.last_serial,
                "urls": [self._file_dict(f) for f in release.files],
                "vulnerabilities": [],
            },
            {"X-PyPI-Last-Serial": str(project.last_serial)},
        )


EventsSource = str | PathLike[str] | EventLog | Iterable[Mapping[str, Any]]


class FakePyPI:
    """An in-process fake PyPI server; see the module docstring for what it serves.

    ``events`` is a JSONL path (missing/empty means an empty log), an
    :class:`EventLog`, or an iterable of event dicts.  ``packages_dir`` holds real
    files to serve; generated files are cached in ``packages_dir/_generated`` (or a
    temporary directory).  ``generate=False`` serves only the real files.
    """

    def __init__(
        self,
        events: EventsSource = (),
        packages_dir: str | PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        generate: bool = True,
        page_size: int = 50000,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        if isinstance(events, EventLog):
            self.log = events
        elif isinstance(events, str | PathLike):
            self.log = EventLog.load(events)
        else:
            self.log = EventLog(events)
        self.packages_dir = Path(packages_dir) if packages_dir is not None else None
        self.host, self.port = host, port
        self.generate = generate
        self.page_size = page_size
        self._tmpdir: str | None = None
        self.store: FileStore | None = None
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failures: deque[list[Any]] = deque()
        self._stats = {"xmlrpc_calls": 0, "failures_served": 0, "rows_served": 0}
        self._stats["files_served"] = 0
        self._catalog_lock = threading.Lock()
        self._catalog: Catalog | None = None
        self._catalog_key: int | None = None
        self._view_cache: ViewCache = {}

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> FakePyPI:
        """Bind and serve from a background thread; returns self for chaining."""
        if self._server is not None:
            raise RuntimeError("already started")
        if self.packages_dir is not None:
            self.packages_dir.mkdir(parents=True, exist_ok=True)
            cache = self.packages_dir / GENERATED_DIRNAME
        else:
            self._tmpdir = tempfile.mkdtemp(prefix="piw-fake-pypi-")
            cache = Path(self._tmpdir)
        self.store = FileStore(cache)
        self._server = _HTTPServer((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"piw-fake-pypi:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and remove any temporary cache."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> FakePyPI:
        return self.start() if self._server is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT`` (the simple index is ``url + "/simple/"``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- test controls -----------------------------------------------------

    def append(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Append events (serials optional) and return the new last serial."""
        return self.log.append(rows)

    def fail_next(self, mode: str | int, count: int = 1, retry_after: float | None = None) -> None:
        """Make the next ``count`` XML-RPC calls fail with ``mode``.

        Modes (see :data:`FAIL_MODES`): "429" (with Retry-After), "500", "503",
        "fault" (warehouse's rate limit), "disabled" (the method turned off),
        "error" (any other server error).  Repeated calls queue up: the failures
        are served in the order they were requested.
        """
        mode = str(mode)
        if mode not in FAIL_MODES:
            raise ValueError(f"unknown failure mode {mode!r}; use one of {', '.join(FAIL_MODES)}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be a non-negative integer, not {count!r}")
        if retry_after is None:
            retry_after = 1
        if isinstance(retry_after, bool) or not isinstance(retry_after, int | float):
            raise ValueError(f"retry_after must be a number of seconds, not {retry_after!r}")
        if count:
            with self._lock:
                self._failures.append([mode, count, max(0, math.ceil(retry_after))])

    def pending_failures(self) -> list[dict[str, Any]]:
        """The failures still queued, oldest first."""
        with self._lock:
            return [
                {"mode": mode, "count": count, "retry_after": retry_after}
                for mode, count, retry_after in self._failures
            ]

    def clear_failures(self) -> None:
        """Forget any queued failures."""
        with self._lock:
            self._failures.clear()

    def stats(self) -> dict[str, int]:
        """Counters since start: XML-RPC calls, failures served, rows served, files served."""
        with self._lock:
            stats = dict(self._stats)
        stats["last_serial"] = self.log.last_serial
        return stats

    # -- internals used by the handler --------------------------------------

    def _begin_xmlrpc_call(self) -> tuple[str, int] | None:
        with self._lock:
            self._stats["xmlrpc_calls"] += 1
            if not self._failures:
                return None
            failure = self._failures[0]
            failure[1] -= 1
            if failure[1] <= 0:
                self._failures.popleft()
            self._stats["failures_served"] += 1
            return failure[0], failure[2]

    def _count(self, **counters: int) -> None:
        with self._lock:
            for key, value in counters.items():
                self._stats[key] += value

    def _call(self, method: str, params: tuple[Any, ...]) -> tuple[list[bytes], int]:
        """Run an XML-RPC method; returns marshalled ``<value>`` chunks and rows served."""
        if method == "changelog_since_serial":
            if len(params) != 1 or isinstance(params[0], bool) or not isinstance(params[0], int):
                raise _XMLRPCFault(
                    -32602, "server error; invalid method params: expected (serial: int)"
                )
            fragments = self.log.fragments_since(params[0], self.page_size)
            body = b"".join(fragments)
            return [b"<value><array><data>\n", body, b"</data></array></value>\n"], len(fragments)
        if method == "changelog_last_serial":
            if params:
                raise _XMLRPCFault(-32602, "server error; invalid method params: expected ()")
            return [marshal_value(self.log.last_serial).encode()], 0
        if method == "list_packages_with_serial":
            if params:
                raise _XMLRPCFault(-32602, "server error; invalid method params: expected ()")
            projects = self.log.state().projects.values()
            result = {project.name: project.last_serial for project in projects}
            return [marshal_value(result).encode("utf-8")], 0
        if method in TURNED_OFF:
            raise _XMLRPCFault(-32500, TURNED_OFF[method])
        raise _XMLRPCFault(-32601, f"server error; requested method not found: {method!r}")

    def catalog(self) -> Catalog:
        """The served view; a new listing of the packages directory when it changed."""
        dir_mtime = 0
        if self.packages_dir is not None:
            try:
                dir_mtime = self.packages_dir.stat().st_mtime_ns
            except FileNotFoundError:
                pass
        with self._catalog_lock:
            if self._catalog is None or self._catalog_key != dir_mtime:
                dir_files: list[Path] = []
                if self.packages_dir is not None and self.packages_dir.is_dir():
                    dir_files = [
                        p
                        for p in self.packages_dir.iterdir()
                        if p.is_file() and not p.name.startswith(".")
                    ]
                self._catalog = Catalog(self.log, dir_files, self.generate, self._view_cache)
                self._catalog_key = dir_mtime
            return self._catalog


def _parse_fail(text: str) -> tuple[str, int, int | None]:
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[0] not in FAIL_MODES:
        raise argparse.ArgumentTypeError(
            f"expected MODE:COUNT[:RETRY_AFTER] with MODE one of {', '.join(FAIL_MODES)}"
        )
    try:
        count = int(parts[1])
        retry_after = int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad number in {text!r}") from None
    return parts[0], count, retry_after


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: serve until SIGTERM/SIGINT."""
    parser = command_parser(  # no -c: it reads no config file
        "piw-fake-pypi", "A fake PyPI (XML-RPC changelog, simple index, JSON API) for tests.")
    parser.add_argument("--events", help="JSONL event log (may not exist yet); with "
                        "--scenario, where the scenario is written (default: a temporary file)")
    parser.add_argument("--scenario", choices=scenarios(),
                        help="serve this scenario packaged with piw, its times rebased to now, "
                             "and in --packages (default: a temporary directory) the build "
                             "requirements of its sdists (setuptools, wheel, packaging) as "
                             "installed here")
    parser.add_argument("--packages", help="directory of real files to serve (and cache into)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default) picks a free port")
    parser.add_argument("--page-size", type=int, default=50000)
    parser.add_argument(
        "--no-generate",
        dest="generate",
        action="store_false",
        help="serve only files in --packages; never generate sdists",
    )
    parser.add_argument(
        "--fail",
        type=_parse_fail,
        action="extend",
        nargs="+",
        default=[],
        metavar="MODE:COUNT[:RETRY_AFTER]",
        help=f"fail the first XML-RPC calls; MODE is one of {', '.join(FAIL_MODES)}",
    )
    args = parser.parse_args(argv)  # -v logs every request
    if not (args.events or args.scenario):
        parser.error("give --events FILE or --scenario NAME")
    configure_logging(args, default=logging.WARNING,
                      console_format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="piw-fake-pypi-") as scratch:
        if args.scenario:
            try:
                _prepare_scenario(args, Path(scratch))
            except (OSError, importlib.metadata.PackageNotFoundError) as exc:
                print(f"piw-fake-pypi: cannot prepare scenario {args.scenario}: {exc}",
                      file=sys.stderr)
                return 2
        return _serve(args)


def _prepare_scenario(args: argparse.Namespace, scratch: Path) -> None:
    """Write ``--scenario``'s events (to --events, else into *scratch*) and its sdists' build
    requirements (into --packages, else *scratch*), and point *args* at them."""
    args.events = args.events or str(scratch / f"{args.scenario}.jsonl")
    args.packages = args.packages or str(scratch / "packages")
    write_scenario(Path(args.events), int(time.time()), name=args.scenario)
    write_build_requirements(Path(args.packages))


def _serve(args: argparse.Namespace) -> int:
    try:
        server = FakePyPI(
            args.events,
            packages_dir=args.packages,
            host=args.host,
            port=args.port,
            generate=args.generate,
            page_size=args.page_size,
        )
    except (EventLogError, ValueError, OSError) as exc:
        print(f"piw-fake-pypi: {exc}", file=sys.stderr)
        return 2
    for mode, count, retry_after in args.fail:
        server.fail_next(mode, count, retry_after)

    stopping = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        server.start()
    except OSError as exc:
        print(f"piw-fake-pypi: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"piw-fake-pypi serving {len(server.log)} events on {server.url}", flush=True)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
    return 0
