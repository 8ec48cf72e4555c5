"""The web service over real HTTP: types, lengths, validators, ranges, negotiation, redirects."""

import os

import pytest

from piw_services.web.serve import SIMPLE_HTML, SIMPLE_JSON
from tests.web.conftest import HTML, SERVED, WHEEL, WHEEL_V6, check_log


@pytest.mark.parametrize("path, content_type, file", [
    *SERVED, ("/index.html", HTML, "index.html"),
    ("/empty.txt", "text/plain; charset=utf-8", "empty.txt"),
])
def test_files(session, www, path, content_type, file):
    data = (www / file).read_bytes()
    r = session.get(path)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == content_type
    assert r.headers["Content-Length"] == str(len(data))
    assert r.content == data
    assert r.headers["ETag"].startswith('"')
    assert r.headers["Last-Modified"] == "Sun, 13 Sep 2020 12:26:40 GMT"
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    head = session.head(path)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["ETag"] == r.headers["ETag"]
    assert head.headers["Content-Type"] == content_type


def test_build_logs_are_text(session):
    check_log(lambda path, headers: session.get(path, headers=headers, stream=True))


def test_armv6l_link_is_the_armv7l_file(session, www):
    v7 = session.get(f"/simple/foo-bar/{WHEEL}")
    v6 = session.get(f"/simple/foo-bar/{WHEEL_V6}")
    assert v6.content == v7.content == (www / "simple/foo-bar" / WHEEL).read_bytes()
    assert v6.headers["ETag"] == v7.headers["ETag"]


