"""Shared fixtures: a real PostgreSQL database (migrated once per run) and a real RabbitMQ.

eventlet must be monkey-patched before anything imports sockets, or the first nameko container
test hangs (docs/development.md, the nameko stack).
"""

import os
import sys
import uuid
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import eventlet


def xdist_controller(argv: list[str], env: dict[str, str]) -> bool:
    """Whether this process is pytest-xdist's controller (``-n N``, N not 0): it runs no test,
    it hands them to the workers over execnet, whose OS threads would stall on the green locks
    and queues of a patched process (pytest-xdist issue 71)."""
    if env.get("PYTEST_XDIST_WORKER"):
        return False
    args = [*env.get("PYTEST_ADDOPTS", "").split(), *argv]  # as pytest reads them: argv last
    workers = None
    for i, arg in enumerate(args):
        if arg in ("-n", "--numprocesses"):
            workers = args[i + 1] if i + 1 < len(args) else None
        elif arg.startswith("--numprocesses="):
            workers = arg.split("=", 1)[1]
        elif arg.startswith("-n") and len(arg) > 2:
            workers = arg[2:]
    return workers not in (None, "0")


def keep_execnet_on_os_threads() -> None:
    """In an xdist worker, execnet's receiver is an OS thread that hands the next tests to the
    main thread through a lock and an event made by its exec model on demand; made after the
    patch they would be green, and a green wait is never woken from another OS thread (the
    worker hangs when it asks for more tests). Its model makes them from the unpatched
    modules."""
    from eventlet.patcher import original
    from execnet import gateway_base

    threading, queue = original("threading"), original("queue")
    thread, clock = original("_thread"), original("time")
    model = gateway_base.ThreadExecModel
    model.Lock = model.RLock = lambda self: threading.RLock()  # type: ignore[method-assign]
    model.Event = lambda self: threading.Event()  # type: ignore[method-assign]
    model.queue = property(lambda self: queue)  # type: ignore[assignment]
    model.get_ident = lambda self: thread.get_ident()  # type: ignore[method-assign]
    model.sleep = lambda self, delay: clock.sleep(delay)  # type: ignore[method-assign]
    model.start = lambda self, func, args=(): thread.start_new_thread(func, args)  # type: ignore


CONTROLLER = xdist_controller(sys.argv[1:], dict(os.environ))
if not CONTROLLER:
    eventlet.monkey_patch()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        keep_execnet_on_os_threads()


def pytest_configure(config):
    """nameko warns at the start of a session that eventlet is not patched: in xdist's
    controller that is on purpose (its workers are patched)."""
    if CONTROLLER:
        config.option.suppress_eventlet_notification = True

# hypothesis imports its conjecture providers lazily, at the end of a run in its terminal
# summary; pytest then rewrites them with ast.parse, which CPython 3.11.7 refuses with
# "SystemError: AST constructor recursion depth mismatch" after some runs (one test of
# tests/stats/test_store.py alone is enough), turning a passing run into exit status 1.
# Imported here, they are parsed at start.
import hypothesis.internal.conjecture.providers  # noqa: E402, F401
import pytest  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from piw_services.db import create_database, make_engine, upgrade  # noqa: E402

BASE_DB_URL = os.environ.get("PIW_TEST_DB_URL",
                             "postgresql+psycopg2://postgres@127.0.0.1:5432/piw_test")
from piw_services.db.models import Base  # noqa: E402

TABLES = tuple(t.name for t in Base.metadata.sorted_tables if t.name != "upstream_state")


@pytest.fixture(scope="session")
def db_url():
    """A database of its own for this test run, migrated to head, dropped at the end."""
    url = make_url(BASE_DB_URL)
    url = url.set(database=f"{url.database}_{os.getpid()}_{uuid.uuid4().hex[:6]}")
    rendered = url.render_as_string(hide_password=False)
    create_database(rendered)
    upgrade(rendered, roles=True)
    yield rendered
    drop_database(rendered)


def drop_database(url):
    """Drop the database *url* names and its roles (cluster-wide: several test runs share this
    cluster, each database's roles named after it)."""
    from piw_services.db.roles import drop_roles

    url = make_url(url)
    admin = make_engine(url.set(database="postgres").render_as_string(hide_password=False))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
        drop_roles(conn, url.database)
    admin.dispose()


def service_url(db_url):
    """DB_SERVICE_URL for the roles piw-initdb makes for the database *db_url* names."""
    from piw_services.db.roles import service_role

    url = make_url(db_url)
    role = service_role(url.database, "{service}")
    return url.set(username=role, password=None).render_as_string(
        hide_password=False).replace("%7Bservice%7D", "{service}")


@pytest.fixture(scope="session")
def db_engine(db_url):
    engine = make_engine(db_url, pool_size=10)
    yield engine
    engine.dispose()


