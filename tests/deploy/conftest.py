"""piw as users install it: an sdist and a wheel built from the working tree (once per test
session), a master venv with ``piw[master]`` from the wheel and a builder venv with the plain
package from the sdist, each fresh, and commands run from an empty directory with an
environment that names no checkout.

pip keeps its downloads in its own cache (``~/.cache/pip``, outside the checkout), so after the
first run the venvs install without the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What an sdist is built from: the package's own files, nothing of tests/, bench/ or docs/.
SOURCE = ("setup.cfg", "pyproject.toml", "README.md", "piw_services", "builders", "config")
#: The interpreter the venvs are made from (not the dev venv's, whose packages they must not see).
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)


def run(cmd, *, timeout=600, check=True, **kwargs) -> subprocess.CompletedProcess:
    """Run *cmd*, text output captured; with *check*, fail the test with its output."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def user_env(**extra: str) -> dict[str, str]:
    """An environment as a user's shell has it: no PIW_* setting, no PYTHONPATH, no venv of
    the checkout on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIW_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and p != venv_bin)
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUNBUFFERED="1", **extra)
    return env


def make_venv(path: Path, *requirements: str) -> Path:
    """A fresh venv at *path* with *requirements* pip-installed; returns its bin directory."""
    run([BASE_PYTHON, "-m", "venv", path], env=user_env())
    run([path / "bin" / "pip", "install", "-q", *requirements], env=user_env(), timeout=900)
    return path / "bin"


@pytest.fixture(scope="session")
def dists(tmp_path_factory) -> dict[str, Path]:
    """``python -m build`` on a copy of the working tree: the sdist, and the wheel pip builds
    from that sdist (so the sdist is proven complete too)."""
    top = tmp_path_factory.mktemp("dists")
    src = top / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in SOURCE:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    run([sys.executable, "-m", "build", "--outdir", top / "out", src], env=user_env(),
        timeout=900)
    return {"sdist": next((top / "out").glob("piw-*.tar.gz")),
            "wheel": next((top / "out").glob("piw-*.whl"))}


@pytest.fixture(scope="session")
def master_bin(dists, tmp_path_factory) -> Path:
    """bin/ of a fresh venv with ``piw[master]`` installed from the wheel."""
    return make_venv(tmp_path_factory.mktemp("venvs") / "master", f"{dists['wheel']}[master]")


@pytest.fixture(scope="session")
def builder_bin(dists, tmp_path_factory) -> Path:
    """bin/ of a fresh venv with the plain package installed from the sdist, as on a Pi."""
    return make_venv(tmp_path_factory.mktemp("venvs") / "builder", str(dists["sdist"]))


@pytest.fixture
def fresh_db_url():
    """The URL of a database that does not exist yet (piw-initdb makes it); dropped after."""
    from sqlalchemy.engine import make_url

    from tests.conftest import drop_database

    base = make_url(os.environ.get("PIW_TEST_DB_URL",
                                   "postgresql+psycopg2://postgres@127.0.0.1:5432/piw_test"))
    url = base.set(database=f"piw_deploy_{os.getpid()}_{uuid.uuid4().hex[:6]}")
    yield url.render_as_string(hide_password=False)
    drop_database(url.render_as_string(hide_password=False))  # and the roles piw-initdb made


class Started:
    """Long-running commands started in an empty directory, stopped at teardown."""

    def __init__(self, cwd: Path, logs: Path) -> None:
        self.cwd, self.logs, self.procs = cwd, logs, {}

    def start(self, name: str, cmd: list, env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen([str(c) for c in cmd], env=env, cwd=self.cwd,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        return self.procs[name]

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def logs_text(self) -> str:
        return "\n".join(f"----- {name} -----\n{self.log(name)[-4000:]}" for name in self.procs)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def elsewhere(tmp_path):
    """An empty working directory (no config/ beside it, no checkout on sys.path) and the
    commands started there."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    started = Started(cwd, logs)
    yield started
    started.stop_all()
