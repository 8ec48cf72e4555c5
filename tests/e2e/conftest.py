"""Fixtures for whole-system tests: an upstream with real sdists, the master, builders."""

import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from piw_services.cli.services import MASTER_SERVICES
from piw_services.fake_pypi.buildreqs import write_build_requirements
from tests.conftest import BIN, wait_for
from tests.fake_pypi.fake_pypi_helpers import write_sdist

#: setup.py of an sdist whose wheel is ~24 MiB of random bytes: its upload takes many chunks.
BIG_SETUP = """\
import os
from setuptools import setup
os.makedirs("bigpkg_data", exist_ok=True)
with open("bigpkg_data/__init__.py", "w"):
    pass
with open("bigpkg_data/blob.bin", "wb") as fh:
    fh.write(os.urandom(24 * 1024 * 1024))
setup(name="bigpkg", version="1.0", packages=["bigpkg_data"],
      package_data={"bigpkg_data": ["blob.bin"]})
"""

#: An sdist whose build never ends (for the time limit).
SLOW_SETUP = "import time\ntime.sleep(3600)\n"


@pytest.fixture(scope="session")
def upstream_packages(tmp_path_factory):
    """The files the fake PyPI serves beside the ones it generates: what build isolation
    installs (repacked from this venv: nothing is downloaded), and two hand-made sdists."""
    packages = tmp_path_factory.mktemp("upstream-packages")
    try:
        write_build_requirements(packages)
    except importlib.metadata.PackageNotFoundError as exc:
        pytest.skip(f"cannot repack build requirements: {exc}")
    write_sdist(packages, "bigpkg", "1.0", {"setup.py": BIG_SETUP})
    write_sdist(packages, "slowpkg", "1.0", {"setup.py": SLOW_SETUP})
    return packages


def release(name, version, serial, kind=None, t0=None):
    """Changelog rows of a new project with one release and its sdist."""
    t0 = t0 or int(time.time()) - 3600
    sdist = f"{name.replace('-', '_').replace('.', '_').lower()}-{version}.tar.gz"
    extra = {"kind": kind} if kind else {}
    return [
        {"name": name, "version": None, "timestamp": t0 + serial, "action": "create",
         "serial": serial},
        {"name": name, "version": version, "timestamp": t0 + serial + 1,
         "action": "new release", "serial": serial + 1, **extra},
        {"name": name, "version": version, "timestamp": t0 + serial + 2,
         "action": f"add source file {sdist}", "serial": serial + 2},
    ]


def ev(name, version, action, serial, **extra):
    """One changelog row, timestamped by its serial (an hour's history before now)."""
    return {"name": name, "version": version, "timestamp": int(time.time()) - 3000 + serial,
            "action": action, "serial": serial, **extra}


