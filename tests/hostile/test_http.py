"""Generated hostile requests against the web service: the WSGI application itself (thousands
of paths, methods and headers a second), then the real server on a real socket (its own
parser in front of the application, and bytes that are not HTTP at all).

Never a 5xx, never a byte from outside the tree or from ``.uploads``, and the server keeps
serving. tests/web/test_hostile.py holds the hand-written table of traversals; here they are
generated: every encoding of every dot, slash and separator, mixed with the tree's real names.
"""

from __future__ import annotations

import io
import re
import socket
import time
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piw_services.web.app import TreeApp
from piw_services.web.serve import ServedTree
from tests.hostile.conftest import examples, hostile_text, tried
from tests.web.conftest import WHEEL, wsgi_call

AREA = "http"
#: A server failure: any 5xx but 505 (HTTP Version Not Supported is the right answer to
#: "HTTP/9.9")
FAILED = re.compile(rb"5(?!05)\d\d")
FORBIDDEN = (b"root:x:0:0", b"half a wheel")

# -- what a path is made of --------------------------------------------------------------------
REAL = ["simple", "foo-bar", "Foo_Bar", WHEEL, WHEEL + ".metadata", "index.html", "index.json",
        "project", "json", "logs", "1.log.gz", "packages.json", "secret", "passwd", "etc",
        "evil", "leak-1.0-py3-none-any.whl", "hidden-1.0-py3-none-any.whl", "loop",
        "fifo.whl", "html-only", "empty.txt", "nothing", ".uploads", "x.part", ".git"]
DOTS = ["..", ".", "...", "%2e%2e", "%2E%2e", ".%2e", "%2e.", "%252e%252e", "%25252e%25252e",
        "%c0%ae%c0%ae", "%c0%2e%c0%2e", "%e0%80%ae%e0%80%ae", "%f0%80%80%ae", "%c1%9c",
        "%u002e%u002e", "\u2024\u2024", "%e2%80%a4%e2%80%a4", "%ef%bc%8e%ef%bc%8e",
        "\uff0e\uff0e", "%e3%80%82", "..;", "..%00", "%00..", "..%20", " ..", "..\t"]
SEPARATORS = ["/", "/", "/", "//", "\\", "%2f", "%2F", "%5c", "%5C", "%252f", "%c0%af",
              "%c1%9c", "%e0%80%af", "/./", "%00/", "\u2215", "%e2%88%95", "%ef%bc%8f", ";/"]
TAILS = ["", "", "/", "?format=application/vnd.pypi.simple.v1+json", "?", "?%ff", "#frag",
         "%00", "%00.html", "%0d%0aX-Injected:%201", ";jsessionid=1", "?a=" + "b" * 300]


def encodings(segment: str) -> st.SearchStrategy[str]:
    """*segment* as it is, percent-encoded (all of it), encoded twice, or case-flipped."""
    data = segment.encode("utf-8", "surrogatepass")
    once = quote(data, safe="")
    return st.sampled_from([segment, segment, once, quote(once, safe=""),
                            "".join(f"%{b:02x}" for b in data),
                            segment.upper(), segment.replace(".", "%2e")])


segment = st.one_of(st.sampled_from(REAL), st.sampled_from(DOTS),
                    hostile_text(12)).flatmap(encodings)


@st.composite
def targets(draw) -> str:
    """A request target as eventlet hands it on: latin-1 text standing for bytes."""
    parts = draw(st.lists(segment, min_size=0, max_size=8))
    path = "/" + "".join(p + draw(st.sampled_from(SEPARATORS)) for p in parts[:-1])
    path += (parts[-1] if parts else "") + draw(st.sampled_from(TAILS))
    if draw(st.integers(0, 20)) == 0:
        path = "/" + "x/" * draw(st.integers(500, 3000))  # overlong
    # a client sends bytes: anything beyond latin-1 goes as UTF-8, read back as latin-1
    return path.encode("utf-8", "surrogatepass").decode("latin-1")


METHODS = ["GET", "HEAD", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE",
           "CONNECT", "PATCH", "PROPFIND", "get", "head", "GETS", "G\u00c9T", "", "*",
           "X" * 300, "GET /simple/ HTTP/1.1"]
