"""What other services may read of the file_manager's ``files`` rows: the index lists and shows
the wheels served, stats tells searches that found no wheel, admin finds the files an
operator's change deletes and whether a wheel is already served."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from piw_services.build_dispatch.queries import CURRENT_JOB, PREINSTALLED

#: SQL: we serve a file of package {0}.
HAS_FILES = "EXISTS (SELECT 1 FROM files f WHERE f.package = {0})"
#: SQL: the packages with a file we serve of a servable version, made by a current job (the
#: root simple index lists these).
SERVED_PACKAGES = ("SELECT DISTINCT f.package FROM files f JOIN servable_versions s "
                   "ON s.package = f.package AND s.version = f.version "
                   f"WHERE {CURRENT_JOB.format('f')}")
#: SQL: the file's (f) apt dependencies, in order, less those preinstalled on the image of its
#: build target. Done when shown, not by the builder: files.apt_depends keeps what it found, so
#: a new image list needs no rebuild.
SHOWN_APT_DEPENDS = (
    "COALESCE((SELECT json_agg(x.d ORDER BY x.n) FROM json_array_elements_text(f.apt_depends) "
    f"WITH ORDINALITY AS x(d, n) WHERE NOT {PREINSTALLED.format('f.abi', 'x.d')}), '[]')")


def project_files(session: Session, package: str) -> list[Any]:
    """The files of *package* made by current jobs, by name, as its pages show them."""
    return list(session.execute(text(
        "SELECT filename, version, sha256, size, created_at, requires_python, "
        f"metadata_sha256, {SHOWN_APT_DEPENDS} AS apt_depends, unresolved, abi, "
        "requires_dist "
        f"FROM files f WHERE package = :p AND {CURRENT_JOB.format('f')} ORDER BY filename"),
        {"p": package}))


def counts(session: Session) -> tuple[int, int]:
    """(packages, files) we serve."""
    packages, files = session.execute(text(
        "SELECT count(DISTINCT package), count(*) FROM files")).one()
    return packages, files


def files_of_jobs(session: Session, package: str, jobs: list[str]) -> list[str]:
    """The filenames the package's *jobs* made, sorted."""
    return list(session.execute(text(
        "SELECT filename FROM files WHERE package = :p AND job_id = ANY(:j) ORDER BY filename"),
        {"p": package, "j": jobs}).scalars())


def served_sha256(session: Session, filename: str) -> str | None:
    """The sha256 of the file we serve under *filename*, None when we serve none."""
    return session.execute(text("SELECT sha256 FROM files WHERE filename = :f"),
                           {"f": filename}).scalar()
