"""What a page shows, as plain data: the index service gathers it from the database, the
renderers (piw_services.index.render) turn it into HTML and JSON without touching anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class IndexFile:
    """One wheel we serve, at ``/simple/<project>/<filename>`` (its METADATA at
    ``<filename>.metadata``)."""

    filename: str
    sha256: str
    size: int
    upload_time: datetime  # timezone-aware UTC
    requires_python: str | None  # from the wheel's own METADATA
    metadata_sha256: str | None  # None: no .metadata served for it
    yanked: bool = False
    yanked_reason: str | None = None
    apt_depends: tuple[str, ...] = ()
    unresolved: tuple[str, ...] = ()  # libraries no Debian package provides
    abi: str = ""  # the build target (job queue) that produced it: cp311-linux_armv7l
    requires_dist: tuple[str, ...] = ()  # the wheel's Requires-Dist, as its METADATA has them


@dataclass(frozen=True)
class BuildStatus:
    """What happened to one (version, build target): state is built, failed, pending (queued
    or building) or skipped; ``log_url`` points at the gzipped build log when there is one.
    ``abi`` is the target key, ``cp311-linux_armv7l`` (the database's column name)."""

    abi: str
    state: str
    note: str | None = None
    duration: float | None = None
    log_url: str | None = None
    #: the target's image is ARMv6-compatible: its armv7l wheels also serve armv6l Pis
    armv6: bool = False

    @property
    def python_abi(self) -> str:
        """The ABI part of the target: cp311."""
        return self.abi.partition("-")[0]

    @property
    def platform(self) -> str:
        """The platform part of the target: linux_armv7l ("" for a bare ABI)."""
        return self.abi.partition("-")[2]


@dataclass(frozen=True)
class ShownVersion:
    version: str
    released: datetime | None
    prerelease: bool
    yanked: bool = False
    yanked_reason: str | None = None
    skip: str | None = None  # why it is not built (binary-only upstream, an operator's skip)
    quarantined: bool = False  # taken down upstream: its files are withheld (not listed)
    builds: tuple[BuildStatus, ...] = ()
    files: tuple[IndexFile, ...] = ()


@dataclass(frozen=True)
class Project:
    """A live project: ``name`` is canonical (PEP 503); versions newest first."""

    name: str
    display_name: str
    summary: str | None = None
    versions: tuple[ShownVersion, ...] = ()
    downloads_30d: int = 0
    downloads_all: int = 0
    downloads_per_day: tuple[tuple[date, int], ...] = ()  # the last 30 days, oldest first

    @property
    def files(self) -> tuple[IndexFile, ...]:
        """Every file we serve for the project (the simple page lists these)."""
        return tuple(f for v in self.versions for f in v.files)

    def why_no_wheel(self) -> tuple[str, tuple[BuildStatus, ...]]:
        """For a project with no file (and so no simple page): why, from its newest version,
        and the failed builds whose logs say more."""
        if not self.versions:
            return "it has no versions yet", ()
        newest = self.versions[0]
        states = {b.state for b in newest.builds}
        failed = tuple(b for b in newest.builds if b.state == "failed")
        if newest.skip:
            return f"{newest.version} is not built ({newest.skip})", ()
        if "pending" in states:
            return f"{newest.version} is still to be built", ()
        if failed:
            return f"the build of {newest.version} failed", failed
        notes = sorted({b.note for b in newest.builds if b.state == "skipped" and b.note})
        if notes:
            return f"{newest.version} is not built ({'; '.join(notes)})", ()
        return f"{newest.version} has not been built", ()


@dataclass(frozen=True)
class PackageSummary:
    """A row of /packages.json (the home page's search box)."""

    name: str
    summary: str | None = None
    downloads_30d: int = 0
    downloads_all: int = 0


@dataclass(frozen=True)
class SiteInfo:
    """What the home page says of the index."""

    base_url: str  # e.g. https://www.piwheels.example (no trailing slash); "" for relative
    projects: int = 0
    files: int = 0
    abis: tuple[str, ...] = field(default_factory=tuple)
