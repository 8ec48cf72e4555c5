"""What the index shows, read from the database: the catalog (through the reorderer's own
read model, so "live" and "yanked" mean the same everywhere), our files, and build states."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from packaging.version import InvalidVersion, Version
from sqlalchemy import text
from sqlalchemy.orm import Session

from piw_services.index.model import (
    BuildStatus,
    IndexFile,
    PackageSummary,
    Project,
    SiteInfo,
    VersionInfo,
)
from piw_services.reorderer.queries import package_state
from piw_services.stats.queries import downloads_by_package, package_downloads

#: build_targets states as the project page names them
SHOWN_STATE = {"pending": "pending", "queued": "pending", "building": "pending",
               "built": "built", "failed": "failed", "skipped": "skipped"}


#: The "last N days" of the download counts on project pages and packages.json.
DOWNLOAD_DAYS = 30

#: SQL: the file (aliased f) was made by a job still current. An operator's removal or rebuild
#: gives targets new job ids before file_manager deletes the old files: pages drop them at once.
CURRENT_JOB = "EXISTS (SELECT 1 FROM build_targets t WHERE t.job_id = f.job_id)"

#: SQL: the file's (f) apt dependencies, in order, less those preinstalled on the image of its
#: build ABI's distro (image_packages, loaded by piw-image-packages). Done here, not by the
#: builder: files.apt_depends keeps what it found, so a new image list needs no rebuild.
SHOWN_APT_DEPENDS = (
    "COALESCE((SELECT json_agg(x.d ORDER BY x.n) FROM json_array_elements_text(f.apt_depends) "
    "WITH ORDINALITY AS x(d, n) WHERE NOT EXISTS (SELECT 1 FROM build_abis a JOIN "
    "image_packages i ON i.distro = a.distro WHERE a.abi = f.abi AND i.package = x.d)), "
    "'[]')")


def log_path(package: str, build_id: int) -> str:
    """Where a build's gzipped log lives in the www tree; its URL is this without ".gz"
    (the web service and nginx serve it as text: piw_services/web/serve.py)."""
    return f"logs/{package}/{build_id}.log.gz"


def _version_key(version: str) -> tuple[int, Any]:
    try:
        return (1, Version(version))
    except InvalidVersion:  # sorted after every valid version, by text
        return (0, version)


def _prerelease(version: str) -> bool:
    try:
        return Version(version).is_prerelease
    except InvalidVersion:
        return False


def load_project(session: Session, name: str) -> tuple[Project | None, dict[int, bytes]]:
    """The project *name* (canonical) as its pages show it, or None when it is not live (gone
    or quarantined); and the gzipped logs of the builds it shows, by build id."""
    state = package_state(session, name)
    if not state["alive"] or state.get("quarantined"):
        return None, {}
    live = state["versions"]
    files: dict[str, list[IndexFile]] = defaultdict(list)
    for r in session.execute(text(
            "SELECT filename, version, sha256, size, created_at, requires_python, "
            f"metadata_sha256, {SHOWN_APT_DEPENDS} AS apt_depends, unresolved, abi, "
            "requires_dist "
            "FROM files f WHERE package = :p "
            f"AND {CURRENT_JOB} ORDER BY filename"), {"p": name}):
        v = live.get(r.version)
        if v is None or v["quarantined"]:  # going (file_manager removes it), or withheld
            continue
        files[r.version].append(IndexFile(
            filename=r.filename, sha256=r.sha256, size=r.size, upload_time=r.created_at,
            requires_python=r.requires_python, metadata_sha256=r.metadata_sha256,
            yanked=v["yanked"], yanked_reason=v["yanked_reason"],
            apt_depends=tuple(r.apt_depends or ()), unresolved=tuple(r.unresolved or ()),
            abi=r.abi, requires_dist=tuple(r.requires_dist or ())))
    builds: dict[str, list[BuildStatus]] = defaultdict(list)
    logs: dict[int, bytes] = {}
    for r in session.execute(text(
            "SELECT t.version, t.abi, t.state, t.note, b.id, b.duration, b.log_gz, "
            "coalesce(a.armv6, false) AS armv6 "
            "FROM build_targets t LEFT JOIN builds b ON b.id = t.build_id AND b.abi = t.abi "
            "LEFT JOIN build_abis a ON a.abi = t.abi "
            "WHERE t.package = :p ORDER BY t.abi"), {"p": name}):
        log_url = None
        if r.id is not None and r.log_gz:
            logs[r.id] = r.log_gz
            log_url = "/" + log_path(name, r.id).removesuffix(".gz")
        builds[r.version].append(BuildStatus(
            abi=r.abi, state=SHOWN_STATE.get(r.state, r.state), note=r.note,
            duration=r.duration, log_url=log_url, armv6=r.armv6))
    skips = dict(session.execute(text(
        "SELECT version, skip_reason FROM build_versions WHERE package = :p "
        "AND skip_reason IS NOT NULL"), {"p": name}).all())
    versions = []
    for ver in sorted(live, key=_version_key, reverse=True):
        v = live[ver]
        versions.append(VersionInfo(
            version=ver, released=datetime.fromtimestamp(v["released"], UTC),
            prerelease=_prerelease(ver), yanked=v["yanked"], yanked_reason=v["yanked_reason"],
            skip=skips.get(ver) or v["unbuildable_reason"], quarantined=v["quarantined"],
            builds=tuple(builds.get(ver, ())), files=tuple(files.get(ver, ()))))
    downloads = package_downloads(session, name, DOWNLOAD_DAYS)
    return Project(name=name, display_name=state["display_name"], summary=state["summary"],
                   versions=tuple(versions), downloads_30d=downloads["window"],
                   downloads_all=downloads["all"],
                   downloads_per_day=tuple(downloads["per_day"])), logs


def indexed_projects(session: Session) -> list[PackageSummary]:
    """Projects with at least one file we serve (the root simple index lists these; not a
    quarantined one, whose pages are gone and whose files are withheld, nor one whose only
    files are of releases quarantined upstream), with
    the summary of their newest release that has one (an operator's description first:
    piw-add's) and their downloads."""
    downloads = downloads_by_package(session, DOWNLOAD_DAYS)
    return [PackageSummary(name, summary, *downloads.get(name, (0, 0)))
            for name, summary in session.execute(text(
        "SELECT n.package, coalesce((SELECT o.description FROM operator_packages o "
        "WHERE o.name = n.package), (SELECT v.summary FROM versions v "
        "WHERE v.package = n.package AND v.summary IS NOT NULL ORDER BY v.release_k DESC "
        "LIMIT 1)) "
        "FROM (SELECT DISTINCT f.package FROM files f JOIN servable_versions s "
        f"ON s.package = f.package AND s.version = f.version WHERE {CURRENT_JOB}) n "
        "ORDER BY 1"))]


def site_info(session: Session, base_url: str) -> SiteInfo:
    projects, files = session.execute(text(
        "SELECT count(DISTINCT package), count(*) FROM files")).one()
    abis = tuple(session.execute(text(
        "SELECT abi FROM build_abis WHERE enabled ORDER BY abi")).scalars())
    return SiteInfo(base_url=base_url, projects=projects, files=files, abis=abis)
