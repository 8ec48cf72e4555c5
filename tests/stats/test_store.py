"""The stats store on a real PostgreSQL: events made by the web service's own make_event from
real User-Agent headers, ingested, reported; heartbeats, pruning, an operator's removal."""

import json
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from piw_services.admin import actions
from piw_services.build_dispatch import store as dispatch
from piw_services.stats import queries, store
from piw_services.web.serve import Hit, make_event, salt_key
from tests.admin.test_actions import build, feed, release_rows
from tests.test_useragent import PIP, UV

#: build targets (ABI on a platform), as build_dispatch keys them
CP311 = "cp311-linux_armv7l"
CP313 = "cp313-linux_armv7l"

KEY = salt_key("test")
PIP_AARCH64 = PIP.replace('"armv7l"', '"aarch64"').replace('"3.11.2"', '"3.9.2"')
WHEEL = "numpy-1.26.4-cp311-cp311-linux_armv7l.whl"


def download(package="numpy", filename=WHEEL, agent=PIP, when=None, client="192.0.2.1",
             status=200):
    environ = {"REMOTE_ADDR": client, "HTTP_USER_AGENT": agent}
    return make_event(Hit("downloads", package, filename), status, environ, KEY,
                      time.time() if when is None else when)


def search(package, agent=PIP, status=200, when=None):
    environ = {"REMOTE_ADDR": "192.0.2.9", "HTTP_USER_AGENT": agent}
    return make_event(Hit("searches", package), status, environ, KEY,
                      time.time() if when is None else when)


def counts(rows):
    return {c.label: c.count for c in rows}


def ingest(db, kind, events):
    with db() as s, s.begin():
        return (store.ingest_downloads if kind == "downloads" else store.ingest_searches)(
            s, events)


def test_pip_uv_curl_and_garbage_agents_are_counted_by_what_they_say(db):
    events = [download(agent=PIP) for _ in range(3)] + [
        download(agent=PIP_AARCH64), download(agent=UV), download(agent="curl/8.5.0"),
        download(agent="\x00garbage{{{"), download(agent=None),
        download("gpiozero", "gpiozero-2.0-py3-none-any.whl")]
    assert ingest(db, "downloads", events) == 9
    with db() as s:
        report = store.report(s)
    assert report.downloads_total == report.downloads_window == 9
    assert report.downloads_per_day[-1] == (datetime.now(UTC).date(), 9)
    assert len(report.downloads_per_day) == 30
    assert counts(report.top_packages) == {"numpy": 8, "gpiozero": 1}
    assert counts(report.installers) == {"pip": 5, "uv": 1, "curl": 1, "unknown": 2}
    assert counts(report.architectures) == {"armv7l": 4, "aarch64": 2, "unknown": 3}
    pythons = {s.label: sum(n for _, n in s.points) for s in report.python_versions}
    assert pythons == {"3.11": 4, "3.9": 1, "3.12": 1, "unknown": 3}
    distros = {s.label: sum(n for _, n in s.points) for s in report.distros}
    assert distros == {"Raspbian GNU/Linux 12": 5, "Debian GNU/Linux 12": 1, "unknown": 3}
    with db() as s:
        one = queries.package_downloads(s, "numpy")
    assert (one["window"], one["all"], one["per_day"][-1][1]) == (8, 8, 8)


def test_a_redelivered_batch_is_counted_once(db):
    batch = [download(client=f"192.0.2.{i}") for i in range(50)]
    assert ingest(db, "downloads", batch) == 50
    assert ingest(db, "downloads", batch) == 0
    assert ingest(db, "downloads", batch[:10] + [download(), download()]) == 2
    assert ingest(db, "downloads", batch + batch) == 0  # duplicates inside one batch too
    with db() as s:
        report = store.report(s)
        raw = s.execute(text("SELECT count(*) FROM downloads")).scalar()
    assert report.downloads_total == raw == 52
    assert counts(report.installers) == {"pip": 52}


def test_bad_events_are_dropped_and_the_rest_of_the_batch_kept(db, caplog):
    good = download()
    bad = [None, "x", [], {}, dict(good, timestamp="now"), dict(good, timestamp=float("nan")),
           dict(good, timestamp=10), dict(good, package="../etc"), dict(good, package="x" * 999),
           dict(good, filename=None), dict(good, filename="f" * 5000),
           dict(good, status="200"), dict(good, status=True), dict(good, client=["a"]),
           dict(good, python_version="3" * 10_000), dict(good, arch={"x": 1})]
    assert ingest(db, "downloads", [*bad, good]) == 1
    assert "dropped 16 malformed download events" in caplog.text
    assert ingest(db, "downloads", {"not": "a list"}) == 0
    assert ingest(db, "searches", [None, search("numpy")]) == 1


def test_days_and_months_are_utc_and_history_outlives_the_window(db):
    old = time.time() - 90 * 86400
    ingest(db, "downloads", [download(when=old), download(when=old + 1), download()])
    with db() as s:
        report = store.report(s, days=30)
        one = queries.package_downloads(s, "numpy", days=7)
    assert (report.downloads_total, report.downloads_window) == (3, 1)
    assert counts(report.top_packages_all_time) == {"numpy": 3}
    assert (one["window"], one["all"], len(one["per_day"])) == (1, 3, 7)


