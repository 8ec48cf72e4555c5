"""app.py, the lean HTTP path: its fast answers must be the werkzeug answers (serve.py) byte for
byte, its cache must never serve a replaced file, and the service's counters must still see
every hit."""

import os
import re
import socket

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nameko.testing.services import entrypoint_hook
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from piw_services.web import app as app_module
from piw_services.web.app import HttpServer, TreeApp
from piw_services.web.serve import SIMPLE_JSON, Hit, ServedTree
from tests.web.conftest import SERVED, WHEEL, wsgi_call


def environ_for(path, method="GET", **headers):
    environ = EnvironBuilder(path=path, method=method, headers=headers).get_environ()
    environ["RAW_PATH_INFO"] = path.partition("?")[0]
    return environ


def call(app, environ):
    """(status, headers without Date, body) of one WSGI call."""
    status, head, body = wsgi_call(app, environ)
    headers = {k.lower(): v for k, v in head if k.lower() != "date"}
    return status, headers, body


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("path, headers", [
    *[(path, {}) for path, _, _ in SERVED],
    ("/simple/foo-bar/", {"Accept": SIMPLE_JSON}),
    ("/simple/", {"Accept": "text/html"}),
    ("/empty.txt", {}),
])
def test_fast_answers_are_werkzeugs(www, method, path, headers):
    tree = ServedTree(www)
    fast = TreeApp(tree)
    for _ in range(2):  # built, then from the cache
        got = call(fast, environ_for(path, method, **headers))
        want = call(lambda e, s: tree.respond(Request(e))(e, s),
                    environ_for(path, method, **headers))
        assert got == want


def test_cache_follows_replaced_files(www):
    app = TreeApp(ServedTree(www))
    page = www / "simple/foo-bar/index.html"
    first = call(app, environ_for("/simple/foo-bar/"))
    tmp = page.with_name(".new")
    tmp.write_text("<html>rebuilt</html>")
    os.replace(tmp, page)
    second = call(app, environ_for("/simple/foo-bar/"))
    assert second[2] == b"<html>rebuilt</html>"
    assert second[1]["etag"] != first[1]["etag"]


def test_cache_is_bounded(www, monkeypatch):
    monkeypatch.setattr(app_module, "CACHE_BYTES", 40)
    app = TreeApp(ServedTree(www))
    for path in ("/", "/simple/", "/simple/foo-bar/", "/packages.json"):
        assert call(app, environ_for(path))[0] == "200 OK"
        assert app.cached_bytes <= 40


def test_hits_are_reported_with_their_type(www):
    hits = []
    app = TreeApp(ServedTree(www), lambda *args: hits.append(args))
    call(app, environ_for(f"/simple/foo-bar/{WHEEL}"))
    call(app, environ_for("/simple/foo-bar/", Accept=SIMPLE_JSON))
    call(app, environ_for("/simple/nope/"))
    call(app, environ_for("/simple/foo-bar/", "HEAD"))
    call(app, environ_for("/simple/"))
    assert [(hit, status, content_type) for hit, status, _, content_type in hits] == [
        (Hit("downloads", "foo-bar", WHEEL), 200, "application/octet-stream"),
        (Hit("searches", "foo-bar"), 200, SIMPLE_JSON),
        (Hit("searches", "nope"), 404, "text/plain; charset=utf-8"),
    ]


def test_failure_is_a_500_not_a_dead_server(www, caplog):
    tree = ServedTree(www)
    app = TreeApp(tree)

    def broken(environ):
        raise RuntimeError("boom")

    tree.resolve = broken
    status, _, body = call(app, environ_for("/simple/"))
    assert status.startswith("500") and b"boom" not in body
    assert "boom" in caplog.text


def test_status_counts_what_the_server_served(web_container, session):
    assert session.get("/simple/foo-bar/", headers={"Accept": SIMPLE_JSON}).ok
    assert session.get("/simple/foo-bar/").ok
    assert session.get(f"/simple/foo-bar/{WHEEL}").ok
    with entrypoint_hook(web_container, "status") as status:
        counts = status()
    assert counts["searches"] == 2 and counts["downloads"] == 1
    assert counts["json_pages"] == 1


def test_replaced_page_over_http(session, www):
    assert session.get("/simple/foo-bar/").text == "<html>foo-bar simple html</html>"
    page = www / "simple/foo-bar/index.html"
    tmp = page.with_name(".new")
    tmp.write_text("<html>new</html>")
    os.replace(tmp, page)
    assert session.get("/simple/foo-bar/").text == "<html>new</html>"


