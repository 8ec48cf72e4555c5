"""The pipeline as operators run it: piw-fake-pypi -> upstream -> reorderer, real processes on
a real RabbitMQ and PostgreSQL, including kill -9 in the middle of a replay."""

import time

import pytest
from sqlalchemy import text

from piw_services.fake_pypi.history import synthetic_history
from piw_services.reorderer import store
from piw_services.reorderer.parse import Row, parse_row
from tests.conftest import BIN, wait_for
from tests.reorderer.recording_consumer import TABLE
from tests.reorderer.reference import fold_events, reference, view

MASTER = str(BIN / "piw-master")

CHAI = [  # docs/architecture.md's real example, in ascending serial order
    {"name": "chai", "version": "0.1.18", "timestamp": 1320779633, "action": "new release",
     "serial": 256850},
    {"name": "chai", "version": "0.1.19", "timestamp": 1320788944, "action": "new release",
     "serial": 256914},
    {"name": "chai", "version": "0.1.17", "timestamp": 1320416429, "action": "new release",
     "serial": 258871},
    {"name": "chai", "version": "0.1.16", "timestamp": 1320361649, "action": "new release",
     "serial": 259151},
    {"name": "chai", "version": None, "timestamp": 1299029402, "action": "create",
     "serial": 264082},
    {"name": "chai", "version": "0.1.0", "timestamp": 1299029402, "action": "new release",
     "serial": 264084},
    {"name": "chai", "version": None, "timestamp": 1299029397, "action": "remove",
     "serial": 264426},
]


def caught_up(rpc, serial):
    """Everything up to *serial* ingested, and only the final (flushing) row still held."""
    status = rpc.reorderer.status()
    return status if status["last_serial"] >= serial and status["held"] == 1 else None


MALFORMED = [  # interleaved with chai: logged, recorded and skipped, never a stop
    {"raw": ["chai", "0.1.20", 1320788950, "new release"], "serial": 256900},
    {"raw": ["chai", "0.1.21", None, "new release", 256901], "serial": 256901},
    {"raw": ["no spaces allowed", "1.0", 1320788950, "new release", 256902], "serial": 256902},
    {"raw": ["chai", "0.1.22", 1320788950, "frobnicate", 256903], "serial": 256903},
    {"raw": ["chai", None, 1320788950, "remove Owner chai-dev", 256904], "serial": 256904},
]


@pytest.mark.slow
def test_chai_through_running_services(fake_pypi, processes, rpc):
    url = fake_pypi(sorted(CHAI + MALFORMED, key=lambda e: e["serial"]))
    processes.start("master", [MASTER])
    wait_for(lambda: rpc.reorderer.status()["last_serial"] == 264426, 60, what="chai ingested")
    # 0.1.19, the newest row, is inside the 300 s hold window, but a package's held rows
    # leave with its first due one
    held = wait_for(lambda: rpc.reorderer.package_state("chai")["versions"], 30)
    assert sorted(held) == ["0.1.0", "0.1.16", "0.1.17", "0.1.18", "0.1.19"]
    assert rpc.reorderer.status()["held"] == 0
    import requests

    requests.post(url + "/_control/events", json=[
        {"name": "later", "version": None, "timestamp": 1330000000, "action": "create"}],
        timeout=5).raise_for_status()
    wait_for(lambda: caught_up(rpc, 264427), 60, what="the newest row held")
    state = rpc.reorderer.package_state("Chai")
    assert state["alive"] is True
    assert sorted(state["versions"]) == ["0.1.0", "0.1.16", "0.1.17", "0.1.18", "0.1.19"]
    assert rpc.upstream.status()["failures"] == 0
    assert rpc.reorderer.status()["malformed"] == 4  # the role change is ignored, not bad


def test_services_refuse_a_database_that_is_not_migrated(piw_env, tmp_path):
    import subprocess

    env = dict(piw_env, PIW_DB_URL=piw_env["PIW_DB_URL"].rsplit("/", 1)[0] + "/postgres")
    done = subprocess.run([MASTER], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "piw-initdb" in done.stderr and "schema revision none" in done.stderr


@pytest.fixture
def applied_table(db_engine):
    """The recording consumer's table, dropped afterwards: the run's database is shared by
    every test, and tests/db/test_schema compares its tables with the models."""
    with db_engine.begin() as conn:
        conn.execute(text(TABLE))
    yield
    with db_engine.begin() as conn:
        conn.execute(text("DROP TABLE test_applied"))


@pytest.mark.slow
def test_kill9_mid_replay_converges_and_applies_each_event_once(
        fake_pypi, processes, rpc, db, applied_table):
    events = list(synthetic_history(40_000, seed=7))
    # one event far in the future of the history flushes the hold window at the end
    events.append({"name": "flush", "version": None, "action": "create",
                   "timestamp": max(e["timestamp"] for e in events) + 10**6, "serial": 40_001})
    fake_pypi(events, page_size=1000)
    processes.env["PIW_HOLD_SECONDS"] = "3600"
    # one service with plain `nameko run` (how a deployment scales out), one with piw-master
    processes.start("reorderer", [str(BIN / "nameko"), "run", "--config", "config/master.yaml",
                                  "piw_services.reorderer.service"])
    processes.start("consumer", [str(BIN / "nameko"), "run", "--config", "config/master.yaml",
                                 "tests.reorderer.recording_consumer"])
    processes.start("upstream", [MASTER, "--only", "upstream"])

    wait_for(lambda: rpc.reorderer.status()["last_serial"] > 8000, 120, what="replay to start")
    processes.kill9("reorderer")
    time.sleep(1)
    processes.restart("reorderer")
    wait_for(lambda: rpc.reorderer.status()["last_serial"] > 20000, 120, what="replay to resume")
    processes.kill9("upstream")
    processes.kill9("consumer")
    processes.restart("upstream")
    processes.restart("consumer")
    final = wait_for(lambda: caught_up(rpc, 40_001), 240, what="replay to finish",
                     describe=lambda: (rpc.reorderer.status(), rpc.upstream.status()))

    rows = [r for r in (parse_row([e["name"], e["version"], e["timestamp"], e["action"],
                                   e["serial"]]) for e in events) if isinstance(r, Row)]
    expected = reference(rows[:-1])  # the flushing row itself is still held
    with db() as s:
        cur = s.connection().connection.dbapi_connection.cursor()
        cur.execute("SELECT name FROM packages")
        assert view(store.load_packages(cur, [n for (n,) in cur.fetchall()])) == expected
    assert final["malformed"] == 0

    def consumer_done():
        with db() as s:
            return s.execute(text("SELECT seq FROM consumer_marks WHERE consumer = 'recording'")
                             ).scalar() == final["outbox_seq"]
    wait_for(consumer_done, 60, what="consumer to catch up")
    with db() as s:
        dupes = s.execute(text("SELECT count(*) - count(DISTINCT (seq, idx)) FROM test_applied")
                          ).scalar()
        applied = [e for (e,) in s.execute(text("SELECT event FROM test_applied "
                                                "ORDER BY seq, idx")).all()]
    assert dupes == 0
    assert fold_events(applied) == expected
