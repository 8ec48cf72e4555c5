"""file_manager's database work: the ``files`` rows it owns, and the advisory locks on which
commits and removals meet (see the service's module doc for why that closes the race)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import delete, or_, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from piw_services.db.models import File

#: Held shared by commits while they install, exclusively by removals.
FILES_LOCK = 0x70697702
#: Two-key advisory locks in this namespace serialise commits of one filename.
FILENAME_LOCKS = 0x707766


def lock_for_commit(session: Session, filename: str) -> None:
    """Take the files lock shared and *filename*'s lock, until the transaction ends."""
    session.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": FILES_LOCK})
    session.execute(text("SELECT pg_advisory_xact_lock(:ns, hashtext(:f))"),
                    {"ns": FILENAME_LOCKS, "f": filename})


def file_row(session: Session, filename: str) -> File | None:
    return session.get(File, filename)


def upsert(session: Session, package: str, version: str, abi: str, job_id: str,
           info: dict[str, Any], metadata_sha256: str, link: str | None) -> None:
    """The row of a published wheel (and of its armv6l link, if any), as the commit says."""
    row = {"package": package, "version": version, "abi": abi, "job_id": job_id,
           "size": info["size"], "sha256": info["sha256"],
           "metadata_sha256": metadata_sha256,
           "requires_python": info.get("requires_python"),
           "requires_dist": info["requires_dist"], "apt_depends": info["apt_depends"],
           "unresolved": info["unresolved"]}
    rows = [{**row, "filename": info["filename"], "link_of": None}]
    if link:
        rows.append({**row, "filename": link, "link_of": info["filename"]})
    stmt = insert(File).values(rows)
    session.execute(stmt.on_conflict_do_update(
        index_elements=[File.filename],
        set_={c: stmt.excluded[c] for c in rows[0] if c != "filename"}))


def removal_condition(packages: set[str], versions: set[tuple[str, str]],
                      filenames: set[str], jobs: set[str]) -> Any:
    """The files of these packages, versions, names and jobs (None: nothing to remove)."""
    conditions: list[Any] = []
    if packages:
        conditions.append(File.package.in_(packages))
    if versions:
        conditions.append(text("(files.package, files.version) IN (SELECT * FROM "
                               "unnest(CAST(:vp AS text[]), CAST(:vv AS text[])))")
                          .bindparams(vp=[p for p, _ in versions],
                                      vv=[v for _, v in versions]))
    if filenames:
        conditions.append(File.filename.in_(filenames))
    if jobs:
        conditions.append(File.job_id.in_(jobs))
    return or_(*conditions) if conditions else None


def package_files(package: str, version: str | None = None) -> Any:
    """The condition for a package's files (or one version's), for :func:`files_to_remove`."""
    where = File.package == package
    return where if version is None else where & (File.version == version)


def files_to_remove(session: Session, where: Any) -> dict[tuple[str, str], list[str]]:
    """Take the files lock exclusively, then the files matching *where* and the armv6l links
    to them, by (package, version)."""
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": FILES_LOCK})
    rows = list(session.execute(select(File.filename, File.package, File.version).where(where)))
    if not rows:
        return {}
    names = [r.filename for r in rows]
    rows += session.execute(select(File.filename, File.package, File.version).where(
        File.link_of.in_(names), File.filename.not_in(names))).all()
    by_version: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in rows:
        by_version[(r.package, r.version)].append(r.filename)
    return by_version


def delete_rows(session: Session, filenames: list[str]) -> None:
    session.execute(delete(File).where(File.filename.in_(filenames)))


def totals(session: Session) -> tuple[int, int, int]:
    """(wheels, armv6l links, bytes of the wheels) served."""
    files, links, size = session.execute(text(
        "SELECT count(*) FILTER (WHERE link_of IS NULL), "
        "count(*) FILTER (WHERE link_of IS NOT NULL), "
        "coalesce(sum(size) FILTER (WHERE link_of IS NULL), 0) FROM files")).one()
    return files, links, int(size)
