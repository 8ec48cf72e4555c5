"""Fixtures for the web service: a small www tree, the service running in a nameko container
on a free port, and a raw HTTP client (requests normalises ``..`` away; pip's attacker does
not)."""

import gzip
import http.client
import os
import time
from pathlib import Path

import pytest
import requests
from nameko.events import event_handler

from piw_services.web.service import WebService
from tests.conftest import free_port

WHEEL = "foo_bar-1.0-cp311-cp311-linux_armv7l.whl"
WHEEL_V6 = "foo_bar-1.0-cp311-cp311-linux_armv6l.whl"
HTML = "text/html; charset=utf-8"
#: (URL path, Content-Type, file in the tree) that the web service and nginx both serve
SERVED = [
    ("/", HTML, "index.html"),
    ("/packages.json", "application/json", "packages.json"),
    ("/simple/", HTML, "simple/index.html"),
    ("/simple/index.json", "application/json", "simple/index.json"),
    ("/simple/foo-bar/", HTML, "simple/foo-bar/index.html"),
    (f"/simple/foo-bar/{WHEEL}", "application/octet-stream", f"simple/foo-bar/{WHEEL}"),
    (f"/simple/foo-bar/{WHEEL}.metadata", "application/octet-stream",
     f"simple/foo-bar/{WHEEL}.metadata"),
    (f"/simple/foo-bar/{WHEEL_V6}", "application/octet-stream", f"simple/foo-bar/{WHEEL}"),
    ("/project/foo-bar/", HTML, "project/foo-bar/index.html"),
    ("/project/foo-bar/json/", "application/json", "project/foo-bar/json/index.json"),
    ("/logs/foo-bar/1.log.gz", "application/gzip", "logs/foo-bar/1.log.gz"),
]
#: A build log as the index stores it (gzipped, logs/<name>/<id>.log.gz), linked as .log
LOG_TEXT = "Collecting foo-bar\nBuilding wheel for foo-bar (pyproject.toml): finished ✓\n" * 50
LOG_URL = "/logs/foo-bar/2.log"
SALT = "test-salt"
OLD = 1_600_000_000  # a fixed mtime, so Last-Modified is known


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    os.utime(path, (OLD, OLD))
    return path


@pytest.fixture
def www(tmp_path):
    """The tree as index and file_manager lay it out, plus hostile bits around it."""
    root = tmp_path / "www"
    write(root / "index.html", "<html>home</html>")
    write(root / "packages.json", '[["foo-bar", 1]]')
    write(root / "simple/index.html", "<html>root simple html</html>")
    write(root / "simple/index.json", '{"meta": {"api-version": "1.1"}, "projects": []}')
    write(root / "simple/foo-bar/index.html", "<html>foo-bar simple html</html>")
    write(root / "simple/foo-bar/index.json", '{"name": "foo-bar", "files": []}')
    write(root / "simple/foo-bar" / WHEEL, os.urandom(300_000))
    write(root / "simple/foo-bar" / (WHEEL + ".metadata"), "Metadata-Version: 2.1\n")
    os.symlink(WHEEL, root / "simple/foo-bar" / WHEEL_V6)
    write(root / "simple/html-only/index.html", "<html>only html</html>")
    write(root / "project/foo-bar/index.html", "<html>foo-bar project</html>")
    write(root / "project/foo-bar/json/index.json", '{"name": "foo-bar"}')
    write(root / "logs/foo-bar/1.log.gz", b"\x1f\x8b\x08\x00fake")
    write(root / "logs/foo-bar/2.log.gz", gzip.compress(LOG_TEXT.encode()))
    write(root / "empty.txt", b"")
    (root / "logs/nothing").mkdir(parents=True)
    # private and hostile
    write(root / ".uploads/x.part", "half a wheel")
    write(tmp_path / "secret/passwd", "root:x:0:0")
    os.symlink(tmp_path / "secret", root / "simple/evil")
    os.symlink("../../../secret/passwd", root / "simple/foo-bar/leak-1.0-py3-none-any.whl")
    os.symlink("../../.uploads/x.part", root / "simple/foo-bar/hidden-1.0-py3-none-any.whl")
    os.symlink("loop", root / "simple/foo-bar/loop")
    os.mkfifo(root / "simple/foo-bar/fifo.whl")
    return root


#: What the Listener received: one list (a batch) per event, by kind.
RECEIVED = {"downloads": [], "searches": []}


class Listener:
    """Receives the web service's stats events into RECEIVED."""

    name = "web_stats_listener"

    @event_handler("web", "downloads")
    def downloads(self, events):
        RECEIVED["downloads"].append(events)

    @event_handler("web", "searches")
    def searches(self, events):
        RECEIVED["searches"].append(events)


@pytest.fixture
def web_config(rabbit_config, www):
    return {
        "AMQP_URI": rabbit_config["AMQP_URI"],
        "WWW": str(www),
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}",
        "STATS_SALT": SALT,
    }


@pytest.fixture
def listener(container_factory, web_config):
    """Started before the web service, so its queues exist when events are sent."""
    for batches in RECEIVED.values():
        batches.clear()
    container = container_factory(Listener, web_config)
    container.start()
    return container


@pytest.fixture
def web_container(container_factory, web_config, listener):
    container = container_factory(WebService, web_config)
    container.start()
    return container


@pytest.fixture
def web(web_container, web_config):
    """The base URL of a running WebService."""
    return "http://" + web_config["WEB_SERVER_ADDRESS"]


@pytest.fixture
def session(web):
    class Session(requests.Session):
        def request(self, method, url, *args, follow=False, **kwargs):
            kwargs["allow_redirects"] = follow
            kwargs.setdefault("timeout", 10)
            return super().request(method, web + url, *args, **kwargs)

    with Session() as s:
        yield s


class Raw:
    """Sends a request target exactly as given (no normalisation, no quoting)."""

    def __init__(self, base):
        host, _, port = base.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)

    def __call__(self, target, method="GET", headers=None, body=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for key, value in (headers or {}).items():
                conn.putheader(key, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            response.body = response.read()
            return response
        finally:
            conn.close()


@pytest.fixture
def raw(web):
    return Raw(web)


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def wsgi_call(app, environ):
    """(status line, header list, body) of one call of a WSGI *app*, its result closed."""
    started = {}

    def start_response(status, headers, exc_info=None):
        started["status"], started["headers"] = status, headers
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return started["status"], started["headers"], body


def check_log(get):
    """A build log through *get* (path, headers) -> requests response, as the web service
    and nginx serve it: text a browser shows, gzip-encoded when the client takes gzip."""
    for accept in ("gzip, deflate, br", "gzip;q=0.5"):
        r = get(LOG_URL, {"Accept-Encoding": accept})
        assert r.status_code == 200, (accept, r.status_code)
        assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert r.headers["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in r.headers["Vary"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert gzip.decompress(r.raw.read(decode_content=False)).decode() == LOG_TEXT
    for accept in (None, "identity", "gzip;q=0, identity"):
        r = get(LOG_URL, {"Accept-Encoding": accept})
        assert r.status_code == 200, (accept, r.status_code)
        assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert "Content-Encoding" not in r.headers, accept
        assert r.raw.read(decode_content=False).decode() == LOG_TEXT
    assert get("/logs/foo-bar/9.log", {}).status_code == 404
    assert get("/logs/foo-bar/2.log/", {}).status_code == 404