ACCEPTS = st.one_of(
    st.none(), st.sampled_from([
        "", "*/*", "text/html", "application/vnd.pypi.simple.v1+json",
        "application/vnd.pypi.simple.latest+json;q=0.9, text/html;q=0.1", ";;;", "/", "*/",
        "text/html;q=abc", "text/html;q=-1", "text/html;q=1.0001", "text/html;q=0",
        "*/*;q=0", "application/json;q=1e999", "image/*", ",,,,", "text/html;" * 200,
        "\u00e9/\u00e8", "text/html\x00", "*/*;q=" + "9" * 2000]),
    hostile_text(40))
HEADERS = st.dictionaries(
    st.sampled_from(["HTTP_RANGE", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE",
                     "HTTP_IF_RANGE", "HTTP_IF_MATCH", "HTTP_USER_AGENT", "HTTP_X_FORWARDED_FOR",
                     "HTTP_HOST", "CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"]),
    st.one_of(st.sampled_from(["bytes=0-0", "bytes=-1", "bytes=5-1", "bytes=0-" + "9" * 50,
                               "bytes=0-0,1-1", "*", '"x"', "W/\"", "Mon, 99 Foo 9999",
                               "pip/24.0 {\"installer\":", "-1", "chunked", "1" * 40]),
              hostile_text(30)),
    max_size=3)


def environ_for(target: str, method: str, accept: str | None, headers: dict) -> dict:
    path, _, query = target.partition("?")
    environ = {
        "REQUEST_METHOD": method, "RAW_PATH_INFO": path, "REQUEST_URI": target,
        "PATH_INFO": unquote(path, encoding="latin-1"), "QUERY_STRING": query,
        "SCRIPT_NAME": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1",
        "wsgi.input": io.BytesIO(), "wsgi.errors": io.StringIO(), "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0), "wsgi.multithread": False, "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if accept is not None:
        environ["HTTP_ACCEPT"] = accept
    environ.update(headers)
    return environ


def call(app, environ):
    status, head, body = wsgi_call(app, environ)
    return int(status.split()[0]), head, body


def servable(root: Path) -> set[bytes]:
    """The contents of every file the tree may serve (none under a dot)."""
    found = set()
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(p.startswith(".") for p in rel.parts) or not path.is_file():
            continue
        if path.resolve().is_relative_to(root.resolve()) and \
                not any(p.startswith(".") for p in path.resolve().relative_to(
                    root.resolve()).parts):
            found.add(path.read_bytes())
    return found


@pytest.fixture
def app(www):
    return TreeApp(ServedTree(www)), servable(www)


@examples(1500)
@given(target=targets(), method=st.one_of(st.sampled_from(["GET", "HEAD"]), st.sampled_from(
    ["GET", "HEAD"]), st.sampled_from(METHODS)), accept=ACCEPTS, headers=HEADERS)
def test_the_application_never_fails_and_never_leaks(app, target, method, accept, headers):
    tried(AREA)
    tree_app, allowed = app
    status, head, body = call(tree_app, environ_for(target, method, accept, headers))
    assert status < 500, (target, method, status, body[:200])
    for secret in FORBIDDEN:
        assert secret not in body, (target, status)
    names = {k.lower(): v for k, v in head}
    assert all("\n" not in v and "\r" not in v for v in names.values()), head
    if status == 200 and method == "GET":
        assert body in allowed, (target, body[:100])
    if status == 206:
        assert any(body in whole for whole in allowed)
    if method not in ("GET", "HEAD"):
        assert status == 405


# -- the real server on a socket ---------------------------------------------------------------
CRLF = st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r", b"\r\r\n"])
token = st.one_of(st.sampled_from([b"GET", b"HEAD"]), st.sampled_from([b"GET", b"HEAD"]),
                  st.sampled_from([m.encode("utf-8") for m in METHODS]),
                  st.binary(min_size=0, max_size=12))
versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/0.9",
                            b"HTTP/9.9", b"HTTP/1.1 x", b"HTTP/", b"http/1.1", b"",
                            b"HTTP/1.1\x00", b"HTTP/1." + b"1" * 50])
header_lines = st.lists(st.one_of(
    st.sampled_from([b"Host: x", b"Host:", b"Content-Length: -1", b"Content-Length: 5",
                     b"Content-Length: 99999999999999999999", b"Content-Length: 1, 2",
                     b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked",
                     b"Expect: 100-continue", b"Connection: close", b"Connection: upgrade",
                     b"Upgrade: websocket", b" folded: continuation", b"\tfolded",
                     b"No-Colon-Here", b": empty-name", b"X-A:\x00\x01\x02",
                     b"Accept: " + b"text/html;" * 1200, b"X-Long: " + b"a" * 9000,
                     b"Range: bytes=0-" + b"9" * 400, b"If-None-Match: " + b"*," * 500]),
    st.binary(max_size=40)), max_size=6)
