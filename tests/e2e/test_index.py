"""The index end to end: real builds served by our web service to real pip and uv.

piw-fake-pypi -> upstream -> reorderer -> build_dispatch -> piw-builder (pip wheel) ->
file_manager -> index (pages) -> web (HTTP) -> pip install / uv pip install.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import html5lib
import pytest
import requests

from piw_services.names import canonical
from tests.conftest import wait_for
from tests.e2e.conftest import ev, release
from tests.index.pep691 import validate

pytestmark = pytest.mark.slow


def scenario():
    newest_py = {"requires_python": ">=3.99"}
    return (release("Pure.Pkg", "1.0", 1, "pure") + release("zlib-user", "0.2", 10, "c-zlib")
            + release("yankme", "1.0", 20, "pure")
            + [ev("yankme", "2.0", "new release", 30, kind="pure"),
               ev("yankme", "2.0", "add source file yankme-2.0.tar.gz", 31),
               ev("yankme", "2.0", "yank release", 32, yanked_reason="broke <everything> & more")]
            + release("newpy", "1.0", 40, "pure")
            + [ev("newpy", "2.0", "new release", 50, kind="pure", **newest_py),
               ev("newpy", "2.0", "add source file newpy-2.0.tar.gz", 51, **newest_py)])


def clean_env():
    """pip and uv with none of this machine's index configuration."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1",
               UV_NO_CONFIG="1", UV_CACHE_DIR=str(Path(env.get("TMPDIR", "/tmp")) / "uv-none"))
    return env


