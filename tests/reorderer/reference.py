"""An independent, deliberately naive model of the catalog: apply rows one by one in
(timestamp, serial) order. The reorderer must end where this ends, whatever the arrival order.
"""

from piw_services.reorderer.catalog import PackageState
from piw_services.reorderer.parse import Kind, Row


def reference(rows: list[Row]) -> dict:
    cat: dict = {}
    yank: dict = {}  # (pkg, ver) -> bool, survives until the version or package is deleted
    held: dict = {}  # (pkg, ver) -> release quarantined, the same way as a yank
    quarantine: dict = {}  # pkg -> bool, survives until the package is deleted

    def ensure(name):
        return cat.setdefault(name, {"display": None, "versions": {}})

    def drop_project(name):
        cat.pop(name, None)
        quarantine.pop(name, None)
        for flags in (yank, held):
            for key in [k for k in flags if k[0] == name]:
                del flags[key]

    for row in sorted(rows, key=lambda r: (r.timestamp, r.serial)):
        name, kind = row.package, row.kind
        if kind is Kind.RENAME and row.old_name and row.old_name != name:
            drop_project(row.old_name)
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
