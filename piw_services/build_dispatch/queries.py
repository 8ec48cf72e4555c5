"""What other services may read of build_dispatch's tables (build_targets, build_abis and the
skips): the file_manager checks a commit's job and its target's armv6 setting here, the admin
service shows the skips in force, the reorderer asks which versions have a build waiting."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.orm import Session

#: SQL: a build of the version of the row aliased {0} waits in the queue of record (the
#: upstream service looks up such versions' Requires-Python first).
BUILD_WAITING = ("EXISTS (SELECT 1 FROM build_targets t WHERE t.package = {0}.package "
                 "AND t.version = {0}.version AND t.state = 'pending')")


class Job(NamedTuple):
    """A build target as a commit sees it: whose job it is and what it builds."""

    package: str
    version: str
    target: str
    state: str
    builder_id: int | None


def job(session: Session, job_id: str) -> Job | None:
    """The build target whose current job is *job_id* (None: no target has that job now)."""
    row = session.execute(text(
        "SELECT package, version, abi, state, builder_id FROM build_targets "
        "WHERE job_id = :j"), {"j": job_id}).first()
    return Job(*row) if row is not None else None


def skips(session: Session) -> dict[str, object]:
    """The skips in force: ``package_skips`` {package: reason} and ``version_skips``
    [[package, version, reason], ...]."""
    return {"package_skips": dict(session.execute(text(
                "SELECT package, reason FROM build_package_skips ORDER BY 1")).all()),
            "version_skips": [list(r) for r in session.execute(text(
                "SELECT package, version, skip_reason FROM build_versions "
                "WHERE skip_reason IS NOT NULL ORDER BY 1, 2"))]}


def links_armv6(session: Session, target: str) -> bool:
    """Whether *target*'s image is declared ARMv6-compatible (build_abis.armv6), so that its
    armv7l wheels may also be served as armv6l."""
    return bool(session.execute(text("SELECT armv6 FROM build_abis WHERE abi = :a"),
                                {"a": target}).scalar())