def test_a_404_outside_simple_is_the_trees_page_with_a_search_box(tmp_path):
    """Browsers get the index's 404.html (a search box); /simple/ keeps the plain 404 pip
    reads; without the page every 404 is the plain one."""
    (tmp_path / "simple").mkdir()
    app = TreeApp(ServedTree(tmp_path))
    status, headers, body = call(app, environ_for("/project/nope/"))
    assert status.startswith("404") and body == b"404 Not Found\n"
    (tmp_path / "404.html").write_text('<form action="/"><input name="q"></form>')
    for path in ("/project/nope/", "/nothing.html", "/logs/x/1.log.gz", "/a/b/c", "/.uploads"):
        status, headers, body = call(app, environ_for(path))
        assert status.startswith("404"), path
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert b'<input name="q">' in body and int(headers["content-length"]) == len(body)
    status, headers, body = call(app, environ_for("/simple/nope/"))
    assert status.startswith("404") and body == b"404 Not Found\n"
    assert headers["vary"] == "Accept"


def test_connections_send_at_once_and_a_file_leaves_uncorked(www):
    """Every connection is TCP_NODELAY (Nagle held the last bytes of a response for the
    client's delayed ACK, up to 40 ms), and the cork a sendfile response puts on is off again
    once it is sent (a corked socket holds the next response's last bytes up to 200 ms): the
    options of the server's own socket, read right after each answer on one real keep-alive
    connection, and the bytes the client got."""
    tree_app = TreeApp(ServedTree(www))
    seen = []

    def probe(environ, start_response):
        result = tree_app(environ, start_response)
        sock = environ[app_module.SOCKET_KEY]
        cork = (sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK)
                if hasattr(socket, "TCP_CORK") else 0)
        seen.append((environ["PATH_INFO"],
                     bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)), cork))
        return result

    server = HttpServer(probe, ("127.0.0.1", 0))
    server.start()
    wheel = f"/simple/foo-bar/{WHEEL}"
    try:
        with requests.Session() as session:
            base = f"http://127.0.0.1:{server.port}"
            for path in (wheel, "/simple/foo-bar/", wheel):
                r = session.get(base + path, timeout=10)
                assert r.status_code == 200
                want = www / "simple/foo-bar" / (WHEEL if path == wheel else "index.html")
                assert r.content == want.read_bytes()
    finally:
        server.stop()
    assert seen == [(wheel, True, 0), ("/simple/foo-bar/", True, 0), (wheel, True, 0)]
    assert os.path.getsize(www / "simple/foo-bar" / WHEEL) > app_module.CHUNK  # sendfile's


# -- the quick path: requests answered by the protocol without eventlet's parser ---------------


class Quick(TreeApp):
    """A TreeApp that counts the answers its server sent by the quick path, and notes the
    connection's TCP_NODELAY and TCP_CORK after each."""

    def __init__(self, *args):
        super().__init__(*args)
        self.sent, self.options = 0, set()

    def send_quick(self, method, sock, *args):
        self.sent += 1
        super().send_quick(method, sock, *args)
        self.options.add((sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0,
                          sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK)
                          if hasattr(socket, "TCP_CORK") else 0))


def serving(app):
    server = HttpServer(app, ("127.0.0.1", 0))
    server.start()
    return server


