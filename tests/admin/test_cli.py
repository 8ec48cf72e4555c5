"""The operators' commands (piw-remove, piw-skip, piw-rebuild, piw-rebuild-wheels, piw-add) and
piw-operator-user,
run as real processes against the real RabbitMQ, PostgreSQL and (where the test needs it) the
real master with its admin service, fed by piw-fake-pypi."""

import json
import os
import pty
import re
import select
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
from amqp.exceptions import AccessRefused
from kombu import Connection, Exchange, Queue
from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy import text

from piw_services.cli import builder_user as builder_user_cli
from piw_services.cli import importer as importer_cli
from piw_services.cli import operator_user as operator_user_cli
from tests.conftest import BIN, ROOT, free_port, wait_for
from tests.e2e.conftest import release

COMMANDS = ("piw-remove", "piw-skip", "piw-rebuild", "piw-rebuild-wheels", "piw-add",
            "piw-import", "piw-builder-control")


def cli(env, *args, timeout=120):
    """Run a console script with no terminal on stdin; (completed process, seconds)."""
    t = time.monotonic()
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], env=env, cwd=ROOT, text=True,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    return proc, time.monotonic() - t


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_state(db):
    """Everything an operator's action may change."""
    with db() as s:
        return {t: sorted(map(tuple, s.execute(text(f"SELECT * FROM {t}")).all()), key=repr)
                for t in ("build_targets", "build_versions", "build_package_skips", "builds",
                          "outbox")}


# -- without the admin service -------------------------------------------------------------
@pytest.mark.parametrize("command", COMMANDS)
def test_version_and_help(command):
    proc, _ = cli(None, command, "--version")
    assert proc.returncode == 0 and "(piw) 0." in proc.stdout
    proc, _ = cli(None, command, "--help")
    assert proc.returncode == 0
    assert "3  recorded, but not yet complete" in proc.stdout  # the exit codes are documented
    for option in ("-c FILE", "-q", "-v", "-l FILE", "-y"):
        assert option in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["piw-remove"], "the following arguments are required: package, version"),
    (["piw-remove", "foo"], "required: version"),
    (["piw-remove", "--bogus", "foo", "1.0"], "unrecognized arguments: --bogus"),
    (["piw-remove", "-q", "-v", "foo", "1.0"], "not allowed with argument"),
    (["piw-skip", "foo"], "-r/--reason is required"),
    (["piw-skip", "-r", "  ", "foo"], "the reason must say something"),
    (["piw-skip", "-u", "-r", "why", "foo"], "--reason goes with a skip"),
    (["piw-rebuild-wheels", "--abi", "cp3;11", "foo"], "or an ABI tag like cp311"),
    (["piw-rebuild", "foo"], "invalid choice: 'foo' (choose from"),  # wheels: -wheels
    (["piw-rebuild", "home", "foo"], "home takes no package"),
    (["piw-rebuild", "project", "foo;"], "not a package name"),
    (["piw-remove", "foo\nbar", "1.0"], r"'foo\nbar'"),
    (["piw-remove", "foo; rm -rf ~", "1.0"], "not a package name: 'foo; rm -rf ~'"),
    (["piw-remove", "$(reboot)", "1.0"], "not a package name"),
    (["piw-remove", "x" * 10_000, "1.0"], "at most 200 characters"),
    (["piw-remove", "foo", "1.0\n2.0"], r"not a version: '1.0\n2.0'"),
    (["piw-remove", "foo", "1" * 10_000], "at most 128 characters"),
    (["piw-add", "foo", ""], "not a version: ''"),
    (["piw-add", "--yank", "foo"], "go with a version"),
    (["piw-add", "-a", "ba r", "foo"], "not a package name: 'ba r'"),
    (["piw-add", "-s", "why", "--unskip", "foo"], "contradict each other"),
    (["piw-builder-control", "kill"], "kill needs a builder"),
    (["piw-builder-control", "skip", "pi1"], "skip needs it"),
    (["piw-builder-control", "pause", "pi1", "-r", "why"], "goes with skip"),
    (["piw-builder-control", "reboot"], "invalid choice: 'reboot'"),
    (["piw-import"], "the following arguments are required: WHEEL"),
    (["piw-import", "/nonexistent/foo-1.0-py3-none-any.whl"], "cannot read"),
    (["piw-import", "--target", "cp311", "x.whl"], "not a build target like cp311-linux_armv7l"),
    (["piw-import", "--duration", "-3", "x.whl"], "not a number of seconds: '-3'"),
    (["piw-import", "--duration", "nan", "x.whl"], "not a number of seconds: 'nan'"),
])
def test_usage_errors_exit_2_before_touching_anything(args, message):
    env = dict(os.environ, PIW_AMQP_URI=f"pyamqp://guest:guest@127.0.0.1:{closed_port()}/")
    proc, _ = cli(env, *args, "-y")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr) < 2000  # a 10k-character argument is not echoed whole
    assert "RabbitMQ" not in proc.stderr


