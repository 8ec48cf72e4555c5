"""piw-import through the running system (issue 19): wheels built elsewhere go through the
admin service and file_manager's upload path as the operator's RabbitMQ user, are served with
their .metadata and a build record, and pip installs them; every refusal changes nothing."""

import subprocess
import sys

import pytest
import requests
from sqlalchemy import text

from piw_services.cli.audit import wait_quiet
from piw_services.fake_pypi.sdists import make_wheel
from tests.conftest import BIN, ROOT, wait_for
from tests.e2e.conftest import builds, ev, project_json, release

pytestmark = pytest.mark.slow


def snapshot(db, www):
    """What an import may change: build state, files and their rows, the builder registry,
    the outbox; and the file store."""
    with db() as s:
        tables = {t: sorted(repr(tuple(bytes(v) if isinstance(v, memoryview) else v
                                       for v in row))
                            for row in s.execute(text(f"SELECT * FROM {t}")))
                  for t in ("build_targets", "build_versions", "build_package_skips", "builds",
                            "builders", "files", "outbox")}
    tables["store"] = sorted(str(p.relative_to(www)) for p in (www / "simple").rglob("*.whl*"))
    return tables


def quiet_snapshot(db, www):
    """The snapshot once every consumer has applied the whole outbox: an operator's command
    returns when its batch is written, and a consumer applying it later would change the
    snapshot under the test (seen with the index slowed by a parallel test)."""
    assert wait_quiet(db, 60, lambda _: None), "the system did not go quiet"
    return snapshot(db, www)


def piw_import(env, *args):
    return subprocess.run([str(BIN / "piw-import"), "-y", *args], env=env, cwd=ROOT, text=True,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=180)


