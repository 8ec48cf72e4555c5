"""Inspect a built wheel: identity, hashes, metadata and the Debian packages it needs at run time.

piw-builder runs this on the Pi right after a build, so the index can serve the file's hashes and
PEP 658 metadata, and tell users which ``apt`` packages to install before the wheel will import.

Everything that can be a pure function is one (:func:`parse_ldd`, :func:`parse_dpkg_search`), so it
can be tested on any host; only :func:`inspect_wheel` and :func:`owning_packages` run programs
(``ldd`` and ``dpkg``, never through a shell, always with a timeout).

Note that ``ldd`` asks the dynamic loader to map the object, so it should only be pointed at files
we built ourselves (the builder already ran the project's build code); it is not a sandbox.
"""

from __future__ import annotations

import email.header
import email.parser
import hashlib
import os
import re
import subprocess
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

__all__ = [
    "ELF_MAGIC",
    "InspectionError",
    "LibraryInfo",
    "WheelInfo",
    "inspect_wheel",
    "owning_packages",
    "parse_dpkg_search",
    "parse_ldd",
]

#: The first four bytes of every ELF file; how shared objects are found (suffixes lie).
ELF_MAGIC = b"\x7fELF"
#: Seconds one ``ldd`` or ``dpkg -S`` run may take before the inspection gives up.
COMMAND_TIMEOUT = 60.0
#: A METADATA file larger than this is refused rather than read into memory (zip bombs).
MAX_METADATA_BYTES = 16 * 1024 * 1024
_CHUNK = 1024 * 1024
#: Run programs in the C locale so their messages ("not found", ...) are the ones we parse.
_C_LOCALE = {"LC_ALL": "C", "LANG": "C", "LANGUAGE": ""}


class InspectionError(Exception):
    """The wheel cannot be inspected (not a zip, bad name, bad metadata, unsafe member, ...)."""


@dataclass(frozen=True)
class LibraryInfo:
    """One ELF file in the wheel and what the dynamic loader resolved each of its needs to.

    ``needed`` maps a soname (or the loader's own path) to the absolute path it resolved to on
    this system, to the wheel-relative path of a library bundled in the wheel itself, or to None
    when ldd could not find it.
    """

    path: str
    needed: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class WheelInfo:
    """Everything the index records about one built wheel file."""

    filename: str
    name: str
    version: str
    build_tag: str | None
    tags: list[str]
    size: int
    sha256: str
    requires_python: str | None
    requires_dist: list[str]
    metadata_sha256: str
    libraries: list[LibraryInfo]
    apt_depends: list[str]
    unresolved: list[str]

    def as_dict(self) -> dict[str, Any]:
        """Plain dicts, lists, strings and ints, ready for ``json.dumps`` and a message bus."""
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Pure parsers
# --------------------------------------------------------------------------------------------

_LDD_ARROW = re.compile(r"^(?P<name>\S+)\s+=>\s*(?P<target>.*?)\s*(?:\(0x[0-9a-fA-F]+\))?$")
_LDD_BARE = re.compile(r"^(?P<path>/\S.*?)\s*(?:\(0x[0-9a-fA-F]+\))?$")
_VDSO = re.compile(r"^linux-(?:vdso|gate)\d*\.so(?:\.\d+)*$")


def parse_ldd(output: str) -> dict[str, str | None]:
    """Map each soname in ``ldd`` output to the path it resolved to, or None if not found.

    The kernel's vDSO is skipped (no file provides it); the dynamic loader, listed by path, maps
    to itself. Output for static or non-dynamic files, warnings and symbol-version errors yields
    nothing, so only real dependencies are returned.
    """
    result: dict[str, str | None] = {}
    for raw in output.splitlines():
        line = raw.strip()
        if not line:
            continue
        match = _LDD_ARROW.match(line)
        if match:
            name, target = match["name"], match["target"]
            if _VDSO.match(name):
                continue
            if target == "not found":
                result[name] = None
            elif target.startswith("/"):
                result[name] = target
            elif not target:
                # Old glibc printed "name =>  (0x...)" for objects with no file.
                continue
            continue
        match = _LDD_BARE.match(line)
        if match and not line.endswith(":") and ": " not in line:
            path = match["path"]
            if not _VDSO.match(os.path.basename(path)):
                result[path] = path
        # Anything else ("statically linked", "not a dynamic executable", "ldd: warning: ...",
        # "./x.so: /lib/libc.so.6: version `GLIBC_2.99' not found ...") is not a dependency.
    return result


_DPKG_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]*(?::[a-z0-9-]+)?$")


