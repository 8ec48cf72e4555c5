"""The catalog as last-writer-wins registers with tombstones (reorderer contract point 2).

Every fact keeps the order key ``k`` (see :mod:`.parse`) of the newest row that created it and
of the newest row that deleted it; a fact holds when its creation is newer than every deletion
that covers it (its own, its version's, its package's). Applying a row is therefore commutative
and idempotent: the catalog is the same whatever the arrival order, and equals applying the log
sorted by (timestamp, serial). A package's *life* is named by the serial of its newest
deletion: facts of an older life can never come back.

A legacy ``rename from <old>`` (old PyPI's history) moved the project: from the rename on,
the new name has the old one's releases and files, and the old name is deleted. So every row
of the old name older than the rename also counts for the new name (and, along a later
rename of that, for the next): :class:`Links` remembers the renames, :func:`targets` follows
them, and a rename that arrives after rows of the old name adopts their registers (those
older than it) into the new name. Registers only keep their newest key, so a rename applied
after a row of the old name *newer* than it cannot recover what that row overwrote; that
takes a rename more than the hold window late, and is logged (``rename_lost``).

:func:`apply_rows` also returns the ordered events: the differences each row made to what
consumers can see, so a late row that changes nothing emits nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from piw_services import events as ev
from piw_services.reorderer.parse import CREATING, K_SCALE, Kind, Row

log = logging.getLogger(__name__)

#: Legacy renames: old name -> [(new name, order key of the rename)].
Links = dict[str, list[tuple[str, int]]]

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


def created_after(pkg: PackageState, k: int) -> bool:
    """Whether a row newer than key *k* created something of *pkg*: if none did, a deletion
    at *k* ends all of it unchanged (the store need not load its versions for it)."""
    return pkg.created_k > k


def is_move(row: Row) -> bool:
    """A legacy rename to another name (not a respelling of the same one)."""
    return row.kind is Kind.RENAME and bool(row.old_name) and row.old_name != row.package


def reach(links: Links, name: str, k: int) -> list[str]:
    """The packages a row of *name* with order key *k* counts for: its own and, through every
    rename of it newer than the row, the new name's (transitively)."""
    if name not in links:  # nearly every package: a row costs one lookup, not a walk
        return [name]
    out = [name]
    for current in out:  # grows while it is walked
        out += [new for new, kl in links.get(current, ()) if k < kl and new not in out]
    return out


def targets(row: Row, links: Links | None = None) -> list[tuple[str, Kind]]:
    """The (package, effect) pairs a row has: a rename creates the new name and deletes the
    old one; with *links*, a row also counts for the names its package was renamed to after
    it."""
    if is_move(row) and row.old_name:
        base = [(row.package, Kind.RENAME), (row.old_name, Kind.REMOVE_PROJECT)]
        if not links or (row.package not in links and row.old_name not in links):
            return base
    elif not links or row.package not in links:  # nearly every row: no walk
        return [(row.package, row.kind)]
    else:
        base = [(row.package, row.kind)]
    return [(name, kind) for package, kind in base for name in reach(links, package, row.k)]


def heirs(links: Links, name: str, limit: int) -> list[tuple[str, int]]:
    """(package, key) for *name* and every package a rename of it leads to, transitively,
    with the newest key of the old name's facts that reach it: a fact older than the first
    rename reaches its new name, and only those also older than the next rename go on."""
    out = {name: limit}
    todo = [name]
    while todo:
        current = todo.pop()
        for new, k in links.get(current, ()):
            reach_k = min(out[current], k)
            if reach_k > out.get(new, 0):
                out[new] = reach_k
                todo.append(new)
    return list(out.items())


def chain(links: Links, name: str) -> set[str]:
    """*name* and every package renames of it lead to, whatever their keys."""
    return {n for n, _ in heirs(links, name, 2**63)}


def _take(pair_k: int, limit: int, mine: int) -> bool:
    return pair_k < limit and pair_k > mine


