"""Requests meant to escape the tree or break the server: always a 4xx, never a byte of what
lies outside, never a 500."""

import socket

import pytest

from tests.web.conftest import WHEEL

SECRET = b"root:x:0:0"

TRAVERSALS = [
    "/simple/../../etc/passwd",
    "/../../../../etc/passwd",
    "/simple/foo-bar/../../../secret/passwd",
    "/%2e%2e/",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/%2E%2E/secret/passwd",
    "/simple/%2E%2E%2Fetc",
    "/simple/%2e%2e%2f%2e%2e%2fsecret%2fpasswd",
    "/simple/%2e%2e%2f..%2f..%2fsecret/passwd",
    "/simple/..%2f..%2f..%2fsecret%2fpasswd",
    "/simple/..%5c..%5csecret%5cpasswd",
    "/simple/..\\..\\secret\\passwd",
    "/simple/foo-bar/%00",
    f"/simple/foo-bar/{WHEEL}%00.html",
    "/simple/%00/",
    "//etc/passwd",
    "///etc/passwd",
    "/simple//foo-bar/",
    "/simple/%252e%252e/%252e%252e/secret/passwd",
    "/%252e%252e%252fsecret%252fpasswd",
    "/simple/%c0%ae%c0%ae/secret/passwd",  # overlong UTF-8 dots
    "/simple/%e0%80%ae%e0%80%ae/",
    "/simple/.%2e/",
    "/simple/%2e./",
    "/./index.html",
    "/simple/./foo-bar/",
    "/simple/foo-bar/.",
    "/simple/evil/passwd",  # a directory link out of the tree
    "/simple/evil/",
    "/simple/foo-bar/leak-1.0-py3-none-any.whl",  # a file link out of the tree
    "/simple/foo-bar/hidden-1.0-py3-none-any.whl",  # a link into .uploads
    "/simple/foo-bar/loop",
    "/simple/foo-bar/fifo.whl",
    "/.uploads/x.part",
    "/.uploads/",
    "/.uploads",
    "/%2euploads/x.part",
    "/simple/foo-bar/%2e%2e/%2e%2e/%2euploads/x.part",
    "/.git/config",
    "/simple/foo-bar/" + "a" * 300 + ".whl",
]


@pytest.mark.parametrize("target", TRAVERSALS)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_traversal(raw, target, method):
    r = raw(target, method=method)
    assert r.status == 404, (target, r.status, r.body)
    assert SECRET not in r.body
    assert b"half a wheel" not in r.body


def test_overlong_path(raw):
    r = raw("/simple/" + "a" * 2000 + "/")
    assert r.status in (404, 414)
    r = raw("/" + "x/" * 3000)
    assert r.status in (404, 414)
    # longer than eventlet reads: it answers 414 itself
    r = raw("/" + "x" * 10_000)
    assert r.status == 414


@pytest.mark.parametrize("headers", [
    {"Accept": ";;;"},
    {"Accept": "text/html;q=1e99999"},
    {"Accept": "*/*;q=" + "9" * 5000},
    {"Accept": ",".join(["text/html;q=0.5"] * 450)},
    {"Accept": "\u00e9/\u00e8".encode().decode("latin-1")},
    {"Accept": "text/html;q"},
    {"Accept": "text/html;q="},
    {"Accept": "/"},
    {"Range": "bytes=" + "9" * 5000 + "-"},
    {"Range": "bytes=-" + "9" * 5000},
    {"Range": "bytes=" + ",".join(f"{i}-{i}" for i in range(500))},
    {"If-None-Match": "W/" * 3000},
    {"If-Modified-Since": "Mon, 99 Foo 99999 99:99:99 GMT"},
    {"If-Range": "garbage"},
    {"User-Agent": "pip/24.0 " + "{" * 7000},
    {"X-Forwarded-For": "," * 7000},
])
@pytest.mark.parametrize("path", ["/simple/", "/simple/foo-bar/", f"/simple/foo-bar/{WHEEL}"])
def test_bad_headers_give_sane_codes(raw, headers, path):
    r = raw(path, headers=headers)
    assert r.status in (200, 206, 304, 404, 406, 416), (headers, r.status)


def test_header_over_eventlets_limit(raw):
    r = raw("/simple/", headers={"Accept": "text/html," * 1000})
    assert r.status == 400  # eventlet's "line too long", before the service sees it


@pytest.mark.parametrize("query", ["?format=%00", "?format=" + "x" * 5000, "?a=%0d%0aX:1",
                                   "?format=;;;", "?%ff%fe"])
def test_bad_queries(raw, query):
    assert raw("/simple/" + query).status in (200, 406)
    r = raw("/simple/Foo_Bar/" + query)
    assert r.status == 301
    assert "\n" not in r.getheader("Location") and "\r" not in r.getheader("Location")


def test_garbage_request_lines(web):
    host, port = web.removeprefix("http://").split(":")
    for line in (b"GET\r\n\r\n", b"GET /simple/ HTTP/9.9\r\n\r\n", b"\x00\x01\x02\r\n\r\n",
                 b"GET http://evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"GET /simple/%zz HTTP/1.1\r\nHost: x\r\n\r\n"):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(line)
            answer = s.recv(100)
        assert not answer.startswith(b"HTTP/1.1 500") and not answer.startswith(b"HTTP/1.0 500")
    # and it still serves
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET /simple/ HTTP/1.0\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200")
