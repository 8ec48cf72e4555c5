"""What other services may change of build_dispatch's data: the operators' skips, revocations
and imports, which the admin service makes inside its own transaction.

Each call is one of the SECURITY DEFINER functions of migration 0017 (as piwheels' services
call those of piwheels/master/sql/create_piwheels.sql): a service's database role may execute
them but not write build_dispatch's tables, and build_dispatch keeps the one copy of the SQL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass
class Revocation:
    """What an operator's change did to build_dispatch's state.

    ``revoked_jobs``: job ids that may publish nothing more (file_manager deletes their files,
    and refuses their commits from now on); ``queued``: (version, target) pairs made pending;
    ``dropped``: those taken away without a new job.
    """

    revoked_jobs: list[str] = field(default_factory=list)
    builds_forgotten: int = 0
    queued: list[tuple[str, str]] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)


def _pairs(rows: list[list[str]]) -> list[tuple[str, str]]:
    return [(version, target) for version, target in rows]


def set_skip(session: Session, package: str, version: str | None, reason: str | None) -> None:
    """Record (or, with reason None, clear) an operator's skip of a version or package.
    Clearing a package's skip clears its versions' skips too."""
    session.execute(text("SELECT build_set_skip(:p, :v, :r)"),
                    {"p": package, "v": version, "r": reason})


def revoke(session: Session, package: str, versions: list[str], target: str | None = None, *,
           forget_builds: bool, requeue: bool, keep_built: bool = False,
           now: float | None = None) -> Revocation:
    """Take back the targets of *versions* (of one target, of each target of a bare ABI, or
    all): their jobs get new ids (made pending again when *requeue*, else dropped), and every
    file made by their old jobs is to go. With *forget_builds* the versions' build records go
    too. With *keep_built* built targets (and their files) stay: a skip stops future builds
    only."""
    done = session.execute(text(
        "SELECT build_revoke(:p, :v, :a, :forget, :requeue, :keep, :now)"),
        {"p": package, "v": versions, "a": target, "forget": forget_builds,
         "requeue": requeue, "keep": keep_built, "now": _now(now)}).scalar_one()
    return Revocation(revoked_jobs=done["revoked_jobs"],
                      builds_forgotten=done["builds_forgotten"],
                      queued=_pairs(done["queued"]), dropped=_pairs(done["dropped"]))


def add_targets(session: Session, package: str, versions: list[str],
                now: float | None = None) -> list[tuple[str, str]]:
    """Queue every enabled target that has no job yet for the buildable, unskipped
    *versions*; returns the (version, target) pairs queued."""
    return _pairs(session.execute(text("SELECT build_add_targets(:p, :v, :now)"),
                                  {"p": package, "v": versions, "now": _now(now)}
                                  ).scalar_one())


def import_job(session: Session, package: str, version: str, target: str,
               note: str) -> tuple[int, str]:
    """A new job of the version for *target*, held by the target's ``piw-import`` row of the
    builder registry (made the first time), as a builder holds a claimed job; returns
    (builder id, job id). The caller revoked the target's earlier job first."""
    made = session.execute(text("SELECT build_import_job(:p, :v, :a, :n)"),
                           {"p": package, "v": version, "a": target, "n": note}).scalar_one()
    return made["builder_id"], made["job_id"]


def record_version(session: Session, package: str, version: str, released: int) -> None:
    """A version build_dispatch learns of from an operator (piw-add), not from an event:
    it has no source file upstream, so nothing is built, but skips and imports need it."""
    session.execute(text("SELECT build_record_version(:p, :v, :r)"),
                    {"p": package, "v": version, "r": released})


def forget_versions(session: Session, package: str, versions: list[str]) -> None:
    """Drop what build_dispatch knows of these versions (an operator's entry removed)."""
    session.execute(text("SELECT build_forget_versions(:p, :v)"),
                    {"p": package, "v": versions})


class Building(NamedTuple):
    """A job a builder is building."""

    package: str
    version: str
    abi: str
    job_id: str


def current_build(session: Session, builder_id: int) -> Building | None:
    """The job the builder is building, its target locked until the caller commits; or
    None."""
    found = session.execute(text("SELECT build_current_build(:b)"),
                            {"b": builder_id}).scalar()
    return Building(**found) if found else None


def skip_build(session: Session, job_id: str, note: str) -> None:
    """An operator skipped a job being built: its target is skipped (with *note*) under a
    new job id, so its builder can publish nothing more of it, and the builder is free."""
    session.execute(text("SELECT build_skip_build(:j, :n)"), {"j": job_id, "n": note})


def hold(session: Session, builder_ids: list[int], paused: bool) -> None:
    """Record an operator's pause (or resume) of these builders (build_dispatch's hello
    tells a paused builder so, store.held)."""
    session.execute(text("SELECT build_hold(:b, :h)"), {"b": builder_ids, "h": paused})


def _now(now: float | None) -> int:
    return int(time.time() if now is None else now)
