"""build_dispatch's database work on a real PostgreSQL: targets from events, claims, results."""

import base64
import gzip

import pytest
from sqlalchemy import text

from builders import protocol
from piw_services.build_dispatch import logic, operations, queries, store

NOW = 1_800_000_000
#: build targets (ABI on a platform), as build_dispatch keys them
CP311, CP313, CP39 = "cp311-linux_armv7l", "cp313-linux_armv7l", "cp39-linux_armv7l"


def added(package, version, buildable=True, released=NOW - 60):
    return {"type": "version_added", "package": package, "version": version,
            "buildable": buildable, "released": released}


def targets(s, package=None):
    rows = s.execute(text(
        "SELECT package, version, abi, state, note FROM build_targets "
        "WHERE CAST(:p AS text) IS NULL OR package = :p ORDER BY 1, 2, 3"),
        {"p": package}).all()
    return [tuple(r) for r in rows]


@pytest.fixture
def session(db):
    with db() as s, s.begin():
        store.sync_abis(s, [(CP311, "bookworm"), (CP313, "trixie")], now=NOW)
    with db() as s:
        yield s


def hello(s, label="pi1", target=CP311):
    abi, platform = protocol.split_target(target)
    return store.hello(s, protocol.check_hello(protocol.hello(
        label, abi, {"platform": platform, "preinstalled": ["libc6"]})))


def result(builder_id, job_id, status="success", files=(), not_uploaded=()):
    info = [{"filename": fn, "size": 10, "sha256": "0" * 64, "requires_python": None,
             "requires_dist": [], "apt_depends": [], "unresolved": []} for fn in files]
    log = base64.b64encode(gzip.compress(b"log")).decode()
    return protocol.check_result(protocol.result(builder_id, job_id, status, 1.5, log, info,
                                                 list(not_uploaded)))


def job_of(s, package, version, abi):
    return s.execute(text("SELECT job_id FROM build_targets WHERE package = :p AND "
                          "version = :v AND abi = :a"),
                     {"p": package, "v": version, "a": abi}).scalar_one()


def test_buildable_versions_get_a_target_per_abi(session):
    n = store.apply_events(session, [added("foo", "1.0"), added("bar", "1.0", buildable=False),
                                     {"type": "package_added", "package": "foo"}], now=NOW)
    assert n == 2
    assert targets(session) == [("foo", "1.0", CP311, "pending", None),
                                ("foo", "1.0", CP313, "pending", None)]
    # the same batch again (a redelivery that slipped past the mark) adds nothing
    assert store.apply_events(session, [added("foo", "1.0")], now=NOW) == 2
    assert len(targets(session)) == 2
    store.apply_events(session, [{"type": "version_buildable", "package": "bar",
                                  "version": "1.0", "buildable": True}], now=NOW)
    assert len(targets(session, "bar")) == 2
    # a new release whose sdist came in a later batch is still a new release
    assert session.execute(text("SELECT DISTINCT priority FROM build_targets "
                                "WHERE package = 'bar'")).scalars().all() == [9]


def test_removals_forget_targets_and_builds(session):
    store.apply_events(session, [added("foo", "1.0"), added("foo", "2.0")], now=NOW)
    b = hello(session)
    job = job_of(session, "foo", "1.0", CP311)
    assert store.claim(session, {"builder_id": b, "job_id": job, "redelivered": False})[0]
    store.record_result(session, result(b, job, files=["foo-1.0-cp311-cp311-linux_armv7l.whl"]))
    store.apply_events(session, [{"type": "version_removed", "package": "foo",
                                  "version": "1.0"}], now=NOW)
    assert [t[1] for t in targets(session)] == ["2.0", "2.0"]
    assert session.execute(text("SELECT count(*) FROM builds")).scalar_one() == 0
    # a removed version's queued job is dropped when claimed
    assert store.claim(session, {"builder_id": b, "job_id": job, "redelivered": True}) == (
        False, "job no longer wanted (version removed, or replaced by a newer job)")
    store.apply_events(session, [{"type": "package_removed", "package": "foo", "life": 0}],
                       now=NOW)
    assert targets(session) == []


def test_losing_the_last_source_file_keeps_what_was_built(session):
    store.apply_events(session, [added("foo", "1.0")], now=NOW)
    b = hello(session)
    job = job_of(session, "foo", "1.0", CP311)
    store.claim(session, {"builder_id": b, "job_id": job, "redelivered": False})
    store.record_result(session, result(b, job, files=["foo-1.0-cp311-cp311-linux_armv7l.whl"]))
    store.apply_events(session, [{"type": "version_buildable", "package": "foo",
                                  "version": "1.0", "buildable": False}], now=NOW)
    assert targets(session) == [("foo", "1.0", CP311, "built", None)]


