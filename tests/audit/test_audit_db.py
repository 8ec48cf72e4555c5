"""The audit against a real PostgreSQL and a www tree laid out as the system lays it out: the
catalog through the reorderer's own ingest, files and links as file_manager makes them, pages
from the index's own renderers. A consistent state is clean; each way of breaking it is found;
``piw-audit`` itself runs as a subprocess with its exit codes and output."""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from piw_services.audit import audit
from piw_services.index import data, render
from piw_services.index.model import SiteInfo
from piw_services.index.service import page_paths
from piw_services.reorderer import store as catalog

T0 = int(time.time()) - 7200
BIN = Path(sys.executable).parent
ROOT_DIR = Path(__file__).resolve().parent.parent.parent

PURE = "foo-1.0-py3-none-any.whl"
V7 = "foo-2.0-cp311-cp311-linux_armv7l.whl"
V6 = "foo-2.0-cp311-cp311-linux_armv6l.whl"
BAR = "bar-1.0-py3-none-any.whl"


def ingest(db, *specs, serial=1000):
    """Changelog rows (name, version, action) with rising timestamps and serials."""
    rows = [[name, version, T0 + serial + i, action, serial + i]
            for i, (name, version, action) in enumerate(specs)]
    with db() as s, s.begin():
        catalog.ingest(s, rows, hold=0)


def sql(db, statement, **params):
    with db() as s, s.begin():
        return s.execute(text(statement), params)


def add_target(db, package, version, abi, job_id, state="built"):
    """A target as build_dispatch keeps it, with its own view of the version."""
    sql(db, "INSERT INTO build_versions (package, version, buildable, released) "
            "VALUES (:p, :v, true, 0) ON CONFLICT DO NOTHING", p=package, v=version)
    sql(db, "INSERT INTO build_targets (package, version, abi, state, job_id, priority) "
            "VALUES (:p, :v, :a, :s, :j, 5)", p=package, v=version, a=abi, j=job_id, s=state)


def add_file(db, www, package, version, filename, job_id, link=None):
    """What file_manager does when a wheel lands: the wheel, its .metadata, the armv6l link
    (and its metadata link) when asked, then the rows."""
    directory = www / "simple" / package
    directory.mkdir(parents=True, exist_ok=True)
    body = f"wheel {filename}".encode() * 10
    meta = f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode()
    (directory / filename).write_bytes(body)
    (directory / (filename + ".metadata")).write_bytes(meta)
    row = {"p": package, "v": version, "j": job_id, "size": len(body),
           "h": hashlib.sha256(body).hexdigest(), "m": hashlib.sha256(meta).hexdigest()}
    names = [(filename, None)]
    if link:
        os.symlink(filename, directory / link)
        os.symlink(filename + ".metadata", directory / (link + ".metadata"))
        names.append((link, filename))
    for name, link_of in names:
        sql(db, "INSERT INTO files (filename, package, version, abi, job_id, size, sha256, "
                "metadata_sha256, requires_python, requires_dist, apt_depends, unresolved, "
                "link_of) VALUES (:f, :p, :v, 'cp311', :j, :size, :h, :m, NULL, '[]', '[]', "
                "'[]', :l)", f=name, l=link_of, **row)


def render_pages(db, www, packages=("foo", "bar")):
    """The pages as the index service writes them (IndexService._render_package and
    _render_root), from the index's own data loaders and renderers."""
    with db() as s:
        for name in packages:
            paths = {k: www / v for k, v in page_paths(name).items()}
            project, _ = data.load_project(s, name)
            if project is None:
                for path in paths.values():
                    path.unlink(missing_ok=True)
                continue
            pages = {"project_html": render.project_html(project, SiteInfo(base_url="")),
                     "project_json": render.project_json(project)}
            if project.files:
                pages["simple_html"] = render.simple_project_html(project)
                pages["simple_json"] = render.simple_project_json(project)
            for kind, path in paths.items():
                if kind in pages:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(pages[kind])
                else:
                    path.unlink(missing_ok=True)
        names = [p.name for p in data.indexed_projects(s)]
    (www / "simple").mkdir(parents=True, exist_ok=True)
    (www / "simple" / "index.html").write_text(render.simple_root_html(names))
    (www / "simple" / "index.json").write_text(render.simple_root_json(names))


