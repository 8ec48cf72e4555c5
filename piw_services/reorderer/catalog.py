"""The catalog as last-writer-wins registers with tombstones (reorderer contract point 2).

Every fact keeps the order key ``k`` (see :mod:`.parse`) of the newest row that created it and
of the newest row that deleted it; a fact holds when its creation is newer than every deletion
that covers it (its own, its version's, its package's). Applying a row is therefore commutative
and idempotent: the catalog is the same whatever the arrival order, and equals applying the log
sorted by (timestamp, serial). A package's *life* is named by the serial of its newest
deletion: facts of an older life can never come back.

:func:`apply_rows` also returns the ordered events: the differences each row made to what
consumers can see, so a late row that changes nothing emits nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from piw_services import events as ev
from piw_services.reorderer.parse import CREATING, K_SCALE, Kind, Row

SOURCE_SUFFIXES = (".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar.xz", ".tar")


def is_source_file(filename: str, pyver: str | None) -> bool:
    """Whether a file is an sdist, the thing our builders build from."""
    return pyver == "source" or (pyver is None and filename.endswith(SOURCE_SUFFIXES))


def timestamp_of(k: int) -> int:
    return k // K_SCALE


@dataclass(slots=True)
class FileState:
    pyver: str | None = None
    added_k: int = 0
    removed_k: int = 0


@dataclass(slots=True)
class VersionState:
    created_k: int = 0
    deleted_k: int = 0
    release_k: int = 0  # newest "new release" row: the release time we show
    yank_k: int = 0
    yanked: bool = False
    yanked_reason: str | None = None
    requires_python: str | None = None
    # "release quarantined" / "release quarantine cleared": last writer wins, like a yank
    quarantine_k: int = 0
    quarantined: bool = False
    files: dict[str, FileState] = field(default_factory=dict)


@dataclass(slots=True)
class PackageState:
    name: str  # canonical
    display_name: str = ""
    display_k: int = 0
    created_k: int = 0
    deleted_k: int = 0
    quarantine_k: int = 0
    quarantined: bool = False
    versions: dict[str, VersionState] = field(default_factory=dict)
    dirty: bool = False
    dirty_versions: set[str] = field(default_factory=set)
    dirty_files: set[tuple[str, str]] = field(default_factory=set)
    # What the database already holds (so a save can COPY new rows and upsert only the rest).
    stored: bool = False
    stored_versions: set[str] = field(default_factory=set)
    stored_files: set[tuple[str, str]] = field(default_factory=set)

    # -- derived truth -------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.created_k > self.deleted_k

    @property
    def life(self) -> int:
        """Which life this is: the serial of the row that ended the previous one (0: first)."""
        return self.deleted_k % K_SCALE

    @property
    def is_quarantined(self) -> bool:
        return self.quarantined and self.quarantine_k > self.deleted_k

    def floor(self, v: VersionState) -> int:
        """The newest deletion covering version *v*: its facts must be newer than this."""
        return max(v.deleted_k, self.deleted_k)

    def version_alive(self, v: VersionState) -> bool:
        return v.created_k > self.floor(v)

    def file_alive(self, v: VersionState, f: FileState) -> bool:
        return f.added_k > max(f.removed_k, self.floor(v))

    def version_yanked(self, v: VersionState) -> bool:
        return v.yanked and v.yank_k > self.floor(v)

    def version_quarantined(self, v: VersionState) -> bool:
        """Taken down upstream (warehouse's release quarantine) in the version's life."""
        return v.quarantined and v.quarantine_k > self.floor(v)

    def live_files(self, v: VersionState) -> dict[str, FileState]:
        return {fn: f for fn, f in v.files.items() if self.file_alive(v, f)}

    def unbuildable_reason(self, v: VersionState) -> str | None:
        """None when upstream has a source file for *v*; else why it cannot be built."""
        view = _version_view(self, v)
        return "no such version" if view is None else view[3]

    # -- mutation ------------------------------------------------------------------------
    def version(self, version: str) -> VersionState:
        v = self.versions.get(version)
        if v is None:
            v = self.versions[version] = VersionState()
        self.dirty_versions.add(version)
        return v


def _apply(pkg: PackageState, row: Row, kind: Kind) -> None:
    k = row.k
    if kind in CREATING:
        if k > pkg.created_k:
            pkg.created_k = k
        if k > pkg.display_k:
            pkg.display_k, pkg.display_name = k, row.name
        pkg.dirty = True
    if kind is Kind.REMOVE_PROJECT:
        if k > pkg.deleted_k:
            pkg.deleted_k = k
            pkg.dirty = True
        return
    if kind in (Kind.QUARANTINE, Kind.UNQUARANTINE):
        if k > pkg.quarantine_k:
            pkg.quarantine_k, pkg.quarantined = k, kind is Kind.QUARANTINE
            pkg.dirty = True
        return
    if row.version is None:  # CREATE / RENAME
        return
    v = pkg.version(row.version)
    if kind in (Kind.RELEASE, Kind.ADD_FILE):
        v.created_k = max(v.created_k, k)
    if kind is Kind.RELEASE:
        v.release_k = max(v.release_k, k)
    elif kind is Kind.REMOVE_RELEASE:
        v.deleted_k = max(v.deleted_k, k)
    elif kind in (Kind.YANK, Kind.UNYANK):
        if k > v.yank_k:
            v.yank_k, v.yanked = k, kind is Kind.YANK
    elif kind in (Kind.RELEASE_QUARANTINE, Kind.RELEASE_UNQUARANTINE):
        if k > v.quarantine_k:
            v.quarantine_k, v.quarantined = k, kind is Kind.RELEASE_QUARANTINE
    elif kind in (Kind.ADD_FILE, Kind.REMOVE_FILE):
        assert row.filename is not None
        f = v.files.get(row.filename)
        if f is None:
            f = v.files[row.filename] = FileState(pyver=row.pyver)
        if kind is Kind.ADD_FILE:
            if k > f.added_k:
                f.added_k = k
                f.pyver = row.pyver
        else:
            f.removed_k = max(f.removed_k, k)
        pkg.dirty_files.add((row.version, row.filename))


def targets(row: Row) -> list[tuple[str, Kind]]:
    """The (package, effect) pairs a row has: a rename also removes the old name."""
    if row.kind is Kind.RENAME and row.old_name and row.old_name != row.package:
        return [(row.old_name, Kind.REMOVE_PROJECT), (row.package, Kind.RENAME)]
    return [(row.package, row.kind)]


# -- what consumers see ------------------------------------------------------------------
# These run once or twice per upstream row (a replay applies millions), so they are written
# as plain loops over locals rather than with generators and properties.
def _version_view(pkg: PackageState, v: VersionState) -> tuple[Any, ...] | None:
    floor = v.deleted_k if v.deleted_k > pkg.deleted_k else pkg.deleted_k
    if v.created_k <= floor:
        return None
    files = []
    source = False
    for fn, f in v.files.items():
        if f.added_k > f.removed_k and f.added_k > floor:
            files.append((fn, f.pyver))
            if not source and is_source_file(fn, f.pyver):
                source = True
    if not files:
        reason = "no files upstream"
    elif source:
        reason = None
    else:
        reason = "binary-only: no source file upstream"
    yanked = v.yanked and v.yank_k > floor
    return (floor % K_SCALE, yanked, v.yanked_reason if yanked else None, reason,
            frozenset(files), v.quarantined and v.quarantine_k > floor)


def _snapshot(pkg: PackageState, versions: Iterable[str]) -> tuple[Any, dict[str, Any]]:
    if pkg.created_k > pkg.deleted_k:
        head = (True, pkg.display_name, pkg.deleted_k % K_SCALE,
                pkg.quarantined and pkg.quarantine_k > pkg.deleted_k)
    else:
        head = None
    known = pkg.versions
    return head, {ver: _version_view(pkg, known[ver]) for ver in versions if ver in known}


def _diff(pkg: PackageState, row: Row, before: tuple[Any, dict], after: tuple[Any, dict],
          out: list[dict[str, Any]]) -> None:
    """Append to *out* the events that turn *before* into *after*."""
    base = {"package": pkg.name, "serial": row.serial, "timestamp": row.timestamp}
    (head0, vers0), (head1, vers1) = before, after
    if head0 and (not head1 or head1[2] != head0[2]):
        out.append({"type": ev.PACKAGE_REMOVED, **base, "life": head0[2]})
        head0 = None
        vers0 = {}
    for ver, old in vers0.items():  # removals, children before parents
        new = vers1.get(ver)
        if old is None:
            continue
        if new is None or new[0] != old[0]:
            out.append({"type": ev.VERSION_REMOVED, **base, "version": ver})
        elif old[4] != new[4]:
            kept = {f for f, _ in new[4]}
            for fn, _ in old[4] - new[4]:
                if fn not in kept:
                    out.append({"type": ev.FILE_REMOVED, **base, "version": ver, "filename": fn})
    if head1 and not head0:
        out.append({"type": ev.PACKAGE_ADDED, **base, "display_name": head1[1],
                    "life": head1[2]})
    elif head1 and head0 and head1[1] != head0[1]:
        out.append({"type": ev.PACKAGE_RENAMED, **base, "display_name": head1[1]})
    if head1 and bool(head1[3]) != bool(head0 and head0[3]):
        out.append({"type": ev.PACKAGE_QUARANTINED if head1[3] else ev.PACKAGE_UNQUARANTINED,
                    **base})
    for ver, new in vers1.items():
        if new is None:
            continue
        old = vers0.get(ver)
        if old is not None and old[0] != new[0]:
            old = None  # a new life of the version
        if old is None:
            v = pkg.versions[ver]
            out.append({"type": ev.VERSION_ADDED, **base, "version": ver, "life": new[0],
                        "released": timestamp_of(v.release_k or v.created_k),
                        "yanked": new[1], "yanked_reason": new[2],
                        "buildable": new[3] is None, "unbuildable_reason": new[3],
                        "quarantined": new[5]})
            added = new[4]
        else:
            if old[1] != new[1]:
                out.append({"type": ev.VERSION_YANKED if new[1] else ev.VERSION_UNYANKED,
                            **base, "version": ver, "reason": new[2]})
            if old[5] != new[5]:
                out.append({"type": ev.VERSION_QUARANTINED if new[5]
                            else ev.VERSION_UNQUARANTINED, **base, "version": ver})
            if old[3] != new[3]:
                out.append({"type": ev.VERSION_BUILDABLE, **base, "version": ver,
                            "buildable": new[3] is None, "unbuildable_reason": new[3]})
            added = new[4] - old[4] if new[4] != old[4] else ()
        for fn, pyver in sorted(added):
            out.append({"type": ev.FILE_ADDED, **base, "version": ver, "filename": fn,
                        "pyver": pyver})


def apply_rows(packages: dict[str, PackageState], rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Apply *rows* (in the order given) to the loaded *packages*, returning the events.

    *packages* must hold every package the rows touch (see :func:`targets`), every version a
    row names (with all of its files), and all versions of a package a row deletes; missing
    ones are created empty.
    """
    events: list[dict[str, Any]] = []
    # Upstream writes a release's rows together (release, then its files), so the view after
    # one row is often the view before the next: computing a view costs O(files).
    last: tuple[PackageState, list[str], tuple[Any, dict[str, Any]]] | None = None
    for row in rows:
        for name, kind in targets(row):
            pkg = packages.get(name)
            if pkg is None:
                pkg = packages[name] = PackageState(name=name, display_name=name)
            # Only a package deletion can change what its other versions look like.
            if kind is Kind.REMOVE_PROJECT:
                scope = list(pkg.versions)
            else:
                scope = [row.version] if row.version is not None else []
            if last is not None and last[0] is pkg and scope == last[1]:
                before = last[2]  # the same version as the row before: its view after it
            else:
                before = _snapshot(pkg, scope)
            _apply(pkg, row, kind)
            after = _snapshot(pkg, scope)
            _diff(pkg, row, before, after, events)
            last = (pkg, scope, after)
    return events
