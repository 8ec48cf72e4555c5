"""A builder that sends garbage in a loop (issue 18, item 4), against the real master over
RabbitMQ: its refusals are logged once a minute, not once each with a traceback; past
BUILDER_REFUSAL_LIMIT in a minute it is cut off (permissions revoked, connections closed) and
listed on /status/ until an operator's piw-unblock; a sender without user_id is never blocked,
and a well-behaved builder user is untouched."""

import json
import subprocess
import uuid

import pytest
from amqp.exceptions import AccessRefused, ConnectionForced
from kombu import Connection, Exchange, Producer

from builders import protocol
from piw_services.cli import builder_user as builder_user_cli
from tests.conftest import BIN, wait_for
from tests.e2e.conftest import release, system, upstream_packages  # noqa: F401
from tests.hostile.conftest import tried

pytestmark = pytest.mark.slow

LIMIT = 20
GARBAGE = {"type": "hello", "label": "x" * 500, "abi": "cp311", "platform": "linux_armv7l",
           "preinstalled": []}


@pytest.fixture
def make_user(piw_env, monkeypatch, capsys):
    """RabbitMQ users with a builder's permissions (piw-builder-user); returns the URI."""
    made = []
    monkeypatch.setenv("PIW_AMQP_URI", piw_env["PIW_AMQP_URI"])

    def make():
        name = f"piw-abuse-{uuid.uuid4().hex[:8]}"
        assert builder_user_cli.main([name]) == 0
        made.append(name)
        [uri] = [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines()
                 if line.startswith("AMQP_URI: ")]
        return name, uri

    yield make
    for name in made:
        builder_user_cli.main([name, "--remove"])


def send(conn, body, n, user_id):
    producer = Producer(conn.channel(), exchange=Exchange(protocol.EXCHANGE),
                        auto_declare=False)
    for _ in range(n):
        producer.publish(body, routing_key=protocol.REQUESTS, serializer="json",
                         **({"user_id": user_id} if user_id else {}))
        tried("builder messages")


def connects(uri):
    try:
        with Connection(uri, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=0)
            conn.channel()
        return True
    except (AccessRefused, ConnectionForced, OSError) as exc:
        return str(exc) or type(exc).__name__
    except Exception as exc:  # kombu's OperationalError around a refused vhost
        return str(exc) or type(exc).__name__


def test_a_builder_sending_garbage_is_logged_once_blocked_and_unblocked(
        system, processes, piw_env, rpc, make_user):  # noqa: F811
    system.start(release("calm", "1.0", 1, "pure"), PIW_BUILDER_REFUSAL_LIMIT=str(LIMIT),
                 PIW_STATS_PAGE_INTERVAL="1")
    bad, bad_uri = make_user()
    good, good_uri = make_user()
    good_conn = Connection(good_uri)
    good_conn.ensure_connection(max_retries=0)

    # a sender without user_id (the test's guest user, also the master's): counted, logged
    # once, never blocked
    with Connection(piw_env["PIW_AMQP_URI"]) as conn:
        send(conn, GARBAGE, LIMIT + 5, None)
    # the bad builder: refused LIMIT times within the minute, then cut off
    bad_conn = Connection(bad_uri)
    bad_conn.ensure_connection(max_retries=0)
    send(bad_conn, GARBAGE, LIMIT, bad)
    wait_for(lambda: [b["user"] for b in rpc.stats.status()["blocked"]] == [bad], 60,
             what="the bad builder listed as blocked")
    refused = connects(bad_uri)
    assert refused is not True and "access" in refused.lower(), refused
    with pytest.raises(Exception):  # noqa: B017 - its connection was closed by the broker
        send(bad_conn, GARBAGE, 1, bad)
        bad_conn.drain_events(timeout=5)
    [blocked] = rpc.stats.status()["blocked"]
    assert blocked["refusals"] == LIMIT and "label must be 1-100" in blocked["reason"]
    status_json = system.www / "status" / "status.json"
    wait_for(lambda: json.loads(status_json.read_text())["blocked"], 30,
             what="/status/ to list it")
    html = (system.www / "status" / "index.html")
    wait_for(lambda: html.exists() and bad in html.read_text(), 30, what="the status page")
    # the well-behaved user lost nothing
    assert connects(good_uri) is True
    send(good_conn, protocol.heartbeat(1, "good", {}, None), 1, good)

    log = processes.log("master")
    assert log.count(f"refused a message from {bad} on piw.requests") == 1, log
    assert log.count("refused a message from unnamed senders on piw.requests") == 1, log
    assert "sender cannot be told apart, so it is not blocked" in log
    assert "Traceback" not in log and "label must be 1-100" in log
    assert f"blocked builder user {bad} after {LIMIT} refused messages" in log
    # the rest of the minute is one line each
    wait_for(lambda: f"refused {LIMIT - 1} more messages from {bad}" in processes.log("master")
             and "refused 24 more messages from unnamed senders" in processes.log("master"),
             90, interval=2, what="the minute's summaries",
             describe=lambda: processes.log("master")[-3000:])

    # the operator lets it back in
    run = subprocess.run([str(BIN / "piw-unblock"), "-y", "nobody-blocked"], env=piw_env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "nobody-blocked is not blocked" in run.stderr, run.stderr
    run = subprocess.run([str(BIN / "piw-unblock"), "-y", bad], env=piw_env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"unblocked {bad}" in run.stderr + run.stdout
    assert rpc.stats.status()["blocked"] == []
    assert connects(bad_uri) is True
    good_conn.release()
    bad_conn.release()
