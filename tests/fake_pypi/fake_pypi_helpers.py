"""Helpers shared by the fake PyPI tests (a uniquely named module, not conftest)."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import os
import re
import sys
import tarfile
import zipfile
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


def repack_installed(dist_name: str, dest: Path) -> Path:
    """Rebuild a py3-none-any wheel from an installed pure distribution (offline), so a
    fake index can serve setuptools, wheel and packaging to pip's build isolation."""
    dist = importlib.metadata.distribution(dist_name)
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"]).lower()
    info_dir = f"{name}-{dist.version}.dist-info"
    skip = {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json"}
    records = []
    wheel_path = dest / f"{name}-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in dist.files or []:
            path = file.as_posix()
            if path.startswith("..") or "__pycache__" in path or path.endswith(".pyc"):
                continue
            if path.startswith(f"{info_dir}/") and path.split("/")[-1] in skip:
                continue
            source = Path(file.locate())
            if not source.is_file():
                continue
            data = source.read_bytes()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            records.append(f"{path},sha256={digest.decode()},{len(data)}")
            zf.writestr(path, data)
        records.append(f"{info_dir}/RECORD,,")
        zf.writestr(f"{info_dir}/RECORD", "\n".join(records) + "\n")
    return wheel_path


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
