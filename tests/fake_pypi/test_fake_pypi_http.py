"""The JSON API, the PEP 503 simple index and file downloads, via requests/http.client."""

from __future__ import annotations

import hashlib
import http.client
import io
import re
import tarfile
import zipfile
from html.parser import HTMLParser
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import requests

from piw_services.fake_pypi import make_sdist

from .fake_pypi_helpers import T0, ev

EVENTS = [
    ev("Foo.Bar", None, "create", 1),
    ev("Foo.Bar", "1.0", "new release", 2, requires_python=">=3.8", summary="First"),
    ev("Foo.Bar", "1.0", "add source file foo_bar-1.0.tar.gz", 3),
    ev("Foo.Bar", "1.5", "new release", 4, requires_python=">=3.8,<4", summary="Current"),
    ev("Foo.Bar", "2.0", "new release", 5),
    ev("Foo.Bar", "2.0", "yank release", 6, yanked_reason='broke "everything" & <more>'),
    ev("Foo.Bar", "3.0a1", "new release", 7),
    ev("Foo.Bar", "not a version", "new release", 8),
    ev("Foo.Bar", "0.9", "add source file Foo.Bar-0.9.zip", 9),
    ev("Foo.Bar", "0.9", "add py3 file foo_bar-0.9-py3-none-any.whl", 10),
    ev("Foo.Bar", "0.8", "add source file foo_bar-0.8.tar.gz", 11),
    ev("Foo.Bar", "0.8", "remove file foo_bar-0.8.tar.gz", 12),
    ev("Foo.Bar", "0.7", "add 2.7 file Foo.Bar-0.7.win32.exe", 13),
    ev("gone", "1.0", "new release", 14),
    ev("gone", None, "remove project", 15),
    ev("halfgone", "1.0", "new release", 16),
    ev("halfgone", "2.0", "new release", 17),
    ev("halfgone", "2.0", "remove release", 18),
    ev("empty", None, "create", 19),
]


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.anchors = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.anchors.append(dict(attrs))


def anchors(html_text):
    parser = _Anchors()
    parser.feed(html_text)
    return parser.anchors


def raw_get(server, path, method="GET"):
    """GET a path without any client-side normalisation (for traversal tests)."""
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def server(make_server):
    return make_server(EVENTS)


# -- JSON API ----------------------------------------------------------------------


def test_json_project(server):
    response = requests.get(server.url + "/pypi/Foo.Bar/json")
    assert response.status_code == 200
    data = response.json()
    info = data["info"]
    # Latest: not yanked 2.0, not pre-release 3.0a1, not the invalid version.
    assert info["name"] == "Foo.Bar"
    assert info["version"] == "1.5"
    assert info["summary"] == "Current"
    assert info["requires_python"] == ">=3.8,<4"
    assert (info["yanked"], info["yanked_reason"]) == (False, None)
    assert data["last_serial"] == 13
    assert response.headers["X-PyPI-Last-Serial"] == "13"
    assert set(data["releases"]) == {"0.7", "0.8", "0.9", "1.0", "1.5", "2.0", "3.0a1",
                                     "not a version"}  # fmt: skip
    assert [f["filename"] for f in data["urls"]] == ["foo_bar-1.5.tar.gz"]
    assert data["releases"]["0.8"] == []  # its only file was removed
    assert data["releases"]["0.7"] == []  # an .exe cannot be generated
    assert sorted(f["filename"] for f in data["releases"]["0.9"]) == [
        "Foo.Bar-0.9.zip",
        "foo_bar-0.9-py3-none-any.whl",
    ]


def test_json_file_dicts_describe_the_bytes_served(server):
    releases = requests.get(server.url + "/pypi/foo-bar/json").json()["releases"]
    files = releases["1.0"] + releases["0.9"]
    for entry in files:
        assert entry["url"] == f"{server.url}/packages/{entry['filename']}"
        body = requests.get(entry["url"]).content
        assert entry["size"] == len(body)
        assert entry["digests"]["sha256"] == hashlib.sha256(body).hexdigest()
        assert entry["digests"]["md5"] == hashlib.md5(body).hexdigest()
        assert entry["digests"]["blake2b_256"] == hashlib.blake2b(body, digest_size=32).hexdigest()
        assert entry["yanked"] is False
        assert entry["yanked_reason"] is None
    sdist, = releases["1.0"]  # fmt: skip
    assert sdist["packagetype"] == "sdist"
    assert sdist["python_version"] == "source"
    assert sdist["requires_python"] == ">=3.8"
    assert sdist["upload_time_iso_8601"] == "2023-11-14T22:13:23.000000Z"  # T0 + 3
    wheel = next(f for f in releases["0.9"] if f["filename"].endswith(".whl"))
    assert (wheel["packagetype"], wheel["python_version"]) == ("bdist_wheel", "py3")