@pytest.fixture
def www(db, tmp_path):
    """A consistent system: foo 1.0 (a pure wheel, built for cp311 and satisfying cp312),
    foo 2.0 (an armv7l wheel linked as armv6l), bar 1.0, and a deleted package long gone;
    with file_manager's upload area and a temp file it leaves behind."""
    www = tmp_path / "www"
    ingest(db, ("foo", None, "create"), ("foo", "1.0", "new release"),
           ("foo", "1.0", "add source file foo-1.0.tar.gz"), ("foo", "2.0", "new release"),
           ("foo", "2.0", "add source file foo-2.0.tar.gz"), ("bar", None, "create"),
           ("bar", "1.0", "new release"), ("bar", "1.0", "add source file bar-1.0.tar.gz"),
           ("gone", None, "create"), ("gone", "1.0", "new release"),
           ("gone", None, "remove project"))
    add_target(db, "foo", "1.0", "cp311", "j-foo1-311")
    add_target(db, "foo", "1.0", "cp312", "j-foo1-312")
    add_target(db, "foo", "2.0", "cp311", "j-foo2")
    add_target(db, "bar", "1.0", "cp311", "j-bar")
    add_file(db, www, "foo", "1.0", PURE, "j-foo1-311")
    add_file(db, www, "foo", "2.0", V7, "j-foo2", link=V6)
    add_file(db, www, "bar", "1.0", BAR, "j-bar")
    render_pages(db, www)
    (www / ".uploads").mkdir()
    (www / ".uploads" / "abc.part").write_bytes(b"partial")
    (www / ".uploads" / "x-1.0-py3-none-any.whl").write_bytes(b"not ours to judge")
    (www / "simple" / "foo" / ".tmp-0123").write_bytes(b"temp")
    return www


def run_audit(db, www, hashes=True):
    with db() as s, s.begin():
        return audit(s, www, hashes=hashes)


def kinds(found):
    return sorted(d.kind for d in found)


def test_a_consistent_system_is_clean(db, www):
    assert run_audit(db, www) == []
    assert "foo-2.0-cp311-cp311-linux_armv6l.whl" in (www / "simple/foo/index.html").read_text()


def test_removals_done_right_stay_clean(db, www):
    """What file_manager and the index do for a removed release and a removed project."""
    ingest(db, ("foo", "2.0", "remove release"), ("bar", None, "remove project"), serial=5000)
    for package, filenames in (("foo", [V6, V7]), ("bar", [BAR])):
        for name in filenames:
            (www / "simple" / package / name).unlink()
            (www / "simple" / package / (name + ".metadata")).unlink()
        sql(db, "DELETE FROM files WHERE filename = ANY(:f)", f=filenames)
    for table in ("build_targets", "build_versions"):  # build_dispatch's part
        sql(db, f"DELETE FROM {table} WHERE package = 'bar' OR (package = 'foo' "
                "AND version = '2.0')")
    render_pages(db, www)
    (www / "simple" / "bar").rmdir()  # file_manager's last step, once the pages went
    assert run_audit(db, www) == []


def test_jobs_of_removed_or_skipped_versions(db, www):
    add_target(db, "foo", "2.0", "cp312", "j-foo2-312", state="queued")
    sql(db, "UPDATE build_versions SET skip_reason = 'no' WHERE version = '2.0'")
    sql(db, "INSERT INTO build_targets (package, version, abi, state, job_id, priority) "
            "VALUES ('gone', '1.0', 'cp311', 'pending', 'j-gone', 5)")
    found = run_audit(db, www)
    assert [(d.kind, d.package, d.detail) for d in found] == [
        ("stray_target", "foo", "2.0 cp312 is queued: an operator skipped it: no"),
        ("stray_target", "gone", "1.0 cp311 is pending: build_dispatch does not know the "
                                 "version")]


