"""The audit's comparisons as pure functions: each kind of disagreement, a clean state, and
hostile names (none may crash the audit or break its one-line output)."""

import dataclasses
import json

import pytest

from piw_services.audit.checks import (
    ROOT,
    Disagreement,
    Entry,
    FileRow,
    ListedPage,
    Snapshot,
    compare,
    parse_html,
    parse_project_json,
    parse_root_html,
    parse_root_json,
    resolve,
    servable,
)
from piw_services.cli.audit import persisting

PURE = "foo-1.0-py3-none-any.whl"
V7 = "foo-1.0-cp311-cp311-linux_armv7l.whl"
V6 = "foo-1.0-cp311-cp311-linux_armv6l.whl"
H1, H2, M1 = "a" * 64, "b" * 64, "c" * 64


def rows():
    return [
        FileRow(PURE, "foo", "1.0", "j1", 10, H1, M1),
        FileRow(V7, "foo", "1.0", "j2", 20, H2, M1),
        FileRow(V6, "foo", "1.0", "j2", 20, H2, M1, link_of=V7),
    ]


def clean() -> Snapshot:
    """A consistent state: foo 1.0 with a pure wheel and an armv7l wheel linked as armv6l."""
    disk = {"foo": {
        PURE: Entry("file", 10), PURE + ".metadata": Entry("file", 5),
        V7: Entry("file", 20), V7 + ".metadata": Entry("file", 5),
        V6: Entry("link", target=V7), V6 + ".metadata": Entry("link", target=V7 + ".metadata"),
        "index.html": Entry("file", 100), "index.json": Entry("file", 100),
        ".tmp-1234": Entry("file", 3),
    }}
    listed = {PURE: H1, V7: H2, V6: H2}
    return Snapshot(
        rows=rows(), disk=disk, alive_packages={"foo"}, alive_versions={("foo", "1.0")},
        targets={("foo", "1.0", "j1"), ("foo", "1.0", "j2")},
        simple_pages={"foo": {"index.html": ListedPage(listed),
                              "index.json": ListedPage(listed)}},
        project_pages={"foo": ["project/foo/index.html"]},
        root_pages={"index.html": ListedPage({"foo": None}),
                    "index.json": ListedPage({"foo": None})},
        hashes={("foo", PURE): H1, ("foo", V7): H2, ("foo", PURE + ".metadata"): M1,
                ("foo", V7 + ".metadata"): M1})


def kinds(found):
    return sorted({d.kind for d in found})


def test_a_consistent_state_is_clean():
    assert compare(clean()) == []


def test_nothing_at_all_is_clean():
    assert compare(Snapshot()) == []


def test_missing_files_metadata_and_sizes():
    snap = clean()
    del snap.disk["foo"][PURE]
    del snap.disk["foo"][V7 + ".metadata"]  # the armv6l metadata link now dangles too
    snap.disk["foo"][V7] = Entry("file", 21)
    found = compare(snap)
    assert kinds(found) == ["missing_file", "missing_metadata", "page_lists_missing",
                            "size_mismatch"]
    assert Disagreement("missing_file", "foo", f"simple/foo/{PURE} is not on disk") in found
    assert sum(d.kind == "missing_metadata" for d in found) == 2  # V7's and V6's
    assert sum(d.kind == "page_lists_missing" for d in found) == 2  # html and json


def test_links_must_be_links_to_their_file():
    snap = clean()
    snap.disk["foo"][V6] = Entry("file", 20)
    assert kinds(compare(snap)) == ["bad_link"]
    snap.disk["foo"][V6] = Entry("link", target="elsewhere.whl")  # dangling: not served
    assert kinds(compare(snap)) == ["bad_link", "page_lists_missing"]
    snap.disk["foo"][PURE] = Entry("link", target=V7)  # a real file must not be a link
    assert [d.detail for d in compare(snap) if d.kind == "bad_link"][1] == (
        f"simple/foo/{PURE} should be the wheel itself, is a symlink to {V7!r}")
    del snap.disk["foo"][V7]  # the link's target gone: V6 now dangles
    snap.disk["foo"][V6] = Entry("link", target=V7)
    found = compare(snap)
    assert f"simple/foo/{V6} links to {V7!r}, which is not on disk" in {d.detail for d in found}


def test_hash_mismatches_only_when_hashing():
    snap = clean()
    snap.hashes[("foo", PURE)] = "0" * 64
    snap.hashes[("foo", V7 + ".metadata")] = "1" * 64
    found = compare(snap)
    assert kinds(found) == ["hash_mismatch"]
    assert len(found) == 3  # the wheel, V7's metadata and V6's (a link to the same file)
    assert compare(dataclasses.replace(snap, hashes=None)) == []