def adopt(dst: PackageState, src: PackageState, limit: int) -> bool:
    """The legacy rename's effect: *dst* takes every fact of *src* older than *limit* (the
    rename's key), as if those rows had counted for it on arrival. False when some of
    *src*'s facts were already overwritten by newer ones (what they said is lost)."""
    lost = False

    def older(k: int) -> int:
        nonlocal lost
        if k > limit:
            lost = True
            return 0
        return k if k < limit else 0

    dst.created_k = max(dst.created_k, older(src.created_k))
    dst.deleted_k = max(dst.deleted_k, older(src.deleted_k))
    if _take(older(src.display_k), limit, dst.display_k):
        dst.display_k, dst.display_name = src.display_k, src.display_name
    if _take(older(src.quarantine_k), limit, dst.quarantine_k):
        dst.quarantine_k, dst.quarantined = src.quarantine_k, src.quarantined
    for ver, sv in src.versions.items():
        dv = dst.version(ver)
        dv.created_k = max(dv.created_k, older(sv.created_k))
        dv.deleted_k = max(dv.deleted_k, older(sv.deleted_k))
        dv.release_k = max(dv.release_k, older(sv.release_k))
        if _take(older(sv.yank_k), limit, dv.yank_k):
            dv.yank_k, dv.yanked = sv.yank_k, sv.yanked
        if _take(older(sv.quarantine_k), limit, dv.quarantine_k):
            dv.quarantine_k, dv.quarantined = sv.quarantine_k, sv.quarantined
        for fn, sf in sv.files.items():
            df = dv.files.get(fn)
            if df is None:
                df = dv.files[fn] = FileState(pyver=sf.pyver)
            if _take(older(sf.added_k), limit, df.added_k):
                df.added_k, df.pyver = sf.added_k, sf.pyver
            df.removed_k = max(df.removed_k, older(sf.removed_k))
            dst.dirty_files.add((ver, fn))
    dst.dirty = True
    return not lost


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


def apply_rows(packages: dict[str, PackageState], rows: Sequence[Row],
               links: Links | None = None,
               plan: Sequence[list[tuple[str, Kind]]] | None = None) -> list[dict[str, Any]]:
    """Apply *rows* (in the order given) to the loaded *packages*, returning the events.

    *packages* must hold every package the rows touch (see :func:`targets`, with *links*),
    every version a row names (with all of its files), all versions of a package a row
    deletes, and the whole of both names of a rename; missing ones are created empty.
    *links* (the renames known so far) gains the renames among *rows*. *plan*, when given,
    is each row's :func:`targets` with *links* already holding the rows' renames (the store
    computes them once to know what to load).
    """
    links = {} if links is None else links
    events: list[dict[str, Any]] = []
    # Upstream writes a release's rows together (release, then its files), so the view after
    # one row is often the view before the next: computing a view costs O(files).
    last: tuple[PackageState, list[str], tuple[Any, dict[str, Any]]] | None = None
    for i, row in enumerate(rows):
        if row.kind is Kind.RENAME and is_move(row):
            assert row.old_name is not None
            known = links.setdefault(row.old_name, [])
            if (row.package, row.k) not in known:
                known.append((row.package, row.k))
            source = packages.get(row.old_name)
            if source is not None:  # before the old name's deletion below
                for name, limit in heirs(links, row.package, row.k):
                    pkg = packages.get(name)
                    if pkg is None:
                        pkg = packages[name] = PackageState(name=name, display_name=name)
                    if pkg is source:
                        continue
                    scope = list(pkg.versions.keys() | source.versions.keys())
                    before = _snapshot(pkg, scope)
                    if not adopt(pkg, source, limit):
                        log.warning("rename_lost: %s renamed to %s (serial %d) came after "
                                    "newer rows of %s; what they replaced is not carried over",
                                    row.old_name, name, row.serial, row.old_name)
                    _diff(pkg, row, before, _snapshot(pkg, scope), events)
                    last = None
        for name, kind in targets(row, links) if plan is None else plan[i]:
            pkg = packages.get(name)
            if pkg is None:
                pkg = packages[name] = PackageState(name=name, display_name=name)
            # Only a package deletion changes what its other versions look like.
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
