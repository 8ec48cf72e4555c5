"""What the index shows, read through the owners' read modules: the catalog (the reorderer's own
read model, so "live" and "yanked" mean the same everywhere), the files served (file_manager's),
build states (build_dispatch's) and download counts (stats')."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from packaging.version import InvalidVersion, Version
from sqlalchemy import text
from sqlalchemy.orm import Session

from piw_services.build_dispatch import queries as build_queries
from piw_services.file_manager import queries as file_queries
from piw_services.index.model import (
    BuildStatus,
    IndexFile,
    PackageSummary,
    Project,
    ShownVersion,
    SiteInfo,
)
from piw_services.reorderer import queries as catalog
from piw_services.stats.queries import downloads_by_package, package_downloads

#: build_targets states as the project page names them
SHOWN_STATE = {"pending": "pending", "queued": "pending", "building": "pending",
               "built": "built", "failed": "failed", "skipped": "skipped"}


#: The "last N days" of the download counts on project pages and packages.json.
DOWNLOAD_DAYS = 30

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
    state = catalog.package_state(session, name)
    if not state["alive"] or state.get("quarantined"):
        return None, {}
    live = state["versions"]
    files: dict[str, list[IndexFile]] = defaultdict(list)
    for r in file_queries.project_files(session, name):
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
    for r in build_queries.project_builds(session, name):
        log_url = None
        if r.id is not None and r.log_gz:
            logs[r.id] = r.log_gz
            log_url = "/" + log_path(name, r.id).removesuffix(".gz")
        builds[r.version].append(BuildStatus(
            abi=r.abi, state=SHOWN_STATE.get(r.state, r.state), note=r.note,
            duration=r.duration, log_url=log_url, armv6=r.armv6))
    skips = build_queries.version_skips(session, name)
    versions = []
    for ver in sorted(live, key=_version_key, reverse=True):
        v = live[ver]
        versions.append(ShownVersion(
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
                f"SELECT n.package, {catalog.SUMMARY.format('n.package')} "
                f"FROM ({file_queries.SERVED_PACKAGES}) n ORDER BY 1"))]


def site_info(session: Session, base_url: str) -> SiteInfo:
    projects, files = file_queries.counts(session)
    abis = tuple(build_queries.enabled_abis(session))
    return SiteInfo(base_url=base_url, projects=projects, files=files, abis=abis)