def test_missing_files_and_metadata(db, www):
    (www / "simple/foo" / PURE).unlink()
    (www / "simple/foo" / (V7 + ".metadata")).unlink()
    found = run_audit(db, www)
    assert kinds(found) == ["missing_file", "missing_metadata", "missing_metadata",
                            "page_lists_missing", "page_lists_missing"]


def test_a_broken_link(db, www):
    (www / "simple/foo" / V6).unlink()
    (www / "simple/foo" / V6).write_bytes(b"a copy")
    assert kinds(run_audit(db, www)) == ["bad_link"]
    (www / "simple/foo" / V6).unlink()
    assert kinds(run_audit(db, www)) == ["missing_file", "page_lists_missing",
                                         "page_lists_missing"]


def test_sizes_and_hashes(db, www):
    wheel = www / "simple/bar" / BAR
    wheel.write_bytes(b"X" + wheel.read_bytes()[1:])  # same size, other bytes
    (www / "simple/foo" / (PURE + ".metadata")).write_bytes(b"Name: other\n")
    assert run_audit(db, www, hashes=False) == []
    assert kinds(run_audit(db, www)) == ["hash_mismatch", "hash_mismatch"]
    wheel.write_bytes(wheel.read_bytes() + b"more")
    assert kinds(run_audit(db, www, hashes=False)) == ["size_mismatch"]


def test_orphans(db, www):
    (www / "simple/foo/foo-9.9-py3-none-any.whl").write_bytes(b"stray")
    (www / "simple/baz").mkdir()
    (www / "simple/baz/baz-1.0-py3-none-any.whl.metadata").write_bytes(b"stray")
    found = run_audit(db, www)
    assert [(d.kind, d.package) for d in found] == [("orphan_file", "baz"),
                                                     ("orphan_file", "foo")]


def test_a_row_deleted_before_its_file(db, www):
    sql(db, "DELETE FROM files WHERE filename = :f", f=BAR)
    found = run_audit(db, www)
    assert kinds(found) == ["orphan_file", "orphan_file", "root_lists_extra",
                            "root_lists_extra", "stale_page", "stale_page"]


def test_a_removed_release_whose_files_stayed(db, www):
    ingest(db, ("foo", "2.0", "remove release"), serial=5000)
    found = run_audit(db, www)  # and build_dispatch has not dropped its target either
    assert kinds(found) == ["dead_version_file", "dead_version_file", "stray_target"]
    render_pages(db, www)  # the index did its part: the pages no longer list them
    assert kinds(run_audit(db, www)) == ["dead_version_file", "dead_version_file",
                                         "stray_target"]


def test_a_removed_project_whose_pages_stayed(db, www):
    ingest(db, ("bar", None, "remove project"), serial=5000)
    (www / "simple/bar" / BAR).unlink()
    (www / "simple/bar" / (BAR + ".metadata")).unlink()
    sql(db, "DELETE FROM files WHERE package = 'bar'")
    found = run_audit(db, www)
    assert [(d.kind, d.detail) for d in found if d.package == "bar"] == [
        ("root_lists_extra", "simple/index.html lists it; it has no servable file"),
        ("root_lists_extra", "simple/index.json lists it; it has no servable file"),
        ("stale_page", "project/bar/index.html exists but the package is not alive"),
        ("stale_page", "project/bar/json/index.json exists but the package is not alive"),
        ("stale_page", "simple/bar/index.html exists but the package is not alive"),
        ("stale_page", "simple/bar/index.json exists but the package is not alive"),
        ("stray_target", "1.0 cp311 is built: the version is not alive")]
    assert len(found) == 7


def test_a_quarantined_package_is_withheld(db, www):
    """Its files stay (to be served again if PyPI releases it) but no page shows it."""
    sql(db, "UPDATE packages SET quarantined = true, quarantine_k = created_k + 1 "
            "WHERE name = 'bar'")
    assert kinds(run_audit(db, www)) == ["root_lists_extra", "root_lists_extra",
                                         "stale_page", "stale_page", "stale_page",
                                         "stale_page"]
    render_pages(db, www)  # what the index does on package_quarantined
    assert run_audit(db, www) == []
    assert (www / "simple" / "bar" / BAR).exists()


