"""RabbitMQ restarted (stop_app / start_app) and PostgreSQL restarted while the system replays
and builds: every service and the builder reconnect by themselves, and nothing is lost.

The broker and the database the other tests share must never stop, so this module runs the whole
system on a PRIVATE RabbitMQ node (tests/private_rabbit.py) and a PRIVATE PostgreSQL cluster
that its fixtures start in a temporary directory on free ports and tear down afterwards (they
override ``rabbit_config``, ``db_url`` and ``db`` for this module only)."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import eventlet
import pytest
import requests
from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from piw_services.db import make_engine
from piw_services.rpc import rpc
from tests.chaos.conftest import (
    assert_builds_and_files_agree,
    catalog,
    expected_catalog,
    held_and_serial,
)
from tests.conftest import BIN, free_port, reset_db, wait_for
from tests.e2e.conftest import builds, files_of, release, wheel
from tests.private_rabbit import PrivateRabbit, need

pytestmark = pytest.mark.slow

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A PostgreSQL 15 cluster of our own (initdb as the postgres user, trust auth) on a free
    port, its socket in its own directory."""

    def __init__(self):
        need(PG_BIN / "initdb")
        self.dir = Path(tempfile.mkdtemp(prefix="piw-chaos-pg-"))
        shutil.chown(self.dir, "postgres")
        self.data, self.port = self.dir / "data", free_port()
        self.pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.pg_ctl("start")
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/piw"

    def pg(self, tool, *args):
        return subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args],
                              capture_output=True, text=True, timeout=120, check=True)

    def pg_ctl(self, action, *args):
        return self.pg("pg_ctl", action, "-D", str(self.data), "-w", "-t", "60",
                       "-l", str(self.dir / "server.log"), *args, "-o",
                       f"-p {self.port} -c listen_addresses=127.0.0.1 "
                       f"-c unix_socket_directories={self.dir} -c fsync=off")

    def stop(self):
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "stop",
                        "-D", str(self.data), "-m", "immediate", "-w"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def private_rabbit():
    rabbit = PrivateRabbit()
    yield rabbit
    rabbit.stop()


