"""The index service in a nameko container on real RabbitMQ and PostgreSQL: catalog rows go in
through the reorderer's own ingest, files as file_manager records them; pages come out."""

import json
import time

import pytest
from nameko.standalone.events import event_dispatcher
from sqlalchemy import text

from piw_services.index.service import IndexService
from piw_services.reorderer import store as catalog
from tests.conftest import wait_for

T0 = int(time.time()) - 7200


def rows(*specs):
    """Changelog rows [name, version, timestamp, action, serial] with rising serials."""
    return [[name, version, T0 + i, action, 1000 + i] for i, (name, version, action)
            in enumerate(specs)]


@pytest.fixture
def www(container_factory, rabbit_config, db, db_url, tmp_path):
    config = dict(rabbit_config, DB_URL=db_url, WWW=str(tmp_path / "www"),
                  INDEX_ROOT_INTERVAL=0)
    container_factory(IndexService, config).start()
    return tmp_path / "www"


def ingest(db, changelog):
    with db() as s, s.begin():
        catalog.ingest(s, changelog, hold=0)


def add_file(db, www, rabbit_config, package, version, filename, **extra):
    """What file_manager does when a wheel lands: the file, its row, files_changed."""
    directory = www / "simple" / package
    directory.mkdir(parents=True, exist_ok=True)
    (directory / filename).write_bytes(b"wheel bytes")
    with db() as s, s.begin():
        s.execute(text(  # the built target whose job made the file (build_dispatch's part)
            "INSERT INTO build_targets (package, version, abi, state, job_id, priority) "
            "VALUES (:p, :v, 'cp311-linux_armv7l', 'built', :f, 1) ON CONFLICT DO NOTHING"),
            {"p": package, "v": version, "f": filename})
        s.execute(text(
            "INSERT INTO files (filename, package, version, abi, job_id, size, sha256, "
            "metadata_sha256, requires_python, requires_dist, apt_depends, unresolved) "
            "VALUES (:f, :p, :v, 'cp311-linux_armv7l', :f, 11, :h, NULL, :rp, "
            "CAST(:rd AS json), CAST(:apt AS json), '[]')"),
            {"f": filename, "p": package, "v": version, "h": "ab" * 32,
             "rp": extra.get("requires_python"),
             "rd": json.dumps(extra.get("requires_dist", [])),
             "apt": json.dumps(extra.get("apt_depends", []))})
    event_dispatcher(rabbit_config)("file_manager", "files_changed",
                                    {"package": package, "version": version,
                                     "added": [filename], "removed": []})


def page(www, path):
    target = www / path
    return target.read_text() if target.exists() else None


def test_a_burst_for_one_package_is_one_rewrite(www, db, rpc):
    ingest(db, rows(("burst", None, "create"),
                    *[("burst", f"1.{i}", "new release") for i in range(999)]))
    wait_for(lambda: page(www, "project/burst/json/index.json"), 20, what="the project page")
    project = json.loads(page(www, "project/burst/json/index.json"))
    assert len(project["versions"]) == 999
    assert project["versions"][0]["version"] == "1.998"  # newest first
    assert rpc.index.status()["rendered"] == 1


def test_files_yanks_and_removals_reach_the_pages(www, db, rabbit_config, rpc):
    ingest(db, rows(("Foo.Bar", None, "create"), ("Foo.Bar", "1.0", "new release"),
                    ("Foo.Bar", "1.0", "add source file foo.bar-1.0.tar.gz"),
                    ("Foo.Bar", "2.0", "new release"),
                    ("Foo.Bar", "2.0", "add source file foo.bar-2.0.tar.gz")))
    add_file(db, www, rabbit_config, "foo-bar", "1.0", "foo_bar-1.0-py3-none-any.whl",
             requires_python=">=3.9", apt_depends=["libxml2"],
             requires_dist=["Requests>=2", "pytest; extra == 'test'"])
    add_file(db, www, rabbit_config, "foo-bar", "2.0", "foo_bar-2.0-py3-none-any.whl")
    wait_for(lambda: "foo_bar-2.0-py3-none-any.whl" in (page(www, "simple/foo-bar/index.html")
                                                         or ""), 20, what="the simple page")
    html = page(www, "simple/foo-bar/index.html")
    assert 'data-requires-python="&gt;=3.9"' in html
    assert "sudo apt install libxml2" in page(www, "project/foo-bar/index.html")
    wait_for(lambda: "foo_bar-2.0" in page(www, "project/foo-bar/json/index.json"), 20,
             what="the project JSON")
    releases = json.loads(page(www, "project/foo-bar/json/index.json"))["releases"]
    assert list(releases) == ["2.0", "1.0"]  # piwheels' shape (tests/index/test_piwheels_json)
    assert releases["1.0"]["files"]["foo_bar-1.0-py3-none-any.whl"] == {
        "file_url": "/simple/foo-bar/foo_bar-1.0-py3-none-any.whl", "filehash": "ab" * 32,
        "filesize": 11, "builder_abi": "cp311", "file_abi_tag": "none", "platform": "any",
        "requires_python": ">=3.9", "apt_dependencies": ["libxml2"],
        "pip_dependencies": ["requests"]}
    wait_for(lambda: 'href="foo-bar/"' in (page(www, "simple/index.html") or ""), 20,
             what="the root to list foo-bar")
    wait_for(lambda: "/project/foo-bar/" in (page(www, "sitemap1.xml") or ""), 20,
             what="the sitemap to list foo-bar")
    assert "sitemap1.xml" in page(www, "sitemap.xml")
    # BASE_URL unset: never a relative pip.conf line (as the home page, issue 21)
    assert "extra-index-url=http://&lt;this server&gt;/simple/" in page(www, "faq.html")
    assert "pip_dependencies" in page(www, "json.html")
    assert 'name="q"' in page(www, "404.html")
    assert '<a href="/project/requests/">requests</a>' in page(www, "project/foo-bar/index.html")
    with db() as s, s.begin():  # what upstream's JSON API said (the upstream service's job)
        catalog.set_version_info(s, [{"package": "foo-bar", "version": "2.0",
                                      "summary": "Bars <for> foos"}])
    wait_for(lambda: "Bars &lt;for&gt; foos" in page(www, "project/foo-bar/index.html"), 20,
             what="the summary on the project page")
    wait_for(lambda: ["foo-bar", 0, 0, "Bars <for> foos"] in json.loads(
        page(www, "packages.json")), 20, what="the summary in packages.json")

    ingest(db, [["Foo.Bar", "2.0", T0 + 100, "yank release", 2000]])
    wait_for(lambda: "data-yanked" in page(www, "simple/foo-bar/index.html"), 20,
             what="the yank on the simple page")

    ingest(db, [["Foo.Bar", "2.0", T0 + 101, "remove release", 2001]])
    wait_for(lambda: "foo_bar-2.0" not in page(www, "simple/foo-bar/index.html"), 20,
             what="the removed release to leave the page")
    assert "foo_bar-1.0-py3-none-any.whl" in page(www, "simple/foo-bar/index.html")

    ingest(db, [["Foo.Bar", None, T0 + 102, "remove project", 2002]])
    wait_for(lambda: page(www, "project/foo-bar/index.html") is None, 20,
             what="the removed project's pages to go")
    assert page(www, "simple/foo-bar/index.html") is None
    wait_for(lambda: 'href="foo-bar/"' not in page(www, "simple/index.html"), 20,
             what="the root to drop foo-bar")