@pytest.mark.parametrize("filenames, target", [
    (["foo-1.0-cp311-cp311-linux_armv7l.whl"], "cp311-linux_armv7l"),
    (["foo-1.0-cp311-cp311-linux_armv7l.whl", "foo-1.0-py3-none-any.whl"],
     "cp311-linux_armv7l"),
    (["foo-1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"], None),
    (["foo-1.0-py3-none-any.whl"], None),
    (["foo-1.0-cp39-abi3-linux_aarch64.whl"], None),
    (["foo-1.0-cp311-cp311-linux_armv7l.whl", "foo-1.0-cp313-cp313-linux_aarch64.whl"], None),
])
def test_piw_import_takes_the_target_from_the_wheels_tags(filenames, target):
    assert importer_cli.default_target(filenames) == target


def test_rabbitmq_down_fails_fast_and_says_where():
    port = closed_port()
    env = dict(os.environ, PIW_AMQP_URI=f"pyamqp://guest:secret@127.0.0.1:{port}/")
    proc, seconds = cli(env, "piw-remove", "-y", "foo", "1.0")
    assert proc.returncode == 1 and seconds < 15
    assert f"cannot reach RabbitMQ at 127.0.0.1:{port}: " in proc.stderr
    assert "secret" not in proc.stderr


def test_a_broker_that_never_answers_is_given_up_on():
    with socket.socket() as silent:  # accepts connections, never speaks AMQP
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        env = dict(os.environ,
                   PIW_AMQP_URI=f"pyamqp://guest:guest@127.0.0.1:{silent.getsockname()[1]}/")
        proc, seconds = cli(env, "piw-skip", "-y", "-r", "why", "foo")
    assert proc.returncode == 1 and seconds < 15, seconds
    assert "cannot reach RabbitMQ" in proc.stderr


def test_no_terminal_and_no_yes_refuses():
    env = dict(os.environ, PIW_AMQP_URI=f"pyamqp://guest:guest@127.0.0.1:{closed_port()}/")
    for args in (["piw-remove", "foo", "1.0"], ["piw-add", "foo"]):
        proc, seconds = cli(env, *args)
        assert proc.returncode == 1 and seconds < 10
        assert "no terminal on stdin" in proc.stderr and "-y" in proc.stderr
        assert "RabbitMQ" not in proc.stderr  # refused before anything else


def test_an_unreadable_config_or_log_file_is_a_clear_error(tmp_path):
    proc, _ = cli(None, "piw-remove", "-y", "-c", str(tmp_path / "nope.yaml"), "foo", "1.0")
    assert proc.returncode == 1 and "cannot read config file" in proc.stderr
    proc, _ = cli(None, "piw-remove", "-y", "-l", str(tmp_path / "no" / "log"), "foo", "1.0")
    assert proc.returncode == 2 and "cannot open log file" in proc.stderr


def test_no_admin_service_at_all(piw_env):
    proc, seconds = cli(piw_env, "piw-remove", "-y", "foo", "1.0")
    assert proc.returncode == 1 and seconds < 15
    assert "the admin service is not running" in proc.stderr


def test_a_stopped_admin_service_gets_only_the_dry_run(piw_env):
    """The admin queue exists (the service ran once) but nothing consumes it: the dry run
    times out, and the real call is never sent, so nothing happens when the service returns."""
    uri = piw_env["PIW_AMQP_URI"]
    queue = Queue("rpc-admin", Exchange("nameko-rpc", type="topic", durable=True),
                  routing_key="admin.*", durable=True)
    with Connection(uri) as conn:
        queue(conn.channel()).declare()
    proc, seconds = cli(piw_env, "piw-remove", "-y", "foo", "1.0")
    assert proc.returncode == 1 and seconds < 30
    assert "no answer from the admin service within 15 s: is piw-master running?" in proc.stderr
    assert "Nothing was changed" in proc.stderr
    with Connection(uri) as conn:
        bound = queue(conn.channel())
        message = bound.get(no_ack=True)
        assert message.payload["kwargs"]["dry_run"] is True
        assert bound.get() is None


