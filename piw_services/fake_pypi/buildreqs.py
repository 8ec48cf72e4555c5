"""Build requirements for a fake index, made offline from this environment.

pip builds every sdist in an isolated environment that installs setuptools and wheel from the
index it builds against. piw-fake-pypi serves them when they lie in its packages directory;
these functions repack the installed distributions into wheels, so the demo and the tests
build real sdists without reaching PyPI.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import re
import zipfile
from pathlib import Path

#: What pip's build isolation needs for a setuptools sdist (packaging: setuptools' own need).
BUILD_REQUIREMENTS = ("setuptools", "wheel", "packaging")


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


def write_build_requirements(dest: Path) -> list[Path]:
    """Repack :data:`BUILD_REQUIREMENTS` into *dest*; raises PackageNotFoundError when one
    is not installed here."""
    dest.mkdir(parents=True, exist_ok=True)
    return [repack_installed(dist, dest) for dist in BUILD_REQUIREMENTS]