def test_json_release_and_yanked_reason(server):
    data = requests.get(server.url + "/pypi/FOO_bar/2.0/json").json()
    assert data["info"]["version"] == "2.0"
    assert data["info"]["yanked"] is True
    assert data["info"]["yanked_reason"] == 'broke "everything" & <more>'
    assert "releases" not in data
    (entry,) = data["urls"]
    assert entry["filename"] == "foo_bar-2.0.tar.gz"
    assert entry["yanked"] is True
    assert entry["yanked_reason"] == 'broke "everything" & <more>'
    assert requests.get(server.url + "/pypi/foo-bar/1.5.0/json").json()["info"]["version"] == "1.5"


@pytest.mark.parametrize(
    "path",
    [
        "/pypi/nope/json",
        "/pypi/gone/json",
        "/pypi/gone/1.0/json",
        "/pypi/halfgone/2.0/json",
        "/pypi/foo-bar/9.9/json",
        "/pypi/empty/json",
        "/pypi//json",
    ],
)
def test_json_404s(server, path):
    response = requests.get(server.url + path)
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_latest_falls_back_when_everything_is_yanked(make_server):
    server = make_server(
        [
            ev("y", "1.0", "new release", 1),
            ev("y", "2.0", "new release", 2),
            ev("y", "1.0", "yank release", 3),
            ev("y", "2.0", "yank release", 4),
            ev("p", "1.0a1", "new release", 5),
            ev("p", "1.0b1", "new release", 6),
        ]
    )
    assert requests.get(server.url + "/pypi/y/json").json()["info"]["version"] == "2.0"
    assert requests.get(server.url + "/pypi/p/json").json()["info"]["version"] == "1.0b1"


# -- simple index ------------------------------------------------------------------------


def test_simple_index_lists_live_projects(server, tmp_path):
    response = requests.get(server.url + "/simple/")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    links = {a["href"]: a for a in anchors(response.text)}
    assert set(links) == {"/simple/foo-bar/", "/simple/halfgone/", "/simple/empty/"}
    assert requests.get(server.url + "/simple").url == server.url + "/simple/"


def test_simple_project_page(server):
    response = requests.get(server.url + "/simple/foo-bar/")
    assert response.status_code == 200
    assert response.headers["X-PyPI-Last-Serial"] == "13"
    links = {unquote(a["href"].split("#")[0].rsplit("/", 1)[1]): a for a in anchors(response.text)}
    assert set(links) == {
        "Foo.Bar-0.9.zip",
        "foo_bar-0.9-py3-none-any.whl",
        "foo_bar-1.0.tar.gz",
        "foo_bar-1.5.tar.gz",
        "foo_bar-2.0.tar.gz",
        "foo_bar-3.0a1.tar.gz",
        "foo_bar-not a version.tar.gz",
    }
    for anchor in links.values():
        url = urljoin(response.url, anchor["href"])
        body = requests.get(url).content
        assert url.split("#sha256=")[1] == hashlib.sha256(body).hexdigest()
    assert links["foo_bar-1.0.tar.gz"]["data-requires-python"] == ">=3.8"
    assert links["foo_bar-1.5.tar.gz"]["data-requires-python"] == ">=3.8,<4"
    assert "data-requires-python" not in links["foo_bar-3.0a1.tar.gz"]
    assert links["foo_bar-2.0.tar.gz"]["data-yanked"] == 'broke "everything" & <more>'
    assert "data-yanked" not in links["foo_bar-1.5.tar.gz"]
    # The raw HTML escapes attribute values.
    assert 'data-requires-python="&gt;=3.8,&lt;4"' in response.text
    assert 'data-yanked="broke &quot;everything&quot; &amp; &lt;more&gt;"' in response.text


def test_yanked_without_reason_has_empty_data_yanked(make_server):
    server = make_server([ev("a", "1.0", "new release", 1), ev("a", "1.0", "yank release", 2)])
    (anchor,) = anchors(requests.get(server.url + "/simple/a/").text)
    assert anchor["data-yanked"] == ""


@pytest.mark.parametrize("path", ["/simple/Foo.Bar/", "/simple/FOO_BAR/", "/simple/foo-bar"])
def test_simple_redirects_to_canonical(server, path):
    response = requests.get(server.url + path, allow_redirects=False)
    assert response.status_code == 301
    assert response.headers["Location"] == "/simple/foo-bar/"
    assert requests.get(server.url + path).url == server.url + "/simple/foo-bar/"