def test_import_wheels_built_elsewhere(system, db, rpc, operator_user, tmp_path):
    system.start(release("Alpha", "1.0", 1, "pure") + [
        ev("Gamma", None, "create", 10), ev("Gamma", "1.0", "new release", 11),
        ev("Gamma", "1.0", "add py3 file gamma-1.0-py3-none-any.whl", 12),
        ev("Gamma", "2.0", "new release", 13),  # no file at all: nothing to build from
        ev("Gamma", "0.5", "new release", 14), ev("Gamma", "0.5", "remove release", 15)],
        PIW_INDEX_ROOT_INTERVAL="1")
    [target] = rpc.build_dispatch.status()["abis"]
    platform = target.split("-")[1]
    wait_for(lambda: {"1.0", "2.0"} <= set(rpc.reorderer.package_state("gamma")["versions"])
             and [t["state"] for t in system.targets("alpha")] == ["queued"], 60,
             what="gamma's versions and alpha's queued job")
    env = dict(system.env, PIW_AMQP_URI=operator_user)  # an operator, not the master
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    good = make_wheel(wheels, "gamma", "2.0", filename=f"gamma-2.0-cp311-cp311-{platform}.whl",
                      summary="built by hand")
    system.audit()

    # every refusal: exit 1, a clear message, nothing changed
    def operator(*args):
        run = subprocess.run([str(BIN / args[0]), "-y", *args[1:]], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr

    operator("piw-skip", "-r", "licence", "gamma", "2.0")
    before = quiet_snapshot(db, system.www)
    run = piw_import(env, str(good))
    assert run.returncode == 1 and "gamma 2.0 is skipped (licence): unskip it first" in \
        run.stderr, run.stderr
    assert snapshot(db, system.www) == before
    operator("piw-skip", "-u", "gamma", "2.0")
    before = quiet_snapshot(db, system.www)
    other = tmp_path / "other"
    other.mkdir()
    refusals = [
        ([str(make_wheel(other, "gamma", "9.9", filename=f"gamma-9.9-cp311-cp311-{platform}.whl"))],
         "gamma has no live version '9.9'"),
        ([str(make_wheel(other, "gamma", "0.5", filename=f"gamma-0.5-cp311-cp311-{platform}.whl"))],
         "gamma has no live version '0.5'"),  # removed upstream
        (["--package-version", "1.0", str(good)], "is a wheel of gamma 2.0, not of gamma 1.0"),
        (["--target", target, str(make_wheel(other, "gamma", "1.0"))],
         "upstream already serves gamma-1.0-py3-none-any.whl"),
        ([str(make_wheel(other, "gamma", "2.0",
                         filename="gamma-2.0-cp311-cp311-linux_armv7l.whl"))],
         "cp311-linux_armv7l is not a build target of this index"),
        (["--target", target, str(make_wheel(other, "gamma", "2.0",
                                             filename="gamma-2.0-cp39-cp39-linux_armv7l.whl"))],
         "is built for linux_armv7l"),
        (["--target", target, str(make_wheel(other, "gamma", "2.0",
                                             filename=f"gamma-2.0-cp39-cp39-{platform}.whl"))],
         "is built for the ABI cp39, not cp311"),
        (["--package", "nosuchpkg", str(good)], "unknown package 'nosuchpkg'"),
    ]
    for args, message in refusals:
        run = piw_import(env, *args)
        assert run.returncode == 1 and message in run.stderr, (args, run.stderr)
    run = piw_import(env, str(make_wheel(other, "gamma", "2.0")))  # pure: which target?
    assert run.returncode == 2 and "give --target" in run.stderr
    (other / "broken.whl").write_bytes(b"not a zip")
    run = piw_import(env, str(other / "broken.whl"))
    assert run.returncode == 2 and "broken.whl" in run.stderr
    assert snapshot(db, system.www) == before

    # the import: a version upstream has no file for, its target taken from the wheel's tags
    log = tmp_path / "build.log"
    log.write_text("compiled by hand on a Pi 4\n")
    run = piw_import(env, "--duration", "12.5", "--log", str(log), str(good))
    assert run.returncode == 0, run.stderr
    assert f"importing 1 files of gamma 2.0 for {target}" in run.stderr
    assert f"imported gamma 2.0 for {target}: build " in run.stderr
    served = system.www / "simple" / "gamma" / good.name
    assert served.read_bytes() == good.read_bytes()
    assert (served.parent / (good.name + ".metadata")).exists()
    [build] = [b for b in builds(db) if b["package"] == "gamma"]
    assert (build["label"], build["version"], build["abi"], build["status"]) == \
        ("piw-import", "2.0", target, "success")
    with db() as s:
        duration, state = s.execute(text(
            "SELECT b.duration, t.state FROM builds b JOIN build_targets t ON t.build_id = b.id "
            "WHERE b.id = :i"), {"i": build["id"]}).one()
    assert (duration, state) == (12.5, "built")
    wait_for(lambda: good.name in ((project_json(system, "gamma") or {}).get("releases", {})
                                   .get("2.0", {}).get("files", {})), 30,
             what="the imported wheel on the project page")
    gz = requests.get(f"{system.web}/logs/gamma/{build['id']}.log.gz", timeout=5)
    assert gz.ok
    # pip installs it from our index
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "--no-deps",
                          "--only-binary", ":all:", "--target", str(site), "--index-url",
                          f"{system.web}/simple/", "gamma==2.0"],
                         capture_output=True, text=True, timeout=180)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (site / "gamma.py").exists()
    for path, kind in (("/faq.html", "text/html"), ("/json.html", "text/html"),
                       ("/sitemap.xml", "application/xml"), ("/sitemap1.xml", "application/xml")):
        got = requests.get(system.web + path, timeout=5)
        assert got.ok and got.headers["Content-Type"].startswith(kind), (path, got.status_code)
    wait_for(lambda: "/project/gamma/" in requests.get(system.web + "/sitemap1.xml",
                                                         timeout=5).text, 30,
             what="gamma in the sitemap")
    system.audit()

    # again: nothing to do; other bytes under the served name: refused; nothing changed
    before = snapshot(db, system.www)
    run = piw_import(env, str(good))
    assert run.returncode == 0 and "nothing to import" in run.stderr, run.stderr
    changed = make_wheel(other, "gamma", "2.0", filename=good.name, summary="other bytes")
    run = piw_import(env, str(changed))
    assert run.returncode == 1 and "already served with another sha256" in run.stderr
    after = snapshot(db, system.www)
    assert len(after.pop("outbox")) == len(before.pop("outbox")) + 1  # the no-op's event
    assert after == before

    # over a queued job of a version with an sdist: the job is revoked, the import is the build
    alpha = make_wheel(wheels, "alpha", "1.0", filename=f"alpha-1.0-cp311-cp311-{platform}.whl")
    run = piw_import(env, str(alpha))
    assert run.returncode == 0, run.stderr
    assert [(t["state"], t["build_status"]) for t in system.targets("alpha")] == \
        [("built", "success")]
    system.audit()
