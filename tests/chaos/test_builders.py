"""Misbehaving builders against the running system: one that vanishes mid-build (kill -9), one
that lies. The liar says hello like a real Pi, takes a job from the queue, and then sends
garbage (bytes that are no message, pickles, messages of the wrong shape), the result and a file
for a job a real builder holds, and a file ten times larger than it announced; then it drops its
connection without a word.

Each is refused and logged, and harms nothing: the vanished builder is marked gone and its job
built by another, the liar's job goes back to the queue and is built by a real builder, every
release is built exactly once, and piw-audit is clean. What the master answers a single bad
message is the business of tests/build_dispatch, tests/file_manager and tests/hostile; here the
bad messages come in the middle of real builds."""

import hashlib
import os
import pickle
import re
import time
import uuid

import pytest
from kombu import Queue
from sqlalchemy import text

from builders import protocol
from tests.build_dispatch.test_service import RawBuilder
from tests.chaos.conftest import assert_builds_and_files_agree
from tests.conftest import wait_for
from tests.e2e.conftest import release
from tests.fake_pypi.fake_pypi_helpers import write_sdist
from tests.file_manager.conftest import FakeBuilder, info_of
from tests.file_manager.conftest import wheel as make_test_wheel

pytestmark = pytest.mark.slow

#: setup.py of a build that takes a few seconds: time to kill its builder in the middle.
SLOW_SETUP = """\
import time
time.sleep(3)
from setuptools import setup
setup(name="{name}", version="1.0", py_modules=[])
"""


class Liar:
    """A builder that does not follow the protocol: requests through the build_dispatch
    tests' ``RawBuilder``, uploads through the file_manager tests' ``FakeBuilder``, both speaking
    builders/protocol.py, plus raw bytes that are not messages at all."""

    def __init__(self, uri):
        self.requests, self.uploads = RawBuilder(uri), FakeBuilder(uri)

    def raw(self, key, body, content_type):
        """Publish *body* as it is, with a content type that does not describe it."""
        self.requests.producer.publish(body, routing_key=key, content_type=content_type,
                                       content_encoding="binary")

    def queue_depth(self, name):
        return self.requests.channel.queue_declare(queue=name, passive=True).message_count

    def close(self):
        self.requests.close()
        self.uploads.close()


def targets(db):
    with db() as s:
        return {r.package: r for r in s.execute(text(
            "SELECT package, abi, state, job_id, builder_id FROM build_targets"))}


def builder_row(db, label):
    with db() as s:
        return s.execute(text("SELECT id, abi, info, preinstalled, state FROM builders "
                              "WHERE label = :l"), {"l": label}).one()


