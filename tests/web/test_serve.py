"""serve.py without a server: negotiation, path splitting, client hashing, and ServedTree.serve on
werkzeug test requests."""

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from piw_services.settings import networks
from piw_services.web.serve import (
    SIMPLE_HTML,
    SIMPLE_JSON,
    TEXT_HTML,
    Hit,
    ServedTree,
    client_address,
    client_hash,
    make_event,
    negotiate,
    parse_accept,
    salt_key,
    split_path,
)
from tests.web.conftest import WHEEL


@pytest.mark.parametrize("accept, chosen", [
    (None, TEXT_HTML),
    ("", TEXT_HTML),
    ("*/*", TEXT_HTML),
    ("text/html", TEXT_HTML),
    ("text/*", TEXT_HTML),
    (SIMPLE_JSON, SIMPLE_JSON),
    (SIMPLE_HTML, SIMPLE_HTML),
    ("application/vnd.pypi.simple.latest+json", SIMPLE_JSON),
    ("application/vnd.pypi.simple.latest+html", SIMPLE_HTML),
    ("APPLICATION/VND.PYPI.SIMPLE.V1+JSON", SIMPLE_JSON),
    # pip >= 22.2
    (f"{SIMPLE_JSON}, {SIMPLE_HTML}; q=0.1, text/html; q=0.01", SIMPLE_JSON),
    # ties: JSON v1, then HTML v1, then text/html
    (f"text/html, {SIMPLE_HTML}, {SIMPLE_JSON}", SIMPLE_JSON),
    (f"text/html, {SIMPLE_HTML}", SIMPLE_HTML),
    # q-values decide first
    (f"{SIMPLE_JSON};q=0.5, text/html", TEXT_HTML),
    (f"{SIMPLE_JSON};q=0.5, {SIMPLE_HTML};q=0.6", SIMPLE_HTML),
    (f"{SIMPLE_JSON};q=0, */*", TEXT_HTML),
    ("text/html;q=0, */*", SIMPLE_HTML),
    ("text/html;q=0", None),
    # a named type beats a wildcard at the same q; a more specific range overrides a wider one
    (f"*/*, {SIMPLE_JSON}", SIMPLE_JSON),
    ("text/html, */*", TEXT_HTML),
    ("text/html;q=0.1, */*;q=0.5", SIMPLE_HTML),
    ("application/*", SIMPLE_HTML),
    (f"application/*;q=0.9, {SIMPLE_JSON};q=0.2", SIMPLE_HTML),
    # browsers
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", TEXT_HTML),
    # nothing we have
    ("application/json", None),
    ("image/png, text/plain", None),
    ("application/vnd.pypi.simple.v2+json", None),
    # unreadable headers count as absent
    (";;;", TEXT_HTML),
    (",,,", TEXT_HTML),
    ("text/html;q=9999999999999999999999", TEXT_HTML),
    (f"{SIMPLE_JSON};q=1e999", TEXT_HTML),
    (f"{SIMPLE_JSON};q=nan", TEXT_HTML),
    (f"{SIMPLE_JSON};q=-1", TEXT_HTML),
    (f"{SIMPLE_JSON};q=2, application/json", None),
    ("*/json", TEXT_HTML),
    ("text/html;level=1;q=0.5, " + SIMPLE_JSON + ";q=0.4", TEXT_HTML),
    (f"{SIMPLE_JSON};q=0.5;foo=bar", SIMPLE_JSON),
])
def test_negotiate(accept, chosen):
    assert negotiate(accept) == chosen


def test_parse_accept_is_bounded():
    assert len(parse_accept("text/html," * 100_000)) <= 64
    assert parse_accept("a/b;q=0.123;x=y, c/d;q=1.000") == [("a", "b", 0.123), ("c", "d", 1.0)]


@pytest.mark.parametrize("raw, segments", [
    ("/", [""]),
    ("/simple/", ["simple", ""]),
    ("/simple/foo/x.whl", ["simple", "foo", "x.whl"]),
    ("/simple/foo%2Dbar/", ["simple", "foo-bar", ""]),
    ("/caf%C3%A9", ["café"]),
    ("", None),
    ("simple/", None),
    ("//etc/passwd", None),
    ("/simple//foo", None),
    ("/..", None),
    ("/simple/../x", None),
    ("/%2e%2e/", None),
    ("/%2E%2E", None),
    ("/.uploads/x.part", None),
    ("/simple/.hidden", None),
    ("/simple/%2E%2E%2Fetc", None),
    ("/simple/a%2Fb", None),
    ("/simple/..%5c..%5cetc", None),
    ("/simple/a\\b", None),
    ("/simple/a%00.whl", None),
    ("/simple/a%0a", None),
    ("/simple/%252e%252e/", None),
    ("/simple/%zz", None),
    ("/simple/%ff", None),
])
def test_split_path(raw, segments):
    assert split_path(raw) == segments