def reset_db(engine):
    with engine.begin() as conn:
        # a service container killed at a test's teardown can leave its connection idle in
        # a transaction (its greenlet died mid-query), holding locks TRUNCATE would wait on
        # forever; no transaction of an earlier test may outlive it
        conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
            "current_database() AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"))
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        conn.execute(text("UPDATE upstream_state SET last_serial = 0, max_ts = 0"))


@pytest.fixture
def db(db_engine):
    """A session factory on an empty catalog."""
    reset_db(db_engine)
    return sessionmaker(db_engine)


# -- real processes ------------------------------------------------------------------------
import json  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=60.0, interval=0.2, what="condition", describe=None):
    """Poll *predicate* until it returns something truthy; fail with *what* after *timeout*
    (and what *describe* says of the state then)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # services still starting
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    state = describe() if describe else last
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; state: {state!r}")


class Processes:
    """Starts named subprocesses, can SIGKILL and restart them, stops all at teardown."""

    def __init__(self, tmp_path, env):
        self.tmp, self.env, self.procs, self.cmds = tmp_path, env, {}, {}

    def start(self, name, cmd):
        self.cmds[name] = cmd
        log = open(self.tmp / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(cmd, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, cwd=ROOT)
        return self.procs[name]

    def kill9(self, name):
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(10)

    def restart(self, name):
        return self.start(name, self.cmds[name])

    def log(self, name):
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def stop_all(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def piw_env(db, db_url, rabbit_config, tmp_path):
    """Environment for piw processes: this test's vhost, the database emptied first (``db``),
    a private www tree."""
    env = dict(os.environ)
    env.update({
        "PIW_AMQP_URI": rabbit_config["AMQP_URI"],
        "PIW_DB_URL": db_url,
        # PIW_TEST_DB_ROLES=1: every master service on its own database role (docs/security.md)
        "PIW_DB_SERVICE_URL": service_url(db_url) if os.environ.get("PIW_TEST_DB_ROLES") else "",
        "PIW_WWW": str(tmp_path / "www"),
        "PIW_POLL_INTERVAL": "0.5",
        "PIW_HOLD_SECONDS": "300",
        "PIW_LOG_LEVEL": "INFO",
        "PIW_WEB_ADDRESS": f"127.0.0.1:{free_port()}",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@pytest.fixture
def processes(piw_env, tmp_path, request):
    procs = Processes(tmp_path, piw_env)
    yield procs
    procs.stop_all()
    if getattr(request.node, "rep_call", None) and request.node.rep_call.failed:
        for name in procs.procs:
            print(f"----- {name} log -----\n{procs.log(name)[-5000:]}")


def pytest_collection_modifyitems(items):
    """Slow tests first, the longest (``slow(minutes=N)``) at the head: under ``-n 2 --dist
    loadfile`` (./run test) each worker takes the next file as it finishes one, so a long file
    taken last would leave the other worker idle for its whole length."""
    def weight(item):
        slow = item.get_closest_marker("slow")
        return -slow.kwargs.get("minutes", 1) if slow else 0

    items.sort(key=weight)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


@pytest.fixture
def fake_pypi(processes, piw_env, tmp_path):
    """Start ``piw-fake-pypi`` on a free port: call with a list of event dicts."""

    def start(events, page_size=50000, packages=None):
        path = tmp_path / "events.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
        port = free_port()
        cmd = [str(BIN / "piw-fake-pypi"), "--events", str(path), "--port", str(port),
               "--page-size", str(page_size)]
        if packages:
            cmd += ["--packages", str(packages)]
        processes.start("fake-pypi", cmd)
        url = f"http://127.0.0.1:{port}"
        import requests

        wait_for(lambda: requests.get(url + "/_control/stats", timeout=2).ok, 30,
                 what="piw-fake-pypi to listen")
        piw_env["PIW_UPSTREAM"] = url
        return url

    return start


@pytest.fixture
def operator_user(piw_env, monkeypatch, capsys):
    """A RabbitMQ user made by piw-operator-user; returns the AMQP_URI it prints."""
    from piw_services.cli import operator_user as operator_user_cli

    name = f"piw-test-operator-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PIW_AMQP_URI", piw_env["PIW_AMQP_URI"])
    assert operator_user_cli.main([name]) == 0
    [uri] = [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines()
             if line.startswith("AMQP_URI: ")]
    yield uri
    assert operator_user_cli.main([name, "--remove"]) == 0


@pytest.fixture
def rpc(rabbit_config):
    """A standalone RPC proxy to the running services (as operators use from scripts)."""
    from nameko.standalone.rpc import ClusterRpcProxy

    with ClusterRpcProxy({"AMQP_URI": rabbit_config["AMQP_URI"]}, timeout=30) as proxy:
        yield proxy