def test_pure_wheel_satisfies_the_other_abi(session):
    store.apply_events(session, [added("foo", "1.0")], now=NOW)
    b = hello(session)
    job = job_of(session, "foo", "1.0", CP311)
    other = job_of(session, "foo", "1.0", CP313)
    store.claim(session, {"builder_id": b, "job_id": job, "redelivered": False})
    out = store.record_result(session, result(b, job, files=["foo-1.0-py3-none-any.whl"]))
    assert out["satisfied"] == [CP313]
    assert targets(session) == [("foo", "1.0", CP311, "built", None),
                                ("foo", "1.0", CP313, "built", f"pure wheel built for {CP311}")]
    b2 = hello(session, "pi2", CP313)
    assert store.claim(session, {"builder_id": b2, "job_id": other, "redelivered": False}) == (
        False, "already built (pure wheel built for cp311-linux_armv7l)")


def test_results_are_recorded_once_and_only_from_the_holder(session):
    store.apply_events(session, [added("foo", "1.0")], now=NOW)
    b1, b2 = hello(session, "pi1"), hello(session, "pi2")
    job = job_of(session, "foo", "1.0", CP311)
    assert store.claim(session, {"builder_id": b1, "job_id": job, "redelivered": False})[0]
    # a duplicate job message is not built twice; a redelivery is taken over
    assert not store.claim(session, {"builder_id": b2, "job_id": job, "redelivered": False})[0]
    assert store.claim(session, {"builder_id": b2, "job_id": job, "redelivered": True})[0]
    with pytest.raises(store.NotYourJob):
        store.record_result(session, result(b1, job, "failed"))
    first = store.record_result(session, result(b2, job, "timeout"))
    again = store.record_result(session, result(b2, job, "timeout"))
    assert again == {"build_id": first["build_id"], "status": "timeout", "repeat": True,
                     "package": "foo", "version": "1.0"}
    assert targets(session, "foo")[0][3:] == ("failed", "timeout")
    assert session.execute(text("SELECT count(*) FROM builds")).scalar_one() == 1
    # a failed build is not tried again
    assert not store.claim(session, {"builder_id": b2, "job_id": job, "redelivered": True})[0]


def test_wrong_abi_and_unknown_builder_are_refused(session):
    store.apply_events(session, [added("foo", "1.0")], now=NOW)
    b = hello(session, "pi3", CP313)
    job = job_of(session, "foo", "1.0", CP311)
    assert store.claim(session, {"builder_id": b, "job_id": job, "redelivered": False}) == (
        False, f"job is for {CP311}, builder {b} builds {CP313}")
    assert store.claim(session, {"builder_id": 999, "job_id": job, "redelivered": False})[1] \
        == "unknown builder 999: say hello first"


def test_upstream_served_wheel_is_recorded_not_published(session):
    store.apply_events(session, [added("foo", "1.0")], now=NOW)
    b = hello(session)
    job = job_of(session, "foo", "1.0", CP311)
    store.claim(session, {"builder_id": b, "job_id": job, "redelivered": False})
    store.record_result(session, result(b, job, not_uploaded=["foo-1.0-py3-none-any.whl"]))
    assert targets(session) == [
        ("foo", "1.0", CP311, "built", "upstream serves foo-1.0-py3-none-any.whl"),
        ("foo", "1.0", CP313, "built", "pure wheel built for cp311-linux_armv7l")]


def test_a_new_abi_queues_every_buildable_version(session):
    store.apply_events(session, [added("foo", "1.0"), added("bar", "2.0")], now=NOW)
    new = store.sync_abis(session, [(CP311, "bookworm"), (CP39, "bullseye")], now=NOW)
    assert new == [CP39]
    assert queries.enabled_abis(session) == [CP311, CP39]
    assert sorted(t[:3] for t in targets(session) if t[2] == CP39) == [
        ("bar", "2.0", CP39), ("foo", "1.0", CP39)]


def test_pending_jobs_carry_upstream_wheels_and_new_releases_come_first(session):
    session.execute(text(
        "INSERT INTO upstream_files (package, version, filename, pyver, added_k, removed_k) "
        "VALUES ('foo', '1.0', 'foo-1.0-py3-none-any.whl', 'py3', 2, 0), "
        "('foo', '1.0', 'foo-1.0.tar.gz', 'source', 1, 0)"))
    store.apply_events(session, [added("old", "1.0", released=NOW - 400 * 86400),
                                 added("foo", "1.0")], now=NOW)
    jobs = store.take_pending(session, CP311, 1)
    assert [(j["body"]["package"], j["target"]) for j in jobs] == [("foo", CP311)]
    assert jobs[0]["body"]["upstream_files"] == ["foo-1.0-py3-none-any.whl"]
    jobs += store.take_pending(session, CP311, 10)
    assert [j["body"]["package"] for j in jobs] == ["foo", "old"]
    assert jobs[0]["priority"] > jobs[-1]["priority"]
    assert all(protocol.check_job(j["body"]) for j in jobs)
    assert {t[3] for t in targets(session) if t[2] == CP311} == {"queued"}
    assert {t[3] for t in targets(session) if t[2] == CP313} == {"pending"}