# -- with the master (admin service included) ------------------------------------------------
@pytest.fixture
def master(db, processes, piw_env, fake_pypi, rpc):
    """Start piw-fake-pypi with releases foo 1.0 and 2.0, and piw-master (or the services
    named), and wait until build_dispatch knows foo's versions."""

    def start(*only, **env):
        t0 = int(time.time()) - 3600
        rows = release("foo", "1.0", 1, t0=t0) + [
            {"name": "foo", "version": "2.0", "timestamp": t0 + 10, "action": "new release",
             "serial": 10},
            {"name": "foo", "version": "2.0", "timestamp": t0 + 11,
             "action": "add source file foo-2.0.tar.gz", "serial": 11}]
        fake_pypi(rows)
        piw_env.update(env)
        cmd = [str(BIN / "piw-master")] + [a for name in only for a in ("--only", name)]
        processes.start("master", cmd)
        # steady: both targets made and sent to the job queue (no builder takes them), so
        # nothing changes the build state under a test but the test itself
        wait_for(lambda: sorted((t["version"], t["state"]) for t in
                                rpc.build_dispatch.version_status("foo"))
                 == [("1.0", "queued"), ("2.0", "queued")], 90, what="foo's queued jobs")
        wait_for(lambda: rpc.admin.status(), 30, what="the admin service")

    return start


def test_unknown_package_or_version_changes_nothing(master, db, piw_env):
    master()
    before = build_state(db)
    proc, _ = cli(piw_env, "piw-remove", "-y", "-s", "nosuchpkg", "1.0")
    assert proc.returncode == 1
    assert "unknown package 'nosuchpkg'" in proc.stderr
    proc, _ = cli(piw_env, "piw-skip", "-y", "-r", "why", "foo", "9.9")
    assert proc.returncode == 1
    assert "foo has no live version '9.9' (newest: 2.0, 1.0)" in proc.stderr
    proc, _ = cli(piw_env, "piw-rebuild-wheels", "-y", "--abi", "cp312", "nosuchpkg")
    assert proc.returncode == 1 and "nosuchpkg" in proc.stderr
    proc, _ = cli(piw_env, "piw-rebuild", "-y", "both", "nosuchpkg")
    assert proc.returncode == 1 and "nosuchpkg" in proc.stderr
    proc, _ = cli(piw_env, "piw-skip", "-y", "-u", "foo")  # a BadRequest
    assert proc.returncode == 1 and "foo is not skipped" in proc.stderr
    assert build_state(db) == before


def test_every_command_as_an_operator(master, db, piw_env, operator_user, tmp_path):
    """The operator's own RabbitMQ user is enough for every command; -l keeps a record."""
    master()
    env = dict(piw_env, PIW_AMQP_URI=operator_user)
    log = tmp_path / "operator.log"
    log.write_text("an earlier line\n")

    proc, _ = cli(env, "piw-remove", "-y", "-s", "-l", str(log), "foo", "1.0")
    assert proc.returncode == 0, proc.stderr
    assert "removed foo 1.0" in proc.stderr and "skipped" in proc.stderr
    with db() as s:
        assert s.execute(text("SELECT version, skip_reason FROM build_versions "
                              "WHERE package = 'foo' ORDER BY 1")).all() == [
            ("1.0", "skipped by an operator"), ("2.0", None)]
    lines = log.read_text().splitlines()
    assert lines[0] == "an earlier line"  # appended
    assert any(" INFO piw-remove: removed foo 1.0" in line and line[:4].isdigit()
               for line in lines), lines
    assert any("remove(package='foo', version='1.0', skip=True) by " in line
               for line in lines), lines  # who did it, in the record even without -v

    proc, _ = cli(env, "piw-skip", "-y", "-q", "-u", "foo", "1.0")
    assert proc.returncode == 0 and proc.stderr == ""
    proc, _ = cli(env, "piw-skip", "-y", "-r", "licence forbids it", "foo")
    assert proc.returncode == 0 and "skipped every version of foo: licence" in proc.stderr
    proc, _ = cli(env, "piw-rebuild-wheels", "-y", "foo", "2.0")
    assert proc.returncode == 1 and "is skipped (licence forbids it): unskip it" in proc.stderr
    proc, _ = cli(env, "piw-skip", "-y", "--unskip", "foo")
    assert proc.returncode == 0, proc.stderr
    proc, _ = cli(env, "piw-rebuild-wheels", "-y", "-v", "--abi", "cp311", "foo", "2.0")
    assert proc.returncode == 0 and "rebuilding foo 2.0 for cp311" in proc.stderr
    assert "to build: 2.0 for cp311" in proc.stderr  # -v shows the plan
    proc, _ = cli(env, "piw-add", "-y", "foo")
    assert proc.returncode == 0 and "nothing to add" in proc.stderr
    with db() as s:
        assert not s.execute(text("SELECT 1 FROM build_versions WHERE skip_reason IS NOT NULL "
                                  "UNION ALL SELECT 1 FROM build_package_skips")).all()


