"""Release quarantine through the running system (issue 16): PyPI takes a release down
(``release quarantined``, warehouse/utils/project.py), piw withholds its wheels (kept on disk,
on no page, not installable, never built) until PyPI clears it; piw-audit agrees throughout."""

import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import wait_for
from tests.e2e.conftest import ev, on_disk, project_json, release, simple_page, wheel
from tests.e2e.test_index import clean_env

pytestmark = pytest.mark.slow


def pip_install(system, tmp_path, requirement):
    """``pip install --target`` from our index alone: the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "--no-cache-dir", "install", "--index-url",
         system.web + "/simple/", "--target", str(tmp_path / f"t{time.monotonic_ns()}"),
         requirement],
        capture_output=True, text=True, env=clean_env(), timeout=300)


def listed(system, version):
    """Whether the wheel of *version* is on shady's simple page and in its project JSON."""
    page = simple_page(system, "shady") or ""
    data = project_json(system, "shady") or {"versions": []}
    in_json = any(f["filename"] == wheel("shady", version)
                  for v in data["versions"] for f in v["files"])
    return wheel("shady", version) in page, in_json


def test_a_quarantined_release_is_withheld_then_restored(system, rpc, tmp_path):
    system.start(release("Shady", "1.0", 1, "pure")
                 + [ev("Shady", "2.0", "new release", 10, kind="pure"),
                    ev("Shady", "2.0", "add source file shady-2.0.tar.gz", 11)],
                 PIW_INDEX_ROOT_INTERVAL="1")
    system.builder("pi1")
    system.settled("shady")
    wait_for(lambda: listed(system, "2.0") == (True, True), 30, what="2.0 on the pages")
    assert pip_install(system, tmp_path, "shady==2.0").returncode == 0
    system.audit()

    system.append([ev("Shady", "2.0", "release quarantined", 20)])
    wait_for(lambda: listed(system, "2.0") == (False, False), 30,
             what="the quarantined wheel to leave the simple page and the JSON")
    assert on_disk(system, "shady", wheel("shady", "2.0"))  # withheld, not deleted
    assert listed(system, "1.0") == (True, True)
    state = rpc.reorderer.package_state("Shady")
    assert state["versions"]["2.0"]["quarantined"] is True
    assert state["versions"]["1.0"]["quarantined"] is False
    page = requests.get(system.web + "/project/shady/", timeout=5).text
    assert "quarantined upstream" in page
    refused = pip_install(system, tmp_path, "shady==2.0")
    assert refused.returncode != 0 and "shady==2.0" in refused.stderr, refused.stderr
    assert pip_install(system, tmp_path, "shady==1.0").returncode == 0
    system.audit()

    # a release quarantined before it is built: its job waits, nothing is built
    system.append([ev("Shady", "3.0", "new release", 21, kind="pure"),
                   ev("Shady", "3.0", "add source file shady-3.0.tar.gz", 22),
                   ev("Shady", "3.0", "release quarantined", 23)])
    wait_for(lambda: [t for t in system.targets("shady") if t["version"] == "3.0"], 30,
             what="3.0's build target")
    time.sleep(5)  # a builder is idle and polling: a job it were sent would be built by now
    assert [t["state"] for t in system.targets("shady") if t["version"] == "3.0"] == ["pending"]
    system.audit()

    system.append([ev("Shady", "2.0", "release quarantine cleared", 30),
                   ev("Shady", "3.0", "release quarantine cleared", 31)])
    wait_for(lambda: listed(system, "2.0") == (True, True), 30, what="2.0 back on the pages")
    system.settled("shady")
    wait_for(lambda: listed(system, "3.0") == (True, True), 30, what="3.0 built and listed")
    assert rpc.reorderer.package_state("shady")["versions"]["2.0"]["quarantined"] is False
    assert pip_install(system, tmp_path, "shady==2.0").returncode == 0
    system.audit()