@pytest.fixture(scope="module")
def private_pg():
    pg = PrivatePostgres()
    try:
        run = subprocess.run([str(BIN / "piw-initdb")], env=dict(os.environ, PIW_DB_URL=pg.url),
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def rabbit_config(private_rabbit):
    return {"AMQP_URI": private_rabbit.uri}


@pytest.fixture
def db_url(private_pg):
    return private_pg.url


@pytest.fixture
def db(db_url):
    engine = make_engine(db_url, pool_size=4)
    reset_db(engine)
    yield sessionmaker(engine)
    engine.dispose()


def test_rabbitmq_and_postgresql_restarted_mid_run(system, db, processes, private_rabbit,
                                                   private_pg):
    packages = [f"phoenix{i}" for i in range(6)]
    rows = []

    def publish(new, start=True):
        serial = rows[-1]["serial"] if rows else 0
        new = [dict(r, serial=serial + i + 1) for i, r in enumerate(new)]
        rows.extend(new)
        if not start:
            system.append(new)
        return new

    def building(package):
        with db() as s:
            return s.execute(text("SELECT count(*) FROM build_targets WHERE package = :p "
                                  "AND state = 'building'"), {"p": package}).scalar()

    def built(package):
        return wheel(package, "1.0") in files_of(db, package)

    system.start(publish(release(packages[0], "1.0", 100, "pure")), PIW_HOLD_SECONDS="2",
                 PIW_INDEX_ROOT_INTERVAL="1")
    system.builder("pi1")
    wait_for(lambda: built(packages[0]), 120, what="the first build")
    master, builder = processes.procs["master"], processes.procs["pi1"]

    # the broker goes away (connections dropped, queues kept) with a build in flight, while
    # upstream publishes
    publish(release(packages[1], "1.0", 110, "pure"), start=False)
    wait_for(lambda: building(packages[1]), 60, interval=0.1, what="a build in flight")
    private_rabbit.ctl("stop_app")
    publish(release(packages[2], "1.0", 120, "pure"), start=False)
    time.sleep(3)
    private_rabbit.ctl("start_app")
    wait_for(lambda: built(packages[1]) and built(packages[2]), 120,
             what="builds after the broker came back")

    # the database restarts under running services, with a build and events in flight
    publish(release(packages[3], "1.0", 130, "pure") + release(packages[4], "1.0", 140, "pure"),
            start=False)
    wait_for(lambda: building(packages[3]) or building(packages[4]), 60, interval=0.1,
             what="a build in flight")
    private_pg.pg_ctl("restart", "-m", "fast")
    publish(release(packages[5], "1.0", 150, "pure"), start=False)

    last = rows[-1]["serial"]
    wait_for(lambda: tuple(held_and_serial(db)) == (0, last), 60, interval=0.5,
             what="the reorderer to apply every row",
             describe=lambda: tuple(held_and_serial(db)))
    assert catalog(db) == expected_catalog(rows)
    # a builder uploads, then reports: the file lands before its build is recorded
    wait_for(lambda: all(built(p) for p in packages)
             and sorted(b["package"] for b in builds(db)) == packages, 120,
             what="every build, its file and its record",
             describe=lambda: ({p: files_of(db, p) for p in packages},
                               [b["package"] for b in builds(db)]))
    recorded = assert_builds_and_files_agree(system, db)
    assert sorted(b["package"] for b in recorded) == packages
    # the same processes did it all: none died, every service answers (a new client: the
    # test's own proxy lost its reply queue with the broker)
    assert master.poll() is None and builder.poll() is None
    with ClusterRpcProxy({"AMQP_URI": private_rabbit.uri}, timeout=30) as fresh:
        for name in ("upstream", "reorderer", "build_dispatch", "file_manager", "index",
                     "stats", "admin", "web"):
            assert getattr(fresh, name).status() is not None, name
        assert {p: {t["state"] for t in fresh.build_dispatch.version_status(p)}
                for p in packages} == {p: {"built"} for p in packages}
    with db() as s:
        assert s.execute(text("SELECT state FROM builders")).scalars().all() == ["alive"]
    for package in packages:
        wait_for(lambda p=package: wheel(p, "1.0") in requests.get(
            f"{system.web}/simple/{p}/", timeout=5).text, 20, what=f"{package}'s page")
    # web -> stats (download events) and builder -> stats (heartbeats) run again too
    restarted = time.time()
    for package in packages:
        url = f"{system.web}/simple/{package}/{wheel(package, '1.0')}"
        assert requests.get(url, timeout=5).status_code == 200

    def stats_since_restart():
        with db() as s:
            return s.execute(text(
                "SELECT (SELECT count(DISTINCT package) FROM downloads "
                "WHERE at >= to_timestamp(:t)), (SELECT count(*) FROM builder_readings "
                "WHERE at >= to_timestamp(:t))"), {"t": restarted - 1}).one()
    wait_for(lambda: tuple(stats_since_restart())[0] == len(packages)
             and stats_since_restart()[1] > 0, 30,
             what="downloads and heartbeats recorded by stats after the restarts",
             describe=lambda: tuple(stats_since_restart()))


class Slow:
    """A service with one RPC that takes a while to answer, on piw's ``@rpc``."""

    name = "chaos_slow"

    @rpc
    def nap(self, seconds):
        eventlet.sleep(seconds)
        return "awake"


def test_a_reply_the_broker_is_not_there_for_does_not_stop_the_service(
        container_factory, private_rabbit):
    """The broker stops while a call is answered and stays away longer than nameko's publish
    retries: the reply is given up (logged), the service lives on and answers once the broker
    is back. With nameko's own ``@rpc`` the failed reply killed the container (and, in one
    piw-master process, every service); tests/chaos found it as a master that stopped
    answering its builders after ``stop_app``."""
    config = {"AMQP_URI": private_rabbit.uri}
    container = container_factory(Slow, config)
    container.start()
    with ClusterRpcProxy(config, timeout=10) as proxy:
        assert proxy.chaos_slow.nap(0) == "awake"
        proxy.chaos_slow.nap.call_async(1)
        eventlet.sleep(0.3)  # the call is being worked on
        private_rabbit.ctl("stop_app")
    eventlet.sleep(8)  # longer than the reply's publish retries
    private_rabbit.ctl("start_app")
    assert not container._died.ready(), "the service's container died"
    answer = wait_for(lambda: _call(config), 30, interval=1, what="an answer after the restart")
    assert answer == "awake"


def _call(config):
    with ClusterRpcProxy(config, timeout=5) as proxy:
        return proxy.chaos_slow.nap(0)