def parse_dpkg_search(output: str) -> dict[str, str]:
    """Map each path in ``dpkg -S`` output to the (architecture-less) package that owns it.

    ``libc6:amd64, libc6:i386: /path`` gives ``libc6``; when several different packages share a
    path the first listed wins. Error and diversion lines are ignored.
    """
    result: dict[str, str] = {}
    for raw in output.splitlines():
        line = raw.rstrip("\r\n")
        if line.startswith("dpkg-query:") or line.startswith("dpkg:"):
            continue
        owners, sep, path = line.partition(": ")
        if not sep or not path.startswith("/"):
            continue
        packages = [p.strip() for p in owners.split(",")]
        # "diversion by dash from: /bin/sh" and "local diversion to: ..." fail this check.
        if not packages or not all(_DPKG_PACKAGE.match(p) for p in packages):
            continue
        result.setdefault(path, packages[0].split(":", 1)[0])
    return result


# --------------------------------------------------------------------------------------------
# Programs: dpkg and ldd
# --------------------------------------------------------------------------------------------


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **_C_LOCALE}
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="surrogateescape",
            env=env,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise InspectionError(f"{argv[0]} took longer than {COMMAND_TIMEOUT:g}s") from exc


def _dpkg_search(paths: list[str]) -> dict[str, str] | None:
    """One ``dpkg -S`` call; None when dpkg is not installed."""
    if not paths:
        return {}
    try:
        # Exits 1 when any path is unowned; what it printed for the others is still right.
        done = _run(["dpkg", "-S", *paths])
    except (FileNotFoundError, PermissionError):
        return None
    return parse_dpkg_search(done.stdout)


def _usr_variant(path: str) -> str:
    """The other spelling of ``path`` under Debian's merged /usr (/lib/x <-> /usr/lib/x)."""
    if path.startswith("/usr/"):
        return path[len("/usr") :]
    return "/usr" + path


def owning_packages(paths: Iterable[str]) -> dict[str, str | None]:
    """Map each absolute path to the Debian package that owns it, or None if none does.

    dpkg knows a file by the path its package shipped it under, which on a merged-/usr system
    may differ from the one the loader reports, so an unmatched path is retried as its realpath
    and with ``/usr`` added or removed. Without dpkg (a non-Debian host) every answer is None.
    """
    wanted = list(dict.fromkeys(paths))
    result: dict[str, str | None] = dict.fromkeys(wanted)
    queried = [p for p in wanted if p.startswith("/")]
    found = _dpkg_search(queried)
    if found is None:
        return result
    alternatives: dict[str, list[str]] = {}
    for path in queried:
        if path in found:
            result[path] = found[path]
            continue
        real = os.path.realpath(path)
        candidates = [path, _usr_variant(path), real, _usr_variant(real)]
        alternatives[path] = [c for c in dict.fromkeys(candidates) if c != path]
    retry = dict.fromkeys(c for cs in alternatives.values() for c in cs if c not in found)
    found.update(_dpkg_search(list(retry)) or {})
    for path, candidates in alternatives.items():
        result[path] = next((found[c] for c in candidates if c in found), None)
    return result


def _ldd(path: Path) -> dict[str, str | None]:
    try:
        done = _run(["ldd", str(path)])
    except FileNotFoundError as exc:
        raise InspectionError("ldd is not installed; cannot inspect shared objects") from exc
    return parse_ldd(done.stdout)


# --------------------------------------------------------------------------------------------
# The wheel file
# --------------------------------------------------------------------------------------------


def _check_member_name(name: str) -> None:
    parts = re.split(r"[\\/]", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise InspectionError(f"unsafe member {name!r}: absolute path")
    if ".." in parts:
        raise InspectionError(f"unsafe member {name!r}: contains '..'")


def _hash_file(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _header_text(value: object) -> str:
    """A header value as text; non-ASCII bytes come back from the parser as Header objects."""
    if isinstance(value, email.header.Header):
        chunks = []
        for data, _charset in email.header.decode_header(value):
            if isinstance(data, bytes):
                try:
                    data = data.decode("utf-8")
                except UnicodeDecodeError:
                    data = data.decode("latin-1")
            chunks.append(data)
        value = "".join(chunks)
    return str(value).strip()


def _find_metadata(infos: list[zipfile.ZipInfo]) -> zipfile.ZipInfo:
    candidates = [
        info
        for info in infos
        if (p := PurePosixPath(info.filename)).name == "METADATA"
        and len(p.parts) == 2
        and p.parts[0].endswith(".dist-info")
    ]
    if not candidates:
        raise InspectionError("no *.dist-info/METADATA in the wheel")
    if len(candidates) > 1:
        names = ", ".join(sorted(i.filename for i in candidates))
        raise InspectionError(f"more than one *.dist-info/METADATA in the wheel: {names}")
    return candidates[0]


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int | None = None) -> bytes:
    try:
        with zf.open(info) as fh:
            return fh.read() if limit is None else fh.read(limit)
    except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError) as exc:
        raise InspectionError(f"cannot read member {info.filename!r}: {exc}") from exc


