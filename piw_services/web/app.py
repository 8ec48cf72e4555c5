"""The HTTP side of the web service: a lean WSGI application on eventlet's WSGI server, with no
nameko worker per request (a worker, its context and dependency injection cost more than
serving a page does; service.py owns the server and sends the events).

The common request, a plain GET or HEAD of a file (no Range, no conditional header), is
answered without werkzeug: the response head is built once per file version (device, inode,
mtime, size) and small bodies are kept in memory under the same key, so a page hit is a path
check, open, fstat and close. Everything else (redirects, 404, 406, 304, ranges) is
serve.py's werkzeug response. Bodies above serve.CHUNK go out with sendfile(2) on the
connection's socket, which :class:`Protocol` hands to the application.

That common request does not even go through eventlet's request parsing and WSGI call: when
a request's head is already whole in the connection's read buffer and means nothing but
"GET/HEAD this path" (:func:`quick_request`; keep-alive, no body), :class:`Protocol` resolves
it with the application and writes the same bytes eventlet would (the cached head, eventlet's
Date and keep-alive lines) itself. eventlet's parser (the standard library's email parser),
environ and start_response were most of the Python time of a request: bench/serve's 1 MB file
cost ~250 us of Python a request through them, ~120 us now. Anything else (a body, a range,
a closing connection, a redirect, an error, a head in pieces) is left whole to eventlet.
After each request the connection yields to the others: a client that sends its next request
while the server still works on this one (ab -k does, and pipelining clients) was otherwise
served to its end while the other connections waited (the file's p99 of 80-220 ms).

Every connection has TCP_NODELAY, and a sendfile response is corked (TCP_CORK) from its head to
its last byte, as nginx's ``tcp_nodelay`` and ``tcp_nopush`` do (the quick path sends the head
with MSG_MORE instead: the same effect, two system calls fewer). Without them Nagle's
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
import re
import socket
import time
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
#: Linux's MSG_MORE (more data follows this send), None where there is none.
MSG_MORE: int | None = getattr(socket, "MSG_MORE", None)

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
        self.wire: dict[CacheKey, bytes] = {}  # wire_head's
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
        key = self.key_of(target)
        head = self.heads.get(key)
        if head is None:
            head = self.remember_head(key, target)
        if method == "HEAD":
            os.close(target.fd)
            start_response("200 OK", head)
            return []
        if target.st.st_size <= CHUNK:
            body = self.body_of(key, target)
            start_response("200 OK", head)
            return [body]
        sock = environ.get(SOCKET_KEY)
        if sock is None:
            start_response("200 OK", head)
            return wrap_file(environ, os.fdopen(target.fd, "rb", buffering=0),
                             buffer_size=CHUNK)
        write = start_response("200 OK", head)

        def send_head() -> None:
            write(b"")  # the head, flushed: the body goes straight to the socket

        self.send_corked(sock, target, send_head)
        return []

    def quick(self, method: str, environ: dict[str, Any]) -> OpenFile | None:
        """The file a plain GET or HEAD (no Range, no conditional header) answers with a
        200, counted, or None when the answer is anything else or something failed: the
        WSGI path then gives it (and logs the failure)."""
        if any(key in environ for key in SLOW_HEADERS):
            return None
        resolved = None
        try:
            resolved = self.tree.resolve(environ)
            if not isinstance(resolved, OpenFile):
                return None
            self.count(method, environ, 200, resolved.content_type)
        except Exception:
            if isinstance(resolved, OpenFile):
                os.close(resolved.fd)
            return None
        return resolved

    def send_quick(self, method: str, sock: Any, target: OpenFile, tail: bytes) -> None:
        """Send the 200 for *target* (from :meth:`quick`; its descriptor is closed after)
        straight to *sock*: the bytes eventlet's server would send (:meth:`wire_head`), then
        *tail* (its Date and Connection headers, the blank line)."""
        key = self.key_of(target)
        head = self.wire.get(key)
        if head is None:
            head = self.wire_head(key, target)
        if method == "HEAD":
            os.close(target.fd)
            sock.sendall(head + tail)
        elif target.st.st_size <= CHUNK:
            sock.sendall(head + tail + self.body_of(key, target))
        elif MSG_MORE is not None:
            # the head waits for the body's first bytes, as under TCP_CORK, without the two
            # setsockopt calls: sendfile sends its last piece without MSG_MORE, so nothing
            # is left held
            try:
                sock.sendall(head + tail, MSG_MORE)
                send_file(sock, target.fd, target.st.st_size)
            finally:
                os.close(target.fd)
        else:
            self.send_corked(sock, target, lambda: sock.sendall(head + tail))

    @staticmethod
    def key_of(target: OpenFile) -> CacheKey:
        st = target.st
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, target.content_type,
                target.cache, target.vary, target.encoding)

    def body_of(self, key: CacheKey, target: OpenFile) -> bytes:
        """The bytes of a small *target* (whose descriptor it closes), cached."""
        body = self.bodies.get(key)
        if body is not None:
            os.close(target.fd)
            return body
        size = target.st.st_size
        try:
            body = os.read(target.fd, size)
        finally:
            os.close(target.fd)
        if len(body) == size:
            self.remember_body(key, body)
        return body

    @staticmethod
    def send_corked(sock: Any, target: OpenFile, send_head: Callable[[], Any]) -> None:
        """*send_head*, then the body of a large *target* with sendfile (its descriptor
        closed after), corked: the head leaves with the body's first bytes, and uncorking
        sends the last ones at once."""
        set_tcp_option(sock, TCP_CORK, True)
        try:
            send_head()
            send_file(sock, target.fd, target.st.st_size)
        finally:
            set_tcp_option(sock, TCP_CORK, False)
            os.close(target.fd)

    def wire_head(self, key: CacheKey, target: OpenFile) -> bytes:
        """The status line and headers of a 200 for *target*, as eventlet's server writes
        them (header names capitalized as its ``capitalize_response_headers`` does), so a
        quick answer is byte for byte the WSGI path's."""
        head = self.heads.get(key) or self.remember_head(key, target)
        lines = [b"HTTP/1.1 200 OK\r\n"]
        for name, value in head:
            name = "-".join(part.capitalize() for part in name.split("-"))
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        wire = b"".join(lines)
        if len(self.wire) >= CACHE_HEADS:
            self.forget()
        self.wire[key] = wire
        return wire

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
        self.wire.clear()
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


