"""piw-add as piwheels has it (its add/__init__.py, master/mr_chase.py do_add_package and
do_add_version): operators' entries of packages and versions upstream does not show, on a
real PostgreSQL with the catalog fed through the reorderer's own ingest."""

import pytest
from sqlalchemy import text

from piw_services.admin import actions
from piw_services.build_dispatch import queries as build_queries
from piw_services.reorderer import queries
from tests.admin.test_actions import (
    CP311,
    T0,
    build,
    feed,
    release_rows,
    snapshot,
    states,
)

CATALOG = ("packages", "versions", "upstream_files")


def catalog(s):
    """The reorderer's registers, which an operator's entry must never touch."""
    return {t: s.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2")).all() for t in CATALOG}


def views(s):
    return (set(s.execute(text("SELECT name FROM live_packages")).scalars()),
            set(map(tuple, s.execute(text("SELECT package, version FROM live_versions")))))


def test_a_package_upstream_does_not_show(s):
    before = catalog(s)
    out = actions.add(s, "Bar.Baz", description="fixed by hand", aliases=["bar_baz"],
                      who="alice")
    assert out.summary == ("added package Bar.Baz (an operator's entry: upstream does not "
                           "show it)")
    assert out.event()["package"] == "bar-baz"  # the index rewrites its pages
    state = queries.package_state(s, "bar_BAZ")
    assert state["alive"] and state["display_name"] == "Bar.Baz"
    assert state["summary"] == "fixed by hand" and state["versions"] == {}
    assert state["operator"] == {"added": True, "display_name": "Bar.Baz",
                                 "description": "fixed by hand", "aliases": ["bar_baz"],
                                 "added_by": "alice"}
    assert "bar-baz" in views(s)[0]
    assert catalog(s) == before  # beside the registers, never in them

    out = actions.add(s, "bar-baz", "1.0", released="2024-05-01 12:00:00", yank=True,
                      skip="needs a GPU")
    assert out.summary.startswith("added bar-baz 1.0, released 2024-05-01 12:00:00, yanked, "
                                  "skipped: needs a GPU")
    v = queries.package_state(s, "bar-baz")["versions"]["1.0"]
    assert v["operator"] and v["yanked"] and v["released"] == 1714564800
    assert not v["buildable"] and v["unbuildable_reason"] == queries.OPERATOR_VERSION_NOTE
    assert build_queries.skip_reason(s, "bar-baz", "1.0") == "needs a GPU"
    assert ("bar-baz", "1.0") in views(s)[1]
    assert states(s, "bar-baz") == {}  # nothing upstream to build it from
    # updates: the operator's own version may be unyanked and unskipped
    out = actions.add(s, "bar-baz", "1.0", unyank=True, unskip=True)
    assert out.summary == "recorded for bar-baz 1.0: unyanked; unskipped"
    assert not queries.package_state(s, "bar-baz")["versions"]["1.0"]["yanked"]
    assert catalog(s) == before


def test_a_version_upstream_does_not_show_and_a_replay(s):
    out = actions.add(s, "foo", "3.0", released=T0 - 86400)
    assert out.version == "3.0" and out.queued == []
    state = queries.package_state(s, "foo")
    assert set(state["versions"]) == {"1.0", "2.0", "3.0"}
    assert state["versions"]["3.0"]["operator"] and not state["versions"]["1.0"]["operator"]
    assert state["operator"] is None  # the package is upstream's
    entries = snapshot(s)
    registers = catalog(s)
    # upstream's log again, whole (a replay: every row a duplicate) and, late, rows older
    # than the entry that delete what upstream had of foo 3.0
    feed(s, release_rows("Foo", "1.0", "2.0"))
    feed(s, [["Foo", "3.0", T0 - 10, "new release", 900],
             ["Foo", "3.0", T0 - 5, "remove release", 901]])
    assert "3.0" in queries.package_state(s, "foo")["versions"]
    assert queries.package_state(s, "foo")["versions"]["3.0"]["operator"]
    after = snapshot(s)
    assert {t: after[t] for t in ("operator_packages", "operator_versions")} == \
        {t: entries[t] for t in ("operator_packages", "operator_versions")}
    # the registers are what the log alone makes of them: the late rows counted, the
    # operator's entry nowhere in them
    assert catalog(s) != registers
    assert [r for r in catalog(s)["versions"] if r.version == "3.0"][0].deleted_k > 0


def test_piw_remove_deletes_an_operators_entry_with_what_was_built_for_it(s):
    actions.add(s, "foo", "3.0")
    s.execute(text("INSERT INTO build_targets (package, version, abi, state, job_id, "
                   "priority) VALUES ('foo', '3.0', :a, 'pending', 'imp1', 0)"), {"a": CP311})
    _, job = build(s, "foo", "3.0", CP311, files=("foo-3.0-cp311-cp311-linux_armv7l.whl",))
    with pytest.raises(actions.BadRequest, match="nothing left to skip"):
        actions.remove(s, "foo", "3.0", skip=True)
    out = actions.remove(s, "foo", "3.0")
    assert out.files == ["foo-3.0-cp311-cp311-linux_armv7l.whl"] and job in out.revoked_jobs
    assert out.queued == [] and out.summary.endswith("the operator's entry is deleted")
    assert "3.0" not in queries.package_state(s, "foo")["versions"]
    assert not s.execute(text("SELECT 1 FROM build_versions WHERE version = '3.0' UNION ALL "
                              "SELECT 1 FROM operator_versions")).all()
    # a whole operator's package
    actions.add(s, "bar")
    actions.add(s, "bar", "0.1")
    out = actions.remove_package(s, "bar")
    assert not queries.package_state(s, "bar")["alive"] and "bar" not in views(s)[0]
    assert not s.execute(text("SELECT 1 FROM operator_packages")).all()


def test_upstream_versions_stay_upstreams(s):
    """As piwheels: a known package or version is skipped with piw-skip, and only a new
    version takes a release date or a yank (ours: the operator's own may be unyanked)."""
    build(s, "foo", "1.0", CP311)
    s.commit()
    before = snapshot(s)
    for call, message in (
            (lambda: actions.add(s, "foo", skip="no"), "skip it with piw-skip"),
            (lambda: actions.add(s, "foo", "1.0", skip="no"), "skip it with piw-skip"),
            (lambda: actions.add(s, "foo", "1.0", yank=True), "piw follows upstream's yanks"),
            (lambda: actions.add(s, "foo", "1.0", released="2020-01-01"), "release date is"),
            (lambda: actions.add(s, "foo", "1.0", unskip=True), "foo 1.0 is not skipped"),
            (lambda: actions.add(s, "foo", released="2020-01-01"), "go with a version"),
            (lambda: actions.add(s, "foo", "9.0", unskip=True), "nothing to unskip"),
            (lambda: actions.add(s, "foo", aliases=["bar"]), "not a spelling of foo"),
            (lambda: actions.add(s, "foo", "9 0"), "not a version PyPI could have"),
            (lambda: actions.add(s, "foo", "9.0", released="yesterday"), "not a date"),
            (lambda: actions.add(s, "foo", "9.0", released=4e9), "between 1970 and now"),
            (lambda: actions.add(s, "foo", "9.0", yank="yes"), "true or false"),
            (lambda: actions.add(s, "nope", "1.0"), "add it first with piw-add nope")):
        with pytest.raises(actions.AdminError, match=message):
            call()
        s.rollback()
        assert snapshot(s) == before, message
    # a description and aliases of an upstream package are the operator's; it stays upstream's
    out = actions.add(s, "foo", description="Foo, fixed", aliases=["FOO"])
    assert out.summary == "recorded for foo: its description; aliases FOO"
    state = queries.package_state(s, "foo")
    assert state["summary"] == "Foo, fixed" and state["operator"]["added"] is False
    feed(s, [["Foo", None, T0 + 500, "remove project", 5000]])
    assert not queries.package_state(s, "foo")["alive"]  # upstream's to delete
    assert states(s) == {}  # and what was built with it
