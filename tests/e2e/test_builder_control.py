"""Operators' orders to builders (issue 19, item 4), end to end: the admin service's
``builder_control`` (piwheels' monitor keys: master/slave_driver.py SLEEP, WAKE, KILL, SKIP)
reaches real piw-builder processes through their own RabbitMQ users' order queues."""

import shutil
import subprocess
import time
import uuid

import pytest
from amqp.exceptions import AccessRefused
from kombu import Connection, Queue
from sqlalchemy import text

from builders import protocol
from piw_services.cli import builder_user as builder_user_cli
from tests.conftest import BIN, wait_for
from tests.e2e.conftest import builds, release
from tests.e2e.test_builds import HOST_TARGET
from tests.fake_pypi.fake_pypi_helpers import write_sdist

pytestmark = pytest.mark.slow

#: Seconds napper's build takes (only its bdist_wheel step sleeps): long enough to be stopped
#: mid-build, short enough for a test.
NAP = 15
NAP_SETUP = f"""\
import sys, time
from setuptools import setup
if "bdist_wheel" in sys.argv:
    time.sleep({NAP})
setup(name="napper", version="1.0", py_modules=[])
"""


@pytest.fixture
def packages(upstream_packages, tmp_path):
    """The upstream files of every e2e test, and napper, whose build takes NAP seconds."""
    here = tmp_path / "upstream-packages"
    shutil.copytree(upstream_packages, here)
    write_sdist(here, "napper", "1.0", {"setup.py": NAP_SETUP})
    return here


@pytest.fixture
def users(piw_env, monkeypatch, capsys):
    """make(name): a builder's RabbitMQ user made by piw-builder-user; its AMQP_URI."""
    made = []

    def make(label):
        name = f"piw-test-{label}-{uuid.uuid4().hex[:6]}"
        monkeypatch.setenv("PIW_AMQP_URI", piw_env["PIW_AMQP_URI"])
        assert builder_user_cli.main([name, "--target", HOST_TARGET]) == 0
        made.append(name)
        return name, [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines()
                      if line.startswith("AMQP_URI: ")][0]

    yield make
    for name in made:
        builder_user_cli.main([name, "--remove"])


def builder_id(db, label):
    with db() as s:
        return s.execute(text("SELECT id FROM builders WHERE label = :l"),
                         {"l": label}).scalar()


def state(system, package):
    return [t["state"] for t in system.targets(package)]


def paused(db, label):
    with db() as s:
        return s.execute(text("SELECT CAST(info AS jsonb)->>'paused' FROM builders "
                              "WHERE label = :l"), {"l": label}).scalar() == "true"


def test_a_builder_cannot_read_another_builders_orders(users, piw_env):
    (alice, alice_uri), (bob, bob_uri) = users("alice"), users("bob")
    mine, theirs = protocol.order_queue(7, alice), protocol.order_queue(8, bob)
    with Connection(piw_env["PIW_AMQP_URI"]) as conn:  # the master declares them
        for name in (mine, theirs):
            Queue(name, durable=True)(conn.channel()).declare()
        conn.Producer().publish(protocol.order("pause"), exchange="", routing_key=theirs,
                                serializer="json")
    with Connection(alice_uri) as conn:
        assert conn.channel().basic_get(mine) is None  # its own: empty, readable
    with Connection(alice_uri) as conn, \
            pytest.raises(AccessRefused, match="access to queue .piw.orders.8"):
        conn.channel().basic_get(theirs)
    with Connection(alice_uri, transport_options={"confirm_publish": True}) as conn, \
            pytest.raises(AccessRefused):  # nor forge orders
        conn.Producer().publish(protocol.order("resume"), exchange="", routing_key=theirs,
                                serializer="json")
    with Connection(bob_uri) as conn:
        assert conn.channel().basic_get(theirs, no_ack=True) is not None
    with Connection(piw_env["PIW_AMQP_URI"]) as conn:
        for name in (mine, theirs):
            conn.channel().queue_delete(name)


