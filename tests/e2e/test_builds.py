"""Builds end to end: piw-fake-pypi with real sdists -> upstream -> reorderer -> build_dispatch
-> real piw-builder processes running pip -> chunked uploads -> file_manager -> the store."""

import glob
import gzip
import hashlib
import os
import shutil
import subprocess
import time
import uuid

import pytest
from amqp.exceptions import AccessRefused
from kombu import Connection, Exchange

from builders import protocol, sysinfo
from piw_services.cli import builder_user as builder_user_cli
from tests.conftest import wait_for
from tests.e2e.conftest import builds, files, release, sha256, store_files

#: The local builder's target: this interpreter's ABI on this host's platform (the tests'
#: BUILD_ABIS say "host" for it).
PLATFORM = sysinfo.platform_tag()
HOST_TARGET = protocol.target_key(sysinfo.abi_tag(), PLATFORM)

pytestmark = pytest.mark.slow



def working_python(version: str) -> str | None:
    """A Python *version* interpreter that runs (pyenv's shims need a version selected)."""
    candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/"
                                                     f"python{version}")))
    candidates.append(shutil.which(f"python{version}") or "")
    for path in filter(None, candidates):
        if subprocess.run([path, "-m", "pip", "--version"], capture_output=True).returncode == 0:
            return path
    return None


PY312 = working_python("3.12")


@pytest.fixture
def builder_user(piw_env, monkeypatch, capsys):
    """A RabbitMQ user with only a builder's permissions, made by piw-builder-user; returns
    the AMQP_URI it prints."""
    name = f"piw-test-builder-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PIW_AMQP_URI", piw_env["PIW_AMQP_URI"])
    assert builder_user_cli.main([name, "--target", HOST_TARGET]) == 0
    [uri] = [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines()
             if line.startswith("AMQP_URI: ")]
    yield uri
    assert builder_user_cli.main([name, "--remove"]) == 0


def test_pure_and_c_extension_builds_with_apt_dependencies(system, db, rpc, builder_user):
    system.start(release("Pure.Pkg", "1.0", 1, "pure") + release("zlib-user", "0.2", 10,
                                                                   "c-zlib")
                 + release("broken-pkg", "0.1", 20, "broken"))
    # the builder connects as a user that can reach only the builder queues
    system.builder("pi1", PIW_BUILDER_AMQP_URI=builder_user)
    targets = system.settled("pure-pkg", "zlib-user", "broken-pkg")
    assert {(t["version"], t["state"]) for t in targets} == {
        ("1.0", "built"), ("0.2", "built"), ("0.1", "failed")}

    recorded = builds(db)
    assert len(recorded) == 3  # one build per job, no repeats
    assert {b["label"] for b in recorded} == {"pi1"}
    broken = next(b for b in recorded if b["package"] == "broken-pkg")
    assert broken["status"] == "failed" and broken["files"] == []
    assert b"deliberately broken" in gzip.decompress(broken["log_gz"])

    on_disk, rows = store_files(system.www), files(db)
    assert set(on_disk) == set(rows) == {
        f for b in recorded for f in b["files"]}
    for name, path in on_disk.items():
        assert sha256(path) == rows[name].sha256, name
        assert path.parent.name == rows[name].package
        metadata = path.with_name(name + ".metadata")
        assert hashlib.sha256(metadata.read_bytes()).hexdigest() == rows[name].metadata_sha256
    pure = rows["pure_pkg-1.0-py3-none-any.whl"]
    assert pure.apt_depends == [] and pure.abi == HOST_TARGET
    c_wheel = next(r for n, r in rows.items() if n.startswith("zlib_user-0.2-cp311-cp311-"))
    assert "zlib1g" in c_wheel.apt_depends, c_wheel.apt_depends
    assert c_wheel.unresolved == []
    # nothing partial is left in the store's upload area
    assert not [p for p in (system.www / ".uploads").iterdir() if p.suffix == ".part"]
    status = rpc.build_dispatch.status()
    assert [(b["label"], b["state"], b["job_id"]) for b in status["builders"]] == [
        ("pi1", "alive", None)]
    # and that user could not have called the admin's RPC or read another target's jobs
    with Connection(builder_user, transport_options={"confirm_publish": True}) as conn:
        with pytest.raises(AccessRefused):
            conn.Producer(exchange=Exchange("nameko-rpc", no_declare=True),
                          auto_declare=False).publish({}, routing_key="admin.remove")
    with Connection(builder_user) as conn, pytest.raises(AccessRefused):
        conn.channel().basic_get(f"piw.builds.cp312-{PLATFORM}")


