"""The HTTP side of the web service: a lean WSGI application on eventlet's WSGI server, with no
nameko worker per request (a worker, its context and dependency injection cost more than
serving a page does; service.py owns the server and sends the events).

The common request, a plain GET or HEAD of a file (no Range, no conditional header), is
answered without werkzeug: the response head is built once per file version (device, inode,
mtime, size) and small bodies are kept in memory under the same key, so a page hit is a path
check, open, fstat and close. Everything else (redirects, 404, 406, 304, ranges) is
serve.py's werkzeug response. Bodies above serve.CHUNK go out with sendfile(2) on the
connection's socket, which :class:`Protocol` hands to the application.

Every connection has TCP_NODELAY, and a sendfile response is corked (TCP_CORK) from its head to
its last byte, as nginx's ``tcp_nodelay`` and ``tcp_nopush`` do. Without them Nagle's
algorithm held a response's last partial segment until the client had acknowledged all the
rest, and a keep-alive client (request, response, request) delays that acknowledgement by up to
40 ms: 5 to 20% of 1 MB responses stalled that long, and whether they did depended on the
timing of the client's reads, so the rate moved from one machine to the next (bench/serve:
488 to 1,990 requests a second with the same code, nginx steady; docs/performance.md).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import eventlet
from eventlet import wsgi
from eventlet.hubs import trampoline
from werkzeug.http import http_date
from werkzeug.wsgi import wrap_file

from piw_services.web.serve import (
    CHUNK,
    Hit,
    OpenFile,
    ServedTree,
    classify,
    etag_of,
    plain,
    raw_path,
)

log = logging.getLogger(__name__)

#: Request headers that need werkzeug's conditional and range handling.
SLOW_HEADERS = ("HTTP_RANGE", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_MATCH",
                "HTTP_IF_UNMODIFIED_SINCE", "HTTP_IF_RANGE")
ALLOW = "GET, HEAD"
#: Bounds of the response cache: both maps are emptied when one is full (stale versions of
#: replaced files go with them; the next hits rebuild what is current).
CACHE_BYTES = 32 * 1024 * 1024
CACHE_HEADS = 4096
#: Pending connections the kernel queues for accept().
BACKLOG = 1024
#: Where the environ carries the connection's socket (for sendfile).
SOCKET_KEY = "piw.socket"
#: Linux's TCP_CORK, None where there is none (then the head is a segment of its own).
TCP_CORK: int | None = getattr(socket, "TCP_CORK", None)

StartResponse = Callable[..., Callable[[bytes], Any]]
#: Called for every request the stats count: (hit, status, environ, Content-Type).
OnHit = Callable[[Hit, int, dict[str, Any], str], None]
CacheKey = tuple[int, int, int, int, str, str, bool, str]


def send_file(sock: Any, fd: int, size: int) -> None:
    """Send *size* bytes of *fd* on the green socket *sock* (non-blocking underneath) with
    sendfile(2), waiting in the hub whenever the socket is full."""
    out = sock.fileno()
    offset = 0
    while offset < size:
        try:
            sent = os.sendfile(out, fd, offset, size - offset)
        except BlockingIOError:
            trampoline(out, write=True, timeout=sock.gettimeout())
            continue
        if not sent:  # the file shrank: the promised Content-Length cannot be kept
            raise ConnectionAbortedError("file ended early")
        offset += sent


def set_tcp_option(sock: Any, option: int | None, value: bool) -> None:
    """Set a TCP option of *sock*, if this system has it; a socket that is not TCP (a test's
    socketpair) or already closed is left as it is."""
    if option is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, int(value))
    except OSError:
        pass


class TreeApp:
    """WSGI application serving *tree*; *on_hit* hears of every download and search."""

    def __init__(self, tree: ServedTree, on_hit: OnHit | None = None) -> None:
        self.tree = tree
        self.on_hit = on_hit
        self.heads: dict[CacheKey, list[tuple[str, str]]] = {}
        self.bodies: dict[CacheKey, bytes] = {}
        self.cached_bytes = 0

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if method != "GET" and method != "HEAD":
            response = plain(405, "405 Method Not Allowed")
            response.headers["Allow"] = ALLOW
            return response(environ, start_response)
        try:
            resolved = self.tree.resolve(environ)
            if isinstance(resolved, OpenFile) and any(key in environ for key in SLOW_HEADERS):
                resolved = resolved.response(environ)
            if isinstance(resolved, OpenFile):
                self.count(method, environ, 200, resolved.content_type)
            else:
                self.count(method, environ, resolved.status_code, resolved.content_type or "")
        except Exception:
            log.exception("cannot answer %s %r", method, environ.get("RAW_PATH_INFO"))
            resolved = plain(500, "500 Internal Server Error")
        if isinstance(resolved, OpenFile):
            return self.send(method, environ, start_response, resolved)
        return resolved(environ, start_response)

    def count(self, method: str, environ: dict[str, Any], status: int,
              content_type: str) -> None:
        if self.on_hit is None:
            return
        hit = classify(method, raw_path(environ), status)
        if hit is not None:
            self.on_hit(hit, status, environ, content_type)

    def send(self, method: str, environ: dict[str, Any], start_response: StartResponse,
             target: OpenFile) -> Iterable[bytes]:
        """A 200 for *target* (whose descriptor it closes), head and small bodies cached."""
        st = target.st
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, target.content_type,
               target.cache, target.vary, target.encoding)
        head = self.heads.get(key)
        if head is None:
            head = self.remember_head(key, target)
        size = st.st_size
        if method == "HEAD":
            os.close(target.fd)
            start_response("200 OK", head)
            return []
        if size <= CHUNK:
            body = self.bodies.get(key)
            if body is None:
                try:
                    body = os.read(target.fd, size)
                finally:
                    os.close(target.fd)
                if len(body) == size:
                    self.remember_body(key, body)
            else:
                os.close(target.fd)
            start_response("200 OK", head)
            return [body]
        sock = environ.get(SOCKET_KEY)
        if sock is None:
            start_response("200 OK", head)
            return wrap_file(environ, os.fdopen(target.fd, "rb", buffering=0),
                             buffer_size=CHUNK)
        # corked: the head leaves with the body's first bytes; uncorking sends the last ones
        set_tcp_option(sock, TCP_CORK, True)
        try:
            write = start_response("200 OK", head)
            write(b"")  # the head, flushed: the body goes straight to the socket
            send_file(sock, target.fd, size)
        finally:
            set_tcp_option(sock, TCP_CORK, False)
            os.close(target.fd)
        return []

    def remember_head(self, key: CacheKey, target: OpenFile) -> list[tuple[str, str]]:
        st = target.st
        head = [("Content-Type", target.content_type), ("Content-Length", str(st.st_size)),
                ("Cache-Control", target.cache)]
        if target.vary:
            head.append(("Vary", "Accept"))
        if target.encoding:
            head += [("Content-Encoding", target.encoding), ("Vary", "Accept-Encoding")]
        head += [("X-Content-Type-Options", "nosniff"), ("ETag", f'"{etag_of(st)}"'),
                 ("Last-Modified", http_date(st.st_mtime)), ("Accept-Ranges", "bytes")]
        if len(self.heads) >= CACHE_HEADS:
            self.forget()
        self.heads[key] = head
        return head

    def remember_body(self, key: CacheKey, body: bytes) -> None:
        if self.cached_bytes + len(body) > CACHE_BYTES:
            self.forget()
        self.bodies[key] = body
        self.cached_bytes += len(body)

    def forget(self) -> None:
        self.heads.clear()
        self.bodies.clear()
        self.cached_bytes = 0


@dataclass(frozen=True)
class Limits:
    """What one connection may cost (the WEB_* settings): seconds a keep-alive connection
    may sit idle, seconds a read or write may stall (a client trickling its headers, or not
    reading its response), bytes of request headers."""

    keepalive: float = 15.0
    timeout: float = 60.0
    max_headers: int = 16 * 1024


class _BoundedHeaders:
    """The request's header lines, refused (eventlet's 400 "Headers Too Large") past
    *limit* bytes in all."""

    def __init__(self, rfile: Any, limit: int) -> None:
        self.rfile, self.limit, self.size = rfile, limit, 0

    def readline(self, size: int = -1) -> bytes:
        line: bytes = self.rfile.readline(size)
        self.size += len(line)
        if self.size > self.limit:
            raise wsgi.HeadersTooLarge()
        return line


class Protocol(wsgi.HttpProtocol):
    """eventlet's HTTP/1.1 protocol on a TCP_NODELAY connection, handing the connection to
    the application for sendfile, with the bounds of :class:`Limits` (``self.server.limits``).

    eventlet's timeouts are per read: a client that sends its request a byte at a time, each
    just inside them, would hold the connection for ever. So a request's line and headers
    must also arrive within keepalive + timeout seconds of the connection going idle (a
    green Timeout, cancelled once they are in), and its headers are at most max_headers
    bytes."""

    _deadline: eventlet.Timeout | None = None

    def setup(self) -> None:
        super().setup()
        # every write leaves at once (see the module doc): no response waits on a delayed ACK
        set_tcp_option(self.connection, socket.TCP_NODELAY, True)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:
            self._request_in()

    def _read_request_line(self) -> Any:
        limits: Limits = self.server.limits
        self._deadline = eventlet.Timeout(limits.keepalive + limits.timeout,
                                          TimeoutError("request too slow"))
        return super()._read_request_line()

    def parse_request(self) -> bool:
        # handle_one_request has wrapped rfile for eventlet's own bounds (8 KiB a line, 64 KiB
        # in all) and puts the plain one back afterwards; ours is tighter
        self.rfile = _BoundedHeaders(self.rfile, self.server.limits.max_headers)
        return bool(super().parse_request())

    def get_environ(self) -> dict[str, Any]:
        self._request_in()
        environ = super().get_environ()
        environ[SOCKET_KEY] = self.connection
        return environ

    def _request_in(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


#: accept() errors that pass (the client gave up, or the process is briefly out of files).
ACCEPT_RETRY = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EMFILE, errno.ENFILE,
                          errno.ENOBUFS, errno.ENOMEM, errno.EINTR, errno.EAGAIN})


class HttpServer:
    """eventlet's WSGI server for a :class:`TreeApp` on *address*; *spawn* runs a green
    thread (the nameko container's, so stopping the service ends its connections)."""

    def __init__(self, app: TreeApp, address: tuple[str, int],
                 spawn: Callable[[Callable[[], None]], Any] = eventlet.spawn,
                 limits: Limits = Limits()) -> None:
        self.app = app
        self.address = address
        self.spawn = spawn
        self.limits = limits
        self.sock: Any = None
        self.thread: Any = None

    def start(self) -> None:
        self.sock = eventlet.listen(self.address, backlog=BACKLOG)
        self.sock.settimeout(None)
        # log_output=False: no access log line formatted per request (stats has the events)
        # keepalive: seconds to wait for the next request; socket_timeout: for everything
        # else on the connection (without it a client could hold a connection for ever)
        self.server = wsgi.Server(self.sock, self.sock.getsockname(), self.app,
                                  protocol=Protocol, log_output=False, debug=False,
                                  keepalive=self.limits.keepalive,
                                  socket_timeout=self.limits.timeout)
        self.server.limits = self.limits
        self.thread = self.spawn(self.accept)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def accept(self) -> None:
        while True:
            try:
                conn, address = self.sock.accept()
            except OSError as exc:
                if exc.errno not in ACCEPT_RETRY:
                    raise
                log.warning("accept: %s", exc)
                eventlet.sleep(0.05)
                continue
            self.spawn(lambda c=conn, a=address: self.connection(c, a))

    def connection(self, conn: Any, address: Any) -> None:
        try:
            self.server.process_request([address, conn, wsgi.STATE_IDLE])
        except OSError:  # the client went away mid-request
            conn.close()

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.kill()
            self.thread = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None

