"""build_dispatch in a nameko container on a real RabbitMQ and PostgreSQL, with the test
speaking the builder's side of builders/protocol.py over kombu."""

import base64
import gzip
import json
import time
import uuid
from urllib.parse import urlsplit

import pytest
from amqp.exceptions import AccessRefused
from kombu import Connection, Exchange, Producer, Queue
from sqlalchemy import text

from builders import protocol
from piw_services import outbox, rabbit_users
from piw_services.build_dispatch.service import BuildDispatchService
from tests.conftest import wait_for

#: Issue 7's targets: cp311 for 32- and 64-bit Bookworm, cp313 for 64-bit Trixie.
TARGETS = [("cp311", "linux_armv7l", "bookworm"), ("cp311", "linux_aarch64", "bookworm"),
           ("cp313", "linux_aarch64", "trixie")]
ARMV7, AARCH64, CP313 = (f"{abi}-{platform}" for abi, platform, _ in TARGETS)


class RawBuilder:
    """The builder's side of the protocol, just enough for the master's tests."""

    def __init__(self, uri):
        self.conn = Connection(uri)
        self.channel = self.conn.channel()
        self.replies = Queue("", exclusive=True, auto_delete=True)(self.channel)
        self.replies.declare()
        self.producer = Producer(self.channel, exchange=Exchange(protocol.EXCHANGE),
                                 auto_declare=False)
        self.answers = {}
        self.consumer = self.conn.Consumer(self.replies, callbacks=[self._on_reply],
                                           no_ack=True, accept=["json"], auto_declare=False)
        self.consumer.consume()

    def _on_reply(self, body, message):
        self.answers[message.properties["correlation_id"]] = body

    def send(self, body, key=protocol.REQUESTS, **kwargs):
        self.producer.publish(body, routing_key=key, serializer="json", **kwargs)

    def ask(self, body, key=protocol.REQUESTS, timeout=15):
        cid = uuid.uuid4().hex
        self.send(body, key, reply_to=self.replies.name, correlation_id=cid)
        deadline = time.monotonic() + timeout
        while cid not in self.answers:
            assert time.monotonic() < deadline, f"no answer to {body}"
            try:
                self.conn.drain_events(timeout=0.5)
            except TimeoutError:
                pass
        return self.answers.pop(cid)

    def get_job(self, target, timeout=15):
        queue = Queue(protocol.job_queue(target), no_declare=True)(self.channel)
        msg = wait_for(lambda: queue.get(no_ack=False), timeout, what=f"a job on {target}")
        return msg

    def close(self):
        self.conn.release()


@pytest.fixture
def dispatch(container_factory, rabbit_config, db, db_url):
    config = dict(rabbit_config, DB_URL=db_url, BUILD_ABIS=",".join(
        f"{abi}:{platform}:{distro}" for abi, platform, distro in TARGETS),
                  BUILDER_SILENCE_LIMIT=2,
                  ENRICH_DAYS=0)  # no upstream here to read Requires-Python from: jobs go out
    container = container_factory(BuildDispatchService, config)
    container.start()
    builder = RawBuilder(rabbit_config["AMQP_URI"])
    yield builder
    builder.close()


def emit(db, events):
    with db() as s, s.begin():
        outbox.write(s, events)


def version_added(package, version, released=None):
    return {"type": "version_added", "package": package, "version": version, "life": 0,
            "released": released or int(time.time()), "buildable": True,
            "unbuildable_reason": None, "yanked": False, "yanked_reason": None,
            "quarantined": False}


def hello(builder, label="pi1", target=ARMV7):
    abi, platform = protocol.split_target(target)
    answer = builder.ask(protocol.hello(label, abi, {
        "platform": platform, "preinstalled": [], "python": "3.11.2"}))
    assert answer["ok"], answer
    return answer["builder_id"]


