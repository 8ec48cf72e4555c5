"""The operators' actions on a real PostgreSQL: the catalog through the reorderer's ingest,
build state through build_dispatch's own functions, then each action and what it left."""

import time

import pytest
from sqlalchemy import text

from builders import protocol
from piw_services import events as ev
from piw_services import outbox
from piw_services.admin import actions
from piw_services.build_dispatch import queries, store
from piw_services.reorderer import store as catalog
from tests.build_dispatch.test_store import hello, job_of, result

#: build targets (ABI on a platform), as build_dispatch keys them
CP311 = "cp311-linux_armv7l"
CP312 = "cp312-linux_armv7l"
CP313 = "cp313-linux_armv7l"

T0 = int(time.time()) - 7200
WHEEL = "foo-1.0-py3-none-any.whl"
TABLES = ("build_targets", "builds", "build_versions", "build_package_skips", "builders",
          "outbox", "operator_packages", "operator_versions")


def release_rows(name, *versions, serial=1000, t=T0):
    rows = [[name, None, t, "create", serial]]
    for i, v in enumerate(versions):
        sdist = f"{name.lower()}-{v}.tar.gz"
        rows += [[name, v, t + 2 * i + 1, "new release", serial + 2 * i + 1],
                 [name, v, t + 2 * i + 2, f"add source file {sdist}", serial + 2 * i + 2]]
    return rows


def feed(s, rows):
    """Rows into the catalog, and its events into build_dispatch, as the services do."""
    catalog.ingest(s, rows, hold=0)
    outbox.consume(s, "build_dispatch", None, lambda s, seq, ev: store.apply_events(s, ev))


def build(s, package, version, abi, files=(WHEEL,), status="success", label="pi"):
    """A builder claims the job and reports it, with a files row like file_manager's."""
    b = hello(s, label, abi)
    job = job_of(s, package, version, abi)
    assert store.claim(s, {"builder_id": b, "job_id": job, "redelivered": False})[0]
    for fn in files:
        s.execute(text(
            "INSERT INTO files (filename, package, version, abi, job_id, size, sha256, "
            "requires_dist, apt_depends, unresolved) VALUES (:f, :p, :v, :a, :j, 1, 'x', "
            "'[]', '[]', '[]')"), {"f": fn, "p": package, "v": version, "a": abi, "j": job})
    store.record_result(s, result(b, job, status, files=files))
    return b, job


def states(s, package="foo"):
    return {(r.version, r.abi): r.state for r in s.execute(text(
        "SELECT version, abi, state FROM build_targets WHERE package = :p"), {"p": package})}


def snapshot(s):
    return {t: s.execute(text(f"SELECT * FROM {t} ORDER BY 1")).all() for t in TABLES}


@pytest.fixture
def s(db):
    with db() as session, session.begin():
        store.sync_abis(session, [(CP311, "bookworm"), (CP313, "trixie")])
        feed(session, release_rows("Foo", "1.0", "2.0"))
    with db() as session:
        yield session


def test_remove_forgets_builds_revokes_jobs_and_builds_again(s):
    b, job = build(s, "foo", "1.0", CP311)
    assert states(s)[("1.0", CP313)] == "built"  # the pure wheel settled cp313 too
    out = actions.remove(s, "FOO", "1.0")
    assert (out.package, out.version, out.skip) == ("foo", "1.0", None)
    assert out.files == [WHEEL] and out.builds_forgotten == 1
    assert job in out.revoked_jobs and out.event()["revoked_jobs"] == out.revoked_jobs
    assert ev.check_ordered_event(out.event())["type"] == ev.ADMIN
    assert sorted(map(tuple, out.queued)) == [("1.0", CP311), ("1.0", CP313)]
    assert states(s)[("1.0", CP311)] == "pending" and states(s)[("1.0", CP313)] == "pending"
    assert job_of(s, "foo", "1.0", CP311) != job
    assert s.execute(text("SELECT count(*) FROM builds")).scalar() == 0
    assert s.execute(text("SELECT job_id FROM builders WHERE id = :b"), {"b": b}).scalar() is None
    assert out.summary.startswith("removed foo 1.0 (1 builds forgotten, 1 files deleted")
    assert out.summary.endswith("built again shortly, from upstream's sdist")
    # a dry run's answer says what would be done
    plan = out.as_dict(dry_run=True)["summary"]
    assert plan.startswith("would remove foo 1.0 (would forget 1 builds, delete 1 files and "
                           "queue 2 builds)"), plan
    assert "plan" not in out.as_dict() and out.as_dict()["summary"] == out.summary
    # the builder that still holds the old job may neither claim nor report it
    assert not store.claim(s, {"builder_id": b, "job_id": job, "redelivered": True})[0]
    assert store.record_result(s, result(b, job, files=[WHEEL]))["build_id"] is None
    assert states(s)[("2.0", CP311)] == "pending"  # other versions untouched


