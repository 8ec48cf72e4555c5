"""Helpers for the builder's tests: hand-made wheel zips, and real wheels built by pip."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from piw_services.fake_pypi.sdists import make_sdist

METADATA = "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"


def write_zip(path: Path, members: dict[str, bytes | str]) -> Path:
    """A zip with exactly these member names (ZipInfo keeps them verbatim, even hostile ones)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return path


def simple_wheel(
    directory: Path,
    name: str = "demo",
    version: str = "1.0",
    extra: dict[str, bytes | str] | None = None,
    metadata: str | None = None,
    filename: str | None = None,
) -> Path:
    """A minimal pure wheel; ``extra`` adds or replaces members."""
    info = f"{name}-{version}.dist-info"
    members: dict[str, bytes | str] = {
        f"{name}.py": "x = 1\n",
        f"{info}/METADATA": metadata
        if metadata is not None
        else METADATA.format(name=name, version=version),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/RECORD": "",
    }
    members.update(extra or {})
    return write_zip(directory / (filename or f"{name}-{version}-py3-none-any.whl"), members)


def pip_env() -> dict[str, str]:
    """This machine's pip config points at local mirrors: build with none of it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def start_pip_wheel(sdist: Path, out: Path) -> subprocess.Popen[str]:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--no-cache-dir",  # a real build every run, never a wheel reused from pip's cache
        "--isolated",
        "-w",
        str(out),
        str(sdist),
    ]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=pip_env()
    )


@pytest.fixture(scope="session")
def built_wheels(tmp_path_factory) -> dict[str, Path]:
    """Real wheels built by pip from generated sdists: {"c": the zlib one, "pure": the other}.

    Both builds run at once; the session shares them so each is built only once.
    """
    base = tmp_path_factory.mktemp("built")
    sdists = {
        "c": make_sdist(base / "sdists", "zlibby", "0.1", kind="c-zlib", requires_python=">=3.8"),
        "pure": make_sdist(base / "sdists", "puremod", "2.0", kind="pure"),
    }
    procs = {kind: start_pip_wheel(sdist, base / kind) for kind, sdist in sdists.items()}
    wheels = {}
    for kind, proc in procs.items():
        try:
            output, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        assert proc.returncode == 0, output
        (wheels[kind],) = (base / kind).glob("*.whl")
    return wheels