@pytest.fixture
def system(db, processes, piw_env, fake_pypi, upstream_packages, tmp_path, rpc):
    """Start upstream + master services (+ builders on demand) against *events*, on an empty
    database (``db`` comes first, so its reset can never follow the start)."""

    class System:
        www = tmp_path / "www"
        web = "http://" + piw_env["PIW_WEB_ADDRESS"]
        env = piw_env  # what every process of the system runs with

        def start(self, events, abis="cp311:host:bookworm", without=(), packages=None, **env):
            """Upstream (serving *packages*, else ``upstream_packages``) and the master;
            services named in *without* are left to the test (``self.service(name)`` starts
            one in a process of its own)."""
            self.upstream = fake_pypi(events, packages=packages or upstream_packages)
            piw_env.update(PIW_BUILD_ABIS=abis, PIW_BUILDER_AMQP_URI=piw_env["PIW_AMQP_URI"],
                           PIW_BUILDER_INDEX_URL=piw_env["PIW_UPSTREAM"] + "/simple/",
                           PIW_HEARTBEAT_INTERVAL="1", **env)
            only = [arg for name in MASTER_SERVICES if name not in without
                    for arg in ("--only", name)] if without else []
            processes.start("master", [str(BIN / "piw-master"), *only])
            if "build_dispatch" not in without:
                wait_for(lambda: rpc.build_dispatch.status()["abis"], 60,
                         what="build_dispatch to start")

        def service(self, name, **env):
            """One master service in its own process (with extra environment, such as a
            crash point)."""
            saved = dict(piw_env)
            piw_env.update(env)
            try:
                return processes.start(name, [str(BIN / "piw-master"), "--only", name])
            finally:
                piw_env.clear()
                piw_env.update(saved)

        def append(self, rows):
            """Events upstream publishes while we run."""
            requests.post(self.upstream + "/_control/events", json=rows,
                          timeout=10).raise_for_status()

        def audit(self):
            """piw-audit once the system is quiet: it must find nothing."""
            run = subprocess.run([str(BIN / "piw-audit"), "--wait", "60", "--settle", "15"],
                                 env=piw_env, capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stdout + run.stderr
            return run.stdout

        def builder(self, label, **env):
            saved = dict(piw_env)
            piw_env.update(PIW_BUILDER_WORK_DIR=str(tmp_path / f"work-{label}"), **env)
            try:
                return processes.start(label, [str(BIN / "piw-builder"), "--label", label])
            finally:
                piw_env.clear()
                piw_env.update(saved)

        def targets(self, package):
            return rpc.build_dispatch.version_status(package)

        def web_status(self):
            return rpc.web.status()

        def settled(self, *packages):
            """Wait until every target of *packages* is built or failed; returns them."""
            def done():
                rows = [t for p in packages for t in self.targets(p)]
                return rows if rows and all(t["state"] in ("built", "failed", "skipped")
                                            for t in rows) else None
            return wait_for(done, 240, interval=1, what=f"builds of {packages}",
                            describe=lambda: {p: self.targets(p) for p in packages})

    return System()


# -- what the system holds, for the assertions of whole-system tests ---------------------------
def wheel(name, version):
    return f"{name}-{version}-py3-none-any.whl"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def store_files(www: Path) -> dict[str, Path]:
    """Every wheel in the store, by filename."""
    simple = www / "simple"
    return {p.name: p for p in simple.rglob("*.whl")} if simple.exists() else {}


def builds(db):
    """Every recorded build, oldest first, with its builder's label."""
    with db() as s:
        return [dict(r._mapping) for r in s.execute(text(
            "SELECT b.id, b.job_id, b.package, b.version, b.abi, b.builder_id, b.status, "
            "b.files, b.log_gz, k.label FROM builds b JOIN builders k ON k.id = b.builder_id "
            "ORDER BY b.id"))]


def files(db):
    """Every ``files`` row, by filename."""
    with db() as s:
        return {r.filename: r for r in s.execute(text("SELECT * FROM files"))}


def files_of(db, package):
    with db() as s:
        return dict(s.execute(text("SELECT filename, job_id FROM files WHERE package = :p"),
                              {"p": package}).all())


def simple_page(system, package):
    response = requests.get(f"{system.web}/simple/{package}/", timeout=5)
    return response.text if response.ok else None


def project_json(system, package):
    response = requests.get(f"{system.web}/project/{package}/json/", timeout=5)
    return response.json() if response.ok else None


def on_disk(system, package, filename):
    return (system.www / "simple" / package / filename).exists()


# -- emulated Raspberry Pi userlands (tests/e2e/test_arm.py) -----------------------------------
#: A real sdist with a C extension (MarkupSafe's speedups), pinned by its sha256 on PyPI.
MARKUPSAFE = ("MarkupSafe-2.1.5.tar.gz",
              "d283d37a890ba4c1ae73ffadf8046435c76e7bc2247bbb63c00bd1a709c6544b")


@pytest.fixture(scope="session")
def arm_roots(tmp_path_factory):
    """Emulated Pi userlands, Debian bookworm armhf and arm64 under qemu-user, each set up as
    a Pi owner's (``piw-builder-image setup``: the cached userland unpacked, this checkout's
    wheel pip-installed in it): ``{arch: (root, the target its Python announces)}``. The
    first run on a machine makes the userlands (minutes); later runs take them from the cache
    (outside the checkout). Both are set up at once."""
    from concurrent.futures import ThreadPoolExecutor

    from builders import image

    try:
        for arch in image.ARCHES:
            image.check_host(arch)
    except image.ImageError as exc:
        pytest.skip(f"no emulated ARM userland here: {exc}")
    base = tmp_path_factory.mktemp("arm")
    with ThreadPoolExecutor(len(image.ARCHES)) as pool:
        made = {arch: pool.submit(image.setup_root, image.Userland(arch), base / arch)
                for arch in image.ARCHES}
        roots = {arch: (base / arch, future.result()) for arch, future in made.items()}
    yield roots
    for root, _ in roots.values():  # ~450 MB each
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def markupsafe_sdist():
    """MarkupSafe's sdist, downloaded once into piw's cache (pip download) and checked."""
    from builders import image

    name, digest = MARKUPSAFE
    path = image.cache_dir() / "sdists" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                               "--no-binary", ":all:", "-d", str(path.parent),
                               "MarkupSafe==2.1.5"], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot download {name}: {done.stderr.strip()[-500:]}")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} is not {name}"
    return path