def test_client_address_and_hash():
    assert client_address({"REMOTE_ADDR": "10.1.2.3"}) == "10.1.2.3"
    # a forwarded address is believed only from a proxy on this machine ...
    assert client_address({"REMOTE_ADDR": "10.1.2.3",
                           "HTTP_X_FORWARDED_FOR": "1.1.1.1"}) == "10.1.2.3"
    assert client_address({"REMOTE_ADDR": "127.0.0.1",
                           "HTTP_X_FORWARDED_FOR": "1.1.1.1"}) == "1.1.1.1"
    # ... and only the hop it added (the last): what comes before is the client's claim
    assert client_address({"REMOTE_ADDR": "127.0.0.1",
                           "HTTP_X_FORWARDED_FOR": "6.6.6.6, 1.1.1.1"}) == "1.1.1.1"
    assert client_address({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": ""}) == "127.0.0.1"
    # WEB_TRUSTED_PROXIES: addresses and networks; an IPv4 peer seen as IPv6 is itself
    proxies = networks("10.0.0.0/8, 192.0.2.1")
    nginx = {"REMOTE_ADDR": "10.1.2.3", "HTTP_X_FORWARDED_FOR": "1.1.1.1"}
    assert client_address(nginx, proxies) == "1.1.1.1"
    assert client_address(dict(nginx, REMOTE_ADDR="::ffff:192.0.2.1"), proxies) == "1.1.1.1"
    assert client_address(dict(nginx, REMOTE_ADDR="127.0.0.1"), proxies) == "127.0.0.1"
    assert client_address(dict(nginx, REMOTE_ADDR="127.0.0.1"), networks("")) == "127.0.0.1"
    assert client_address(dict(nginx, REMOTE_ADDR="not an address"), proxies) == "not an address"
    assert client_address(dict(nginx, REMOTE_ADDR="::ffff:127.0.0.1")) == "1.1.1.1"
    with pytest.raises(ValueError):
        networks("10.0.0.0/8,example.org")
    key = salt_key("salt")
    digest = client_hash("1.1.1.1", key)
    assert len(digest) == 32 and int(digest, 16) >= 0
    assert digest == client_hash("1.1.1.1", key)
    assert digest != client_hash("1.1.1.2", key)
    assert digest != client_hash("1.1.1.1", salt_key("pepper"))
    assert len(salt_key("x" * 500)) == 64


def test_make_event_has_no_address():
    environ = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9",
               "HTTP_USER_AGENT": "curl/8.0"}
    event = make_event(Hit("downloads", "foo", "foo-1.0-py3-none-any.whl"), 200, environ,
                       salt_key("s"), 12.5)
    assert event["timestamp"] == 12.5
    assert event["package"] == "foo"
    assert event["filename"] == "foo-1.0-py3-none-any.whl"
    assert event["status"] == 200
    assert event["installer_name"] == "curl"
    assert event["client"] == client_hash("203.0.113.9", salt_key("s"))
    assert "203.0.113.9" not in repr(event) and "127.0.0.1" not in repr(event)
    search = make_event(Hit("searches", "foo"), 404, environ, salt_key("s"), 1.0)
    assert "filename" not in search and search["status"] == 404


def request(path, method="GET", **headers):
    environ = EnvironBuilder(path=path, method=method, headers=headers).get_environ()
    environ["RAW_PATH_INFO"] = path.partition("?")[0]
    return Request(environ)


def test_tree_serve_without_a_server(www):
    tree = ServedTree(www)
    served = tree.serve(request(f"/simple/foo-bar/{WHEEL}"))
    assert served.response.status_code == 200
    assert served.hit == Hit("downloads", "foo-bar", WHEEL)
    served.response.close()
    served = tree.serve(request("/simple/foo-bar/", Accept=SIMPLE_JSON))
    assert served.response.headers["Content-Type"] == SIMPLE_JSON
    assert served.hit == Hit("searches", "foo-bar")
    served.response.close()
    served = tree.serve(request("/simple/nope/"))
    assert (served.response.status_code, served.hit) == (404, Hit("searches", "nope"))
    # HEAD and redirects are not counted
    assert tree.serve(request("/simple/foo-bar/", "HEAD")).hit is None
    assert tree.serve(request("/simple/Foo-Bar/")).hit is None
    assert tree.serve(request(f"/simple/foo-bar/{WHEEL}", "HEAD")).hit is None
    assert tree.serve(request(f"/simple/foo-bar/{WHEEL}.metadata")).hit is None


def test_tree_through_a_symlinked_root(www, tmp_path):
    (tmp_path / "link").symlink_to(www)
    served = ServedTree(tmp_path / "link").serve(request("/index.html"))
    assert served.response.status_code == 200
    served.response.close()
