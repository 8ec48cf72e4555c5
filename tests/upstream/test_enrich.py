"""Requires-Python, yank reasons and summaries, which the changelog lacks, come from the JSON
API."""

import time

from sqlalchemy import text

from piw_services import events as ev
from piw_services.fake_pypi import FakePyPI
from piw_services.reorderer import queries, store
from piw_services.upstream.poller import Poller
from piw_services.upstream_client import UpstreamClient, user_agent
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
        fresh = queries.package_state(s, "fresh")["versions"]["1.0"]
        assert fresh["requires_python"] == ">=3.9"
        assert fresh["yanked"] and fresh["yanked_reason"] == "broken <on> Pi"
        assert queries.package_state(s, "fresh")["summary"] == "Fresh <wheels> & more"
        assert queries.package_state(s, "ancient")["versions"]["0.1"]["requires_python"] is None
        events = [e for (batch,) in s.execute(text("SELECT events FROM outbox ORDER BY seq"))
                  for e in batch if e["type"] == ev.VERSION_INFO]
    for event in events:
        ev.check_ordered_event(event)
    assert events == [{"type": "version_info", "package": "fresh", "version": "1.0",
                       "requires_python": ">=3.9", "yanked_reason": "broken <on> Pi",
                       "summary": "Fresh <wheels> & more"}]


def looked_up(db, package, version):
    with db() as s:
        return s.execute(text(
            "SELECT info_k > 0, info_failures, info_after > now() FROM versions "
            "WHERE package = :p AND version = :v"), {"p": package, "v": version}).one()


def test_a_failed_look_up_is_tried_again_later_never_marked_done(db):
    """Upstream answers 404 for 'lost' (gone from its JSON API, or a CDN's hiccup): tried again
    after a back-off, and after INFO_GIVE_UP tries taken as looked up with nothing, so its
    builds are not held back for ever."""
    now = int(time.time())
    served = [{"name": "kept", "version": "1.0", "timestamp": now - 600, "serial": 1,
               "action": "new release", "requires_python": ">=3.8"}]
    with FakePyPI(served).start() as upstream:
        poller = Poller(UpstreamClient(upstream.url), interval=10)
        last_serial, ingest = store_into(db)
        ingest([["kept", "1.0", now - 600, "new release", 1],
                ["lost", "1.0", now - 500, "new release", 2]], 0)()
        needing, save = info_into(db)
        assert poller.enrich(needing, save) == 2
        assert looked_up(db, "kept", "1.0") == (True, 0, None)
        assert looked_up(db, "lost", "1.0") == (False, 1, True)  # backing off
        assert needing(50, now - 86400) == []
        for tries in range(2, store.INFO_GIVE_UP + 1):
            with db() as s, s.begin():
                s.execute(text("UPDATE versions SET info_after = now() WHERE package = 'lost'"))
            assert needing(50, now - 86400) == [["lost", "1.0"]]
            assert poller.enrich(needing, save) == 1
            done = tries == store.INFO_GIVE_UP
            assert looked_up(db, "lost", "1.0") == ((True, 0, None) if done
                                                     else (False, tries, True))
        assert needing(50, now - 86400) == []


def test_a_version_with_a_build_waiting_is_looked_up_whatever_its_age(db):
    now = int(time.time())
    old = now - 400 * 86400
    events = [{"name": "ancient", "version": "0.1", "timestamp": old, "serial": 1,
               "action": "new release", "requires_python": ">=3.99"},
              {"name": "ancient", "version": "0.2", "timestamp": old + 1, "serial": 2,
               "action": "new release"}]
    with FakePyPI(events).start() as upstream:
        poller = Poller(UpstreamClient(upstream.url), interval=10, enrich_days=30)
        poller.poll(*store_into(db))
        with db() as s, s.begin():  # build_dispatch queued a build of 0.1 (its queue of record)
            s.execute(text("INSERT INTO build_targets (package, version, abi, state, job_id, "
                           "priority) VALUES ('ancient', '0.1', 'cp311-linux_armv7l', "
                           "'pending', 'j1', 1)"))
        needing, save = info_into(db)
        assert needing(50, now - 30 * 86400) == [["ancient", "0.1"]]
        assert poller.enrich(needing, save) == 1
    with db() as s:
        assert queries.package_state(s, "ancient")["versions"]["0.1"]["requires_python"] == \
            ">=3.99"


def test_a_quarantined_release_is_not_looked_up_until_cleared(db):
    """PyPI's JSON API answers 404 for a quarantined release: no look-up while it is; its
    clearing makes it due again (the details may have changed meanwhile)."""
    now = int(time.time())
    events = [{"name": "shady", "version": "1.0", "timestamp": now - 600, "serial": 1,
               "action": "new release", "requires_python": ">=3.7"},
              {"name": "shady", "version": "1.0", "timestamp": now - 590, "serial": 2,
               "action": "release quarantined"}]
    with FakePyPI(events).start() as upstream:
        poller = Poller(UpstreamClient(upstream.url), interval=10)
        poller.poll(*store_into(db))
        needing, save = info_into(db)
        assert needing(50, now - 86400) == []
        upstream.append([{"name": "shady", "version": "1.0", "timestamp": now - 580,
                          "action": "release quarantine cleared"}])
        poller.next_poll = 0
        poller.poll(*store_into(db))
        assert needing(50, now - 86400) == [["shady", "1.0"]]
        assert poller.enrich(needing, save) == 1
    with db() as s:
        assert queries.package_state(s, "shady")["versions"]["1.0"]["requires_python"] == ">=3.7"


def test_the_user_agent_names_the_operators_contact():
    assert "contact: ops@example.org" in user_agent("ops@example.org")
    assert "no contact configured" in user_agent("")
    assert "example" not in user_agent("")  # no placeholder URL


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