@pytest.mark.parametrize("path", ["/simple/nope/", "/simple/gone/", "/simple/foo-bar/x/"])
def test_simple_404s(server, path):
    assert requests.get(server.url + path).status_code == 404


def test_simple_page_for_project_without_files(server):
    response = requests.get(server.url + "/simple/empty/")
    assert response.status_code == 200
    assert anchors(response.text) == []


# -- files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/packages/..%2F..%2Fetc%2Fpasswd",
        "/packages/../../etc/passwd",
        "/packages/%2e%2e",
        "/packages/foo_bar-1.0.tar.gz%2F",
        "/packages/a%5Cfoo_bar-1.0.tar.gz",
        "/packages/foo_bar-1.0.tar.gz%00",
        "/packages/sub/foo_bar-1.0.tar.gz",
        "/packages/",
        "/packages/nope-1.0.tar.gz",
        "/packages/foo_bar-0.8.tar.gz",  # removed
        "/packages/gone-1.0.tar.gz",  # project removed
        "/packages/halfgone-2.0.tar.gz",  # release removed
    ],
)
def test_bad_or_unknown_package_paths_are_404(server, path):
    status, _, _ = raw_get(server, path)
    assert status == 404


def test_package_download_headers_and_head(server):
    status, headers, body = raw_get(server, "/packages/foo_bar-1.0.tar.gz")
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert int(headers["Content-Length"]) == len(body)
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = tar.getnames()
        pkg_info = tar.extractfile("foo_bar-1.0/PKG-INFO").read().decode()
    assert "foo_bar-1.0/setup.py" in names
    assert "foo_bar-1.0/pyproject.toml" in names
    assert "Name: Foo.Bar\nVersion: 1.0\nSummary: First\nRequires-Python: >=3.8\n" in pkg_info
    status, headers, head_body = raw_get(server, "/packages/foo_bar-1.0.tar.gz", method="HEAD")
    assert (status, head_body) == (200, b"")
    assert int(headers["Content-Length"]) == len(body)
    assert server.stats()["files_served"] == 1  # HEAD does not count


def test_legacy_zip_and_generated_wheel(server):
    body = requests.get(server.url + "/packages/Foo.Bar-0.9.zip").content
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert "Foo.Bar-0.9/setup.py" in zf.namelist()
    body = requests.get(server.url + "/packages/foo_bar-0.9-py3-none-any.whl").content
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        names = zf.namelist()
        assert "foo_bar-0.9.dist-info/RECORD" in names
        assert "Tag: py3-none-any" in zf.read("foo_bar-0.9.dist-info/WHEEL").decode()


def test_generated_files_are_deterministic(make_server, tmp_path):
    first = make_server(EVENTS)
    second = make_server(EVENTS, packages_dir=tmp_path / "pkgs")
    for name in ("foo_bar-1.0.tar.gz", "Foo.Bar-0.9.zip", "foo_bar-0.9-py3-none-any.whl"):
        a = requests.get(f"{first.url}/packages/{name}").content
        b = requests.get(f"{second.url}/packages/{name}").content
        assert a == b
    assert list((tmp_path / "pkgs" / "_generated").glob("*/foo_bar-1.0.tar.gz"))


def test_make_sdist_kinds_and_determinism(tmp_path):
    pure = make_sdist(tmp_path / "a", "My.Pkg", "1.0", summary="x")
    assert pure.name == "my_pkg-1.0.tar.gz"
    again = make_sdist(tmp_path / "b", "My.Pkg", "1.0", summary="x")
    assert pure.read_bytes() == again.read_bytes()
    zlib = make_sdist(tmp_path / "a", "My.Pkg", "1.0", kind="c-zlib", filename="My.Pkg-1.0.tar.gz")
    with tarfile.open(zlib) as tar:
        names = set(tar.getnames())
        setup_py = tar.extractfile("My.Pkg-1.0/setup.py").read().decode()
        assert all(m.mtime == tar.getmember("My.Pkg-1.0").mtime for m in tar.getmembers())
    assert "My.Pkg-1.0/my_pkg.c" in names
    assert 'libraries=["z"]' in setup_py
    broken = make_sdist(tmp_path / "a", "b", "1", kind="broken")
    with tarfile.open(broken) as tar:
        assert "deliberately broken" in tar.extractfile("b-1/setup.py").read().decode()
    with pytest.raises(ValueError):
        make_sdist(tmp_path, "x", "1", kind="weird")
    with pytest.raises(ValueError):
        make_sdist(tmp_path, "x", "1", filename="../x-1.tar.gz")