def test_a_rebuild_revokes_the_old_jobs_file(db, www):
    sql(db, "UPDATE build_targets SET job_id = 'j-foo2-again', state = 'pending' "
            "WHERE package = 'foo' AND version = '2.0'")
    found = run_audit(db, www)
    assert [(d.kind, d.detail.split(":")[0]) for d in found] == [
        ("revoked_file", V6), ("revoked_file", V7)]


def test_the_other_abis_target_of_a_pure_wheel_does_not_keep_it(db, www):
    sql(db, "UPDATE build_targets SET job_id = 'j-new' WHERE job_id = 'j-foo1-311'")
    assert [(d.kind, d.package) for d in run_audit(db, www)] == [("revoked_file", "foo")]


def test_pages_behind_the_files(db, www):
    add_target(db, "foo", "1.0", "cp313", "j-foo1-313")
    add_file(db, www, "foo", "1.0", "foo-1.0-cp313-cp313-linux_armv7l.whl", "j-foo1-313")
    found = run_audit(db, www)
    assert [(d.kind, d.detail) for d in found] == [
        ("page_lacks_file", "simple/foo/index.html does not list "
                            "foo-1.0-cp313-cp313-linux_armv7l.whl"),
        ("page_lacks_file", "simple/foo/index.json does not list "
                            "foo-1.0-cp313-cp313-linux_armv7l.whl")]
    render_pages(db, www)
    assert run_audit(db, www) == []


def test_page_hashes(db, www):
    sha = hashlib.sha256((www / "simple/bar" / BAR).read_bytes()).hexdigest()
    page = www / "simple/bar/index.html"
    page.write_text(page.read_text().replace(sha, "0" * 64))
    [found] = run_audit(db, www)
    assert (found.kind, found.package) == ("page_hash_mismatch", "bar")


def test_missing_and_unreadable_pages(db, www):
    (www / "simple/bar/index.json").unlink()
    (www / "simple/foo/index.json").write_text("{not json")
    (www / "simple/index.html").unlink()
    (www / "simple/index.json").unlink()
    os.mkfifo(www / "simple/index.json")  # reading it would block: it must not be read
    found = run_audit(db, www)
    assert [(d.kind, d.package) for d in found] == [
        ("missing_page", ":root"), ("missing_page", "bar"), ("unreadable_page", ":root"),
        ("unreadable_page", "foo")]


def test_the_root_pages(db, www):
    html = www / "simple/index.html"
    html.write_text(html.read_text().replace('<a href="bar/">bar</a>',
                                             '<a href="gh%C3%B6st/">ghöst</a>'))
    assert [(d.kind, d.package) for d in run_audit(db, www)] == [
        ("root_lacks", "bar"), ("root_lists_extra", "ghöst")]


def test_hostile_names_on_disk_and_in_rows(db, www):
    weird = os.fsdecode(b"\xff\xfe-1.0-py3-none-any.whl")
    (www / "simple/foo" / weird).write_bytes(b"x")
    (www / "simple/evil\nname").mkdir()
    (www / "simple/evil\nname/index.html").write_text('<a href="../../../etc/passwd#sha256=1">')
    os.symlink("/etc", www / "simple/etc")  # a symlinked package directory is not walked
    (www / "simple/bar/index.json").unlink()
    os.symlink("/dev/zero", www / "simple/bar/index.json")
    sql(db, "INSERT INTO files (filename, package, version, abi, job_id, size, sha256, "
            "requires_dist, apt_depends, unresolved) VALUES ('../../etc/passwd', 'foo', '1.0', "
            "'cp311', 'j-foo1-311', 1, 'x', '[]', '[]', '[]')")
    found = run_audit(db, www)
    lines = [d.line() for d in found]
    assert all("\n" not in line for line in lines)
    assert "orphan_file foo: simple/foo/\\udcff\\udcfe-1.0-py3-none-any.whl has no files row" \
        in lines
    assert ("stale_page evil\\nname: simple/evil\\nname/index.html exists but the package is "
            "not alive") in lines
    assert ("unreadable_page bar: simple/bar/index.json: not a regular file (a symlink to "
            "'/dev/zero')") in lines
    assert "missing_file foo: simple/foo/../../etc/passwd is not on disk" in lines
    assert not any(d.package == "etc" for d in found)