def test_job_claim_result_round_trip(dispatch, db):
    builder_id = hello(dispatch)
    emit(db, [version_added("foo", "1.0"),
              version_added("old", "0.1", released=int(time.time()) - 400 * 86400)])
    message = dispatch.get_job(ARMV7)
    job = protocol.check_job(message.payload)
    assert job["package"] == "foo"  # new releases first
    assert (job["target"], job["abi"], job["platform"]) == (ARMV7, "cp311", "linux_armv7l")
    assert message.properties["priority"] == 9
    assert message.properties["delivery_mode"] == 2
    answer = dispatch.ask(protocol.claim(builder_id, job["job_id"], False))
    assert answer == {"ok": True, "build": True, "reason": None}
    log = base64.b64encode(gzip.compress(b"built")).decode()
    info = {"filename": "foo-1.0-py3-none-any.whl", "size": 5, "sha256": "a" * 64,
            "requires_python": None, "requires_dist": [], "apt_depends": [],
            "unresolved": []}
    answer = dispatch.ask(protocol.result(builder_id, job["job_id"], "success", 2.0, log,
                                          [info], []))
    # a pure wheel settles every target of its Python tag, whatever the platform
    assert answer["ok"] and answer["satisfied"] == [AARCH64, CP313], answer
    message.ack()
    with db() as s:
        row = s.execute(text("SELECT status, duration, log_gz, files FROM builds")).one()
    assert row[0] == "success" and gzip.decompress(row[2]) == b"built"
    # the pure wheel made cp313's job for the same version a cheap drop
    other = protocol.check_job(dispatch.get_job(CP313).payload)
    while other["package"] != "foo":
        other = protocol.check_job(dispatch.get_job(CP313).payload)
    b2 = hello(dispatch, "pi2", CP313)
    answer = dispatch.ask(protocol.claim(b2, other["job_id"], False))
    assert answer == {"ok": True, "build": False,
                      "reason": f"already built (pure wheel built for {ARMV7})"}


def test_garbage_and_strangers_get_clear_refusals(dispatch, db):
    answer = dispatch.ask({"type": "claim", "builder_id": "x"})
    assert answer["ok"] is False and "builder_id" in answer["error"]
    assert answer["retry"] is False
    answer = dispatch.ask(["not", "an", "object"])
    assert answer["ok"] is False and "unknown request type" in answer["error"]
    answer = dispatch.ask(protocol.claim(4242, "nojob", False))
    assert answer == {"ok": True, "build": False,
                      "reason": "unknown builder 4242: say hello first"}
    # someone else's job result changes nothing
    b1, b2 = hello(dispatch, "pi1"), hello(dispatch, "pi2")
    emit(db, [version_added("foo", "1.0")])
    job = protocol.check_job(dispatch.get_job(ARMV7).payload)
    assert dispatch.ask(protocol.claim(b1, job["job_id"], False))["build"]
    answer = dispatch.ask(protocol.result(b2, job["job_id"], "success", 1.0, "", [], []))
    assert answer["ok"] is False and answer["job_lost"]
    assert "not being built by builder" in answer["error"]
    with db() as s:
        assert s.execute(text("SELECT count(*) FROM builds")).scalar_one() == 0


def test_heartbeats_keep_a_builder_alive_and_silence_marks_it_gone(dispatch, db):
    builder_id = hello(dispatch)
    readings = {"load": [0.5, 0.4, 0.3], "cpu_temperature": 51.2}
    dispatch.send(protocol.heartbeat(builder_id, "pi1", readings, None), protocol.STATUS)

    def state():
        with db() as s:
            return s.execute(text("SELECT state, readings FROM builders")).one()

    wait_for(lambda: state()[1] == readings, 10, what="heartbeat recorded")
    wait_for(lambda: state()[0] == "gone", 10, what="silent builder marked gone")
    dispatch.send(protocol.heartbeat(builder_id, "pi1", readings, None), protocol.STATUS)
    wait_for(lambda: state()[0] == "alive", 10, what="builder back")
    assert json.dumps(state()[1])


def drain(builder, target):
    """Every job waiting on the target's queue (acked)."""
    queue = Queue(protocol.job_queue(target), no_declare=True)(builder.channel)
    jobs = []
    while (message := queue.get(no_ack=True)) is not None:
        jobs.append(protocol.check_job(message.payload))
    return jobs