# -- the packages directory ---------------------------------------------------------------


def test_packages_dir_files_take_precedence_and_orphans_are_served(make_server, tmp_path):
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    real = make_sdist(pkgs, "Foo.Bar", "1.0", summary="the real one")
    (pkgs / "foo_bar-1.0-py3-none-any.whl").write_bytes(b"not really a wheel")
    (pkgs / "foo_bar-7.0.tar.gz").write_bytes(b"no such release")
    (pkgs / "setuptools-99.0-py3-none-any.whl").write_bytes(b"orphan")
    (pkgs / "README.txt").write_text("ignored")
    server = make_server(EVENTS, packages_dir=pkgs)

    body = requests.get(server.url + "/packages/foo_bar-1.0.tar.gz").content
    assert body == real.read_bytes()
    names = [a["href"] for a in anchors(requests.get(server.url + "/simple/foo-bar/").text)]
    assert any("foo_bar-1.0-py3-none-any.whl" in href for href in names)
    assert not any("7.0" in href for href in names)
    assert requests.get(server.url + "/packages/foo_bar-7.0.tar.gz").status_code == 404
    assert requests.get(server.url + "/packages/README.txt").status_code == 404

    index = [a["href"] for a in anchors(requests.get(server.url + "/simple/").text)]
    assert "/simple/setuptools/" in index
    (anchor,) = anchors(requests.get(server.url + "/simple/setuptools/").text)
    assert anchor["href"].startswith("../../packages/setuptools-99.0-py3-none-any.whl#sha256=")
    assert requests.get(server.url + "/packages/setuptools-99.0-py3-none-any.whl").content == (
        b"orphan"
    )
    assert requests.get(server.url + "/pypi/setuptools/json").json()["info"]["version"] == "99.0"

    # Files dropped in while running are picked up.
    (pkgs / "wheel-1.0-py3-none-any.whl").write_bytes(b"late")
    assert requests.get(server.url + "/simple/wheel/").status_code == 200


def test_no_generate_serves_only_real_files(make_server, tmp_path):
    pkgs = tmp_path / "pkgs"
    make_sdist(pkgs, "Foo.Bar", "1.5")
    server = make_server(EVENTS, packages_dir=pkgs, generate=False)
    links = anchors(requests.get(server.url + "/simple/foo-bar/").text)
    assert [re.sub(r"#.*", "", a["href"]) for a in links] == ["../../packages/foo_bar-1.5.tar.gz"]
    assert requests.get(server.url + "/packages/foo_bar-1.0.tar.gz").status_code == 404
    assert not (pkgs / "_generated").exists()


def test_events_appended_at_run_time_change_the_indexes(server):
    assert requests.get(server.url + "/simple/late/").status_code == 404
    server.append(
        [
            {"name": "Late", "version": "1.0", "timestamp": T0 + 100, "action": "new release"},
            {"name": "Foo.Bar", "version": "1.5", "timestamp": T0 + 100, "action": "remove"},
        ]
    )
    assert requests.get(server.url + "/simple/late/").status_code == 200
    assert requests.get(server.url + "/pypi/foo-bar/json").json()["info"]["version"] == "1.0"
    assert requests.get(server.url + "/packages/foo_bar-1.5.tar.gz").status_code == 404


def test_hostile_names_in_the_log_are_not_served(make_server, tmp_path):
    server = make_server(
        [
            ev("evil", "1.0/../../x", "new release", 1),
            ev("evil", "2.0", "add py3 file ../evil-2.0-py3-none-any.whl", 2),
            ev("evil", "3.0", "add source file .hidden-3.0.tar.gz", 3),
            ev("evil", "4.0", "new release", 4, ts=10**15),  # absurd timestamp
        ],
        packages_dir=tmp_path / "pkgs",
    )
    response = requests.get(server.url + "/simple/evil/")
    assert response.status_code == 200
    hrefs = [a["href"] for a in anchors(response.text)]
    assert [h.split("#")[0] for h in hrefs] == ["../../packages/evil-4.0.tar.gz"]
    data = requests.get(server.url + "/pypi/evil/json").json()
    assert data["info"]["version"] == "4.0"
    assert data["urls"][0]["upload_time_iso_8601"].endswith("Z")
    assert [p.name for p in (tmp_path / "pkgs").rglob("*") if p.is_file()] == ["evil-4.0.tar.gz"]