def test_remove_with_skip_never_builds_it_again(s):
    build(s, "foo", "1.0", CP311)
    out = actions.remove(s, "foo", "1.0", skip=True)
    assert out.skip == actions.DEFAULT_SKIP_REASON and out.queued == []
    assert ("1.0", CP311) not in states(s)
    assert queries.skip_reason(s, "foo", "1.0") == actions.DEFAULT_SKIP_REASON
    # an ABI enabled later does not queue it either
    store.sync_abis(s, [(CP311, "bookworm"), (CP313, "trixie"), (CP312, "bookworm")])
    assert ("1.0", CP312) not in states(s) and ("2.0", CP312) in states(s)
    with pytest.raises(actions.BadRequest, match="skipped"):
        actions.rebuild(s, "foo", "1.0")
    out = actions.unskip(s, "foo", "1.0")
    assert sorted(map(tuple, out.queued)) == [("1.0", CP311), ("1.0", CP312),
                                              ("1.0", CP313)]


def test_remove_package_with_skip_stops_future_versions_until_a_new_life(s):
    out = actions.remove_package(s, "foo", skip="licence trouble")
    assert out.skip == "licence trouble" and states(s) == {}
    feed(s, [["Foo", "3.0", T0 + 100, "new release", 2000],
             ["Foo", "3.0", T0 + 101, "add source file foo-3.0.tar.gz", 2001]])
    assert states(s) == {}  # skipped: the new release is not built
    # upstream removes the project and someone registers it again: a new life, not skipped
    feed(s, [["Foo", None, T0 + 200, "remove project", 2002]]
         + release_rows("fOO", "1.0", serial=3000, t=T0 + 300))
    assert set(states(s)) == {("1.0", CP311), ("1.0", CP313)}
    assert queries.skip_reason(s, "foo") is None


def test_skip_keeps_what_is_built_and_drops_the_rest(s):
    build(s, "foo", "1.0", CP311, files=("foo-1.0-cp311-cp311-linux_armv7l.whl",))
    b = hello(s, "pi13", CP313)
    building = job_of(s, "foo", "1.0", CP313)
    assert store.claim(s, {"builder_id": b, "job_id": building, "redelivered": False})[0]
    out = actions.skip(s, "foo", reason="takes 9 hours")
    assert building in out.revoked_jobs and out.files == []
    assert states(s) == {("1.0", CP311): "built"}
    assert sorted(map(tuple, out.dropped)) == [("1.0", CP313), ("2.0", CP311),
                                               ("2.0", CP313)]
    with pytest.raises(actions.BadRequest, match="unskip the package"):
        actions.unskip(s, "foo", "2.0")
    assert len(actions.unskip(s, "foo").queued) == 3
    with pytest.raises(actions.BadRequest, match="not skipped"):
        actions.unskip(s, "foo")


