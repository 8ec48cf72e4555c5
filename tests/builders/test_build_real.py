"""build_wheel running real ``pip wheel`` builds against the fake PyPI.

The fake serves generated sdists ("pure", "c-zlib", "broken") plus, from its packages
directory, setuptools, wheel and packaging wheels repacked from this venv (build isolation
installs them; nothing is downloaded) and a hand-made sdist whose in-tree build backend hangs,
for the timeout and cancellation tests.
"""

from __future__ import annotations

import importlib.metadata
import re
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from builders.build import BuildResult, build_wheel
from builders.sysinfo import abi_tag, platform_tag
from piw_services.fake_pypi import FakePyPI
from piw_services.fake_pypi.buildreqs import write_build_requirements
from tests.fake_pypi.fake_pypi_helpers import write_sdist

from .build_helpers import assert_group_gone, wait_for_json

pytestmark = pytest.mark.slow

T0 = 1_700_000_000


def _event(serial, name, version, action, **extra):
    return {
        "name": name,
        "version": version,
        "timestamp": T0 + serial,
        "action": action,
        "serial": serial,
        **extra,
    }


EVENTS = [
    _event(1, "Pure.Pkg", None, "create"),
    _event(2, "Pure.Pkg", "1.0", "new release", kind="pure"),
    _event(3, "Pure.Pkg", "1.0", "add source file pure_pkg-1.0.tar.gz"),
    _event(4, "zlib-user", None, "create"),
    _event(5, "zlib-user", "0.2", "new release", kind="c-zlib"),
    _event(6, "zlib-user", "0.2", "add source file zlib_user-0.2.tar.gz"),
    _event(7, "broken-pkg", None, "create"),
    _event(8, "broken-pkg", "0.1", "new release", kind="broken"),
    _event(9, "broken-pkg", "0.1", "add source file broken_pkg-0.1.tar.gz"),
    _event(10, "legacy-pkg", None, "create"),
    _event(11, "legacy-pkg", "1.0", "new release"),
    _event(12, "legacy-pkg", "1.0", "add source file legacy-pkg-1.0.tar.gz"),
]
#: An sdist with a setup.py and no pyproject.toml (as MarkupSafe 2.1.5's)
LEGACY_SETUP = ("from setuptools import setup\n"
                "setup(name='legacy-pkg', version='1.0', py_modules=['legacy_pkg'])\n")

#: An in-tree PEP 517 backend with no build requirements (so pip reaches it within a second),
#: which records where it runs, starts a child, and sleeps.
SLOW_BACKEND = """\
import json, os, signal, subprocess, sys, time

def _hang():
    ignore = bool(os.environ.get("SLOW_IGNORE_TERM"))
    if ignore:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    code = "import signal, time\\n"
    if ignore:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
    child = subprocess.Popen([sys.executable, "-c", code + "time.sleep(600)"])
    time.sleep(0.3)  # let the child install its handler before anyone signals it
    marker = os.environ["SLOW_MARKER"]
    info = {"pid": os.getpid(), "pgid": os.getpgid(0), "child": child.pid,
            "cwd": os.getcwd(), "tmpdir": os.environ.get("TMPDIR")}
    with open(marker + ".tmp", "w") as fh:
        json.dump(info, fh)
    os.replace(marker + ".tmp", marker)
    time.sleep(600)

def get_requires_for_build_wheel(config_settings=None):
    _hang()
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _hang()
"""

SLOW_PYPROJECT = """\
[build-system]
requires = []
build-backend = "slow_backend"
backend-path = ["."]
"""


def write_slow_sdist(directory: Path, name: str = "slowpkg", version: str = "1.0") -> Path:
    return write_sdist(directory, name, version, {"pyproject.toml": SLOW_PYPROJECT,
                                                  "slow_backend.py": SLOW_BACKEND})


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    packages = tmp_path_factory.mktemp("packages")
    try:
        write_build_requirements(packages)
    except importlib.metadata.PackageNotFoundError as exc:
        pytest.skip(f"cannot repack build requirements: {exc}")
    write_slow_sdist(packages)
    write_sdist(packages, "legacy-pkg", "1.0", {"setup.py": LEGACY_SETUP, "legacy_pkg.py": ""})
    with FakePyPI(EVENTS, packages_dir=packages) as server:
        yield server.url + "/simple/"


@pytest.fixture(scope="module")
def builds(index, tmp_path_factory) -> dict[str, tuple[BuildResult, Path, Path]]:
    """The three generated kinds built at once: {kind: (result, out_dir, work_dir)}."""
    base = tmp_path_factory.mktemp("builds")
    jobs = {
        "pure": ("Pure.Pkg", "1.0"),
        "c-zlib": ("zlib-user", "0.2"),
        "broken": ("broken-pkg", "0.1"),
    }

    def run(kind):
        name, version = jobs[kind]
        out, work = base / kind / "out", base / kind / "work"
        return build_wheel(index, name, version, out, timeout=300, work_dir=work), out, work

    with ThreadPoolExecutor(len(jobs)) as pool:
        return dict(zip(jobs, pool.map(run, jobs), strict=True))