def test_orphans_but_not_temps_pages_or_dot_names():
    snap = clean()
    snap.disk["foo"].update({"foo-9.9-py3-none-any.whl": Entry("file", 1),
                             "foo-8.0-py3-none-any.whl.metadata": Entry("file", 1),
                             ".foo-7.0-py3-none-any.whl": Entry("file", 1),
                             "README": Entry("file", 1)})
    snap.disk["bar"] = {"bar-1.0-py3-none-any.whl": Entry("file", 1)}
    found = compare(snap)
    assert kinds(found) == ["orphan_file"]
    assert [(d.package, d.detail.split("/")[-1]) for d in found] == [
        ("bar", "bar-1.0-py3-none-any.whl has no files row"),
        ("foo", "foo-8.0-py3-none-any.whl.metadata has no files row"),
        ("foo", "foo-9.9-py3-none-any.whl has no files row")]


def test_a_file_in_another_packages_directory_is_an_orphan_there():
    snap = clean()
    snap.disk["bar"] = {PURE: Entry("file", 10)}
    assert [(d.kind, d.package) for d in compare(snap)] == [("orphan_file", "bar")]


def test_dead_version_files():
    snap = clean()
    snap.alive_versions = set()
    snap.alive_packages = set()  # the package went with it: every page of it is stale
    found = compare(snap)
    assert kinds(found) == ["dead_version_file", "root_lists_extra", "stale_page"]
    assert sum(d.kind == "dead_version_file" for d in found) == 3  # not also revoked
    assert {d.detail for d in found if d.kind == "stale_page"} == {
        "simple/foo/index.html exists but the package is not alive",
        "simple/foo/index.json exists but the package is not alive",
        "project/foo/index.html exists but the package is not alive"}


def test_revoked_files():
    snap = clean()
    snap.targets = {("foo", "1.0", "j1"), ("foo", "1.0", "j3")}  # j2's target was rebuilt
    found = compare(snap)
    assert kinds(found) == ["revoked_file"]
    assert {d.detail.split(":")[0] for d in found} == {V7, V6}


def test_a_pure_wheel_satisfying_other_abis_keeps_its_builders_job():
    snap = clean()
    snap.targets |= {("foo", "1.0", "j-cp312")}  # another ABI's target: its own job id
    assert compare(snap) == []
    assert set(servable(snap.rows, snap.alive_versions, snap.targets)["foo"]) == {PURE, V7, V6}


def test_pages_must_list_exactly_the_served_files():
    snap = clean()
    snap.simple_pages["foo"]["index.html"] = ListedPage({PURE: H1, V7: "f" * 64,
                                                   "foo-0.1-py3-none-any.whl": H1})
    snap.simple_pages["foo"]["index.json"] = ListedPage({PURE: None, V7: H2, V6: H2})
    found = compare(snap)
    assert [(d.kind, d.detail) for d in found] == [
        ("page_hash_mismatch", f"simple/foo/index.html gives {V7} sha256 {'f' * 64}, "
                               f"files.sha256 {H2}"),
        ("page_hash_mismatch", f"simple/foo/index.json gives {PURE} sha256 None, "
                               f"files.sha256 {H1}"),
        ("page_lacks_file", f"simple/foo/index.html does not list {V6}"),
        ("page_lists_missing", "simple/foo/index.html lists foo-0.1-py3-none-any.whl, "
                               "which has no row"),
    ]


def test_a_hash_fragment_in_upper_case_matches():
    snap = clean()
    snap.simple_pages["foo"]["index.html"] = ListedPage({PURE: H1.upper(), V7: H2, V6: H2})
    assert compare(snap) == []


def test_stale_and_missing_pages():
    snap = clean()
    del snap.simple_pages["foo"]["index.json"]
    snap.disk["gone"] = {"index.html": Entry("file", 1)}
    snap.simple_pages["gone"] = {"index.html": ListedPage({})}
    snap.alive_packages.add("gone")  # alive, but nothing servable: no simple page
    found = compare(snap)
    assert [(d.kind, d.package) for d in found] == [("missing_page", "foo"),
                                                     ("stale_page", "gone")]
    assert found[1].detail == "simple/gone/index.html exists but the package has no servable file"


def test_a_package_with_files_but_no_directory_misses_its_pages():
    snap = clean()
    snap.rows = snap.rows + [FileRow("bar-1.0-py3-none-any.whl", "bar", "1.0", "jb", 1, H1)]
    snap.alive_versions.add(("bar", "1.0"))
    snap.alive_packages.add("bar")
    snap.targets.add(("bar", "1.0", "jb"))
    found = compare(snap)
    assert [(d.kind, d.package) for d in found] == [
        ("missing_file", "bar"), ("missing_page", "bar"), ("missing_page", "bar"),
        ("root_lacks", "bar"), ("root_lacks", "bar")]


def test_root_pages():
    snap = clean()
    snap.root_pages["index.html"] = ListedPage({"foo": None, "ghost": None})
    snap.root_pages["index.json"] = ListedPage({})
    assert [(d.kind, d.package, d.detail) for d in compare(snap)] == [
        ("root_lacks", "foo", "simple/index.json does not list it"),
        ("root_lists_extra", "ghost", "simple/index.html lists it; it has no servable file")]
    snap.root_pages = {}
    assert {(d.kind, d.package) for d in compare(snap)} == {("missing_page", ROOT)}
    assert compare(Snapshot(root_pages={"index.html": ListedPage({})})) == []


