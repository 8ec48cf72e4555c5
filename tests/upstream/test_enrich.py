"""Requires-Python, yank reasons and summaries, which the changelog lacks, come from the JSON
API."""

import time

from sqlalchemy import text

from piw_services import events as ev
from piw_services.fake_pypi import FakePyPI
from piw_services.reorderer import store
from piw_services.upstream.poller import Poller
from piw_services.upstream_client import UpstreamClient
from tests.upstream.test_poller import info_into, store_into


def test_recent_versions_get_requires_python_and_yank_reason(db):
    now = int(time.time())
    old = now - 90 * 86400
    events = [
        {"name": "Fresh", "version": "1.0", "timestamp": now - 600, "action": "new release",
         "requires_python": ">=3.9", "summary": "Fresh <wheels> & more"},
        {"name": "Fresh", "version": "1.0", "timestamp": now - 600,
         "action": "add source file fresh-1.0.tar.gz", "requires_python": ">=3.9"},
        {"name": "Fresh", "version": "1.0", "timestamp": now - 500, "action": "yank release",
         "yanked_reason": "broken <on> Pi"},
        {"name": "ancient", "version": "0.1", "timestamp": old, "action": "new release",
         "requires_python": ">=2.7"},
        {"name": "ancient", "version": "0.1", "timestamp": old,
         "action": "add source file ancient-0.1.tar.gz", "requires_python": ">=2.7"},
    ]
    events = [{**e, "serial": i + 1} for i, e in enumerate(events)]
    with FakePyPI(events).start() as upstream:
        poller = Poller(UpstreamClient(upstream.url), interval=10, enrich_days=30)
        last_serial, ingest = store_into(db)
        poller.poll(last_serial, ingest)

        needing, save = info_into(db)

        assert needing(50, now - 30 * 86400) == [["fresh", "1.0"]]
        assert poller.enrich(needing, save) == 1
        assert poller.enrich(needing, save) == 0  # nothing left to look up
    with db() as s:
        fresh = store.package_state(s, "fresh")["versions"]["1.0"]
        assert fresh["requires_python"] == ">=3.9"
        assert fresh["yanked"] and fresh["yanked_reason"] == "broken <on> Pi"
        assert store.package_state(s, "fresh")["summary"] == "Fresh <wheels> & more"
        assert store.package_state(s, "ancient")["versions"]["0.1"]["requires_python"] is None
        events = [e for (batch,) in s.execute(text("SELECT events FROM outbox ORDER BY seq"))
                  for e in batch if e["type"] == ev.VERSION_INFO]
    for event in events:
        ev.check_ordered_event(event)
    assert events == [{"type": "version_info", "package": "fresh", "version": "1.0",
                       "requires_python": ">=3.9", "yanked_reason": "broken <on> Pi",
                       "summary": "Fresh <wheels> & more"}]


def test_json_api_failure_backs_off(db):
    now = int(time.time())
    events = [{"name": "p", "version": "1.0", "timestamp": now - 600, "action": "new release",
               "serial": 1}]
    with FakePyPI(events).start() as upstream:
        poller = Poller(UpstreamClient(upstream.url), interval=10)
        poller.poll(*store_into(db))

        needing, _ = info_into(db)

        poller.client.base_url = "http://127.0.0.1:9"  # upstream gone
        assert poller.enrich(needing, lambda infos: 0) == 0
        assert poller.failures == 1 and not poller.due()
        poller.client.base_url = upstream.url
        assert poller.enrich(needing, lambda infos: 0) == 0  # backing off: not even asked