def test_page_rebuilds_as_an_operator(master, db, piw_env, operator_user):
    """piwheels' piw-rebuild verbs, as the operator's user: a page deleted by hand comes
    back; nothing but pages changes."""
    master()
    env = dict(piw_env, PIW_AMQP_URI=operator_user)
    www = Path(piw_env["PIW_WWW"])
    pages = [www / "project/foo/index.html", www / "project/foo/json/index.json",
             www / "index.html", www / "packages.json"]
    wait_for(lambda: all(p.exists() for p in pages), 60, what="foo's pages and the root's")
    before = build_state(db)
    for part, lost, said in (
            ("project", pages[:2], "rewriting the project pages of foo"),
            ("index", pages[:2], "rewriting the simple and project pages of foo"),
            ("home", pages[2:], "rewriting the home pages"),
            ("search", pages[3:], "rewriting the search pages")):
        for page in lost:
            page.unlink()
        args = [part, "foo"] if part in ("project", "index") else [part]
        proc, _ = cli(env, "piw-rebuild", "-y", *args)
        assert proc.returncode == 0, proc.stderr
        assert said in proc.stderr
        assert all(p.exists() for p in lost), (part, proc.stderr)  # done when it returns
    assert json.loads(pages[1].read_text())["package"] == "foo"
    for page in pages[:2]:
        page.unlink()
    proc, _ = cli(env, "piw-rebuild", "-y", "project")  # every package
    assert proc.returncode == 0, proc.stderr
    assert "rewriting the project pages of every live package" in proc.stderr
    assert all(p.exists() for p in pages)
    proc, _ = cli(env, "piw-rebuild", "-y", "project", "nosuchpkg")
    assert proc.returncode == 1 and "unknown package 'nosuchpkg'" in proc.stderr
    after = build_state(db)
    assert [row for row in after.pop("outbox") if row not in before["outbox"]]  # the events
    before.pop("outbox")
    assert after == before


def _interact(env, args, answer):
    """Run a command on a terminal, answer its question; (exit status, what it showed)."""
    master_fd, slave_fd = pty.openpty()
    proc = subprocess.Popen([str(BIN / args[0]), *args[1:]], env=env, cwd=ROOT,
                            stdin=slave_fd, stdout=slave_fd, stderr=slave_fd)
    os.close(slave_fd)
    shown, answered = b"", False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master_fd], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master_fd, 4096)
            except OSError:  # the other side closed
                break
            if not chunk:
                break
            shown += chunk
            if not answered and b"Proceed? [y/N] " in shown:
                os.write(master_fd, answer)
                answered = True
        return proc.wait(30), shown.decode(errors="replace")
    finally:
        os.close(master_fd)
        if proc.poll() is None:
            proc.kill()


def test_on_a_terminal_it_shows_the_plan_and_asks(master, db, piw_env):
    master()
    before = build_state(db)
    status, shown = _interact(piw_env, ["piw-remove", "foo", "2.0"], b"n\n")
    assert status == 1, shown
    # the dry run says what would be done, not what was
    assert shown.index("dry run: would remove foo 2.0") < shown.index("Proceed? [y/N]")
    assert "removed foo" not in shown and "(would forget 0 builds, delete 0 files" in shown
    assert "cancelled: nothing was changed" in shown
    assert build_state(db) == before
    # -q hides everything but errors, not what is being agreed to
    status, shown = _interact(piw_env, ["piw-skip", "-q", "-r", "broken", "foo", "2.0"],
                              b"y\n")
    assert status == 0, shown
    assert shown.index("would skip foo 2.0: broken") < shown.index("Proceed? [y/N]")
    with db() as s:
        assert s.execute(text("SELECT skip_reason FROM build_versions WHERE package = 'foo' "
                              "AND version = '2.0'")).scalar_one() == "broken"


