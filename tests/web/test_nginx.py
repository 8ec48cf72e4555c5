"""config/nginx/piw.conf in a real nginx, serving the same tree as the web service (skipped
where nginx is not installed)."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import requests

from piw_services.web.serve import SIMPLE_HTML, SIMPLE_JSON
from tests.conftest import ROOT, free_port
from tests.web.conftest import HTML, SERVED, WHEEL, Raw, check_log

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
CONF = ROOT / "config" / "nginx" / "piw.conf"


@pytest.fixture
def nginx(www, web, tmp_path):
    """Base URL of nginx with piw.conf on the test tree, in front of the test's web service."""
    if os.geteuid() == 0:
        # the link out of the tree belongs to someone else, as it would in a deployment
        # (nginx follows a link only when owner matches: see piw.conf)
        os.lchown(www / "simple/evil", 65534, 65534)
        os.lchown(www / "simple/foo-bar/leak-1.0-py3-none-any.whl", 65534, 65534)
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    port = free_port()
    site = CONF.read_text()
    site = site.replace("/srv/piw/www", str(www)).replace("listen 80;", f"listen 127.0.0.1:{port};")
    site = site.replace("127.0.0.1:8080", web.removeprefix("http://"))
    site = site.replace("/var/log/nginx/piw.access.log", str(prefix / "piw.access.log"))
    (prefix / "piw.conf").write_text(site)
    temps = "\n".join(f"    {kind}_temp_path {prefix}/{kind};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (prefix / "nginx.conf").write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
{temps}
    include {prefix}/piw.conf;
}}
""")
    log = open(prefix / "stdout.log", "wb")
    proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                             "-e", str(prefix / "error.log")], stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            requests.get(base + "/", timeout=1)
            break
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("nginx did not start: "
                                     + (prefix / "error.log").read_text()) from None
            time.sleep(0.1)
    yield base
    proc.send_signal(signal.SIGQUIT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    errors = (prefix / "error.log").read_text()
    assert "[emerg]" not in errors and "[crit]" not in errors, errors


@pytest.fixture
def ng(nginx):
    class Session(requests.Session):
        def request(self, method, url, *args, follow=False, **kwargs):
            kwargs["allow_redirects"] = follow
            kwargs.setdefault("timeout", 10)
            return super().request(method, nginx + url, *args, **kwargs)

    with Session() as s:
        yield s


@pytest.mark.parametrize("path, content_type, file", SERVED)
def test_files(ng, www, path, content_type, file):
    data = (www / file).read_bytes()
    r = ng.get(path)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == content_type
    assert r.content == data
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    etag = r.headers["ETag"]
    assert ng.get(path, headers={"If-None-Match": etag}).status_code == 304
    assert ng.get(path, headers={"If-Modified-Since": r.headers["Last-Modified"]}
                  ).status_code == 304
    head = ng.head(path)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["Content-Length"] == str(len(data))


def test_build_logs_are_text(ng):
    check_log(lambda path, headers: ng.get(path, headers=headers, stream=True))


def test_ranges(ng, www):
    data = (www / "simple/foo-bar" / WHEEL).read_bytes()
    r = ng.get(f"/simple/foo-bar/{WHEEL}", headers={"Range": "bytes=10-19"})
    assert (r.status_code, r.content) == (206, data[10:20])
    r = ng.get(f"/simple/foo-bar/{WHEEL}", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416


@pytest.mark.parametrize("page", ["/simple/", "/simple/foo-bar/"])
@pytest.mark.parametrize("accept, status, content_type, kind", [
    (None, 200, HTML, "html"),
    ("*/*", 200, HTML, "html"),
    ("text/html", 200, HTML, "html"),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", 200, HTML, "html"),
    (SIMPLE_JSON, 200, SIMPLE_JSON, "json"),
    (SIMPLE_HTML, 200, SIMPLE_HTML, "html"),
    ("application/vnd.pypi.simple.latest+json", 200, SIMPLE_JSON, "json"),
    ("application/vnd.pypi.simple.latest+html", 200, SIMPLE_HTML, "html"),
    # pip and uv
    (f"{SIMPLE_JSON}, {SIMPLE_HTML}; q=0.1, text/html; q=0.01", 200, SIMPLE_JSON, "json"),
    (f"{SIMPLE_JSON}, {SIMPLE_HTML};q=0.2, text/html;q=0.01", 200, SIMPLE_JSON, "json"),
    (f"{SIMPLE_HTML};q=0.5, text/html;q=0.01", 200, SIMPLE_HTML, "html"),
    ("application/json", 406, None, None),
    ("text/html;q=0", 406, None, None),
    (";;;", 200, HTML, "html"),
])
def test_negotiation(ng, www, page, accept, status, content_type, kind):
    r = ng.get(page, headers={"Accept": accept})
    assert r.status_code == status
    assert r.headers["Vary"] == "Accept"
    if status == 200:
        assert r.headers["Content-Type"] == content_type
        assert r.content == (www / page.strip("/") / f"index.{kind}").read_bytes()


def test_missing_pages(ng, www):
    r = ng.get("/simple/no-such-project/")
    assert r.status_code == 404
    assert r.headers["Vary"] == "Accept"
    r = ng.get("/simple/html-only/", headers={"Accept": SIMPLE_JSON})
    assert r.status_code == 404
    assert ng.get("/logs/nothing/").status_code == 404
    (www / "404.html").write_text('<form action="/"><input name="q"></form>\n')
    for path in ("/project/no-such-project/", "/nothing.html", "/.uploads/x"):
        r = ng.get(path)
        assert r.status_code == 404 and "text/html" in r.headers["Content-Type"], path
        assert r.content == (www / "404.html").read_bytes()  # the search box
    r = ng.get("/simple/no-such-project/")
    assert r.status_code == 404 and r.content == b"404 Not Found\n"




@pytest.mark.parametrize("path, location", [
    ("/simple", "/simple/"),
    ("/simple/foo-bar", "/simple/foo-bar/"),
    ("/project/foo-bar/json", "/project/foo-bar/json/"),
    ("/simple/Foo_Bar/", "/simple/foo-bar/"),
    ("/simple/FOO.bar", "/simple/foo-bar/"),
    ("/project/Foo.Bar/json/", "/project/foo-bar/json/"),
    (f"/simple/Foo_Bar/{WHEEL}", f"/simple/foo-bar/{WHEEL}"),
])
def test_redirects(ng, path, location):
    r = ng.get(path)
    assert r.status_code == 301
    assert r.headers["Location"] == location
    assert ng.get(path, follow=True).status_code == 200


@pytest.mark.parametrize("target", [
    "/simple/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/simple/%2E%2E%2F%2E%2E%2Fsecret",
    "/simple/..%5c..%5csecret%5cpasswd", "/simple/foo-bar/%00", "//etc/passwd",
    "/simple/%252e%252e/secret/passwd", "/simple/evil/passwd",
    "/simple/foo-bar/leak-1.0-py3-none-any.whl",
    "/.uploads/x.part", "/.uploads/", "/%2euploads/x.part", "/simple/foo-bar/../../.uploads/x.part",
])
def test_hostile(nginx, target):
    r = Raw(nginx)(target)
    assert r.status in (400, 404), (target, r.status)
    assert b"root:x:0:0" not in r.body and b"half a wheel" not in r.body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods(nginx, method):
    assert Raw(nginx)("/simple/", method=method, body=b"x").status == 405


def pip_download(index_url, dest):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return subprocess.run([sys.executable, "-m", "pip", "--isolated", "--no-cache-dir",
                           "download", "--no-deps", "-d", str(dest), "-vv",
                           "--index-url", index_url, "demo-pkg"],
                          capture_output=True, text=True, env=env, timeout=120)


def demo_project(www, tmp_path):
    """A real wheel and its PEP 691 JSON page only (the HTML twin says nothing)."""
    from piw_services.fake_pypi.sdists import make_wheel

    wheel = make_wheel(tmp_path / "build", "demo-pkg", "1.0")
    project = www / "simple/demo-pkg"
    project.mkdir(parents=True)
    shutil.copy(wheel, project / wheel.name)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (project / "index.json").write_text(json.dumps({
        "meta": {"api-version": "1.1"}, "name": "demo-pkg", "versions": ["1.0"],
        "files": [{"filename": wheel.name, "url": wheel.name, "hashes": {"sha256": digest}}]}))
    (project / "index.html").write_text("<!DOCTYPE html><html><body></body></html>")
    return wheel


def test_pip_reads_the_json_page_through_nginx_and_the_service(www, nginx, web, tmp_path):
    wheel = demo_project(www, tmp_path)
    for base in (nginx, web):
        dest = tmp_path / base.rsplit(":", 1)[1]
        result = pip_download(base + "/simple/", dest)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "as application/vnd.pypi.simple.v1+json" in result.stdout
        assert (dest / wheel.name).read_bytes() == wheel.read_bytes()
