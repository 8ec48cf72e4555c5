"""Download and search events, as the stats service receives them from RabbitMQ."""

import hashlib
import json
import time

import pytest
import requests
from nameko.testing.services import restrict_entrypoints

from piw_services.useragent import FIELDS
from piw_services.web.serve import SIMPLE_JSON
from piw_services.web.service import WebService
from tests.test_useragent import PIP
from tests.web.conftest import RECEIVED, SALT, WHEEL, WHEEL_V6, wait_until

CLIENT = "203.0.113.7"
EXPECTED_CLIENT = hashlib.blake2b(CLIENT.encode(), digest_size=16, key=SALT.encode()).hexdigest()


def events(kind):
    return [event for batch in RECEIVED[kind] for event in batch]


def settle(kind, count):
    """Wait for *count* events of *kind*, then a little longer to see that no more come."""
    wait_until(lambda: len(events(kind)) >= count)
    time.sleep(1.5)
    return events(kind)


def test_downloads(session):
    headers = {"User-Agent": PIP, "X-Forwarded-For": CLIENT}
    start = time.time()
    assert session.get(f"/simple/foo-bar/{WHEEL}", headers=headers).status_code == 200
    assert session.get(f"/simple/foo-bar/{WHEEL_V6}", headers=headers).status_code == 200
    r = session.get(f"/simple/foo-bar/{WHEEL}", headers={**headers, "Range": "bytes=0-9"})
    assert r.status_code == 206
    # not downloads: HEAD, 304, 416, metadata, pages, redirects, misses
    etag = r.headers["ETag"]
    assert session.head(f"/simple/foo-bar/{WHEEL}", headers=headers).status_code == 200
    assert session.get(f"/simple/foo-bar/{WHEEL}",
                       headers={**headers, "If-None-Match": etag}).status_code == 304
    assert session.get(f"/simple/foo-bar/{WHEEL}",
                       headers={**headers, "Range": "bytes=999999999-"}).status_code == 416
    assert session.get(f"/simple/foo-bar/{WHEEL}.metadata", headers=headers).status_code == 200
    assert session.get(f"/simple/Foo-Bar/{WHEEL}", headers=headers).status_code == 301
    assert session.get("/simple/foo-bar/nothing.whl", headers=headers).status_code == 404

    received = settle("downloads", 3)
    assert len(received) == 3
    assert [(e["filename"], e["status"]) for e in received] == [
        (WHEEL, 200), (WHEEL_V6, 200), (WHEEL, 206)]
    for event in received:
        assert set(event) == {"timestamp", "package", "filename", "status", "client", *FIELDS}
        assert event["package"] == "foo-bar"
        assert start <= event["timestamp"] <= time.time()
        assert event["client"] == EXPECTED_CLIENT
        assert event["installer_name"] == "pip"
        assert event["installer_version"] == "23.0.1"
        assert event["arch"] == "armv7l"
        assert event["distro_id"] == "bookworm"
        assert event["python_version"] == "3.11.2"
    payload = json.dumps(RECEIVED)
    assert CLIENT not in payload and "127.0.0.1" not in payload


@pytest.fixture
def untrusting(web_config):
    web_config["WEB_TRUSTED_PROXIES"] = "10.0.0.0/8"


def test_x_forwarded_for_is_believed_only_from_the_trusted_proxies(untrusting, session):
    """WEB_TRUSTED_PROXIES: here only 10.0.0.0/8, so this test's requests from 127.0.0.1 are
    counted for 127.0.0.1 whatever X-Forwarded-For claims."""
    headers = {"User-Agent": PIP, "X-Forwarded-For": CLIENT}
    assert session.get(f"/simple/foo-bar/{WHEEL}", headers=headers).status_code == 200
    [event] = settle("downloads", 1)
    assert event["client"] == hashlib.blake2b(b"127.0.0.1", digest_size=16,
                                              key=SALT.encode()).hexdigest()
    assert event["client"] != EXPECTED_CLIENT