def test_conditional_get(session, www):
    path = f"/simple/foo-bar/{WHEEL}"
    r = session.get(path)
    etag, modified = r.headers["ETag"], r.headers["Last-Modified"]
    for headers in ({"If-None-Match": etag}, {"If-None-Match": f'"nope", {etag}'},
                    {"If-None-Match": "*"}, {"If-Modified-Since": modified},
                    {"If-Modified-Since": "Sat, 01 Jan 2050 00:00:00 GMT"}):
        r = session.get(path, headers=headers)
        assert r.status_code == 304, headers
        assert r.content == b""
        assert r.headers["ETag"] == etag
        head = session.head(path, headers=headers)
        assert head.status_code == 304
    for headers in ({"If-None-Match": '"other"'},
                    {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"},
                    {"If-Modified-Since": "garbage"},
                    # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2)
                    {"If-None-Match": '"x"', "If-Modified-Since": modified}):
        r = session.get(path, headers=headers)
        assert r.status_code == 200, headers
        assert len(r.content) == 300_000
    # a replaced file (rename of a new one into place) has a new validator
    target = www / "simple/foo-bar" / WHEEL
    tmp = target.with_name(".new")
    tmp.write_bytes(b"rebuilt")
    os.replace(tmp, target)
    r = session.get(path, headers={"If-None-Match": etag})
    assert r.status_code == 200
    assert r.content == b"rebuilt"
    assert r.headers["ETag"] != etag


def test_conditional_negotiated_page(session):
    r = session.get("/simple/foo-bar/", headers={"Accept": SIMPLE_JSON})
    again = session.get("/simple/foo-bar/", headers={"Accept": SIMPLE_JSON,
                                                     "If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304
    assert again.headers["Vary"] == "Accept"
    # the HTML twin is another representation with another validator
    html = session.get("/simple/foo-bar/", headers={"If-None-Match": r.headers["ETag"]})
    assert html.status_code == 200
    assert html.headers["ETag"] != r.headers["ETag"]


def test_ranges(session, www):
    path = f"/simple/foo-bar/{WHEEL}"
    data = (www / "simple/foo-bar" / WHEEL).read_bytes()
    size = len(data)
    for header, start, end in (("bytes=0-99", 0, 100), ("bytes=1000-", 1000, size),
                               ("bytes=-500", size - 500, size),
                               (f"bytes={size - 1}-{size + 1000}", size - 1, size)):
        r = session.get(path, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.content == data[start:end]
        assert r.headers["Content-Length"] == str(end - start)
        assert r.headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}"
        head = session.head(path, headers={"Range": header})
        assert head.status_code == 206
        assert head.content == b""
        assert head.headers["Content-Length"] == str(end - start)
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}"):
        r = session.get(path, headers={"Range": header})
        assert r.status_code == 416, header
        assert r.headers["Content-Range"] == f"bytes */{size}"
    # anything but one byte range is ignored: the whole file
    for header in ("bytes=0-1,5-6", "lines=1-2", "bytes=abc", "bytes=5-1", "garbage"):
        r = session.get(path, headers={"Range": header})
        assert r.status_code == 200, header
        assert r.content == data
    # If-Range with the current validator gives the range, with an old one the whole file
    etag = session.head(path).headers["ETag"]
    r = session.get(path, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert (r.status_code, r.content) == (206, data[:10])
    r = session.get(path, headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert (r.status_code, len(r.content)) == (200, size)
    # an empty file has no ranges
    r = session.get("/empty.txt", headers={"Range": "bytes=0-10"})
    assert r.status_code in (200, 416)


ACCEPT_MATRIX = [
    (None, 200, HTML, "html"),
    ("*/*", 200, HTML, "html"),
    ("text/html", 200, HTML, "html"),
    (SIMPLE_JSON, 200, SIMPLE_JSON, "json"),
    (SIMPLE_HTML, 200, SIMPLE_HTML, "html"),
    ("application/vnd.pypi.simple.latest+json", 200, SIMPLE_JSON, "json"),
    ("application/vnd.pypi.simple.latest+html", 200, SIMPLE_HTML, "html"),
    (f"{SIMPLE_JSON}, {SIMPLE_HTML};q=0.2, text/html;q=0.01", 200, SIMPLE_JSON, "json"),
    (f"{SIMPLE_JSON};q=0.1, {SIMPLE_HTML};q=0.2, text/html;q=0.01", 200, SIMPLE_HTML, "html"),
    (f"{SIMPLE_JSON};q=0.1, text/html", 200, HTML, "html"),
    (f"text/html, {SIMPLE_HTML}, {SIMPLE_JSON}", 200, SIMPLE_JSON, "json"),
    (f"text/html, {SIMPLE_HTML}", 200, SIMPLE_HTML, "html"),
    ("application/json", 406, None, None),
    ("text/html;q=0", 406, None, None),
    (";;;", 200, HTML, "html"),
    ("text/html;q=99999999999999999999", 200, HTML, "html"),
    (f"{SIMPLE_JSON};q=1e308, application/xml", 406, None, None),
    ("x" * 6000, 200, HTML, "html"),
]


@pytest.mark.parametrize("page", ["/simple/", "/simple/foo-bar/"])
@pytest.mark.parametrize("accept, status, content_type, kind", ACCEPT_MATRIX)
def test_negotiation(session, www, page, accept, status, content_type, kind):
    headers = {"Accept": accept} if accept is not None else {}
    if accept is None:
        # requests sends "Accept: */*" by default: take it away
        headers = {"Accept": None}
    r = session.get(page, headers=headers)
    assert r.status_code == status
    assert r.headers["Vary"] == "Accept"
    if status == 200:
        assert r.headers["Content-Type"] == content_type
        assert r.content == (www / page.strip("/") / f"index.{kind}").read_bytes()
    head = session.head(page, headers=headers)
    assert head.status_code == status
    assert head.headers["Vary"] == "Accept"
    assert head.content == b""


def test_format_query(session):
    r = session.get("/simple/foo-bar/", params={"format": SIMPLE_JSON},
                    headers={"Accept": "text/html"})
    assert r.headers["Content-Type"] == SIMPLE_JSON
    r = session.get("/simple/", params={"format": "application/nothing"})
    assert r.status_code == 406


def test_missing_twin_and_missing_project(session):
    r = session.get("/simple/html-only/", headers={"Accept": SIMPLE_JSON})
    assert r.status_code == 404
    assert r.headers["Vary"] == "Accept"
    assert session.get("/simple/html-only/").status_code == 200
    r = session.get("/simple/no-such-project/")
    assert r.status_code == 404
    assert r.headers["Vary"] == "Accept"


@pytest.mark.parametrize("path, location", [
    ("/simple", "/simple/"),
    ("/project", "/project/"),
    ("/logs", "/logs/"),
    ("/simple/foo-bar", "/simple/foo-bar/"),
    ("/simple/no-such-project", "/simple/no-such-project/"),
    ("/project/foo-bar", "/project/foo-bar/"),
    ("/project/foo-bar/json", "/project/foo-bar/json/"),
    ("/simple/Foo_Bar/", "/simple/foo-bar/"),
    ("/simple/Foo_Bar", "/simple/foo-bar/"),
    ("/simple/FOO.bar/", "/simple/foo-bar/"),
    ("/simple/foo__bar/?x=1", "/simple/foo-bar/?x=1"),
    ("/simple/Unknown.Project/", "/simple/unknown-project/"),
    ("/project/Foo.Bar/", "/project/foo-bar/"),
    ("/project/Foo.Bar/json/", "/project/foo-bar/json/"),
    (f"/simple/Foo_Bar/{WHEEL}", f"/simple/foo-bar/{WHEEL}"),
    (f"/simple/Foo_Bar/{WHEEL}.metadata", f"/simple/foo-bar/{WHEEL}.metadata"),
])
def test_redirects(session, path, location):
    r = session.get(path)
    assert r.status_code == 301
    assert r.headers["Location"] == location
    assert session.head(path).status_code == 301
    followed = session.get(path, follow=True)
    assert followed.status_code in (200, 404)
    assert len(followed.history) == 1  # one hop, whatever was wrong


@pytest.mark.parametrize("path", [
    "/simple/foo-bar/nothing.whl", "/nothing", "/logs/nothing/", "/project/",
    f"/simple/foo-bar/{WHEEL}/", "/index.html/", "/simple/not valid!/", "/simple/-x-/",
])
def test_not_found(session, path):
    r = session.get(path)
    assert r.status_code == 404
    assert session.head(path).status_code == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/", "/simple/", f"/simple/foo-bar/{WHEEL}", "/nothing"])
def test_other_methods(raw, method, path):
    r = raw(path, method=method, body=b"x")
    assert r.status == 405
    assert set(r.getheader("Allow").replace(" ", "").split(",")) == {"GET", "HEAD"}


def test_keep_alive_and_many_requests(session, www):
    data = (www / "simple/foo-bar" / WHEEL).read_bytes()
    for _ in range(30):
        assert session.get(f"/simple/foo-bar/{WHEEL}").content == data
        assert session.get("/simple/foo-bar/").status_code == 200

