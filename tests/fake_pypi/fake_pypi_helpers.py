"""Helpers shared by the fake PyPI tests (a uniquely named module, not conftest)."""

from __future__ import annotations

import io
import os
import sys
import tarfile
from pathlib import Path

T0 = 1_700_000_000  # a plausible PyPI timestamp

_VENV_PYTHON = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"
#: The interpreter pip builds run under: the project's venv if present.
PYTHON = str(_VENV_PYTHON) if _VENV_PYTHON.exists() else sys.executable


def ev(name, version, action, serial, ts=None, **extra):
    """One event dict; the timestamp defaults to T0 + serial so order is natural."""
    return {
        "name": name,
        "version": version,
        "timestamp": T0 + serial if ts is None else ts,
        "action": action,
        "serial": serial,
        **extra,
    }


def pip_env(home: Path) -> dict[str, str]:
    """Environment for pip subprocesses that ignores every site pip config and mirror."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env["HOME"] = str(home)
    return env


def pip_cmd(*args: str) -> list[str]:
    """A pip command line for the project's interpreter, isolated from user config."""
    return [PYTHON, "-m", "pip", "--isolated", *args]


def write_sdist(directory: Path, name: str, version: str, members: dict[str, str]) -> Path:
    """A hand-made sdist ``<name>-<version>.tar.gz`` holding PKG-INFO and *members*."""
    base = f"{name}-{version}"
    members = {"PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
               **members}
    path = directory / f"{base}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{base}/{member}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path
