"""Deletion, yanking and removal through the running system (issue 5): upstream's removals and
operators' ones reach the database, the files on disk and the pages, and piw-audit finds them
all in agreement after every step; a removal cut short by kill -9 completes on restart."""

import subprocess

import pytest
import requests
from nameko.exceptions import RemoteError
from sqlalchemy import text

from piw_services.admin.actions import DEFAULT_SKIP_REASON
from tests.conftest import BIN, ROOT, wait_for
from tests.e2e.conftest import ev, files_of, on_disk, project_json, release, simple_page, wheel

pytestmark = pytest.mark.slow


def test_operators_remove_skip_and_rebuild(system, db, rpc):
    system.start(release("Alpha", "1.0", 1, "pure")
                 + [ev("Alpha", "2.0", "new release", 10, kind="pure"),
                    ev("Alpha", "2.0", "add source file alpha-2.0.tar.gz", 11)]
                 + release("Beta", "1.0", 20, "pure"), PIW_INDEX_ROOT_INTERVAL="1")
    system.builder("pi1")
    system.settled("alpha", "beta")
    system.audit()
    first = files_of(db, "alpha")
    assert set(first) == {wheel("alpha", "1.0"), wheel("alpha", "2.0")}

    # nameko RPC, as from `nameko shell`: removed, then built again by a new job
    done = rpc.admin.remove("alpha", "1.0")
    assert done["complete"] and done["files"] == [wheel("alpha", "1.0")], done
    assert not on_disk(system, "alpha", wheel("alpha", "1.0"))
    assert wheel("alpha", "1.0") not in simple_page(system, "alpha")
    system.settled("alpha")
    wait_for(lambda: wheel("alpha", "1.0") in files_of(db, "alpha"), 60, what="the rebuild")
    assert files_of(db, "alpha")[wheel("alpha", "1.0")] != first[wheel("alpha", "1.0")]
    wait_for(lambda: wheel("alpha", "1.0") in simple_page(system, "alpha"), 20,
             what="the rebuilt wheel on the page")
    system.audit()

    # piw-remove -s: gone, and never built again
    run = subprocess.run([str(BIN / "piw-remove"), "-y", "-s", "alpha", "2.0"],
                         env=system.env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not on_disk(system, "alpha", wheel("alpha", "2.0"))
    assert [t for t in system.targets("alpha") if t["version"] == "2.0"] == []
    versions = {v["version"]: v for v in project_json(system, "alpha")["versions"]}
    assert versions["2.0"]["skip"] and versions["2.0"]["files"] == []
    system.audit()

    # nameko shell, as operators type it
    shell = subprocess.run(
        [str(BIN / "nameko"), "shell", "--config", str(ROOT / "config" / "master.yaml")],
        input="print(n.rpc.admin.remove('BETA', '1.0', skip='no thanks')['summary'])\n",
        env=system.env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "removed beta 1.0" in shell.stdout, shell.stdout + shell.stderr
    assert files_of(db, "beta") == {}
    wait_for(lambda: simple_page(system, "beta") is None, 20, what="beta's simple page to go")
    wait_for(lambda: 'href="beta/"' not in requests.get(system.web + "/simple/",
                                                        timeout=5).text, 20,
             what="the root index to drop beta")
    system.audit()

    with pytest.raises(RemoteError) as error:
        rpc.admin.remove("nope", "1.0")
    assert error.value.exc_type == "UnknownPackage"
    rebuilt = rpc.admin.rebuild("alpha", "1.0", "cp311")
    assert rebuilt["files"] == [wheel("alpha", "1.0")] and rebuilt["complete"]
    system.settled("alpha")
    wait_for(lambda: wheel("alpha", "1.0") in files_of(db, "alpha"), 60, what="the rebuild")
    system.audit()


def test_upstream_removals_yanks_and_unyanks(system, db):
    system.start(release("Gamma", "1.0", 1, "pure")
                 + [ev("Gamma", "2.0", "new release", 10, kind="pure"),
                    ev("Gamma", "2.0", "add source file gamma-2.0.tar.gz", 11)]
                 + release("Delta", "1.0", 20, "pure"), PIW_INDEX_ROOT_INTERVAL="1")
    system.builder("pi1")
    system.settled("gamma", "delta")
    system.audit()

    system.append([ev("Gamma", "2.0", "yank release", 30)])
    wait_for(lambda: "data-yanked" in simple_page(system, "gamma"), 20, what="the yank")
    assert on_disk(system, "gamma", wheel("gamma", "2.0"))  # pinned users still install it
    system.audit()
    system.append([ev("Gamma", "2.0", "unyank release", 31)])
    wait_for(lambda: "data-yanked" not in simple_page(system, "gamma"), 20, what="the unyank")
    system.audit()

    # the last source file goes: nothing more is built, what is built stays
    system.append([ev("Gamma", "1.0", "remove file gamma-1.0.tar.gz", 32)])
    wait_for(lambda: any(v["version"] == "1.0" and v["skip"] for v in
                         project_json(system, "gamma")["versions"]), 20,
             what="1.0 shown as unbuildable")
    assert on_disk(system, "gamma", wheel("gamma", "1.0"))
    system.audit()

    system.append([ev("Gamma", "2.0", "remove release", 33)])
    # file_manager and the index take the event each on their own: wait for both
    wait_for(lambda: not on_disk(system, "gamma", wheel("gamma", "2.0"))
             and wheel("gamma", "2.0") not in simple_page(system, "gamma"), 20,
             what="the removed release's wheel to leave the disk and the page")
    system.audit()

    system.append([ev("Delta", None, "remove project", 34)])
    wait_for(lambda: files_of(db, "delta") == {} and simple_page(system, "delta") is None, 20,
             what="the removed project's files and pages to go")
    assert project_json(system, "delta") is None
    assert system.targets("delta") == []
    system.audit()


#: setup.py of an sdist whose build takes a while, and whose wheel differs every build.
SLOW_BUILD = """\
import time, uuid
time.sleep(6)
with open("reborn.py", "w") as fh:
    fh.write(f"BUILD = {uuid.uuid4().hex!r}\\n")
from setuptools import setup
setup(name="reborn", version="1.0", py_modules=["reborn"])
"""


def test_a_build_of_the_old_life_never_reaches_the_new_one(system, db, upstream_packages):
    """Deleted and re-registered under another spelling while the old life's build runs: the
    old build is refused, the new life gets its own build and file."""
    from tests.fake_pypi.fake_pypi_helpers import write_sdist

    write_sdist(upstream_packages, "reborn", "1.0", {"setup.py": SLOW_BUILD})
    system.start([ev("Reborn", None, "create", 1), ev("Reborn", "1.0", "new release", 2),
                  ev("Reborn", "1.0", "add source file reborn-1.0.tar.gz", 3)])
    system.builder("pi1")
    old = wait_for(lambda: [t for t in system.targets("reborn") if t["state"] == "building"],
                   120, what="the old life's build to start")[0]
    system.append([ev("Reborn", None, "remove project", 4), ev("REBORN", None, "create", 5),
                   ev("REBORN", "1.0", "new release", 6),
                   ev("REBORN", "1.0", "add source file reborn-1.0.tar.gz", 7)])
    new = wait_for(lambda: [t for t in system.targets("reborn")
                            if t["job_id"] != old["job_id"]], 30, what="the new life's job")[0]
    system.settled("reborn")
    files = files_of(db, "reborn")
    assert list(files.values()) == [new["job_id"]], files
    with db() as s:
        builds = s.execute(text("SELECT job_id FROM builds WHERE package = 'reborn'")).all()
    assert [b[0] for b in builds] == [new["job_id"]]
    system.audit()


@pytest.mark.parametrize(("service", "point"), [
    ("file_manager", "file_manager.files_deleted"),
    ("index", "index.simple_pages_written"),
])
def test_a_removal_cut_short_by_kill_9_completes_on_restart(system, db, rpc, service, point):
    system.start(release("Omega", "1.0", 1, "pure") + release("Keep", "1.0", 10, "pure"),
                 without=(service,), PIW_ADMIN_WAIT="5", PIW_INDEX_ROOT_INTERVAL="1")
    proc = system.service(service)
    system.builder("pi1")
    system.settled("omega", "keep")
    system.audit()
    proc.kill()
    proc.wait(10)
    crashing = system.service(service, PIW_CRASH_AT=point)
    done = rpc.admin.remove("omega", "1.0", skip=True)
    assert crashing.wait(30) == -9  # it died half-way through the removal
    assert not done["complete"] and service in done["waiting_for"], done
    # whatever is on disk now, no page points at a file that is gone
    page = simple_page(system, "omega")
    assert page is None or wheel("omega", "1.0") not in page or on_disk(
        system, "omega", wheel("omega", "1.0"))
    system.service(service)  # restarted without the crash point
    wait_for(lambda: files_of(db, "omega") == {}, 30, what="the removal to complete")
    assert not on_disk(system, "omega", wheel("omega", "1.0"))
    assert on_disk(system, "keep", wheel("keep", "1.0"))
    system.audit()
    assert rpc.admin.status()["version_skips"] == [["omega", "1.0", DEFAULT_SKIP_REASON]]