def test_recorded_but_not_complete_exits_3(master, db, piw_env):
    """Without file_manager and the index the change is recorded, and the command says it
    finishes when they run."""
    master("upstream", "reorderer", "build_dispatch", "admin", PIW_ADMIN_WAIT="1")
    proc, seconds = cli(piw_env, "piw-skip", "-y", "-r", "why", "foo")
    assert proc.returncode == 3, proc.stderr
    waiting = re.search(r"recorded and will finish when these services run: (.*)\.$",
                        proc.stderr, re.M)
    # build_dispatch runs, but on a loaded machine may not have answered within the 1 s either
    assert waiting and {"file_manager", "index"} <= set(waiting.group(1).split(", ")) <= {
        "build_dispatch", "file_manager", "index"}, proc.stderr
    assert seconds < 20
    with db() as s:
        assert s.execute(text("SELECT reason FROM build_package_skips")).scalars().all() == [
            "why"]


def test_only_operators_reach_the_admin_service(master, piw_env, operator_user, monkeypatch,
                                                capsys):
    master()
    with ClusterRpcProxy({"AMQP_URI": operator_user}, timeout=30) as rpc:
        assert "package_skips" in rpc.admin.status()
        assert rpc.admin.remove("foo", "1.0", dry_run=True)["dry_run"] is True
    with ClusterRpcProxy({"AMQP_URI": operator_user}, timeout=30) as rpc:
        with pytest.raises(AccessRefused, match="build_dispatch.status"):
            rpc.build_dispatch.status()  # the topic permission: admin.* only
    # nor can it listen in on other calls, or read a service's queue
    with Connection(operator_user) as conn, pytest.raises(AccessRefused):
        Queue(f"rpc.reply-standalone_rpc_proxy-{uuid.uuid4()}",
              Exchange("nameko-rpc", type="topic", durable=True),
              routing_key="#")(conn.channel()).declare()
    with Connection(operator_user) as conn, pytest.raises(AccessRefused):
        conn.channel().basic_get("rpc-admin")

    name = f"piw-test-builder-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PIW_AMQP_URI", piw_env["PIW_AMQP_URI"])
    assert builder_user_cli.main([name, "--target", "cp311-linux_armv7l"]) == 0
    [builder] = [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines()
                 if line.startswith("AMQP_URI: ")]
    try:
        with pytest.raises(AccessRefused, match="nameko-rpc|rpc.reply"):
            with ClusterRpcProxy({"AMQP_URI": builder}, timeout=30) as rpc:
                rpc.admin.status()
        proc, _ = cli(dict(piw_env, PIW_AMQP_URI=builder), "piw-remove", "-y", "foo", "1.0")
        assert proc.returncode == 1
        assert "RabbitMQ refused the call" in proc.stderr and "piw-operator-user" in proc.stderr
    finally:
        assert builder_user_cli.main([name, "--remove"]) == 0


def test_operator_user_cli(piw_env, monkeypatch, capsys):
    monkeypatch.setenv("PIW_AMQP_URI", piw_env["PIW_AMQP_URI"])
    name = f"piw-test-operator-{uuid.uuid4().hex[:8]}"
    try:
        assert operator_user_cli.main([name, "--password", "p@ss/word"]) == 0
        out = capsys.readouterr().out
        broker = piw_env["PIW_AMQP_URI"].split("@", 1)[1]  # host:port/vhost
        assert f"AMQP_URI: pyamqp://{name}:p%40ss%2Fword@{broker}\n" in out
    finally:
        assert operator_user_cli.main([name, "--remove"]) == 0
    assert operator_user_cli.main([name, "--remove"]) == 1
    assert "no such user" in capsys.readouterr().err
    monkeypatch.setenv("PIW_AMQP_URI", f"pyamqp://guest:guest@127.0.0.1:{free_port()}/")
    assert operator_user_cli.main([name, "--api-port", str(free_port())]) == 1
    assert "management API" in capsys.readouterr().err


def test_builder_user_prints_the_tls_broker_builders_reach(piw_env, monkeypatch, capsys):
    """With BUILDER_BROKER set (amqps://, docs/security.md) the builder's AMQP_URI is on it,
    with the user and password made, and says CA_FILE is needed."""
    monkeypatch.setenv("PIW_AMQP_URI", piw_env["PIW_AMQP_URI"])
    monkeypatch.setenv("PIW_BUILDER_BROKER", "amqps://master.example.org:5671/piw")
    name = f"piw-test-builder-{uuid.uuid4().hex[:8]}"
    assert builder_user_cli.main([name, "--password", "pw-1"]) == 0
    try:
        out = capsys.readouterr().out
        assert f"AMQP_URI: amqps://{name}:pw-1@master.example.org:5671/piw\n" in out
        assert "CA_FILE: " in out
    finally:
        assert builder_user_cli.main([name, "--remove"]) == 0