def _parse_metadata(data: bytes, name: str, version: Version) -> tuple[str | None, list[str]]:
    headers = email.parser.BytesHeaderParser().parsebytes(data)
    meta_name, meta_version = headers.get("Name"), headers.get("Version")
    if meta_name is None or meta_version is None:
        raise InspectionError("METADATA has no Name or no Version")
    meta_name, meta_version = _header_text(meta_name), _header_text(meta_version)
    if canonicalize_name(meta_name) != name:
        raise InspectionError(f"METADATA Name {meta_name!r} does not match the filename's {name!r}")
    try:
        parsed = Version(meta_version)
    except InvalidVersion as exc:
        raise InspectionError(f"METADATA Version {meta_version!r} is not valid") from exc
    if parsed != version:
        raise InspectionError(
            f"METADATA Version {meta_version!r} does not match the filename's {str(version)!r}"
        )
    requires_python = _header_text(headers.get("Requires-Python", "")) or None
    requires_dist = [_header_text(v) for v in headers.get_all("Requires-Dist") or []]
    return requires_python, [r for r in requires_dist if r]


def _scan_libraries(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> list[LibraryInfo]:
    """Extract every ELF member (keeping the wheel's layout, for $ORIGIN rpaths) and ldd it."""
    elves = [
        info
        for info in infos
        if not info.is_dir() and _read_member(zf, info, len(ELF_MAGIC)) == ELF_MAGIC
    ]
    if not elves:
        return []
    libraries = []
    with tempfile.TemporaryDirectory(prefix="piw-inspect-") as tmp:
        root = Path(os.path.realpath(tmp))
        try:
            for info in elves:
                dest = root / info.filename
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, dest.open("wb") as out:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                dest.chmod(0o755)
        except (OSError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError) as exc:
            raise InspectionError(f"cannot extract shared objects: {exc}") from exc
        for info in sorted(elves, key=lambda i: i.filename):
            needed: dict[str, str | None] = {}
            for soname, resolved in _ldd(root / info.filename).items():
                if resolved is not None:
                    real = Path(os.path.realpath(resolved))
                    if real.is_relative_to(root):
                        # Bundled in the wheel itself: record where, not the temporary path.
                        resolved = real.relative_to(root).as_posix()
                needed[soname] = resolved
            libraries.append(LibraryInfo(path=info.filename, needed=needed))
    return libraries


def _normalise_preinstalled(preinstalled: Iterable[str]) -> frozenset[str]:
    if isinstance(preinstalled, str):
        raise TypeError("preinstalled must be an iterable of package names, not one string")
    return frozenset(p.strip().split(":", 1)[0] for p in preinstalled if p.strip())


def inspect_wheel(path: Path, preinstalled: Iterable[str] = ()) -> WheelInfo:
    """Describe the wheel at ``path``: the record the index stores and serves for it.

    ``preinstalled`` names the Debian packages already on the target image; they are left out of
    ``apt_depends`` because users never need to install them. Raises :class:`InspectionError`
    for anything that is not a well-formed, safe wheel.
    """
    path = Path(path)
    skip = _normalise_preinstalled(preinstalled)
    try:
        name, version, build, tags = parse_wheel_filename(path.name)
    except InvalidWheelFilename as exc:
        raise InspectionError(f"{path.name!r} is not a valid wheel filename: {exc}") from exc
    build_tag = path.name[:-4].split("-")[2] if build else None
    try:
        size, sha256 = _hash_file(path)
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise InspectionError(f"{path.name} is not a zip file: {exc}") from exc
    except OSError as exc:
        raise InspectionError(f"cannot read {path}: {exc}") from exc
    with zf:
        infos = zf.infolist()
        seen: set[str] = set()
        for info in infos:
            _check_member_name(info.filename)
            if info.filename in seen:
                raise InspectionError(f"duplicate member {info.filename!r}")
            seen.add(info.filename)
        meta_info = _find_metadata(infos)
        if meta_info.file_size > MAX_METADATA_BYTES:
            raise InspectionError(f"METADATA is {meta_info.file_size} bytes; refusing to read it")
        metadata = _read_member(zf, meta_info, MAX_METADATA_BYTES + 1)
        requires_python, requires_dist = _parse_metadata(metadata, name, version)
        libraries = _scan_libraries(zf, infos)

    system_paths = {
        resolved
        for lib in libraries
        for resolved in lib.needed.values()
        if resolved is not None and resolved.startswith("/")
    }
    owners = owning_packages(sorted(system_paths))
    unresolved: set[str] = set()
    depends: set[str] = set()
    for lib in libraries:
        for soname, resolved in lib.needed.items():
            if resolved is None:
                unresolved.add(soname)
            elif resolved.startswith("/"):
                owner = owners.get(resolved)
                if owner is None:
                    unresolved.add(soname)
                else:
                    depends.add(owner)
    return WheelInfo(
        filename=path.name,
        name=str(name),
        version=str(version),
        build_tag=build_tag,
        tags=sorted(str(tag) for tag in tags),
        size=size,
        sha256=sha256,
        requires_python=requires_python,
        requires_dist=requires_dist,
        metadata_sha256=hashlib.sha256(metadata).hexdigest(),
        libraries=libraries,
        apt_depends=sorted(depends - skip),
        unresolved=sorted(unresolved),
    )