def test_searches_without_wheels_are_what_users_want_and_we_lack(db):
    with db() as s, s.begin():
        s.execute(text(
            "INSERT INTO files (filename, package, version, abi, job_id, size, sha256, "
            "requires_dist, apt_depends, unresolved) VALUES ('numpy-1-py3-none-any.whl', "
            "'numpy', '1', 'cp311-linux_armv7l', 'j', 1, 'x', '[]', '[]', '[]')"))
    ingest(db, "searches", [search("numpy"), search("tensorflow", status=404),
                            search("tensorflow", status=404), search("Some_Thing")])
    with db() as s:
        assert counts(store.report(s).searches_without_wheels) == {
            "tensorflow": 2, "some-thing": 1}


def test_an_operators_removal_deletes_the_versions_downloads(db):
    with db() as s, s.begin():
        dispatch.sync_abis(s, [(CP311, "bookworm")])
        feed(s, release_rows("foo", "1.0", "2.0"))
        build(s, "foo", "1.0", CP311)
    ingest(db, "downloads", [
        download("foo", "foo-1.0.0-py3-none-any.whl"), download("foo", "foo-1.0-py3-none-any.whl"),
        download("foo", "foo-1.0-py3-none-any.whl", agent=UV),
        download("foo", "foo-2.0-py3-none-any.whl"), download()])
    with db() as s, s.begin():
        actions.remove(s, "foo", "1.0")
    with db() as s:
        report = store.report(s)
        left = s.execute(text("SELECT filename FROM downloads WHERE package = 'foo'")).scalars()
        assert list(left) == ["foo-2.0-py3-none-any.whl"]
        assert not s.execute(text("SELECT * FROM download_dims_daily WHERE count <= 0")).all()
    assert counts(report.top_packages) == {"numpy": 1, "foo": 1}
    assert report.downloads_total == 2
    assert counts(report.installers) == {"pip": 2}


def heartbeat_msg(builder_id, temp=50.0, job=None):
    return {"type": "heartbeat", "builder_id": builder_id, "label": "pi",
            "readings": {"cpu_temperature": temp, "load_average": [1.5, 1, 1],
                         "memory": {"total": 1000, "available": 250, "swap_total": 0,
                                    "swap_free": 0},
                         "disk": {"total": 100, "free": 90}},
            "job": job}


def test_status_shows_builders_their_readings_queues_and_prunes(db):
    from tests.build_dispatch.test_store import hello

    with db() as s, s.begin():
        dispatch.sync_abis(s, [(CP311, "bookworm"), (CP313, "trixie")])
        feed(s, release_rows("foo", "1.0"))
        b = hello(s, "pi-1", CP311)
        store.record_heartbeat(s, heartbeat_msg(b, job={"package": "foo", "version": "1.0"}))
        store.record_heartbeat(s, heartbeat_msg(b, temp=60.0))
        store.record_heartbeat(s, {"builder_id": b, "readings": {"memory": "junk",
                                                                 "load_average": "x"}})
        store.record_master(s, {"cpu_temperature": None, "load_average": [0.5, 0, 0],
                                "memory": {"total": 4, "available": 1},
                                "disk": {"total": 10, "free": 5}}, behind=7,
                            upstream_problem="upstream refuses changelog_since_serial: no")
        s.execute(text("INSERT INTO malformed_rows (serial, reason, raw) VALUES "
                       "(5, 'unknown action ''frobnicate''', '[]'), (NULL, 'bad serial', '1')"))
        s.execute(text("UPDATE builder_readings SET at = now() - interval '9 days' "
                       "WHERE temperature = 60"))
    with db() as s:
        status = store.status(s, hours=6, silence_limit=60)
    (builder,) = status.builders
    assert (builder.label, builder.abi, builder.state) == ("pi-1", CP311, "alive")
    assert len(builder.readings) == 1  # the 9-day-old one is outside the window; junk: nulls
    r = builder.readings[0]
    assert r.cpu_temperature == 50.0 and r.load1 == 1.5 and r.memory_used == 0.75
    assert r.swap_used is None and abs(r.disk_used - 0.1) < 1e-9
    assert status.master.behind_upstream == 7
    assert status.master.upstream_problem == "upstream refuses changelog_since_serial: no"
    assert status.master.malformed_rows == 2
    assert status.master.malformed_latest == ((None, "bad serial"),
                                              (5, "unknown action 'frobnicate'"))
    assert counts(status.master.queues) == {CP311: 1, CP313: 1}
    assert status.master.readings[0].memory_used == 0.75
    with db() as s, s.begin():
        assert store.prune(s, 7) == 1
        assert s.execute(text("SELECT count(*) FROM builder_readings")).scalar() == 2
    json = store.as_json(status)
    assert json["builders"][0]["readings"][0]["at"].startswith(
        str((datetime.now(UTC) - timedelta(hours=1)).year))


def test_the_index_shows_a_packages_downloads(db):
    from piw_services.index import data, render

    with db() as s, s.begin():
        dispatch.sync_abis(s, [(CP311, "bookworm")])
        feed(s, release_rows("foo", "1.0"))
        build(s, "foo", "1.0", CP311)
    old = time.time() - 60 * 86400
    ingest(db, "downloads", [download("foo", "foo-1.0-py3-none-any.whl"),
                             download("foo", "foo-1.0-py3-none-any.whl", when=old)])
    with db() as s:
        assert [(p.name, p.downloads_30d, p.downloads_all)
                for p in data.indexed_projects(s)] == [("foo", 1, 2)]
        project, _ = data.load_project(s, "foo")
    downloads = json.loads(render.project_json(project))["downloads"]
    assert (downloads["30d"], downloads["all"], len(downloads["per_day"])) == (1, 2, 30)
    assert downloads["per_day"][-1] == [datetime.now(UTC).date().isoformat(), 1]
    assert "Downloads: 1 in the last 30 days, 2 in all" in render.project_html(
        project, data.site_info(s, ""))