@pytest.mark.parametrize("phase", ["build", "upload"])
def test_a_builder_killed_mid_job_hands_it_to_another(system, db, processes, phase):
    system.start(release("bigpkg", "1.0", 1))
    system.builder("doomed")
    uploads = system.www / ".uploads"

    def in_phase():
        if phase == "build":
            return any(t["state"] == "building" for t in system.targets("bigpkg"))
        return uploads.exists() and any(p.suffix == ".part" for p in uploads.iterdir())

    wait_for(in_phase, 180, interval=0.02, what=f"the builder to be mid-{phase}")
    processes.kill9("doomed")
    system.builder("rescuer")
    system.settled("bigpkg")

    recorded = builds(db)
    assert [(b["label"], b["status"]) for b in recorded] == [("rescuer", "success")]
    on_disk, rows = store_files(system.www), files(db)
    assert list(on_disk) == list(rows) == ["bigpkg-1.0-py3-none-any.whl"]
    path = on_disk["bigpkg-1.0-py3-none-any.whl"]
    assert path.stat().st_size > 24 * 1024 * 1024
    assert sha256(path) == rows[path.name].sha256


def test_a_build_over_its_time_limit_is_killed_and_recorded_as_failed(system, db):
    system.start(release("slowpkg", "1.0", 1), PIW_BUILD_TIMEOUT="4")
    system.builder("pi1")
    [target] = system.settled("slowpkg")
    assert target["state"] == "failed" and target["build_status"] == "timeout"
    [build] = builds(db)
    assert build["status"] == "timeout"
    assert store_files(system.www) == {}


@pytest.mark.skipif(PY312 is None, reason="needs a Python 3.12 with pip for a second ABI")
def test_two_abis_take_only_their_own_jobs_and_a_pure_wheel_serves_both(system, db, rpc):
    system.start(release("Pure.Pkg", "1.0", 1, "pure") + release("zlib-user", "0.2", 10,
                                                                   "c-zlib"),
                 abis="cp311:host:bookworm,cp312:host:bookworm")
    system.builder("b311")
    # the pure wheel built for cp311 settles cp312's job for it before a cp312 builder exists
    wait_for(lambda: all(t["state"] == "built" for t in system.targets("pure-pkg"))
             and len(system.targets("pure-pkg")) == 2, 240, interval=1,
             what="the pure wheel to satisfy both ABIs",
             describe=lambda: system.targets("pure-pkg"))
    system.builder("b312", PIW_BUILDER_PYTHON=PY312)
    targets = system.settled("pure-pkg", "zlib-user")
    assert all(t["state"] == "built" for t in targets), targets
    recorded = builds(db)
    by_label = {}
    for b in recorded:
        by_label.setdefault(b["label"], []).append((b["package"], b["abi"]))
    cp311, cp312 = f"cp311-{PLATFORM}", f"cp312-{PLATFORM}"
    assert sorted(by_label["b311"]) == [("pure-pkg", cp311), ("zlib-user", cp311)]
    assert by_label["b312"] == [("zlib-user", cp312)]  # its pure-pkg job was dropped
    names = set(store_files(system.www))
    assert "pure_pkg-1.0-py3-none-any.whl" in names
    assert any(n.startswith("zlib_user-0.2-cp312-cp312-") for n in names)
    assert any(n.startswith("zlib_user-0.2-cp311-cp311-") for n in names)


def test_a_builder_up_before_build_dispatch_says_hello_as_soon_as_it_runs(system, processes):
    """The builders' exchange exists (stats declares it) before build_dispatch's request queue
    does: RabbitMQ routes a hello sent then to no queue. The builder hears so and asks again
    every second, instead of waiting out its reply timeout (a demo stalled 30 s on it)."""
    system.start([], without=("build_dispatch",), PIW_BUILDER_REPLY_TIMEOUT="600")
    system.builder("early")
    wait_for(lambda: "request queue piw.requests does not exist yet" in processes.log("early"),
             60, what="the builder's hello to find no queue", describe=lambda: processes.log(
                 "early")[-2000:])
    started = time.monotonic()
    system.service("build_dispatch")
    wait_for(lambda: "connected to" in processes.log("early"), 120, what="the builder's hello "
             "to be answered", describe=lambda: processes.log("early")[-2000:])
    # build_dispatch's own start takes a few seconds; the reply timeout is ten minutes
    assert time.monotonic() - started < 60
    assert "no answer to hello" not in processes.log("early")