def test_piw_add_an_entry_upstream_does_not_show(master, db, piw_env, operator_user, rpc):
    """piwheels' piw-add: its dry run on a terminal, then a package and versions upstream
    does not show, on our pages; upstream's log again (late rows of the added version, a
    duplicate) leaves them; piw-remove deletes them; piw-audit finds nothing amiss."""
    master()
    env = dict(piw_env, PIW_AMQP_URI=operator_user)
    www = Path(piw_env["PIW_WWW"])

    def entries():
        with db() as s:
            return [s.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2")).all()
                    for t in ("operator_packages", "operator_versions")]

    before = build_state(db), entries()
    status, shown = _interact(env, ["piw-add", "-d", "built by hand", "Bar_Baz"], b"n\n")
    assert status == 1, shown
    assert shown.index("dry run: would add package Bar_Baz (an operator's entry") < \
        shown.index("Proceed? [y/N]")
    assert (build_state(db), entries()) == before

    proc, _ = cli(env, "piw-add", "-y", "-d", "built by hand", "-a", "bar.baz", "Bar_Baz")
    assert proc.returncode == 0, proc.stderr
    assert "added package Bar_Baz (an operator's entry: upstream does not show it)" in \
        proc.stderr
    proc, _ = cli(env, "piw-add", "-y", "-r", "2024-05-01 12:00:00", "--yank", "-s",
                  "needs a GPU", "bar-baz", "1.0")
    assert proc.returncode == 0, proc.stderr
    proc, _ = cli(env, "piw-add", "-y", "foo", "3.0")
    assert proc.returncode == 0 and "added foo 3.0, released " in proc.stderr
    proc, _ = cli(env, "piw-add", "-y", "--yank", "foo", "2.0")
    assert proc.returncode == 1 and "piw follows upstream's yanks" in proc.stderr
    proc, _ = cli(env, "piw-add", "-y", "nosuchpkg", "1.0")
    assert proc.returncode == 1 and "add it first with piw-add nosuchpkg" in proc.stderr
    # the pages are written when piw-add returns
    page = (www / "project/bar-baz/index.html").read_text()
    assert "Bar_Baz" in page and "built by hand" in page and "needs a GPU" in page
    data = json.loads((www / "project/bar-baz/json/index.json").read_text())
    assert data["summary"] == "built by hand"
    assert data["releases"]["1.0"]["yanked"] is True
    assert data["releases"]["1.0"]["released"] == "2024-05-01 12:00:00"
    assert "3.0" in json.loads((www / "project/foo/json/index.json").read_text())["releases"]

    # upstream's log: a duplicate row, and late rows of foo 3.0 (older than the entry)
    t0 = int(time.time()) - 3000
    requests.post(piw_env["PIW_UPSTREAM"] + "/_control/events", timeout=10, json=[
        {"name": "foo", "version": "2.0", "timestamp": t0, "action": "new release",
         "serial": 20},
        {"name": "foo", "version": "3.0", "timestamp": t0 + 1, "action": "new release",
         "serial": 21},
        {"name": "foo", "version": "3.0", "timestamp": t0 + 2, "action": "remove release",
         "serial": 22}]).raise_for_status()
    wait_for(lambda: rpc.reorderer.last_serial() >= 22, 60, what="the rows applied")
    state = rpc.reorderer.package_state("foo")
    assert state["versions"]["3.0"]["operator"] is True
    assert state["versions"]["2.0"]["operator"] is False

    proc, _ = cli(env, "piw-remove", "-y", "foo", "3.0")
    assert proc.returncode == 0 and "the operator's entry is deleted" in proc.stderr
    assert "3.0" not in json.loads((www / "project/foo/json/index.json").read_text())[
        "releases"]
    proc, _ = cli(env, "piw-remove", "-y", "bar-baz", "1.0")
    assert proc.returncode == 0, proc.stderr
    assert entries()[1] == []
    audit = subprocess.run([str(BIN / "piw-audit"), "--wait", "60", "--settle", "5"],
                           env=piw_env, capture_output=True, text=True, timeout=120)
    assert audit.returncode == 0, audit.stdout + audit.stderr
