"""The reorderer's PostgreSQL pipeline: hold window, dedupe by serial, crash safety, outbox."""

from contextlib import nullcontext

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from piw_services.build_dispatch import logic as dispatch_logic
from piw_services.events import check_ordered_event
from piw_services.reorderer import parse, queries, store
from piw_services.reorderer.parse import Row, parse_row
from tests.conftest import reset_db
from tests.reorderer.reference import fold_events, reference, view, without_late_renames
from tests.reorderer.strategies import logs

NOW = 2_000_000_000
FLUSH_ALL = -10**12  # a hold "window" that releases everything


class Crash(Exception):
    pass


def catalog(session):
    cur = session.connection().connection.dbapi_connection.cursor()
    cur.execute("SELECT name FROM packages")
    return view(store.load_packages(cur, [n for (n,) in cur.fetchall()]))


def catalog_views(session):
    """The catalog as the views (migrations 0009, 0011) give it, in :func:`reference`'s
    terms."""
    packages = dict(session.execute(text("SELECT name, quarantined FROM live_packages")).all())
    versions = {(p, v): w for p, v, w in session.execute(text(
        "SELECT package, version, withheld FROM live_versions")).all()}
    servable = {tuple(r) for r in session.execute(text(
        "SELECT package, version FROM servable_versions")).all()}
    return packages, versions, servable


def expected_views(expected):
    packages = {n: p["quarantined"] for n, p in expected.items()}
    versions = {(n, v): p["quarantined"] or ver["quarantined"]
                for n, p in expected.items() for v, ver in p["versions"].items()}
    return packages, versions, {pv for pv, withheld in versions.items() if not withheld}


def outbox_events(session):
    rows = session.execute(text("SELECT events FROM outbox ORDER BY seq")).all()
    return [e for (events,) in rows for e in events]


def in_serial_order_safe(raw):
    """*raw* less the legacy renames that, arriving in serial order, would come after newer
    rows of their old name (reorderer/catalog.py's one limit; the hold window may apply rows
    before the rename arrives)."""
    kept = {r.serial for r in without_late_renames(valid_rows(raw))}
    return [x for x in raw if x[4] in kept or not isinstance(parse_row(x, NOW), Row)]


def valid_rows(raw):
    return [r for r in (parse_row(x, NOW) for x in raw) if isinstance(r, Row)]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=logs(max_rows=30), data=st.data())
def test_replay_with_batches_holds_crashes_and_rereads_converges(db_engine, db, raw, data):
    reset_db(db_engine)
    raw = in_serial_order_safe(raw)
    hold = data.draw(st.sampled_from([0, 5, 30, 1000]), label="hold")
    pos = 0
    while pos < len(raw):
        size = data.draw(st.integers(1, 8), label="batch")
        batch = raw[pos:pos + size]
        if data.draw(st.booleans(), label="re-read an earlier range too"):
            batch = raw[max(0, pos - 3):pos] + batch
        crash = data.draw(st.integers(0, 4), label="crash") == 4
        with pytest.raises(Crash) if crash else nullcontext(), db() as s, s.begin():
            result = store.ingest(s, batch, hold, now=NOW)
            if crash:
                raise Crash  # dies before commit: nothing of this batch may remain
        if not crash:
            pos = min(pos + size, len(raw))
            assert result.last_serial == raw[pos - 1][4]
    with db() as s, s.begin():
        store.flush(s, FLUSH_ALL, now=NOW)
    with db() as s:
        expected = reference(valid_rows(raw))
        assert catalog(s) == expected
        assert catalog_views(s) == expected_views(expected)
        assert fold_events(outbox_events(s)) == expected
        for event in outbox_events(s):
            check_ordered_event(event)
        held = s.execute(text("SELECT count(*) FROM held_rows")).scalar()
        assert held == 0


#: What the parser of PARSER_VERSION 1 knew (before warehouse's release quarantine).
OLD_ACTIONS = {a: k for a, k in parse._SIMPLE.items() if not a.startswith("release quarantine")}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=logs(max_rows=30), data=st.data())
def test_rows_an_older_parser_could_not_use_are_applied_after_an_upgrade(
        db_engine, db, monkeypatch, raw, data):
    """Recorded as malformed by parser 1 ("unknown action 'release quarantined'"), parsed
    again once piw knows better: the catalog and the events end as if they had been
    understood on arrival, whatever the hold window did meanwhile."""
    reset_db(db_engine)
    raw = in_serial_order_safe(raw)
    hold = data.draw(st.sampled_from([0, 30, 1000]), label="hold")
    with monkeypatch.context() as old:
        old.setattr(parse, "_SIMPLE", OLD_ACTIONS)
        old.setattr(store, "PARSER_VERSION", 1)
        pos = 0
        while pos < len(raw):
            size = data.draw(st.integers(1, 8), label="batch")
            with db() as s, s.begin():
                store.ingest(s, raw[pos:pos + size], hold, now=NOW)
            pos += size
    with db() as s:
        old_reasons = s.execute(text("SELECT reason FROM malformed_rows")).scalars().all()
    assert all("release quarantine" in r for r in old_reasons)
    with db() as s, s.begin():  # the upgraded reorderer's first tick
        assert store.reparse_malformed(s, hold, now=NOW) == len(old_reasons)
        assert store.reparse_malformed(s, hold, now=NOW) == 0
    with db() as s, s.begin():
        store.flush(s, FLUSH_ALL, now=NOW)
    with db() as s:
        expected = reference(valid_rows(raw))
        assert catalog(s) == expected
        assert fold_events(outbox_events(s)) == expected
        assert s.execute(text("SELECT count(*) FROM malformed_rows")).scalar() == 0


