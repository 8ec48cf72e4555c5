"""An independent, deliberately naive model of the catalog: apply rows one by one in
(timestamp, serial) order. The reorderer must end where this ends, whatever the arrival order.
"""

from piw_services.reorderer.catalog import PackageState
from piw_services.reorderer.parse import Kind, Row


def renames(rows: list[Row]) -> list[tuple[str, str, int]]:
    """The legacy renames of a log: (old name, new name, order key)."""
    return [(r.old_name, r.package, r.k) for r in rows
            if r.kind is Kind.RENAME and r.old_name and r.old_name != r.package]


def reach(links: list[tuple[str, str, int]], name: str, k: int) -> list[str]:
    """The packages a row of *name* with order key *k* counts for: its own and, through every
    rename of it newer than the row, the new name's (and so on along later renames)."""
    out = [name]
    for current in out:  # grows while it is walked
        out += [new for old, new, kl in links if old == current and k < kl and new not in out]
    return out


def effects(row: Row) -> list[tuple[str, Kind]]:
    """(package, what the row does to it): a rename creates the new name, deletes the old."""
    if row.kind is Kind.RENAME and row.old_name and row.old_name != row.package:
        return [(row.package, Kind.RENAME), (row.old_name, Kind.REMOVE_PROJECT)]
    return [(row.package, row.kind)]


def reference(rows: list[Row]) -> dict:
    """Legacy renames as PyPI did them: from the rename on, the new name has the old one's
    releases and files (every row of the old name older than the rename counts for the new
    name too); the old name is deleted."""
    cat: dict = {}
    yank: dict = {}  # (pkg, ver) -> bool, survives until the version or package is deleted
    held: dict = {}  # (pkg, ver) -> release quarantined, the same way as a yank
    quarantine: dict = {}  # pkg -> bool, survives until the package is deleted
    links = renames(rows)

    def ensure(name):
        return cat.setdefault(name, {"display": None, "versions": {}})

    def drop_project(name):
        cat.pop(name, None)
        quarantine.pop(name, None)
        for flags in (yank, held):
            for key in [k for k in flags if k[0] == name]:
                del flags[key]

    def apply(name, kind, row):
        if kind in (Kind.CREATE, Kind.RENAME, Kind.RELEASE, Kind.ADD_FILE):
            ensure(name)["display"] = row.name
        if kind in (Kind.RELEASE, Kind.ADD_FILE):
            cat[name]["versions"].setdefault(row.version, {})
        if kind is Kind.ADD_FILE:
            cat[name]["versions"][row.version][row.filename] = row.pyver
        elif kind is Kind.REMOVE_FILE:
            cat.get(name, {}).get("versions", {}).get(row.version, {}).pop(row.filename, None)
        elif kind is Kind.REMOVE_RELEASE:
            cat.get(name, {}).get("versions", {}).pop(row.version, None)
            yank.pop((name, row.version), None)
            held.pop((name, row.version), None)
        elif kind is Kind.REMOVE_PROJECT:
            drop_project(name)
        elif kind in (Kind.YANK, Kind.UNYANK):
            yank[(name, row.version)] = kind is Kind.YANK
        elif kind in (Kind.RELEASE_QUARANTINE, Kind.RELEASE_UNQUARANTINE):
            held[(name, row.version)] = kind is Kind.RELEASE_QUARANTINE
        elif kind in (Kind.QUARANTINE, Kind.UNQUARANTINE):
            quarantine[name] = kind is Kind.QUARANTINE

    for row in sorted(rows, key=lambda r: (r.timestamp, r.serial)):
        for base, kind in effects(row):
            for name in reach(links, base, row.k):
                apply(name, kind, row)
    return {
        name: {
            "display": p["display"],
            "quarantined": quarantine.get(name, False),
            "versions": {
                ver: {"yanked": yank.get((name, ver), False),
                      "quarantined": held.get((name, ver), False), "files": dict(files)}
                for ver, files in p["versions"].items()
            },
        }
        for name, p in cat.items()
    }


def _floor(rename: Row, links: list[tuple[str, str, int]]) -> int:
    """The oldest key up to which the old name's facts must still be known when *rename* is
    applied: its own, or a later rename's of its new name (facts go on only if older)."""
    out = {rename.package: rename.k}
    todo = [rename.package]
    while todo:
        current = todo.pop()
        for old, new, k in links:
            if old == current and min(out[current], k) > out.get(new, 0):
                out[new] = min(out[current], k)
                todo.append(new)
    return min(out.values())