#: A request line the quick path takes: GET or HEAD of an origin-form target (no "//" at the
#: start, which the standard library rewrites) in HTTP/1.0 or 1.1, single spaces.
_QUICK_LINE = re.compile(rb"(GET|HEAD) (/(?!/)[!-~]*) HTTP/1\.([01])\r\n")
#: A header line it takes: a token, a colon, a value of visible latin-1 and blanks (no
#: control character, no obsolete line folding, no NEL: the email parser behind
#: http.server would split a line at one).
_QUICK_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):([\t\x20-\x7e\x80-\x84\x86-\xff]*)\r\n")
#: Request headers that mean a body or a closing connection: left to eventlet.
_QUICK_REFUSED = frozenset({"content-length", "transfer-encoding", "expect"})
#: Header lines http.client reads at most.
_MAX_FIELDS = 100


def quick_request(head: bytes, url_limit: int, header_limit: int
                  ) -> tuple[str, str, bool, dict[str, str]] | None:
    """(method, target, whether the client asked for keep-alive by name, WSGI ``HTTP_*``
    variables) of a complete request *head* (its request line to its blank line), for the
    requests whose meaning is plain: otherwise None, and eventlet's parser reads it.

    Taken: GET or HEAD, HTTP/1.1 (keep-alive unless ``Connection: close``) or HTTP/1.0 with
    ``Connection: keep-alive``, no body, header lines that the standard parser would read as
    this does, within eventlet's and our bounds (``url_limit``, ``header_limit``). The
    variables are what eventlet's ``get_environ`` makes of them: names upper-cased with ``_``
    for ``-`` (a name holding ``_`` dropped, and Content-Type, which is not an ``HTTP_``
    variable), values without surrounding blanks, repeated names joined with ``,``.
    """
    line = _QUICK_LINE.match(head)
    if line is None or line.end() >= url_limit or len(head) - line.end() > header_limit:
        return None
    variables: dict[str, str] = {}
    connection = None
    pos, end, fields = line.end(), len(head) - 2, 0
    while pos < end:
        field = _QUICK_FIELD.match(head, pos)
        fields += 1
        if field is None or fields > _MAX_FIELDS:
            return None
        pos = field.end()
        name = field[1].decode("latin-1")
        lower = name.lower()
        if lower in _QUICK_REFUSED:
            return None
        value = field[2].decode("latin-1").lstrip(" \t")
        if lower == "connection" and connection is None:
            connection = value.lower()  # as eventlet compares it: trailing blanks kept
        value = value.rstrip(" \t")
        if "_" in name or lower == "content-type":  # eventlet: no HTTP_ variable for either
            continue
        key = "HTTP_" + name.upper().replace("-", "_")
        variables[key] = variables[key] + "," + value if key in variables else value
    if pos != end:
        return None
    keep_alive = connection == "keep-alive"
    if line[3] == b"0" and not keep_alive or connection not in (None, "keep-alive"):
        return None
    return line[1].decode(), line[2].decode("latin-1"), keep_alive, variables