def test_with_enrichment_on_a_job_waits_for_its_versions_requires_python(session):
    store.apply_events(session, [added("foo", "1.0"), added("bar", "1.0")], now=NOW)
    session.execute(text(  # the catalog: upstream's JSON API read for foo only
        "INSERT INTO packages (name, display_name, display_k, created_k, deleted_k, "
        "quarantine_k, quarantined) VALUES ('foo', 'foo', 1, 1, 0, 0, false), "
        "('bar', 'bar', 1, 1, 0, 0, false); "
        "INSERT INTO versions (package, version, created_k, deleted_k, release_k, yank_k, "
        "yanked, info_k) VALUES ('foo', '1.0', 5, 0, 5, 0, false, 5), "
        "('bar', '1.0', 5, 0, 5, 0, false, 0)"))
    jobs = store.take_pending(session, CP311, 10, wait_for_info=True)
    assert [j["body"]["package"] for j in jobs] == ["foo"]
    session.execute(text("UPDATE versions SET info_k = 5 WHERE package = 'bar'"))
    assert [j["body"]["package"]
            for j in store.take_pending(session, CP311, 10, wait_for_info=True)] == ["bar"]


def test_builders_registry(session):
    b = hello(session)
    assert hello(session) == b  # a restart under the same label keeps its id
    assert store.heartbeat(session, {"builder_id": b, "readings": {"load": [0.1]}})
    assert not store.heartbeat(session, {"builder_id": 12345, "readings": {}})
    session.execute(text("UPDATE builders SET last_seen = now() - interval '2 minutes'"))
    assert store.mark_gone(session, 60) == ["pi1"]
    assert store.status(session)["builders"][0]["state"] == "gone"


def test_priority_in_sql_equals_priority_in_python(session):
    ages = [0, 60, 2 * 86400 - 1, 2 * 86400, 10 * 86400, 30 * 86400, 400 * 86400]
    released = [NOW - age for age in ages]
    got = session.execute(text(
        f"SELECT {logic.priority_sql('r', NOW)} FROM unnest(CAST(:r AS bigint[])) AS r "
        "ORDER BY r DESC"), {"r": released}).scalars().all()
    assert got == [logic.priority(r, NOW) for r in released]


def test_an_abi_enabled_while_a_batch_is_applied_still_gets_its_versions(db):
    """Write skew: the batch must see the new ABI, or the ABI's sync the batch's versions."""
    import eventlet

    from piw_services.db.dependency import ensure_green_psycopg

    ensure_green_psycopg()  # a blocked lock wait must let the other session run
    with db() as s, s.begin():
        store.sync_abis(s, [(CP311, "bookworm")], now=NOW)
    batch = db()
    batch.begin()
    store.apply_events(batch, [added("foo", "1.0")], now=NOW)  # not committed yet

    def enable_cp313():
        with db() as s, s.begin():
            store.sync_abis(s, [(CP311, "bookworm"), (CP313, "trixie")], now=NOW)

    sync = eventlet.spawn(enable_cp313)
    eventlet.sleep(0.5)  # the sync now waits for the batch's lock
    batch.commit()
    batch.close()
    sync.wait()
    with db() as s:
        assert [t[2] for t in targets(s)] == [CP311, CP313]


def test_a_job_whose_requires_python_excludes_its_abi_is_skipped_at_claim(session):
    store.apply_events(session, [added("newpy", "2.0")], now=NOW)
    session.execute(text(  # what upstream's JSON API told the catalog meanwhile
        "INSERT INTO versions (package, version, created_k, deleted_k, release_k, yank_k, "
        "yanked, requires_python) VALUES ('newpy', '2.0', 1, 0, 1, 0, false, '>=3.99')"))
    b = hello(session)
    job = job_of(session, "newpy", "2.0", CP311)
    build, reason = store.claim(session, {"builder_id": b, "job_id": job, "redelivered": False})
    assert not build and reason == "Requires-Python >=3.99 excludes Python 3.11"
    assert ("newpy", "2.0", CP311, "skipped", reason) in targets(session, "newpy")


def test_status_counts_the_targets_an_operators_skip_keeps_unbuilt(session):
    store.apply_events(session, [added("foo", "1.0"), added("foo", "2.0"), added("bar", "1.0"),
                                 added("baz", "1.0", buildable=False)], now=NOW)
    assert store.status(session)["operator_skips"] == {}
    # as the admin service skips: the skip recorded, the targets dropped
    operations.set_skip(session, "foo", "1.0", "too big")
    operations.revoke(session, "foo", ["1.0"], forget_builds=False, requeue=False, keep_built=True)
    operations.set_skip(session, "baz", None, "not wanted")  # nothing to build: nothing kept back
    status = store.status(session)
    assert status["operator_skips"] == {CP311: 1, CP313: 1}
    assert status["targets"] == {CP311: {"pending": 2}, CP313: {"pending": 2}}
    operations.set_skip(session, "bar", None, "the whole package")
    operations.revoke(session, "bar", ["1.0"], forget_builds=False, requeue=False, keep_built=True)
    assert store.status(session)["operator_skips"] == {CP311: 2, CP313: 2}