# -- the command ---------------------------------------------------------------------------
def piw_audit(db_url, www, *args, timeout=60):
    env = dict(os.environ, PIW_DB_URL=db_url, PIW_WWW=str(www))
    env.pop("PIW_CONFIG", None)
    return subprocess.run([str(BIN / "piw-audit"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT_DIR)


def test_the_command_clean_and_not(db, db_url, www):
    result = piw_audit(db_url, www, "--hashes")
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "audit: clean (4 files, 2 packages checked)\n", "")
    assert piw_audit(db_url, www, "-q").stdout == ""

    (www / "simple/bar" / BAR).unlink()
    result = piw_audit(db_url, www)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        f"missing_file bar: simple/bar/{BAR} is not on disk",
        f"page_lists_missing bar: simple/bar/index.html lists {BAR}, which is not on disk",
        f"page_lists_missing bar: simple/bar/index.json lists {BAR}, which is not on disk"]
    assert "3 disagreements" in result.stderr

    result = piw_audit(db_url, www, "--json", "-q")
    assert result.returncode == 1 and result.stderr == ""
    assert json.loads(result.stdout)[0] == {"kind": "missing_file", "package": "bar",
                                            "detail": f"simple/bar/{BAR} is not on disk"}


def test_the_command_waits_for_quiet_then_settles(db, db_url, www):
    sql(db, "UPDATE outbox SET sent_at = now()")
    sql(db, "INSERT INTO outbox (seq, events, count) VALUES (7, '[]', 0)")  # not yet relayed
    sql(db, "INSERT INTO consumer_marks (consumer, seq) VALUES ('index', 7), ('file_manager', 5)")
    sql(db, "INSERT INTO index_dirty (package) VALUES ('foo')")
    started = time.monotonic()
    result = piw_audit(db_url, www, "--wait", "1.5", "--json")
    assert time.monotonic() - started >= 1.5
    assert result.returncode == 0 and result.stdout.strip() == "[]"
    assert "waiting for quiet: 1 outbox batches not yet relayed; file_manager at 5 of 7; " \
        "1 dirty pages in index_dirty" in result.stderr
    assert "still busy after 1.5 s" in result.stderr

    sql(db, "UPDATE consumer_marks SET seq = 7")  # applied before the relay marked it sent:
    sql(db, "DELETE FROM index_dirty")  # still not quiet (the race of tests/e2e/test_import)
    result = piw_audit(db_url, www, "--wait", "0.5", "--json")
    assert "still busy after 0.5 s (1 outbox batches not yet relayed)" in result.stderr
    sql(db, "UPDATE outbox SET sent_at = now()")
    (www / "simple/bar" / (BAR + ".metadata")).unlink()
    started = time.monotonic()
    result = piw_audit(db_url, www, "--wait", "30", "--settle", "2", "-q")
    assert time.monotonic() - started < 20  # quiet at once; a real problem persists 2 s
    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout == f"missing_metadata bar: simple/bar/{BAR}.metadata is not on disk\n"


def test_the_command_without_a_database(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    result = piw_audit("postgresql+psycopg2://postgres@127.0.0.1:1/x", www)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "piw-audit: cannot reach the database postgresql+psycopg2://postgres@127.0.0.1:1/x: ")
    assert "Traceback" not in result.stderr and result.stdout == ""
    result = piw_audit("postgresql+psycopg2://postgres@127.0.0.1:1/x", tmp_path / "nowhere")
    assert (result.returncode, result.stderr) == (
        2, f"piw-audit: the www tree {tmp_path / 'nowhere'} is not a directory\n")
