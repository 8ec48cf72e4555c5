"""What other services may read of the reorderer's catalog (admin, file_manager, index, the
reorderer's own RPC): the reorderer owns packages, versions and upstream_files; its store writes
them. The rules of what is live are the catalog views (migration 0009); these read through
them. The operators' entries (operator_packages, operator_versions: piw-add's, written by the
admin service) are read in here too, as the views count them (migration 0015).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from piw_services.names import canonical, is_valid_name
from piw_services.reorderer.catalog import PackageState, timestamp_of
from piw_services.reorderer.store import dbapi_cursor, load_packages

#: What an operator's version (piw-add) shows where upstream's says why it cannot be built.
OPERATOR_VERSION_NOTE = "added by an operator: no source file upstream"


def package_state(session: Session, name: str) -> dict[str, Any]:
    """What the catalog says of one package, under any spelling of its name: upstream's
    registers, with the operator's entries (``operator``: None, or what piw-add recorded;
    each version's ``operator``: whether it is the operator's, not upstream's)."""
    key = canonical(name) if is_valid_name(name) else str(name)
    found = load_packages(dbapi_cursor(session), [key]).get(key)
    pkg = found if found is not None and found.alive else None
    mine = session.execute(text(
        "SELECT display_name, added, description, aliases, added_by FROM operator_packages "
        "WHERE name = :p"), {"p": key}).first()
    if pkg is None and not (mine is not None and mine.added):
        return {"name": key, "alive": False, "versions": {}}
    versions = _upstream_versions(pkg) if pkg is not None else {}
    for r in session.execute(text(
            "SELECT version, released, yanked FROM operator_versions WHERE package = :p"),
            {"p": key}):
        if r.version not in versions:
            versions[r.version] = {
                "yanked": r.yanked, "yanked_reason": None, "quarantined": False,
                "buildable": False, "unbuildable_reason": OPERATOR_VERSION_NOTE,
                "skip": None, "requires_python": None, "released": r.released, "files": {},
                "operator": True}
    summary = session.execute(text(
        "SELECT summary FROM versions WHERE package = :p AND summary IS NOT NULL "
        "AND version = ANY(:live) ORDER BY release_k DESC LIMIT 1"),
        {"p": key, "live": list(versions)}).scalar()
    return {
        "name": key,
        "display_name": pkg.display_name if pkg is not None else
        mine.display_name if mine is not None else key,
        "summary": mine.description if mine is not None and mine.description else summary,
        "alive": True,
        "life": pkg.life if pkg is not None else 0,
        "quarantined": pkg.is_quarantined if pkg is not None else False,
        "versions": versions,
        "operator": None if mine is None else {
            "added": mine.added, "display_name": mine.display_name,
            "description": mine.description, "aliases": list(mine.aliases),
            "added_by": mine.added_by},
    }


def _upstream_versions(pkg: PackageState) -> dict[str, dict[str, Any]]:
    versions = {}
    for ver, v in pkg.versions.items():
        if not pkg.version_alive(v):
            continue
        files = pkg.live_files(v)
        versions[ver] = {
            "yanked": pkg.version_yanked(v),
            "yanked_reason": v.yanked_reason if pkg.version_yanked(v) else None,
            "quarantined": pkg.version_quarantined(v),
            "buildable": pkg.unbuildable_reason(v) is None,
            "unbuildable_reason": pkg.unbuildable_reason(v),
            "skip": None,
            "requires_python": v.requires_python,
            "released": timestamp_of(v.release_k or v.created_k),
            "files": {fn: {"pyver": f.pyver} for fn, f in sorted(files.items())},
            "operator": False,
        }
    return versions


#: SQL: the summary of package {0}: an operator's description (piw-add) first, else that of its
#: newest release that has one.
SUMMARY = ("coalesce((SELECT o.description FROM operator_packages o WHERE o.name = {0}), "
           "(SELECT v.summary FROM versions v WHERE v.package = {0} "
           "AND v.summary IS NOT NULL ORDER BY v.release_k DESC LIMIT 1))")


def held_rows(session: Session) -> int:
    """Changelog rows held, not yet applied (the hold window)."""
    return session.execute(text("SELECT count(*) FROM held_rows")).scalar_one()


def malformed_rows(session: Session, latest: int = 5
                   ) -> tuple[int, tuple[tuple[Any, ...], ...]]:
    """How many upstream rows could not be understood, and (serial, reason) of the newest."""
    count = session.execute(text("SELECT count(*) FROM malformed_rows")).scalar_one()
    rows = tuple(tuple(r) for r in session.execute(text(
        "SELECT serial, reason FROM malformed_rows ORDER BY id DESC LIMIT :n"), {"n": latest}))
    return count, rows


def upstream_serves(session: Session, package: str, filename: str) -> bool:
    """Whether upstream serves *filename* now: piw must never publish another file under that
    name, or pip would see two hashes for one name."""
    return session.execute(text(
        "SELECT 1 FROM upstream_files WHERE package = :p AND filename = :f "
        "AND added_k > removed_k"), {"p": package, "f": filename}).first() is not None


def version_alive(session: Session, package: str, version: str) -> bool | None:
    """Whether the catalog has the version alive; None when it has never heard of it."""
    return session.execute(text(
        "SELECT lv.package IS NOT NULL FROM versions v LEFT JOIN live_versions lv "
        "USING (package, version) WHERE v.package = :p AND v.version = :v"),
        {"p": package, "v": version}).scalar()
