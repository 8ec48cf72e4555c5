"""The poll loop against a real HTTP upstream (piw-fake-pypi) and the real store."""

import pytest
from sqlalchemy import text

from piw_services.fake_pypi import FakePyPI
from piw_services.reorderer import queries, store
from piw_services.upstream.poller import Poller, page_top
from piw_services.upstream_client import (
    RateLimited,
    Refused,
    Unavailable,
    UpstreamClient,
    UpstreamError,
    _retry_after,
    backoff_delay,
)

EVENTS = [{"name": f"pkg{i % 7}", "version": f"1.{i}", "timestamp": 1_000_000 + i,
           "action": "new release", "serial": i + 1} for i in range(25)]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def upstream():
    server = FakePyPI(EVENTS, page_size=10).start()
    yield server
    server.stop()


def make_poller(server, **kw):
    clock = Clock()
    return Poller(UpstreamClient(server.url, timeout=5), interval=10, clock=clock, **kw), clock


def store_into(db):
    def last_serial():
        with db() as s:
            return store.last_serial(s)

    def ingest(rows, since):
        with db() as s, s.begin():
            result = store.store_page(s, store.parse_page(rows), hold=-10**9,
                                      since=since).as_dict()
        return lambda: result
    return last_serial, ingest


def info_into(db):
    """The (needing, store) pair ``Poller.enrich`` takes, on the reorderer's store."""
    def needing(limit, since):
        with db() as s:
            return store.versions_needing_info(s, limit, since)

    def save(infos):
        with db() as s, s.begin():
            return store.set_version_info(s, infos)
    return needing, save


def test_pages_until_caught_up_and_never_loses_its_place(db, upstream):
    poller, clock = make_poller(upstream)
    assert poller.poll(*store_into(db)) == 25
    assert poller.pages == 3 and not poller.due()
    upstream.append([{"name": "late", "version": "1.0", "timestamp": 1_000_100,
                      "action": "new release"}])
    clock.now = 10
    assert poller.due() and poller.poll(*store_into(db)) == 1
    with db() as s:
        assert store.last_serial(s) == 26
        assert set(queries.package_state(s, "pkg3")["versions"]) == {"1.3", "1.10", "1.17", "1.24"}


@pytest.mark.parametrize("mode, error", [("429", RateLimited), ("fault", RateLimited),
                                         ("500", Unavailable), ("503", Unavailable),
                                         ("disabled", Refused), ("error", Refused)])
def test_client_sorts_failures(upstream, mode, error):
    upstream.fail_next(mode, 1, retry_after=7)
    with pytest.raises(error) as exc:
        UpstreamClient(upstream.url).changelog_since_serial(0)
    if error is RateLimited:  # what upstream said: Retry-After, or the fault's own text
        assert exc.value.retry_after == 7
    if error is Refused:  # says who refused what, and upstream's words
        assert str(exc.value).startswith("upstream refuses changelog_since_serial: fault "
                                         "-32500: ")
        assert ("deprecated" if mode == "disabled" else "application error") in str(exc.value)
    assert len(UpstreamClient(upstream.url).changelog_since_serial(0)) == 10


def test_a_turned_off_method_is_refused_not_rate_limited(upstream):
    """warehouse answers ``changelog`` (and list_packages...) with fault -32500 too."""
    with pytest.raises(Refused, match="use changelog_since_serial instead"):
        UpstreamClient(upstream.url)._call("changelog", 0)
    with pytest.raises(Refused, match="-32601"):
        UpstreamClient(upstream.url)._call("no_such_method")


def test_a_refusal_is_said_and_retried_slowly(db, upstream, caplog):
    poller, clock = make_poller(upstream, backoff_max=60, refused_retry=900)
    upstream.fail_next("disabled", 2)
    assert poller.poll(*store_into(db)) == 0
    assert poller.next_poll - clock.now == 900  # not the 1 s of a first back-off
    assert poller.status()["refused"].startswith(
        "upstream refuses changelog_since_serial: fault -32500: RuntimeError: This API has "
        "been deprecated")
    assert [r.levelname for r in caplog.records if "refuses" in r.getMessage()] == ["ERROR"]
    clock.now = poller.next_poll
    assert poller.poll(*store_into(db)) == 0 and poller.next_poll - clock.now == 900
    clock.now = poller.next_poll
    assert poller.poll(*store_into(db)) == 25
    assert poller.status()["refused"] is None and poller.failures == 0


def test_rate_limit_headers_alone_say_how_long():
    """A CDN-style 429 with only the RateLimit header (draft-ietf-httpapi-ratelimit-headers)."""
    class Answer:
        headers = {"RateLimit": '"xmlrpc.client";r=0;t=42'}
    assert _retry_after(Answer()) == 42


def test_backs_off_exponentially_then_resumes_where_it_was(db, upstream):
    poller, clock = make_poller(upstream, backoff_max=60)
    upstream.fail_next("500", 3)
    for expected in (1, 2, 4):
        assert poller.poll(*store_into(db)) == 0
        assert poller.next_poll - clock.now == expected
        clock.now = poller.next_poll
    upstream.fail_next("429", 1, retry_after=30)
    assert poller.poll(*store_into(db)) == 0
    assert poller.next_poll - clock.now == 30 and "429" in poller.last_error
    clock.now = poller.next_poll
    assert poller.poll(*store_into(db)) == 25 and poller.failures == 0


def test_failure_mid_replay_keeps_the_pages_already_stored(db, upstream):
    poller, clock = make_poller(upstream)
    last_serial, ingest = store_into(db)
    calls = []

    def flaky_ingest(rows, since):
        calls.append(len(rows))
        if len(calls) == 2:
            upstream.fail_next("fault", 1)
        return ingest(rows, since)

    assert poller.poll(last_serial, flaky_ingest) == 20  # third page refused by upstream
    with db() as s:
        assert store.last_serial(s) == 20
    clock.now = poller.next_poll
    assert poller.poll(last_serial, ingest) == 5


def test_unreachable_upstream_is_a_backoff_not_a_crash(db):
    poller = Poller(UpstreamClient("http://127.0.0.1:9", timeout=2), clock=Clock())
    assert poller.poll(*store_into(db)) == 0
    assert poller.failures == 1 and "Unavailable" in poller.last_error


def test_backoff_delay_is_capped_and_honours_retry_after():
    assert [backoff_delay(n, cap=10) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert backoff_delay(1, retry_after=5) == 5
    assert backoff_delay(1, retry_after=10**6, cap=300) == 300


def test_page_top_reads_only_usable_serials():
    assert page_top([["a", None, 1, "create", 5], ["bad"], ["b", None, 1, "x", True]], 3) == 5
    assert page_top([["bad"]], 3) == 3


def test_upstream_error_on_garbage_answer(upstream):
    client = UpstreamClient(upstream.url + "/nothing-here")
    with pytest.raises(UpstreamError):
        client.changelog_since_serial(0)


def test_rows_without_a_readable_serial_do_not_loop_forever(db):
    events = EVENTS[:3] + [{"raw": ["junk", None, 1, "create"], "serial": 4}]
    with FakePyPI(events).start() as server:
        poller, clock = make_poller(server)
        assert poller.poll(*store_into(db)) == 5  # 4 rows, then the unreadable one again
        clock.now = poller.next_poll
        assert poller.poll(*store_into(db)) == 1  # asked again, recorded once, no hot loop
        assert server.stats()["xmlrpc_calls"] == 3
    with db() as s:
        assert store.last_serial(s) == 3
        assert s.execute(text("SELECT count(*) FROM malformed_rows")).scalar() == 1
