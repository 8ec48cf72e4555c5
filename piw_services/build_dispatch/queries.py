"""What other services may read of build_dispatch's tables (the build targets, builds, skips,
the builder registry and the images' package lists): the file_manager checks a commit's job
here, the index shows build states and logs, stats shows queues, builders and recent builds,
admin shows the skips, the reorderer asks which versions have a build waiting, /status/
lists the blocked builders."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.orm import Session

#: SQL: the (package, version) of each version a build waits for in the queue of record (the
#: upstream service looks up such versions' Requires-Python first); as many as the queue
#: holds, read through its index of pending targets.
WAITING_VERSIONS = "SELECT DISTINCT package, version FROM build_targets WHERE state = 'pending'"


#: SQL: the file of the row aliased {0} was made by a job still current. An operator's removal
#: or rebuild gives targets new job ids before file_manager deletes the old files.
CURRENT_JOB = "EXISTS (SELECT 1 FROM build_targets t WHERE t.job_id = {0}.job_id)"
#: SQL: the Debian package {1} is preinstalled on the image of build target {0}
#: (image_packages, loaded by piw-image-packages).
PREINSTALLED = ("EXISTS (SELECT 1 FROM build_abis a JOIN image_packages i "
                "ON i.distro = a.distro WHERE a.abi = {0} AND i.package = {1})")


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


def enabled_abis(session: Session) -> list[str]:
    """The build targets in force (BUILD_ABIS), by key."""
    return [r[0] for r in session.execute(text(
        "SELECT abi FROM build_abis WHERE enabled ORDER BY abi"))]


def project_builds(session: Session, package: str) -> list[Any]:
    """Every build target of *package*: version, abi, state, note, and its build's id,
    duration and gzipped log (None before a result), armv6 (its target links armv6l)."""
    return list(session.execute(text(
        "SELECT t.version, t.abi, t.state, t.note, b.id, b.duration, b.log_gz, "
        "coalesce(a.armv6, false) AS armv6 "
        "FROM build_targets t LEFT JOIN builds b ON b.id = t.build_id AND b.abi = t.abi "
        "LEFT JOIN build_abis a ON a.abi = t.abi "
        "WHERE t.package = :p ORDER BY t.abi"), {"p": package}))


def version_skips(session: Session, package: str) -> dict[str, str]:
    """{version: reason} of *package*'s skipped versions."""
    return dict(session.execute(text(
        "SELECT version, skip_reason FROM build_versions WHERE package = :p "
        "AND skip_reason IS NOT NULL"), {"p": package}).all())


def waiting_jobs(session: Session) -> dict[str, int]:
    """Jobs waiting per enabled target (pending or queued targets: the queue of record)."""
    return dict(session.execute(text(
        "SELECT a.abi, count(t.abi) FROM build_abis a LEFT JOIN build_targets t "
        "ON t.abi = a.abi AND t.state IN ('pending', 'queued') WHERE a.enabled "
        "GROUP BY a.abi ORDER BY a.abi")).all())


def builders_seen(session: Session, hours: float) -> list[Any]:
    """Builders alive or seen in the last *hours*, with the package and version they build."""
    return list(session.execute(text(
        "SELECT b.id, b.label, b.abi, b.info, b.state, b.last_seen, b.job_started_at, "
        "t.package, t.version FROM builders b LEFT JOIN build_targets t ON t.job_id = b.job_id "
        "WHERE b.state = 'alive' OR b.last_seen >= now() - make_interval(secs => :h) "
        "ORDER BY b.label, b.id"), {"h": hours * 3600}))


def builds_last_hour(session: Session) -> tuple[int, int]:
    """(builds, failed builds) finished in the last hour."""
    builds, failed = session.execute(text(
        "SELECT count(*), count(*) FILTER (WHERE status <> 'success') FROM builds "
        "WHERE finished_at >= now() - interval '1 hour'")).one()
    return builds, failed


def recent_builds(session: Session, limit: int = 20) -> tuple[tuple[Any, ...], ...]:
    """(finished_at, package, version, abi, status) of the newest builds."""
    return tuple(tuple(r) for r in session.execute(text(
        "SELECT finished_at, package, version, abi, status FROM builds "
        "ORDER BY finished_at DESC, id DESC LIMIT :n"), {"n": limit}))


class Blocked(NamedTuple):
    """A RabbitMQ user blocked for too many refused messages, as /status/ shows it."""

    user: str
    since: datetime
    refusals: int
    reason: str


def blocked_builders(session: Session) -> list[Blocked]:
    """Every blocked builder user, longest blocked first."""
    return [Blocked(*row) for row in session.execute(text(
        "SELECT user_name, blocked_at, refusals, reason FROM blocked_builders "
        "ORDER BY blocked_at, user_name"))]


def skip_reason(session: Session, package: str, version: str | None = None) -> str | None:
    """The operator's skip in force for the package (or one version of it), if any."""
    return session.execute(text(
        "SELECT coalesce((SELECT reason FROM build_package_skips WHERE package = :p), "
        "(SELECT skip_reason FROM build_versions WHERE package = :p AND version = :v))"),
        {"p": package, "v": version}).scalar()


def known_versions(session: Session, package: str) -> dict[str, dict[str, Any]]:
    """build_dispatch's view of a package's versions: buildable, skip reason, targets."""
    versions = {r.version: {"buildable": r.buildable, "skip": r.skip_reason, "targets": {}}
                for r in session.execute(text(
                    "SELECT version, buildable, skip_reason FROM build_versions "
                    "WHERE package = :p"), {"p": package})}
    for r in session.execute(text(
            "SELECT version, abi, state FROM build_targets WHERE package = :p"),
            {"p": package}):
        if r.version in versions:
            versions[r.version]["targets"][r.abi] = r.state
    return versions


def order_builders(session: Session, builder: int | str | None, but: str) -> list[Any]:
    """The registry's rows (id, label, abi, state, job_id, user: its RabbitMQ user, None
    when it did not say) an operator's order goes to: the builder of that id, those of that
    label, or every one; never those labelled *but* (piw-import's)."""
    query = ("SELECT id, label, abi, state, job_id, info->>'user' AS user FROM builders "
             "WHERE label <> :but")
    if builder is None:
        return list(session.execute(text(query + " ORDER BY id"), {"but": but}))
    column = "id" if isinstance(builder, int) else "label"
    return list(session.execute(text(f"{query} AND {column} = :b ORDER BY id"),
                                {"but": but, "b": builder}))