def _late(rename: Row, row: Row, links: list[tuple[str, str, int]]) -> bool:
    """Whether *row*, applied before *rename*, overwrites what the rename must carry over:
    it counts for the old name and is newer than :func:`_floor` (catalog.py's one limit)."""
    return row.k > _floor(rename, links) and any(rename.old_name in reach(links, base, row.k)
                                                 for base, _ in effects(row))


def safe_order(rows: list[Row], rnd) -> list[Row] | None:
    """A random arrival order of *rows* in which every legacy rename comes before the rows
    :func:`_late` for it (the rest in any order at all); None when renames of renames make
    that impossible."""
    links = renames(rows)
    before: dict[int, list[int]] = {i: [] for i in range(len(rows))}
    waiting = [0] * len(rows)
    for i, rename in enumerate(rows):
        if rename.kind is Kind.RENAME and rename.old_name != rename.package:
            for j, row in enumerate(rows):
                if _late(rename, row, links):
                    before[i].append(j)
                    waiting[j] += 1
    ready = [i for i, n in enumerate(waiting) if n == 0]
    out = []
    while ready:
        i = ready.pop(rnd.randrange(len(ready)))
        out.append(rows[i])
        for j in before[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    return out if len(out) == len(rows) else None


def without_late_renames(rows: list[Row]) -> list[Row]:
    """*rows* (in arrival order) less the renames that arrive after a row :func:`_late` for
    them, which the catalog cannot take back (see catalog.py)."""
    while True:
        links = renames(rows)
        late = {i for i, rename in enumerate(rows)
                if rename.kind is Kind.RENAME and rename.old_name != rename.package
                and any(_late(rename, row, links) for row in rows[:i])}
        if not late:
            return rows
        rows = [r for i, r in enumerate(rows) if i not in late]


def view(packages: dict[str, PackageState]) -> dict:
    """The same shape as :func:`reference`, read off the reorderer's LWW state."""
    out = {}
    for name, pkg in packages.items():
        if not pkg.alive:
            continue
        out[name] = {
            "display": pkg.display_name,
            "quarantined": pkg.is_quarantined,
            "versions": {
                ver: {"yanked": pkg.version_yanked(v),
                      "quarantined": pkg.version_quarantined(v),
                      "files": {fn: f.pyver for fn, f in pkg.live_files(v).items()}}
                for ver, v in pkg.versions.items() if pkg.version_alive(v)
            },
        }
    return out


def fold_events(events: list[dict]) -> dict:
    """What a consumer that only ever sees the ordered events ends up believing."""
    cat: dict = {}
    for e in events:
        t, name = e["type"], e["package"]
        if t == "package_added":
            cat[name] = {"display": e["display_name"], "quarantined": False, "versions": {}}
        elif t == "package_removed":
            del cat[name]
        elif t == "package_renamed":
            cat[name]["display"] = e["display_name"]
        elif t in ("package_quarantined", "package_unquarantined"):
            cat[name]["quarantined"] = t == "package_quarantined"
        elif t == "version_added":
            assert e["version"] not in cat[name]["versions"], e
            cat[name]["versions"][e["version"]] = {"yanked": e["yanked"],
                                                   "quarantined": e["quarantined"], "files": {}}
        elif t == "version_removed":
            del cat[name]["versions"][e["version"]]
        elif t in ("version_yanked", "version_unyanked"):
            cat[name]["versions"][e["version"]]["yanked"] = t == "version_yanked"
        elif t in ("version_quarantined", "version_unquarantined"):
            cat[name]["versions"][e["version"]]["quarantined"] = t == "version_quarantined"
        elif t == "file_added":
            files = cat[name]["versions"][e["version"]]["files"]
            assert e["filename"] not in files, e
            files[e["filename"]] = e["pyver"]
        elif t == "file_removed":
            del cat[name]["versions"][e["version"]]["files"][e["filename"]]
        elif t in ("version_buildable", "version_info"):
            pass
        else:
            raise AssertionError(f"unknown event {e}")
    return cat