def test_searches(session):
    plain = {"User-Agent": "curl/8.5.0"}
    assert session.get("/simple/foo-bar/", headers=plain).status_code == 200
    assert session.get("/simple/no-such-thing/", headers=plain).status_code == 404
    assert session.get("/simple/foo-bar/", headers={**plain, "Accept": SIMPLE_JSON}).ok
    assert session.get("/simple/foo-bar/",
                       headers={**plain, "Accept": "image/png"}).status_code == 406
    # not searches: redirects, HEAD, the root index, project pages
    assert session.get("/simple/Foo_Bar/", headers=plain).status_code == 301
    assert session.get("/simple/foo-bar", headers=plain).status_code == 301
    assert session.head("/simple/foo-bar/", headers=plain).status_code == 200
    assert session.get("/simple/", headers=plain).status_code == 200
    assert session.get("/project/foo-bar/", headers=plain).status_code == 200

    received = settle("searches", 4)
    assert [(e["package"], e["status"]) for e in received] == [
        ("foo-bar", 200), ("no-such-thing", 404), ("foo-bar", 200), ("foo-bar", 406)]
    for event in received:
        assert "filename" not in event
        assert event["installer_name"] == "curl"
        assert event["installer_version"] == "8.5.0"
        assert event["python_version"] is None
        # the peer itself (no proxy header), hashed
        assert event["client"] == hashlib.blake2b(b"127.0.0.1", digest_size=16,
                                                  key=SALT.encode()).hexdigest()
    assert "127.0.0.1" not in json.dumps(RECEIVED)
    assert not RECEIVED["downloads"]


def test_events_are_batched(session):
    for _ in range(60):
        assert session.get(f"/simple/foo-bar/{WHEEL}").status_code == 200
    received = settle("downloads", 60)
    assert len(received) == 60
    # one message a second, not one per download
    assert len(RECEIVED["downloads"]) < 20


def test_events_left_at_stop_are_sent(container_factory, web_config, listener):
    # without its timer, the service can only send what it holds when it stops (HTTP is a
    # dependency, not an entrypoint: it stays)
    container = container_factory(WebService, web_config)
    restrict_entrypoints(container, "status")
    container.start()
    session = requests.Session()
    base = "http://" + web_config["WEB_SERVER_ADDRESS"]
    assert session.get(f"{base}/simple/foo-bar/{WHEEL}").status_code == 200
    assert session.get(f"{base}/simple/foo-bar/").status_code == 200
    session.close()
    time.sleep(1.5)
    assert not RECEIVED["downloads"] and not RECEIVED["searches"]
    container.stop()
    assert len(settle("downloads", 1)) == 1
    assert len(settle("searches", 1)) == 1


def recorder(monkeypatch, max_pending=None):
    from unittest.mock import Mock

    from piw_services.web import service

    if max_pending:
        monkeypatch.setattr(service, "MAX_PENDING", max_pending)
    rec = service.StatsRecorder()
    rec.container = Mock(config={"STATS_SALT": SALT})
    rec.setup()
    return rec


def test_flush_keeps_events_while_the_broker_is_away(monkeypatch):
    from unittest.mock import ANY, Mock

    from nameko.testing.services import worker_factory

    from piw_services.web.serve import Hit

    rec = recorder(monkeypatch)
    rec.record(Hit("downloads", "foo", "foo-1.0-py3-none-any.whl"), 200,
               {"REMOTE_ADDR": "198.51.100.1"})
    rec.record(Hit("searches", "foo"), 404, {"REMOTE_ADDR": "198.51.100.1"})
    service = worker_factory(WebService, recorder=rec, dispatch=Mock(side_effect=OSError))
    service.flush()
    assert len(rec.pending["downloads"]) == 1 and len(rec.pending["searches"]) == 1
    service.dispatch.side_effect = None
    service.dispatch.reset_mock()
    service.flush()
    assert service.dispatch.call_count == 2
    service.dispatch.assert_any_call("downloads", [ANY])
    service.dispatch.assert_any_call("searches", [ANY])
    assert not rec.pending["downloads"] and not rec.pending["searches"]


def test_pending_events_are_bounded(monkeypatch):
    from piw_services.web.serve import Hit

    rec = recorder(monkeypatch, max_pending=5)
    for i in range(8):
        rec.record(Hit("searches", f"p{i}"), 200, {})
    assert [e["package"] for e in rec.pending["searches"]] == [f"p{i}" for i in range(3, 8)]
    batch = rec.take("searches")
    rec.record(Hit("searches", "new"), 200, {})
    rec.put_back("searches", batch)  # the newest held ones win over older failed ones
    assert [e["package"] for e in rec.pending["searches"]] == ["p4", "p5", "p6", "p7", "new"]


def test_random_salt_without_setting(monkeypatch):
    from unittest.mock import Mock

    from piw_services.web import service

    keys = set()
    for _ in range(2):
        rec = service.StatsRecorder()
        rec.container = Mock(config={})
        rec.setup()
        keys.add(rec.key)
    assert len(keys) == 2