def pip(*args, cwd=None):
    result = subprocess.run([sys.executable, "-m", "pip", "--isolated", "--no-cache-dir", *args],
                            capture_output=True, text=True, env=clean_env(), cwd=cwd,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def index_url(system):
    system.start(scenario(), abis="cp311:host:bookworm", PIW_INDEX_ROOT_INTERVAL="1")
    system.builder("pi1")
    system.settled("pure-pkg", "zlib-user", "yankme", "newpy")
    url = system.web + "/simple/"
    wait_for(lambda: all(f'href="{n}/"' in requests.get(url, timeout=5).text
                         for n in ("pure-pkg", "zlib-user", "yankme", "newpy")),
             30, what="the root index to list every built project")
    return url


def test_real_clients_against_the_index(index_url, tmp_path, db, system, rpc):
    """One system, built once (a minute of real builds), checked by every client."""
    check_pip_and_uv_install_our_wheels(index_url, tmp_path, db, system)
    check_yanked_and_requires_python(index_url, tmp_path)
    check_pip_resolves_from_pep658_metadata_without_downloading_wheels(index_url, tmp_path,
                                                                         system)
    check_pages_are_consistent_with_the_store(index_url)
    check_every_page_validates_and_every_link_resolves(system.web)
    check_the_stats_count_what_pip_and_uv_downloaded(system, rpc)


def check_pip_and_uv_install_our_wheels(index_url, tmp_path, db, system):
    report = tmp_path / "report.json"
    pip("install", "--index-url", index_url, "--target", str(tmp_path / "t1"),
        "--report", str(report), "pure-pkg", "zlib-user")
    installed = {canonical(i["metadata"]["name"]): i
                 for i in json.loads(report.read_text())["install"]}
    assert set(installed) == {"pure-pkg", "zlib-user"}
    with db() as s:
        from sqlalchemy import text
        hashes = dict(s.execute(text("SELECT filename, sha256 FROM files")).all())
    for item in installed.values():
        url = item["download_info"]["url"]
        assert url.startswith(index_url)
        filename = url.rsplit("/", 1)[1]
        assert item["download_info"]["archive_info"]["hashes"]["sha256"] == hashes[filename]
    # the C extension really imports
    probe = subprocess.run([sys.executable, "-c", "import zlib_user; print('ok')"],
                           env={**clean_env(), "PYTHONPATH": str(tmp_path / "t1")},
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "ok", probe.stderr

    uv = str(Path(sys.executable).parent / "uv")  # the test extra installs it
    venv = tmp_path / "uv-venv"
    subprocess.run([uv, "venv", "-q", str(venv)], check=True, env=clean_env())
    json_pages = system.web_status()["json_pages"]
    result = subprocess.run([uv, "pip", "install", "--python", str(venv / "bin" / "python"),
                             "--index-url", index_url, "pure-pkg", "newpy", "-v"],
                            capture_output=True, text=True, env=clean_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    freeze = subprocess.run([uv, "pip", "freeze", "--python", str(venv / "bin" / "python")],
                            capture_output=True, text=True, env=clean_env()).stdout
    pins = dict(line.split("==") for line in freeze.split())
    assert {canonical(k): v for k, v in pins.items()} == {"pure-pkg": "1.0", "newpy": "1.0"}
    # uv read both projects' pages as PEP 691 JSON
    assert system.web_status()["json_pages"] >= json_pages + 2


def check_yanked_and_requires_python(index_url, tmp_path):
    report = tmp_path / "yank.json"
    pip("install", "--dry-run", "--ignore-installed", "--index-url", index_url, "--report",
        str(report), "yankme", "newpy")
    chosen = {i["metadata"]["name"]: i["metadata"]["version"]
              for i in json.loads(report.read_text())["install"]}
    assert chosen == {"yankme": "1.0", "newpy": "1.0"}
    result = pip("install", "--dry-run", "--ignore-installed", "--index-url", index_url,
                 "yankme==2.0")
    assert "yanked" in (result.stdout + result.stderr).lower()
    assert "broke <everything> & more" in result.stdout + result.stderr


def check_pip_resolves_from_pep658_metadata_without_downloading_wheels(index_url, tmp_path,
                                                                       system):
    before = downloads(system)
    report = tmp_path / "r.json"
    pip("install", "--dry-run", "--ignore-installed", "--index-url", index_url, "--report",
        str(report), "zlib-user")
    assert [i["metadata"]["name"] for i in json.loads(report.read_text())["install"]] == [
        "zlib-user"]
    assert downloads(system) == before  # metadata only: no wheel was fetched


def check_the_stats_count_what_pip_and_uv_downloaded(system, rpc):
    served = downloads(system)
    report = wait_for(lambda: (r := rpc.stats.report())["downloads_total"] == served and r,
                      30, what=f"the stats to count the {served} wheels served")
    installers = {c["label"]: c["count"] for c in report["installers"]}
    assert installers["pip"] >= 2 and installers["uv"] >= 2, installers
    assert {c["label"] for c in report["top_packages"]} >= {"pure-pkg", "zlib-user", "newpy"}


def downloads(system):
    """The web service's count of wheel downloads served (its status RPC)."""
    return system.web_status()["downloads"]


def check_pages_are_consistent_with_the_store(index_url):
    base = index_url.removesuffix("/simple/")
    page = requests.get(index_url + "yankme/", timeout=5)
    assert page.headers["Vary"] == "Accept"
    assert 'data-yanked="broke &lt;everything&gt; &amp; more"' in page.text
    js = requests.get(index_url + "yankme/",
                      headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=5)
    assert js.headers["Content-Type"].startswith("application/vnd.pypi.simple.v1+json")
    files = js.json()["files"]
    yanked = [f for f in files if f["filename"].startswith("yankme-2.0-")]
    assert yanked and yanked[0]["yanked"] == "broke <everything> & more"
    for f in files:  # every file the page lists exists, with the hash the page says
        body = requests.get(index_url + "yankme/" + f["url"], timeout=5).content
        assert hashlib.sha256(body).hexdigest() == f["hashes"]["sha256"]
        meta = requests.get(index_url + "yankme/" + f["url"] + ".metadata", timeout=5)
        assert hashlib.sha256(meta.content).hexdigest() == f["core-metadata"]["sha256"]
    project = requests.get(base + "/project/yankme/json/", timeout=5).json()
    assert [v["version"] for v in project["versions"]] == ["2.0", "1.0"]
    assert requests.get(base + "/simple/YankMe/", timeout=5, allow_redirects=False
                        ).status_code == 301


def check_every_page_validates_and_every_link_resolves(base):
    """Crawl the whole site from the home page, the root index and every project page:
    HTML parses as strict HTML5, simple pages' JSON twins validate against PEP 691, and
    every same-site link (pages, wheels, their .metadata, build logs) answers 200."""
    parser = html5lib.HTMLParser(strict=True)
    names = [row[0] for row in requests.get(base + "/packages.json", timeout=5).json()]
    todo = ["/", "/simple/"] + [f"/project/{n}/" for n in names] + \
        [f"/project/{n}/json/" for n in names]
    seen: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        response = requests.get(base + path, timeout=10)
        assert response.status_code == 200, (path, response.status_code)
        if not response.headers["Content-Type"].startswith("text/html"):
            continue
        document = parser.parse(response.text)  # raises on any HTML5 parse error
        for anchor in document.iter("{http://www.w3.org/1999/xhtml}a"):
            target = urlsplit(urljoin(base + path, anchor.get("href", "")))
            if target.netloc != urlsplit(base).netloc:
                continue
            todo.append(target.path)
            if anchor.get("data-core-metadata"):
                todo.append(target.path + ".metadata")
        if path.startswith("/simple/"):
            twin = requests.get(base + path, timeout=10,
                                headers={"Accept": "application/vnd.pypi.simple.v1+json"})
            validate(twin.json(), "project-list" if path == "/simple/" else "project-detail")
    wheels = [p for p in seen if p.endswith(".whl")]
    logs = [p for p in seen if p.startswith("/logs/") and p.endswith(".log")]
    assert len(wheels) >= 5 and logs and any(p.endswith(".metadata") for p in seen), sorted(seen)
    log = requests.get(base + logs[0], timeout=10)  # text a browser shows, not a download
    assert log.headers["Content-Type"] == "text/plain; charset=utf-8" and "pip" in log.text