bodies = st.sampled_from([b"", b"", b"0\r\n\r\n", b"zz\r\nxx\r\n", b"hello", b"\x00" * 64,
                          b"5\r\nhello\r\n0\r\n\r\nGET /.uploads/x.part HTTP/1.1\r\n\r\n"])


@st.composite
def raw_requests(draw) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(min_size=1, max_size=200))
    eol = draw(CRLF)
    target = draw(targets()).encode("latin-1")
    gap = draw(st.sampled_from([b" ", b" ", b" ", b"  ", b"\t", b""]))
    line = draw(token) + gap + target + b" " + draw(versions)
    head = eol.join([line, *draw(header_lines)]) + eol + eol
    return head + draw(bodies)


def exchange(host: str, port: int, data: bytes) -> bytes:
    """Send *data*, say we are done, and read what comes back until the server closes."""
    with socket.create_connection((host, port), timeout=5) as s:
        s.settimeout(3)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:  # the server hung up first (refused the request early)
            pass
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return answer


@pytest.fixture
def server(web):
    host, port = web.removeprefix("http://").split(":")
    return host, int(port)


@examples(200)
@given(data=raw_requests())
def test_the_real_server_answers_garbage_sanely_and_keeps_serving(server, data):
    tried(AREA)
    answer = exchange(*server, data)
    for status_line in (line for line in answer.split(b"\r\n") if line.startswith(b"HTTP/")):
        parts = status_line.split()
        assert len(parts) >= 2 and FAILED.fullmatch(parts[1]) is None, (data[:200], status_line)
    # an HTTP/0.9-style answer has no status line: the error page says its code
    assert FAILED.search(answer.partition(b"Error code: ")[2][:3]) is None, data[:200]
    for secret in FORBIDDEN:
        assert secret not in answer, data[:200]


def test_the_server_still_serves_after_the_garbage(server, www):
    """One connection each for a few hundred hostile requests, then a plain request: the same
    server (no restart in between) still answers it, and a body from outside never came."""
    garbage = [b"GET /%2e%2e/%2e%2e/secret/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
               b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),
               b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
               b"GET /simple/ HTTP/1.1\r\n" + b"X: y\r\n" * 2000 + b"\r\n",
               b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]
    for data in garbage * 20:
        tried(AREA)
        answer = exchange(*server, data)
        assert b" 500 " not in answer.split(b"\r\n", 1)[0]
        assert FORBIDDEN[0] not in answer
    answer = exchange(*server, b"GET /simple/ HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"root simple html</html>")


# -- what one connection may cost (issue 18): WEB_KEEPALIVE, WEB_TIMEOUT, WEB_MAX_HEADERS ------
@pytest.fixture
def tight(web_config):
    web_config.update(WEB_KEEPALIVE="1", WEB_TIMEOUT="2", WEB_MAX_HEADERS="2048")
    return web_config


def closed_after(sock, at_most):
    """Seconds until the server closes *sock* (reads give b""), failing after *at_most*."""
    start = time.monotonic()
    sock.settimeout(at_most)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open for {at_most}s") from None
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def test_idle_and_slow_connections_are_closed_and_headers_bounded(tight, server):
    tried(AREA, 4)
    host, port = server
    # a keep-alive connection idle after its request: closed after WEB_KEEPALIVE
    with socket.create_connection(server, timeout=5) as s:
        s.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\n\r\n")
        head = s.recv(65536)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert closed_after(s, 10) < 5
    # a connection that never says anything: the same
    with socket.create_connection(server, timeout=5) as s:
        assert closed_after(s, 10) < 5
    # a client trickling its headers, each byte inside the timeouts: cut off after
    # keepalive + timeout seconds in all
    with socket.create_connection(server, timeout=5) as s:
        s.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        try:
            while time.monotonic() - start < 15:
                s.sendall(b"X")
                time.sleep(0.5)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert time.monotonic() - start < 6
    # headers over WEB_MAX_HEADERS: refused, the connection closed
    answer = exchange(host, port, b"GET /simple/ HTTP/1.1\r\nHost: x\r\n"
                      + b"X-Pad: " + b"y" * 100 + b"\r\n" * 1 + b"X-More: " + b"z" * 2000
                      + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 400 Headers Too Large"), answer[:100]
    # within the bound all is well
    answer = exchange(host, port, b"GET /simple/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      + b"X-Pad: " + b"y" * 1500 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