def test_hold_window_buffers_until_newer_rows_arrive(db):
    with db() as s, s.begin():
        r = store.ingest(s, [["pkg", "1.0", 1000, "new release", 1]], hold=300, now=NOW)
        assert (r.applied, r.held) == (0, 1)
        assert queries.package_state(s, "pkg")["alive"] is False
    with db() as s, s.begin():
        r = store.ingest(s, [["other", None, 1299, "create", 2]], hold=300, now=NOW)
        assert (r.applied, r.held) == (0, 2)  # 1000 is not older than 1299 - 300
    with db() as s, s.begin():
        r = store.ingest(s, [["other", None, 1301, "create", 3]], hold=300, now=NOW)
        assert (r.applied, r.held) == (1, 2)
        assert queries.package_state(s, "PKG")["versions"].keys() == {"1.0"}


def test_late_row_after_window_is_applied_not_dropped(db):
    with db() as s, s.begin():
        store.ingest(s, [["pkg", "1.0", 1000, "new release", 1],
                         ["other", "2.0", 5000, "new release", 2]], hold=10, now=NOW)
    with db() as s, s.begin():
        # stamped long before the horizon: piwheels would drop it
        r = store.ingest(s, [["pkg", "1.0", 1001, "remove release", 3]], hold=10, now=NOW)
        assert r.applied == 1
    with db() as s:  # 1.0 removed; other 2.0 still held (5000 is inside the window)
        assert queries.package_state(s, "pkg")["versions"] == {}
        assert queries.package_state(s, "other")["versions"] == {}
    with db() as s, s.begin():
        store.flush(s, FLUSH_ALL, now=NOW)
    with db() as s:
        assert set(queries.package_state(s, "other")["versions"]) == {"2.0"}


def test_a_packages_held_rows_leave_together(db):
    """A release's files uploaded seconds apart, and a release deleted seconds after its
    upload, are one batch when the first is due: one page write, no build queued and
    revoked."""
    with db() as s, s.begin():
        r = store.ingest(s, [["pkg", "1.0", NOW - 5, "new release", 1],
                             ["pkg", "1.0", NOW - 5, "add source file pkg-1.0.tar.gz", 2],
                             ["pkg", "1.0", NOW - 2, "add py3 file pkg-1.0-py3-none-any.whl",
                              3], ["pkg", "2.0", NOW - 1, "new release", 4],
                             ["pkg", "2.0", NOW - 1, "remove release", 5],
                             ["other", "1.0", NOW - 1, "new release", 6]], hold=10, now=NOW)
        assert (r.held, r.applied) == (6, 0) and r.release_in == 5
    with db() as s, s.begin():
        r = store.flush(s, hold=10, now=NOW + 5)  # pkg's first row is due: all of pkg goes
        assert (r.applied, r.held, len(r.outbox)) == (5, 1, 1) and r.release_in == 4
    with db() as s:
        pkg = queries.package_state(s, "pkg")["versions"]
        assert set(pkg) == {"1.0"} and len(pkg["1.0"]["files"]) == 2
        events = [e for (batch,) in s.execute(text("SELECT events FROM outbox")) for e in batch]
        # one batch: build_dispatch folds 2.0's addition and removal into nothing to build
        plan = dispatch_logic.fold_events(events).versions
        assert plan[("pkg", "1.0")].buildable and not plan[("pkg", "2.0")].alive


def test_a_deletion_in_a_later_page_converges_whether_or_not_it_is_the_newest_row(db):
    """A package deletion newer than all its package holds reads none of its versions (they
    all die with it); one older than some of them (a late row) reads them all: both leave
    the catalog, and a consumer of the events, where the log in time order would."""
    log = [["pkg", None, 1000, "create", 1], ["pkg", "1.0", 1001, "new release", 2],
           ["pkg", "1.0", 1001, "add source file pkg-1.0.tar.gz", 3],
           ["pkg", "2.0", 1003, "new release", 4], ["pkg", "2.0", 1004, "yank release", 5],
           ["late", "1.0", 1001, "new release", 6], ["late", "2.0", 1005, "new release", 7],
           ["late", "2.0", 1005, "add source file late-2.0.tar.gz", 8]]
    pages = [log, [["pkg", None, 1010, "remove project", 9]],  # newest: 1.0 and 2.0 die
             [["pkg", "3.0", 1020, "new release", 10]],  # a new life
             [["late", None, 1003, "remove project", 11]]]  # 2.0 outlives it, 1.0 not
    seen = []
    for page in pages:
        seen += page
        with db() as s, s.begin():
            store.ingest(s, page, hold=FLUSH_ALL, now=NOW)
        with db() as s:
            assert catalog(s) == reference(valid_rows(seen))
            assert fold_events(outbox_events(s)) == reference(valid_rows(seen))