def test_unreadable_pages_are_reported_not_raised():
    snap = clean()
    snap.simple_pages["foo"]["index.json"] = ListedPage(error="not JSON: ...")
    snap.root_pages["index.html"] = ListedPage(
        error="not a regular file (a symlink to '/dev/zero')")
    assert [(d.kind, d.package) for d in compare(snap)] == [("unreadable_page", ROOT),
                                                             ("unreadable_page", "foo")]


def test_resolve_follows_only_sibling_links():
    listing = {"a": Entry("link", target="b"), "b": Entry("file", 1),
               "up": Entry("link", target="../foo/b"), "loop": Entry("link", target="loop"),
               "dir": Entry("other"), "dot": Entry("link", target="..")}
    assert resolve(listing, "a") == "b"
    assert [resolve(listing, n) for n in ("up", "loop", "dir", "dot", "none")] == [None] * 5


# -- parsing -------------------------------------------------------------------------------
def test_parse_the_index_pages_own_markup():
    html = ('<a href="foo-1.0-py3-none-any.whl#sha256=ABC" data-requires-python="&gt;=3">x</a>'
            '<a href="../../x/foo%2B1-1.0-py3-none-any.whl?x=1">y</a><a>no href</a>'
            '<A HREF="foo_bar-2.0+local-py3-none-any.whl#md5=1">z</A>')
    assert parse_html(html) == {"foo-1.0-py3-none-any.whl": "abc",
                                "foo+1-1.0-py3-none-any.whl": None,
                                "foo_bar-2.0+local-py3-none-any.whl": None}
    assert parse_root_html('<a href="foo/">foo</a><a href="/simple/b%C3%A4r/">x</a>') == {
        "foo": None, "bär": None}
    page = {"meta": {"api-version": "1.1"}, "name": "foo",
            "files": [{"filename": "a.whl", "hashes": {"sha256": "ABC"}},
                      {"filename": "b.whl", "hashes": {}}]}
    assert parse_project_json(json.dumps(page)) == {"a.whl": "abc", "b.whl": None}
    assert parse_root_json('{"projects": [{"name": "foo"}, {"name": "b\\u00e4r"}]}') == {
        "foo": None, "bär": None}


@pytest.mark.parametrize("page", ["", "[]", "{}", '{"files": {}}', '{"files": [1]}',
                                  '{"files": [{"filename": 3}]}', "{not json", "\ud800"])
def test_bad_json_pages_raise_page_error(page):
    from piw_services.audit.checks import PageError

    with pytest.raises(PageError):
        parse_project_json(page)


HOSTILE = ["../../../etc/passwd", "a\nb", "x\x00y", "\udcff\udcfe.whl", "<script>.whl",
           "%2e%2e%2f.whl", "é" * 300, " ", "a#b.whl", "con.whl\r\n"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_neither_crash_nor_break_lines(name):
    snap = clean()
    snap.rows = snap.rows + [FileRow(name, name, "1\n0", "j\x00", -1, "<x>", "\udcff",
                                     link_of="../" + name)]
    snap.disk[name] = {name: Entry("link", target=name), name + ".metadata": Entry("other")}
    snap.simple_pages[name] = {"index.html": ListedPage({name: None}),
                               "index.json": ListedPage(error=name)}
    snap.project_pages[name] = [f"project/{name}/index.html"]
    snap.root_pages["index.html"] = ListedPage({"foo": None, name: None})
    found = compare(snap)
    assert found and all(d.package in (name, "foo") for d in found)
    for d in found:
        line = d.line()
        assert "\n" not in line and "\r" not in line and "\x00" not in line
        line.encode("utf-8")  # printable whatever the name's bytes were
    json.dumps([d.as_dict() for d in found])


@pytest.mark.parametrize("markup", ['<a href="%ff%fe.whl">', '<a href="#sha256=">',
                                    "<a href='x.whl#sha256=1' <<<", "<!-- <a href=x>",
                                    "<![CDATA[<a href=y.whl>", "<a href>", "\x00<a href=z>",
                                    '<a href="' + "%" * 1000 + '">'])
def test_odd_markup_parses(markup):
    assert isinstance(parse_html(markup), dict)


# -- settling --------------------------------------------------------------------------------
def test_settling_keeps_only_what_persists():
    a, b, c = (Disagreement("missing_file", p, "x") for p in "abc")
    looks = iter([[a, b], [a, c], [b]])
    clock = iter(range(100))
    slept = []
    kept = persisting(lambda: next(looks), [a, b, c], 3, sleep=slept.append,
                      clock=lambda: next(clock))
    assert kept == [a] and slept == [1.0, 1.0]  # looks at t=1 and t=2, the deadline at 3


def test_settling_stops_once_all_is_transient():
    a = Disagreement("missing_file", "a", "x")
    looks = []
    kept = persisting(lambda: looks.append(1) or [], [a], 60, sleep=lambda _: None)
    assert kept == [] and looks == [1]
