"""Which files the fake PyPI serves, for the simple index, JSON API and downloads.

Files come from two places: a packages directory (real files, e.g. setuptools
and wheel wheels for build isolation, or hand-made fixtures) and, when
generation is on, sdists/wheels generated on demand for the releases in the
log.  Files in the directory for projects the log never mentions are served as
projects of their own.  Views, file bytes and digests are produced lazily and
cached.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from .sdists import default_sdist_filename, make_sdist, make_wheel, sdist_suffix
from .state import ProjectState, ReleaseState, UploadedFile

if TYPE_CHECKING:
    from .log import EventLog

GENERATED_DIRNAME = "_generated"
#: Bump when sdists.py changes what it writes, so stale cached files are not reused.
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class GenSpec:
    """Everything needed to (re)generate one file deterministically."""

    filename: str
    name: str
    version: str
    kind: str
    requires_python: str | None
    summary: str

    @property
    def key(self) -> str:
        """A short hash of the inputs: the cache subdirectory for this file."""
        text = f"{GENERATOR_VERSION}:{self!r}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class ServedFile:
    """One downloadable file and the metadata the indexes show for it."""

    filename: str
    project: str  # canonical name
    version: str
    packagetype: str  # "sdist" or "bdist_wheel"
    python_version: str
    requires_python: str | None
    yanked: bool
    yanked_reason: str | None
    upload_time: int
    path: Path | None = None  # a file in the packages directory ...
    generate: GenSpec | None = None  # ... or how to generate it


@dataclass
class ServedRelease:
    """A live version and its servable files."""

    version: str
    summary: str
    requires_python: str | None
    yanked: bool
    yanked_reason: str | None
    upload_time: int
    files: list[ServedFile] = field(default_factory=list)


@dataclass
class ServedProject:
    """A project as the indexes show it."""

    name: str
    canonical: str
    last_serial: int
    releases: dict[str, ServedRelease] = field(default_factory=dict)
    files: dict[str, ServedFile] = field(default_factory=dict)

    def add(self, release: ServedRelease, served: ServedFile) -> None:
        """Add a file to a release unless one of that name is already served."""
        if served.filename not in self.files:
            self.files[served.filename] = served
            release.files.append(served)


@dataclass(frozen=True)
class DirFile:
    """A parsed distribution filename found in the packages directory."""

    path: Path
    name: str  # as spelled in the filename
    canonical: str
    version: Version | str
    packagetype: str
    python_version: str


def parse_dist_filename(path: Path) -> DirFile | None:
    """Parse a wheel or sdist filename; None if it is neither (or unparseable)."""
    filename = path.name
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
            python_tag = filename[: -len(".whl")].split("-")[-3]
            return DirFile(path, name, name, version, "bdist_wheel", python_tag)
        suffix = sdist_suffix(filename)
        if suffix is None:
            return None
        if suffix in (".tar.gz", ".zip"):
            name, version = parse_sdist_filename(filename)
            display = filename[: -len(suffix)].rpartition("-")[0]
        else:
            display, _, version_text = filename[: -len(suffix)].rpartition("-")
            name, version = canonicalize_name(display), Version(version_text)
        return DirFile(path, display, name, version, "sdist", "source")
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


def _version_key(text: str) -> Version | str:
    try:
        return Version(text)
    except InvalidVersion:
        return text


def _release_view(release: ReleaseState) -> ServedRelease:
    return ServedRelease(
        version=release.version,
        summary=release.summary,
        requires_python=release.requires_python,
        yanked=release.yanked,
        yanked_reason=release.yanked_reason,
        upload_time=release.timestamp,
    )


def _generated_file(
    project: ProjectState, release: ReleaseState, row: UploadedFile | None
) -> ServedFile | None:
    """What to serve for a file row (or a release's default sdist) with no real file."""
    filename = row.filename if row else default_sdist_filename(project.name, release.version)
    if any(bad in filename for bad in ("/", "\\", "\x00")) or filename.startswith("."):
        return None  # nothing that could escape the cache directory
    if sdist_suffix(filename):
        packagetype = "sdist"
    elif filename.endswith(".whl"):
        try:
            parse_wheel_filename(filename)
        except InvalidWheelFilename:
            return None
        packagetype = "bdist_wheel"
    else:
        return None  # eggs, exes, ...: nothing sensible to generate
    requires_python = row.requires_python if row else release.requires_python
    return ServedFile(
        filename=filename,
        project=project.canonical,
        version=release.version,
        packagetype=packagetype,
        python_version=row.python_version if row else "source",
        requires_python=requires_python,
        yanked=release.yanked,
        yanked_reason=release.yanked_reason,
        upload_time=row.timestamp if row else release.timestamp,
        generate=GenSpec(
            filename=filename,
            name=project.name,
            version=release.version,
            kind=row.kind if row else release.kind,
            requires_python=requires_python,
            summary=row.summary if row else release.summary,
        ),
    )


def project_view(
    project: ProjectState, dir_files: Sequence[DirFile], generate: bool = True
) -> ServedProject:
    """What the indexes serve for a project in the log.

    Real files for a live version come first; then, if ``generate``, every file a
    live row names (or the default sdist of a release without file rows) that is
    not among them is generated on demand.  Files removed by a row are not served.
    """
    view = ServedProject(project.name, project.canonical, project.last_serial)
    keys: dict[Version | str, str] = {}
    for version, release in project.releases.items():
        if release.quarantined:  # warehouse/packaging/utils.py: on no index, 404 in JSON
            continue
        keys.setdefault(_version_key(version), version)
        view.releases[version] = _release_view(release)
    for dir_file in sorted(dir_files, key=lambda f: f.path.name):
        version = keys.get(dir_file.version)
        if version is None:
            continue
        release = project.releases[version]
        filename = dir_file.path.name
        if filename in release.removed:
            continue
        row = release.files.get(filename)
        view.add(
            view.releases[version],
            ServedFile(
                filename=filename,
                project=project.canonical,
                version=version,
                packagetype=dir_file.packagetype,
                python_version=row.python_version if row else dir_file.python_version,
                requires_python=row.requires_python if row else release.requires_python,
                yanked=release.yanked,
                yanked_reason=release.yanked_reason,
                upload_time=row.timestamp if row else release.timestamp,
                path=dir_file.path,
            ),
        )
    if generate:
        for version, release in project.releases.items():
            if release.quarantined:
                continue
            rows: list[UploadedFile | None] = list(release.files.values())
            for row in rows if release.had_file_rows else [None]:
                served = _generated_file(project, release, row)
                if served is not None:
                    view.add(view.releases[version], served)
    return view


def orphan_view(dir_files: Sequence[DirFile]) -> ServedProject:
    """A project the log never mentions, made only of files in the packages directory."""
    first = min(dir_files, key=lambda f: f.path.name)
    view = ServedProject(first.name, first.canonical, 0)
    for dir_file in sorted(dir_files, key=lambda f: f.path.name):
        version = str(dir_file.version)
        release = view.releases.get(version)
        if release is None:
            release = view.releases[version] = ServedRelease(version, "", None, False, None, 0)
        view.add(
            release,
            ServedFile(
                filename=dir_file.path.name,
                project=dir_file.canonical,
                version=version,
                packagetype=dir_file.packagetype,
                python_version=dir_file.python_version,
                requires_python=None,
                yanked=False,
                yanked_reason=None,
                upload_time=int(dir_file.path.stat().st_mtime),
                path=dir_file.path,
            ),
        )
    return view


ViewCache = dict[str, tuple[object, tuple[DirFile, ...], ServedProject | None]]


class Catalog:
    """The served view of one listing of the packages directory over the (live) log.

    Project views are built on demand and cached until that project's rows or
    its files in the directory change, so appends stay cheap on big logs.
    """

    def __init__(
        self,
        log: EventLog,
        dir_files: Iterable[Path] = (),
        generate: bool = True,
        cache: ViewCache | None = None,
    ) -> None:
        self.log = log
        self.generate = generate
        self._dir: dict[str, list[DirFile]] = {}
        for path in dir_files:
            parsed = parse_dist_filename(path)
            if parsed is not None:
                self._dir.setdefault(parsed.canonical, []).append(parsed)
        self._cache: ViewCache = {} if cache is None else cache
        self._lock = threading.Lock()

    def project(self, name: str) -> ServedProject | None:
        """The served view of a project by any spelling; None if not served."""
        canonical = canonicalize_name(name)
        state = self.log.project_state(canonical)
        if (state is None and self.log.is_known(canonical)) or (state and state.quarantined):
            return None  # removed or quarantined: its files in the directory are not served
        dir_files = tuple(self._dir.get(canonical, ()))
        with self._lock:
            cached = self._cache.get(canonical)
            if cached is not None and cached[0] is state and cached[1] == dir_files:
                return cached[2]
        if state is not None:
            view = project_view(state, dir_files, self.generate)
        else:
            view = orphan_view(dir_files) if dir_files else None
        with self._lock:
            self._cache[canonical] = (state, dir_files, view)
        return view

    def names(self) -> dict[str, str]:
        """Canonical -> display name of every served project (for ``/simple/``)."""
        state = self.log.state()
        names = {canonical: project.name for canonical, project in state.projects.items()
                 if not project.quarantined}
        for canonical, dir_files in self._dir.items():
            if canonical not in state.known:
                names[canonical] = min(dir_files, key=lambda f: f.path.name).name
        return names

    def file(self, filename: str) -> ServedFile | None:
        """The served file of that exact name, wherever it comes from."""
        candidates = [self.log.file_owner(filename)]
        parsed = parse_dist_filename(Path(filename))
        if parsed is not None:
            candidates.append(parsed.canonical)
        for canonical in candidates:
            view = None if canonical is None else self.project(canonical)
            if view is not None and filename in view.files:
                return view.files[filename]
        return None


@dataclass(frozen=True)
class Digests:
    """Size and the hashes PyPI publishes for a file."""

    size: int
    sha256: str
    md5: str
    blake2b_256: str


class FileStore:
    """Materialises served files (generating them if needed) and caches their digests."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self._lock = threading.Lock()
        self._digests: dict[tuple[str, int, int], Digests] = {}

    def path(self, served: ServedFile) -> Path:
        """The file on disk, generating it into the cache directory on first use."""
        if served.path is not None:
            return served.path
        spec = served.generate
        assert spec is not None
        target = self.cache_dir / spec.key / spec.filename
        if target.exists():
            return target
        with self._lock:
            if not target.exists():
                if served.packagetype == "bdist_wheel":
                    make_wheel(
                        target.parent,
                        spec.name,
                        spec.version,
                        filename=spec.filename,
                        requires_python=spec.requires_python,
                        summary=spec.summary,
                    )
                else:
                    make_sdist(
                        target.parent,
                        spec.name,
                        spec.version,
                        kind=spec.kind,
                        requires_python=spec.requires_python,
                        summary=spec.summary,
                        filename=spec.filename,
                    )
        return target

    def digests(self, served: ServedFile) -> Digests:
        """Size and hashes of the file, cached by (path, size, mtime)."""
        path = self.path(served)
        st = path.stat()
        key = (os.fspath(path), st.st_size, st.st_mtime_ns)
        cached = self._digests.get(key)
        if cached is None:
            data = path.read_bytes()
            cached = Digests(
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                md5=hashlib.md5(data).hexdigest(),
                blake2b_256=hashlib.blake2b(data, digest_size=32).hexdigest(),
            )
            self._digests[key] = cached
        return cached