def pipelined(port, data, timeout=10):
    """Send *data* (any number of requests) on one connection, say we are done, and read all
    the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(1 << 20):
            answer += chunk
    return answer


def undated(answer):
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\n", answer)


def both_paths(www, data):
    """(bytes answered, environs of the hits) by a TreeApp whose server takes the quick path
    and by the same behind a plain WSGI function (eventlet's parser and start_response), and
    how many answers went the quick way."""
    tree = ServedTree(www)
    seen = {"quick": [], "wsgi": []}
    keep = ("REQUEST_METHOD", "RAW_PATH_INFO", "QUERY_STRING", "REMOTE_ADDR")

    def recorder(name):
        return lambda hit, status, environ, content_type: seen[name].append(
            (hit, status, content_type, {k: v for k, v in environ.items()
                                         if k in keep or k.startswith("HTTP_")}))

    quick = Quick(tree, recorder("quick"))
    wsgi_app = TreeApp(tree, recorder("wsgi"))
    answers = []
    for app in (quick, lambda environ, start_response: wsgi_app(environ, start_response)):
        server = serving(app)
        try:
            answers.append(undated(pipelined(server.port, data)))
        finally:
            server.stop()
    assert quick.options <= {(True, 0)}  # sent at once, nothing left corked
    return answers, seen, quick.sent


PLAIN = [
    f"GET /simple/foo-bar/{WHEEL} HTTP/1.1\r\nHost: x\r\nUser-Agent: pip/25.0\r\n\r\n",
    f"HEAD /simple/foo-bar/{WHEEL} HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /simple/foo-bar/ HTTP/1.1\r\nHost: x\r\nAccept: " + SIMPLE_JSON + "\r\n\r\n",
    "GET /simple/foo-bar/?format=text/html HTTP/1.1\r\nHost: x\r\n\r\n",
    f"GET /simple/foo-bar/{WHEEL}.metadata HTTP/1.1\r\nConnection: Keep-Alive\r\n\r\n",
    "GET /packages.json HTTP/1.0\r\nConnection: keep-alive\r\nUser-Agent: ab\r\n\r\n",
    "GET /simple/foo-bar/ HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\nx-forwarded-for:  10.0.0.2 \r\n"
    "User_Agent: smuggled\r\nUser-Agent: \xe9t\xe9\t\r\n\r\n",
]
#: Requests eventlet's path answers (a body, a range, a closing connection, a redirect...):
#: the quick path must leave them whole to it, in the middle of a pipeline too.
OTHERS = [
    f"GET /simple/foo-bar/{WHEEL} HTTP/1.1\r\nRange: bytes=0-9\r\n\r\n",
    "GET /simple/Foo_Bar/ HTTP/1.1\r\n\r\n",
    "GET /simple/nope/ HTTP/1.1\r\n\r\n",
    "GET /simple/foo-bar/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    "GET /simple/foo-bar/ HTTP/1.1\r\nUser-Agent: a\x85b\r\n\r\n",
    "GET /simple/foo-bar/ HTTP/1.1\r\nUser-Agent: a\r\n b\r\n\r\n",
    "GET /simple/foo-bar/ HTTP/1.1\r\nConnection: keep-alive \r\n\r\n",
    "OPTIONS /simple/ HTTP/1.1\r\n\r\n",
]


def test_quick_answers_are_eventlets_byte_for_byte(www):
    for last in ("GET / HTTP/1.0\r\n\r\n",
                 "GET /simple/ HTTP/1.1\r\nConnection: close\r\n\r\n"):
        data = "".join(PLAIN + OTHERS + PLAIN + [last]).encode("latin-1")
        (quick, wsgi_answer), seen, sent = both_paths(www, data)
        assert quick == wsgi_answer
        assert quick.count(b"HTTP/1.1 200 OK") >= 2 * len(PLAIN)
        assert seen["quick"] == seen["wsgi"] and len(seen["quick"]) > 2 * len(PLAIN) - 4
        assert sent == 2 * len(PLAIN)


FIELD_NAMES = st.sampled_from(["User-Agent", "user-agent", "USER-AGENT", "X-Forwarded-For",
                               "Accept", "Accept-Encoding", "Connection", "X_Odd", "Via",
                               "Range", "If-None-Match", "Host", "Content-Type", "A" * 50])
FIELD_VALUES = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=30)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.lists(st.tuples(FIELD_NAMES, FIELD_VALUES), max_size=6),
       version=st.sampled_from(["HTTP/1.1", "HTTP/1.0"]),
       path=st.sampled_from(["/simple/foo-bar/", f"/simple/foo-bar/{WHEEL}", "/simple/?x",
                             "//simple/foo-bar/", "/simple/foo-bar/?format=" + SIMPLE_JSON]))
def test_quick_requests_mean_what_eventlet_reads(www, fields, version, path):
    """Whatever the header lines, both paths answer the same bytes and report the same
    request (headers as WSGI variables) to the stats."""
    head = f"GET {path} {version}\r\n" + "".join(f"{n}:{v}\r\n" for n, v in fields) + "\r\n"
    (quick, wsgi_answer), seen, _ = both_paths(www, head.encode("latin-1") * 2)
    assert quick == wsgi_answer
    assert seen["quick"] == seen["wsgi"]


def test_a_pipelining_client_does_not_starve_the_others(www):
    """A connection whose requests are all waiting is served one request at a time between
    the others', not to its end first."""
    order = []
    app = TreeApp(ServedTree(www), lambda hit, status, environ, ct: order.append(
        environ.get("HTTP_USER_AGENT")))
    server = serving(app)
    greedy = socket.create_connection(("127.0.0.1", server.port))
    other = socket.create_connection(("127.0.0.1", server.port))
    try:
        greedy.sendall(b"GET /simple/foo-bar/ HTTP/1.1\r\nUser-Agent: greedy\r\n\r\n" * 200)
        assert greedy.recv(65536).startswith(b"HTTP/1.1 200 OK")  # its turn has begun
        other.sendall(b"GET /simple/foo-bar/ HTTP/1.1\r\nUser-Agent: other\r\n\r\n")
        assert other.recv(65536).startswith(b"HTTP/1.1 200 OK")
    finally:
        greedy.close()
        other.close()
        server.stop()
    assert "other" in order[:20], order.index("other")