def test_rebuild_of_one_abi_takes_the_abis_its_pure_wheel_settled(s):
    _, job = build(s, "foo", "1.0", CP311)
    build(s, "foo", "2.0", CP311, files=("foo-2.0-cp311-cp311-linux_armv7l.whl",))
    build(s, "foo", "2.0", CP313, files=("foo-2.0-cp313-cp313-linux_armv7l.whl",),
          label="pi13")
    out = actions.rebuild(s, "foo", abi=CP311)
    assert out.files == [WHEEL, "foo-2.0-cp311-cp311-linux_armv7l.whl"]
    assert states(s) == {("1.0", CP311): "pending", ("1.0", CP313): "pending",
                         ("2.0", CP311): "pending", ("2.0", CP313): "built"}
    assert out.builds_forgotten == 0  # the history of builds stays
    assert s.execute(text("SELECT count(*) FROM builds")).scalar() == 3
    with pytest.raises(actions.BadRequest, match="ABI"):
        actions.rebuild(s, "foo", abi="cp3; rm -rf /")


def test_failed_builds_are_retried_by_rebuild_and_add_fills_gaps(s):
    build(s, "foo", "2.0", CP311, files=(), status="failed")
    assert states(s)[("2.0", CP311)] == "failed"
    assert actions.add(s, "foo", "2.0").queued == []  # add fills gaps; it does not retry
    assert [tuple(q) for q in actions.rebuild(s, "foo", "2.0", CP311).queued] == [
        ("2.0", CP311)]
    s.execute(text("DELETE FROM build_targets WHERE version = '1.0' AND abi = :a"),
              {"a": CP313})
    assert [tuple(q) for q in actions.add(s, "foo").queued] == [("1.0", CP313)]
    assert "nothing to add" in actions.add(s, "foo").summary


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda s: actions.remove(s, "nope", "1.0"), actions.UnknownPackage, "unknown package"),
    (lambda s: actions.remove(s, "foo", "9.9"), actions.UnknownVersion, "newest: 2.0, 1.0"),
    (lambda s: actions.remove(s, "foo; rm -rf /", "1.0"), actions.UnknownPackage,
     "not a valid package name"),
    (lambda s: actions.remove(s, "foo\nbar", "1.0"), actions.BadRequest, "control"),
    (lambda s: actions.remove(s, "foo", "1.0\x00"), actions.BadRequest, "control"),
    (lambda s: actions.remove(s, "x" * 10_000, "1.0"), actions.BadRequest, "longer than"),
    (lambda s: actions.remove(s, None, "1.0"), actions.BadRequest, "non-empty string"),
    (lambda s: actions.remove(s, "foo", ["1.0"]), actions.BadRequest, "non-empty string"),
    (lambda s: actions.remove_package(s, "foo", skip=" "), actions.BadRequest, "skip reason"),
    (lambda s: actions.skip(s, "foo", "1.0"), actions.BadRequest, "reason"),
    (lambda s: actions.add(s, "Bar", "1.0"), actions.UnknownPackage, "'bar'; add it first"),
])
def test_bad_requests_name_the_problem_and_change_nothing(s, call, error, message):
    before = snapshot(s)
    with pytest.raises(error, match=message):
        call(s)
    s.rollback()
    assert snapshot(s) == before


def test_versions_are_matched_as_pep440_and_removed_upstream_ones_are_unknown(s):
    assert actions.remove(s, "foo", "1.0.0").version == "1.0"
    feed(s, [["Foo", "2.0", T0 + 50, "remove release", 1900]])
    with pytest.raises(actions.UnknownVersion, match="no live version '2.0'"):
        actions.remove(s, "foo", "2.0")


def test_a_binary_only_version_cannot_be_added(s):
    feed(s, [["Foo", "4.0", T0 + 60, "new release", 1950],
             ["Foo", "4.0", T0 + 61, f"add cp311 file {WHEEL.replace('1.0', '4.0')}", 1951]])
    with pytest.raises(actions.BadRequest, match="no source file"):
        actions.add(s, "foo", "4.0")
    assert protocol.check_abi("cp311")  # the ABI check is the builders' own
