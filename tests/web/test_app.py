"""app.py, the lean HTTP path: its fast answers must be the werkzeug answers (serve.py) byte for
byte, its cache must never serve a replaced file, and the service's counters must still see
every hit."""

import os
import socket

import pytest
import requests
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