def test_a_vanished_builder_and_a_lying_one_harm_nothing(system, db, processes,
                                                        upstream_packages, tmp_path):
    victim = f"victim{uuid.uuid4().hex[:6]}"  # the session's upstream sdists are shared
    write_sdist(upstream_packages, victim, "1.0", {"setup.py": SLOW_SETUP.format(name=victim)})
    plain = ["plainb", "plainc"]
    # the plain releases are years old: the victim, a new release, is built first
    old = int(time.time()) - 400 * 86400
    system.start(release(plain[0], "1.0", 1, "pure", t0=old)
                 + release(plain[1], "1.0", 10, "pure", t0=old) + release(victim, "1.0", 20),
                 PIW_BUILDER_SILENCE_LIMIT="3")
    wait_for(lambda: {t.state for t in targets(db).values()} == {"queued"}
             and len(targets(db)) == 3, 60, what="three jobs queued")
    system.builder("doomed")
    wait_for(lambda: targets(db)[victim].state == "building", 60, interval=0.1,
             what="the victim's build to start")
    victim_job = targets(db)[victim].job_id

    liar = Liar(system.env["PIW_AMQP_URI"])
    try:
        # hello as the doomed Pi's twin, then a job of its own from the queue
        real = builder_row(db, "doomed")
        answer = liar.requests.ask(protocol.hello(
            "liar", real.abi, dict(real.info, preinstalled=real.preinstalled)))
        assert answer["ok"], answer
        liar_id = answer["builder_id"]
        jobs = Queue(protocol.job_queue(targets(db)[victim].abi),
                     no_declare=True)(liar.requests.channel)
        message = wait_for(lambda: jobs.get(no_ack=False), 10, what="a job for the liar")
        job = protocol.check_job(message.payload)
        assert job["package"] in plain
        assert liar.requests.ask(protocol.claim(liar_id, job["job_id"], False))["build"]

        # garbage on every queue a builder may publish to
        for key in (protocol.REQUESTS, protocol.UPLOADS, protocol.STATUS):
            liar.raw(key, b"\xff\x00 not json {", "application/json")
            liar.raw(key, pickle.dumps({"type": "hello"}), "application/x-python-serialize")
            liar.raw(key, os.urandom(2048), "application/data")
        for body in ([1, 2, 3], {"type": "claim", "builder_id": "me", "job_id": "../x"},
                     {"type": "result", "builder_id": liar_id, "job_id": victim_job,
                      "status": "success", "duration": -1, "log_gz_b64": "",
                      "files": "all of them", "not_uploaded": []},
                     {"type": "hello", "label": "x", "abi": "cp311; DROP TABLE builders"}):
            answer = liar.requests.ask(body)
            assert answer["ok"] is False and answer["retry"] is False, (body, answer)
        liar.requests.send(protocol.heartbeat(liar_id, "liar", {"load": "high"}, None)
                           | {"readings": "hot"}, protocol.STATUS)
        liar.requests.send({"type": "heartbeat", "builder_id": 10 ** 9, "readings": {},
                            "job": None}, protocol.STATUS)

        # someone else's job: its result and a file for it are refused as not the liar's
        fake = make_test_wheel(tmp_path / "fake", f"{victim}-1.0-py3-none-any.whl",
                               name=victim)
        answer = liar.requests.ask(protocol.result(
            liar_id, victim_job, "success", 1.0, "", [info_of(fake)], []))
        assert answer["ok"] is False and protocol.is_job_lost(answer), answer
        answer = liar.uploads.upload(fake, job_id=victim_job, builder_id=liar_id)
        assert answer["ok"] is False and protocol.is_job_lost(answer), answer

        # its own job's file, ten times larger than it says
        own = make_test_wheel(tmp_path / "own", f"{job['package']}-1.0-py3-none-any.whl",
                              name=job["package"])
        data = own.read_bytes()
        upload_id = uuid.uuid4().hex
        liar.uploads.send_chunks(upload_id, data + os.urandom(9 * len(data)), size=4096)
        answer = liar.uploads.commit(upload_id, info_of(own), job_id=job["job_id"],
                                     builder_id=liar_id)
        assert answer["ok"] is False and "announced" in answer["error"], answer

        # everything it sent was consumed: no message stuck on a queue
        for name in (protocol.REQUESTS, protocol.UPLOADS, protocol.STATUS):
            wait_for(lambda n=name: liar.queue_depth(n) == 0, 20, what=f"{name} to drain")
    finally:
        liar.close()  # without an ack: its job goes back to the queue

    # the doomed Pi vanishes mid-build; another takes over
    assert targets(db)[victim].state == "building"
    processes.kill9("doomed")
    system.builder("rescuer")
    system.settled(victim, *plain)
    wait_for(lambda: builder_row(db, "doomed").state == "gone", 30,
             what="the vanished builder to be marked gone")

    recorded = assert_builds_and_files_agree(system, db)
    assert sorted((b["package"], b["label"], b["status"]) for b in recorded) == sorted(
        [(victim, "rescuer", "success")] + [(p, "rescuer", "success") for p in plain])
    assert {t.state for t in targets(db).values()} == {"built"}
    assert processes.procs["master"].poll() is None
    log = processes.log("master")
    for queue in ("piw.requests", "piw.uploads", "piw.builder-status"):  # once per sender
        assert re.search(rf"refused a message from .+ on {re.escape(queue)}:", log), queue
    for said in (f"not being built by builder {liar_id}", "announced",
                 "builders gone silent: doomed"):
        assert said in log, said
    # nothing of the liar's reached the store or the upload area
    served = {hashlib.sha256(p.read_bytes()).hexdigest() for p in
              (system.www / "simple").rglob("*.whl")}
    assert hashlib.sha256(fake.read_bytes()).hexdigest() not in served
    assert hashlib.sha256(data).hexdigest() not in served
