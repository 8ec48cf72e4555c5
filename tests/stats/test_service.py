"""The stats service in a nameko container on real RabbitMQ and PostgreSQL: web events and
builder heartbeats in, RPC answers and the JSON files of the www tree out."""

import json

import pytest
from nameko.standalone.events import event_dispatcher
from sqlalchemy import text

from builders import protocol
from piw_services.build_dispatch.service import BuildDispatchService
from piw_services.index.service import IndexService
from piw_services.stats.service import StatsService
from tests.build_dispatch.test_service import RawBuilder, hello
from tests.conftest import wait_for
from tests.index.test_service import ingest, rows
from tests.stats.test_store import download, heartbeat_msg, search
from tests.test_useragent import UV


@pytest.fixture
def stats(container_factory, rabbit_config, db, db_url, tmp_path):
    config = dict(rabbit_config, DB_URL=db_url, WWW=str(tmp_path / "www"),
                  STATS_PAGE_INTERVAL=0.5, STATS_SAMPLE_INTERVAL=0.5)
    container_factory(StatsService, config).start()
    return tmp_path / "www"


def test_web_events_are_counted_once_and_reach_rpc_and_json(stats, rabbit_config, rpc):
    dispatch = event_dispatcher(rabbit_config)
    batch = [download() for _ in range(5)] + [download("gpiozero", agent=UV),
                                              download(agent="curl/8.5.0")]
    dispatch("web", "downloads", batch)
    dispatch("web", "downloads", batch)  # redelivered: counts nothing more
    dispatch("web", "downloads", [None, {"timestamp": "x"}])  # dropped, never a crash
    dispatch("web", "searches", [search("tensorflow", status=404)])
    wait_for(lambda: rpc.stats.report()["downloads_total"] == 7, 15, what="downloads counted")
    report = rpc.stats.report(days=7)
    assert len(report["downloads_per_day"]) == 7
    assert report["top_packages"] == [{"label": "numpy", "count": 6},
                                      {"label": "gpiozero", "count": 1}]
    assert {c["label"]: c["count"] for c in report["installers"]} == {
        "pip": 5, "uv": 1, "curl": 1}
    assert rpc.stats.package_downloads("gpiozero")["all"] == 1

    def stats_json():
        path = stats / "stats" / "stats.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        return data if data.get("searches_without_wheels") else None
    data = wait_for(stats_json, 15, what="stats.json with the counts")
    assert data["downloads_total"] == 7
    assert data["searches_without_wheels"] == [{"label": "tensorflow", "count": 1}]
    def disk_used():  # the first sample may precede the www tree itself
        readings = json.loads((stats / "status" / "status.json").read_text())["master"][
            "readings"]
        return readings and readings[-1]["disk_used"]
    assert 0 < wait_for(disk_used, 15, what="status.json with master readings") <= 1
    assert rpc.stats.status()["master"]["readings"]


def test_a_heartbeat_reaches_build_dispatch_and_the_stats(stats, container_factory,
                                                          rabbit_config, db, db_url):
    container_factory(BuildDispatchService, dict(
        rabbit_config, DB_URL=db_url, BUILD_ABIS="cp311:linux_armv7l:bookworm")).start()
    builder = RawBuilder(rabbit_config["AMQP_URI"])
    try:
        builder_id = hello(builder)
        builder.send(heartbeat_msg(builder_id, temp=61.5), protocol.STATUS)
    finally:
        builder.close()

    def seen():
        with db() as s:
            registry = s.execute(text("SELECT readings FROM builders WHERE id = :b"),
                                 {"b": builder_id}).scalar()
            ours = s.execute(text("SELECT temperature FROM builder_readings "
                                  "WHERE builder_id = :b"), {"b": builder_id}).all()
        return registry and ours and (registry["cpu_temperature"], ours)
    assert wait_for(seen, 15, what="the heartbeat in both") == (61.5, [(61.5,)])


def test_downloads_reach_the_index_pages_by_an_event(container_factory, rabbit_config, db,
                                                    db_url, tmp_path):
    """stats owns the download counts and the index owns its pages: stats names the packages
    downloaded since last time in a downloads_changed event, and the index rewrites them."""
    www = tmp_path / "www"
    ingest(db, rows(("numpy", None, "create"), ("numpy", "1.0", "new release")))
    container_factory(IndexService, dict(rabbit_config, DB_URL=db_url, WWW=str(www))).start()
    config = dict(rabbit_config, DB_URL=db_url, WWW=str(www), STATS_INDEX_INTERVAL=0.2,
                  STATS_PAGE_INTERVAL=3600, STATS_SAMPLE_INTERVAL=3600)
    container_factory(StatsService, config).start()

    def counts():
        path = www / "project" / "numpy" / "json" / "index.json"
        data = json.loads(path.read_text()) if path.exists() else None
        return data and [data["downloads"]["30d"], data["downloads"]["all"]]
    assert wait_for(counts, 20, what="numpy's project page") == [0, 0]
    event_dispatcher(rabbit_config)("web", "downloads", [download() for _ in range(3)])
    assert wait_for(lambda: counts() == [3, 3] and counts(), 20,
                    what="the downloads on numpy's project page") == [3, 3]