def test_pause_finishes_the_build_and_takes_no_new_job_until_resumed(system, db, rpc, users,
                                                                     packages):
    system.start(release("napper", "1.0", 1), packages=packages)
    user, uri = users("pi1")
    system.builder("pi1", PIW_BUILDER_AMQP_URI=uri)
    wait_for(lambda: state(system, "napper") == ["building"], 120, what="napper building")
    done = rpc.admin.builder_control("pause", "pi1")
    assert done["summary"] == f"paused builder {builder_id(db, 'pi1')} (pi1)"
    assert done["undelivered"] == {}
    system.append(release("later", "1.0", 10, "pure"))
    wait_for(lambda: state(system, "napper") == ["built"], 120, what="the build to finish")
    wait_for(lambda: state(system, "later") == ["queued"], 60, what="later's job queued")
    wait_for(lambda: paused(db, "pi1"), 30, what="the heartbeat to say paused")
    # the queued job waits: several heartbeats and a few seconds of a free, paused builder
    for _ in range(8):
        assert state(system, "later") == ["queued"]
        time.sleep(1)
    done = rpc.admin.builder_control("resume")  # every builder
    assert done["summary"] == "resumed every builder (1)"
    wait_for(lambda: state(system, "later") == ["built"], 120, what="later built")
    assert not paused(db, "pi1")
    assert [(b["label"], b["package"]) for b in builds(db)] == [("pi1", "napper"),
                                                                ("pi1", "later")]
    log = (system.www.parent / "pi1.log").read_text()
    assert "paused by an operator: finishing the current build" in log
    assert "resumed by an operator" in log
    system.audit()


def test_kill_gives_the_job_to_another_builder(system, db, rpc, users, packages):
    system.start(release("napper", "1.0", 1), packages=packages)
    _, uri1 = users("pi1")
    _, uri2 = users("pi2")
    system.builder("pi1", PIW_BUILDER_AMQP_URI=uri1)
    wait_for(lambda: state(system, "napper") == ["building"], 120, what="napper building")
    system.builder("pi2", PIW_BUILDER_AMQP_URI=uri2)
    wait_for(lambda: builder_id(db, "pi2"), 60, what="pi2's hello")
    done = rpc.admin.builder_control("kill", builder_id(db, "pi1"))
    assert done["summary"].startswith("killed the build of napper 1.0 for ")
    assert done["queued"] and done["undelivered"] == {}
    [target] = system.settled("napper")
    assert target["state"] == "built"
    assert [(b["label"], b["status"]) for b in builds(db)] == [("pi2", "success")]
    log = (system.www.parent / "pi1.log").read_text()
    assert "killed the build of napper 1.0" in log and "nothing reported" in log
    system.audit()


def test_skip_records_the_job_skipped_with_the_reason(system, db, rpc, users, packages):
    system.start(release("napper", "1.0", 1), packages=packages)
    _, uri = users("pi1")
    system.builder("pi1", PIW_BUILDER_AMQP_URI=uri)
    wait_for(lambda: state(system, "napper") == ["building"], 120, what="napper building")
    with pytest.raises(Exception, match="BadRequest"):
        rpc.admin.builder_control("skip", "pi1")  # a skip needs a reason
    done = rpc.admin.builder_control("skip", "pi1", "takes too long here")
    assert done["summary"].endswith(": takes too long here")
    [target] = system.targets("napper")
    assert target["state"] == "skipped"
    assert target["note"] == "skipped by an operator: takes too long here"
    # the builder drops it at once and takes the next job
    system.append(release("later", "1.0", 10, "pure"))
    wait_for(lambda: state(system, "later") == ["built"], NAP + 60, what="later built")
    assert [b["package"] for b in builds(db)] == ["later"]
    assert "skipped the build of napper 1.0" in (system.www.parent / "pi1.log").read_text()
    system.audit()


def test_an_offline_builder_gets_its_order_when_it_comes_back(system, db, rpc, users,
                                                               processes):
    system.start([])
    _, uri = users("pi1")
    system.builder("pi1", PIW_BUILDER_AMQP_URI=uri)
    wait_for(lambda: builder_id(db, "pi1"), 60, what="pi1's hello")
    processes.procs["pi1"].terminate()
    processes.procs["pi1"].wait(30)
    run = subprocess.run([str(BIN / "piw-builder-control"), "-y", "pause",
                          str(builder_id(db, "pi1"))], env=system.env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"paused builder {builder_id(db, 'pi1')} (pi1)" in run.stderr
    system.append(release("later", "1.0", 10, "pure"))
    wait_for(lambda: state(system, "later") == ["queued"], 60, what="later's job queued")
    system.builder("pi1", PIW_BUILDER_AMQP_URI=uri)  # back, as the same user
    wait_for(lambda: paused(db, "pi1"), 60, what="pi1 back, paused")
    for _ in range(5):
        assert state(system, "later") == ["queued"]
        time.sleep(1)
    # restarted again, its order long consumed: the master tells it at hello it is paused
    processes.procs["pi1"].terminate()
    processes.procs["pi1"].wait(30)
    system.builder("pi1", PIW_BUILDER_AMQP_URI=uri)
    wait_for(lambda: "the master remembers it" in processes.log("pi1"), 60,
             what="pi1 back, told it is paused")
    for _ in range(5):
        assert state(system, "later") == ["queued"]
        time.sleep(1)
    rpc.admin.builder_control("resume", "pi1")
    wait_for(lambda: state(system, "later") == ["built"], 120, what="later built")