def test_live_upstream_is_released_by_the_wall_clock(db):
    with db() as s, s.begin():
        r = store.ingest(s, [["pkg", "1.0", NOW - 60, "new release", 1]], hold=300, now=NOW)
        assert r.held == 1
    with db() as s, s.begin():
        r = store.flush(s, hold=300, now=NOW + 241)
        assert (r.applied, r.held) == (1, 0)


def test_malformed_rows_are_recorded_and_skipped(db):
    bad = [
        ["pkg", "1.0", 1000, "new release"],  # wrong arity
        ["pkg", "1.0", None, "new release", 2],  # null timestamp
        ["pkg", "1.0", "yesterday", "new release", 3],
        ["pkg with space", "1.0", 1000, "new release", 4],
        ["pkg", "1.0", 1000, "frobnicate release", 5],
        ["pkg", "1.0", 10**12, "new release", 6],  # absurd timestamp
        ["pkg", "1.0", 1000, "new release", "7"],  # serial of the wrong type
        ["pkg", "1.0", 1000, "add source file ../../etc/passwd", 8],
        ["pkg", "1.0", 1000, "remove Owner someone", 9],  # valid, ignored: not a removal
        ["pkg", "1.0", "1000", "new release", 10],  # numeric string timestamp: accepted
    ]
    with db() as s, s.begin():
        r = store.ingest(s, bad, hold=FLUSH_ALL, now=NOW)
        assert (r.malformed, r.ignored, r.applied, r.last_serial) == (8, 1, 1, 10)
    with db() as s:
        recorded = dict(s.execute(text("SELECT coalesce(serial, -1), reason FROM malformed_rows")
                                  ).all())
        assert set(recorded) == {-1, 2, 3, 4, 5, 6, 8}
        assert "unknown action" in recorded[5]
        assert queries.package_state(s, "pkg")["versions"].keys() == {"1.0"}
    with db() as s, s.begin():  # re-reading the same rows records nothing new
        store.ingest(s, bad, hold=FLUSH_ALL, now=NOW)
    with db() as s:
        assert s.execute(text("SELECT count(*) FROM malformed_rows")).scalar() == 8


def test_package_state_shape_and_spelling(db):
    log = [["Foo_Bar", None, 100, "create", 1],
           ["foo-bar", "1.0", 101, "new release", 2],
           ["foo-bar", "1.0", 102, "add source file foo_bar-1.0.tar.gz", 3],
           ["foo-bar", "2.0", 103, "add cp311 file foo_bar-2.0-cp311-cp311-linux_armv7l.whl", 4],
           ["foo-bar", "1.0", 104, "yank release", 5]]
    with db() as s, s.begin():
        store.ingest(s, log, hold=FLUSH_ALL, now=NOW)
    with db() as s:
        state = queries.package_state(s, "FOO.bar")
    assert state["alive"] and state["name"] == "foo-bar" and state["display_name"] == "foo-bar"
    v1, v2 = state["versions"]["1.0"], state["versions"]["2.0"]
    assert v1["yanked"] and v1["buildable"] and v1["files"] == {
        "foo_bar-1.0.tar.gz": {"pyver": "source"}}
    assert not v2["yanked"] and not v2["buildable"]
    assert v2["unbuildable_reason"].startswith("binary-only")
    with db() as s:
        assert queries.package_state(s, "nope") == {"name": "nope", "alive": False, "versions": {}}


def test_a_page_out_of_turn_changes_nothing_and_waits_for_the_one_before(db):
    """The poller keeps two pages in flight; the second must not be stored first, or our
    place would pass rows that are not stored yet."""
    first = [["pkg", None, 1000, "create", 1], ["pkg", "1.0", 1001, "new release", 2]]
    second = [["pkg", "1.0", 1002, "yank release", 3]]
    with pytest.raises(store.OutOfTurn), db() as s, s.begin():
        store.store_page(s, store.parse_page(second, NOW), FLUSH_ALL, since=2)
    with db() as s:
        assert store.last_serial(s) == 0
        assert s.execute(text("SELECT count(*) FROM held_rows")).scalar() == 0
        assert queries.package_state(s, "pkg")["alive"] is False
    for page, since in ((first, 0), (second, 2)):
        with db() as s, s.begin():
            store.store_page(s, store.parse_page(page, NOW), FLUSH_ALL, since=since)
    with db() as s:
        assert store.last_serial(s) == 3
        assert queries.package_state(s, "pkg")["versions"]["1.0"]["yanked"] is True