def _empty(directory: Path) -> bool:
    return not directory.exists() or not any(directory.iterdir())


def test_pure_sdist_builds_one_wheel(builds):
    result, out, work = builds["pure"]
    assert result.status == "success", result.log
    assert result.returncode == 0
    assert result.wheels == [out / "pure_pkg-1.0-py3-none-any.whl"]
    assert sorted(out.iterdir()) == result.wheels
    assert "Installing build dependencies: finished with status 'done'" in result.log
    assert "Successfully built Pure.Pkg" in result.log
    assert _empty(work)


def test_c_extension_builds_for_this_platform_and_abi(builds):
    result, out, work = builds["c-zlib"]
    assert result.status == "success", result.log
    (wheel,) = result.wheels
    assert wheel.parent == out and wheel.is_file()
    abi = re.escape(abi_tag())
    assert re.fullmatch(rf"zlib_user-0\.2-{abi}-{abi}-{re.escape(platform_tag())}\.whl", wheel.name)
    assert _empty(work)


def test_broken_sdist_fails_with_the_error_in_the_log(builds):
    result, out, work = builds["broken"]
    assert result.status == "failed"
    assert result.returncode not in (0, None)
    assert result.wheels == []
    assert "deliberately broken: broken-pkg 0.1" in result.log
    assert f"piw-builder: pip exited with status {result.returncode}" in result.log
    assert _empty(out) and _empty(work)


def test_timeout_kills_the_build_and_everything_it_started(index, tmp_path):
    marker = tmp_path / "marker.json"
    work = tmp_path / "work"
    result = build_wheel(
        index,
        "slowpkg",
        "1.0",
        tmp_path / "out",
        timeout=8.0,  # pip reaches the backend in 2-4 s on a loaded 2-core machine
        work_dir=work,
        extra_env={"SLOW_MARKER": str(marker)},
    )
    assert result.status == "timeout", result.log
    assert 8.0 <= result.duration < 20
    assert result.returncode == -signal.SIGTERM
    assert "Getting requirements to build wheel: started" in result.log
    assert "piw-builder: build timed out after 8s" in result.log
    assert result.wheels == [] and _empty(tmp_path / "out")
    info = wait_for_json(marker, timeout=0)  # the backend was reached well within the timeout
    # pip's backend runs two processes below pip, in pip's group; it and its child are gone.
    assert_group_gone(info["pgid"], info["pid"], info["child"])
    # The backend's TMPDIR and cwd were inside the build directory, which is removed.
    assert Path(info["tmpdir"]).is_relative_to(work)
    assert Path(info["cwd"]).is_relative_to(work)
    assert _empty(work)


def test_cancel_kills_a_group_that_ignores_sigterm(index, tmp_path):
    marker = tmp_path / "marker.json"
    cancel = threading.Event()

    def cancel_once_sleeping():
        wait_for_json(marker)
        cancel.set()

    canceller = threading.Thread(target=cancel_once_sleeping, daemon=True)
    canceller.start()
    result = build_wheel(
        index,
        "slowpkg",
        "1.0",
        tmp_path / "out",
        timeout=120,
        cancel=cancel,
        kill_grace=1.0,
        work_dir=tmp_path / "work",
        extra_env={"SLOW_MARKER": str(marker), "SLOW_IGNORE_TERM": "1"},
    )
    canceller.join(5)
    assert result.status == "cancelled", result.log
    assert result.duration < 60
    assert "piw-builder: build cancelled" in result.log
    assert "still running 1s after SIGTERM; sent SIGKILL" in result.log
    info = wait_for_json(marker, timeout=0)
    assert_group_gone(info["pgid"], info["pid"], info["child"])
    assert result.wheels == []
    assert _empty(tmp_path / "work")


def test_a_setup_py_sdist_builds_where_the_builder_has_no_wheel_package(index, tmp_path):
    """A fresh venv (a Pi's, or the emulated userland's /opt/piw) has setuptools but not
    ``wheel``: a project without pyproject.toml still builds, in an isolated environment."""
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    python = str(tmp_path / "venv/bin/python")
    has_wheel = subprocess.run([python, "-c", "import wheel"], capture_output=True)
    assert has_wheel.returncode != 0, "the fresh venv was meant to lack wheel"
    result = build_wheel(index, "legacy-pkg", "1.0", tmp_path / "out", timeout=300,
                         python=python)
    assert result.status == "success", result.log[-3000:]
    assert [w.name for w in result.wheels] == ["legacy_pkg-1.0-py3-none-any.whl"]