class Protocol(wsgi.HttpProtocol):
    """eventlet's HTTP/1.1 protocol on a TCP_NODELAY connection, handing the connection to
    the application for sendfile, with the bounds of :class:`Limits` (``self.server.limits``).

    eventlet's timeouts are per read: a client that sends its request a byte at a time, each
    just inside them, would hold the connection for ever. So a request's line and headers
    must also arrive within keepalive + timeout seconds of the connection going idle (a
    green Timeout, cancelled once they are in), and its headers are at most max_headers
    bytes."""

    _deadline: eventlet.Timeout | None = None
    #: When the connection last went idle (monotonic), for the deadline.
    _idle_since = 0.0
    #: Date header line and the second it was made for.
    _date: tuple[int, bytes] = (0, b"")

    def setup(self) -> None:
        super().setup()
        # every write leaves at once (see the module doc): no response waits on a delayed ACK
        set_tcp_option(self.connection, socket.TCP_NODELAY, True)

    def handle_one_request(self) -> None:
        self._idle_since = time.monotonic()
        try:
            if not self._quick():
                super().handle_one_request()
        finally:
            self._request_in()
        if not self.close_connection:
            # the other connections' turn before this one's next request: a client that
            # sends its next request while we still work on this one (ab -k, pipelining)
            # must not hold the server for as long as it keeps doing so
            eventlet.sleep(0)

    def _quick(self) -> bool:
        """Answer the next request without eventlet's parser and WSGI machinery when it is
        a plain GET or HEAD (:func:`quick_request`) of a file answered 200
        (:meth:`TreeApp.quick`), already whole in the read buffer: the same bytes go out,
        for a third of the CPU time. Whether it did; if not, nothing was consumed."""
        server = self.server
        app = server.app
        if not isinstance(app, TreeApp) or not server.keepalive:
            return False
        sock = self.connection
        sock.settimeout(server.keepalive)  # as eventlet waits for a request line
        reader: Any = self.rfile
        try:
            buffered: bytes = reader.peek()
        except TimeoutError:
            raise  # the idle connection is closed, as eventlet does
        except OSError:
            return False  # eventlet's read meets it again and closes the connection
        finally:
            sock.settimeout(server.socket_timeout)
        end = buffered.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = buffered[:end + 4]
        request = quick_request(head, server.url_length_limit, server.limits.max_headers)
        if request is None:
            return False
        method, target, keep_alive, environ = request
        path, _, query = target.partition("?")
        environ["REQUEST_METHOD"] = method
        environ["RAW_PATH_INFO"] = path
        if "?" in target:
            environ["QUERY_STRING"] = query
        environ["REMOTE_ADDR"] = self.client_address[0]
        found = app.quick(method, environ)
        if found is None:
            return False
        reader.read(len(head))
        self.conn_state[2] = wsgi.STATE_REQUEST
        self.close_connection = 0
        try:
            app.send_quick(method, sock, found, self._tail(keep_alive))
        except OSError:
            raise  # the client went away: the connection is closed
        except Exception:  # never out of the connection's green thread: that ends the service
            log.exception("cannot answer %s %r", method, path)
            self.close_connection = 1
        return True

    def _tail(self, keep_alive: bool) -> bytes:
        """What eventlet writes after the application's headers: Date, keep-alive, blank."""
        now = time.time()
        second = int(now)
        if self._date[0] != second:
            Protocol._date = (second, f"Date: {wsgi.format_date_time(now)}\r\n".encode())
        tail = self._date[1]
        if keep_alive:
            tail += b"Connection: keep-alive\r\n"
            keepalive = self.server.keepalive
            if not isinstance(keepalive, bool) and int(keepalive):
                tail += b"Keep-Alive: timeout=%d\r\n" % int(keepalive)
        return tail + b"\r\n"

    def _read_request_line(self) -> Any:
        limits: Limits = self.server.limits
        waited = time.monotonic() - self._idle_since
        self._deadline = eventlet.Timeout(max(limits.keepalive + limits.timeout - waited, 0),
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