def test_each_target_queue_gets_only_its_jobs_and_a_platform_wheel_settles_only_its_own(
        dispatch, db):
    """Three targets (issue 7): each queue holds its own jobs; an aarch64 builder cannot claim
    an armv7l job; a result naming an aarch64 wheel for an armv7l job is a failed build with
    the reason; an aarch64 wheel settles only the aarch64 target."""
    emit(db, [version_added("foo", "1.0"), version_added("bar", "2.0")])

    def queued():
        with db() as s:
            return s.execute(text("SELECT abi, count(*) FROM build_targets "
                                  "WHERE state = 'queued' GROUP BY abi ORDER BY abi")).all()

    wait_for(lambda: queued() == [(AARCH64, 2), (ARMV7, 2), (CP313, 2)], 15,
             what="two jobs queued per target")
    for target in (ARMV7, AARCH64, CP313):
        jobs = wait_for(lambda t=target: drain(dispatch, t), 15, what=f"jobs on {target}")
        jobs += drain(dispatch, target)
        assert sorted((j["target"], j["package"]) for j in jobs) == [
            (target, "bar"), (target, "foo")]
    armv7, aarch64 = hello(dispatch, "pi32", ARMV7), hello(dispatch, "pi64", AARCH64)
    with db() as s:
        foo = {t: s.execute(text("SELECT job_id FROM build_targets WHERE package = 'foo' "
                                 "AND abi = :a"), {"a": t}).scalar_one()
               for t in (ARMV7, AARCH64, CP313)}
    answer = dispatch.ask(protocol.claim(aarch64, foo[ARMV7], False))
    assert answer == {"ok": True, "build": False,
                      "reason": f"job is for {ARMV7}, builder {aarch64} builds {AARCH64}"}
    assert dispatch.ask(protocol.claim(armv7, foo[ARMV7], False))["build"]

    def info(filename):
        return {"filename": filename, "size": 5, "sha256": "b" * 64, "requires_python": None,
                "requires_dist": [], "apt_depends": [], "unresolved": []}

    # an aarch64 wheel for an armv7l job settles nothing: the build failed, saying why
    answer = dispatch.ask(protocol.result(armv7, foo[ARMV7], "success", 1.0, "",
                                          [info("foo-1.0-cp311-cp311-linux_aarch64.whl")], []))
    assert answer["ok"] and answer["status"] == "failed" and answer["satisfied"] == [], answer
    with db() as s:
        assert s.execute(text("SELECT note FROM build_targets WHERE job_id = :j"),
                         {"j": foo[ARMV7]}).scalar_one() == (
            "foo-1.0-cp311-cp311-linux_aarch64.whl is built for linux_aarch64, but its job "
            f"is for linux_armv7l (target {ARMV7})")
    # an armv7l wheel settles armv7l only (the aarch64 builder builds its own)
    assert dispatch.ask(protocol.claim(aarch64, foo[AARCH64], False))["build"]
    answer = dispatch.ask(protocol.result(aarch64, foo[AARCH64], "success", 1.0, "",
                                          [info("foo-1.0-cp311-cp311-linux_aarch64.whl")], []))
    assert answer["ok"] and answer["satisfied"] == [], answer
    with db() as s:
        assert dict(s.execute(text("SELECT abi, state FROM build_targets "
                                   "WHERE package = 'foo'")).all()) == {
            ARMV7: "failed", AARCH64: "built", CP313: "queued"}


@pytest.fixture
def target_users(request, rabbit_config):
    """A RabbitMQ user per target with a builder's permissions (what piw-builder-user makes);
    yields {target: AMQP URI}."""
    port = urlsplit(request.config.getoption("RABBIT_API_URI")).port or 15672
    api, auth, vhost = rabbit_users.management_api(rabbit_config["AMQP_URI"], port)
    users = {t: f"piw-test-{t}-{uuid.uuid4().hex[:6]}" for t in (ARMV7, AARCH64)}
    for target, name in users.items():
        rabbit_users.add_user(api, auth, vhost, name, "pw",
                              protocol.builder_permissions(target))
    yield {t: rabbit_users.user_uri(rabbit_config["AMQP_URI"], name, "pw")
           for t, name in users.items()}
    for name in users.values():
        rabbit_users.remove_user(api, auth, name)


def test_a_builder_user_consumes_only_its_targets_queue(dispatch, db, target_users):
    """The broker enforces it: an aarch64 builder's user cannot read (get or consume) the
    armv7l queue, nor the armv7l one the aarch64 or cp313 queues; each reads its own."""
    emit(db, [version_added("foo", "1.0")])
    for target in (ARMV7, AARCH64, CP313):
        dispatch.get_job(target).reject(requeue=True)  # declared, and holding foo's job
    for mine, uri in target_users.items():
        builder = RawBuilder(uri)  # its reply queue and the builders' exchange: allowed
        try:
            abi, platform = protocol.split_target(mine)
            answer = builder.ask(protocol.hello(f"pi-{platform}", abi, {
                "platform": platform, "preinstalled": []}))
            assert answer["ok"], answer
            job = protocol.check_job(builder.get_job(mine).payload)
            assert job["target"] == mine
        finally:
            builder.close()
        for other in {ARMV7, AARCH64, CP313} - {mine}:
            name = protocol.job_queue(other)
            with Connection(uri) as conn, pytest.raises(AccessRefused, match=name):
                conn.channel().basic_get(name)
            with Connection(uri) as conn, pytest.raises(AccessRefused, match=name):
                conn.Consumer(Queue(name, no_declare=True), auto_declare=False).consume()


def test_the_old_build_abis_form_stops_the_service_at_start(container_factory, rabbit_config,
                                                            db_url):
    """``cp311:bookworm`` says nothing of the platform: the service does not start, and says
    what to write instead (rather than queue jobs for the master's own platform)."""
    container = container_factory(BuildDispatchService, dict(
        rabbit_config, DB_URL=db_url, BUILD_ABIS="cp311:bookworm"))
    with pytest.raises(ValueError, match=r"'cp311:bookworm' is not abi:platform:distro"
                                         r"\[:armv6\], e.g. cp311:linux_armv7l:bookworm"):
        container.start()
