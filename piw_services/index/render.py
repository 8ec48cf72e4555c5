"""Pure page renderers for the www tree: plain data (piw_services.index.model) in, text out.

Nothing here touches the database or the www tree; the index service gathers the data, calls
these and writes the result by temp file + rename. HTML comes from jinja2 templates with
autoescape on (every value is escaped exactly once, by the template); the 500,000-name simple
root is joined from pre-escaped strings instead, because a jinja2 loop over it takes ~2 s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from piw_services.site.jinja import environment, file_href

from .model import IndexFile, PackageSummary, Project, ShownVersion, SiteInfo

API_VERSION = "1.1"  # PEP 629 / PEP 691; 1.1 because of PEP 700's versions, size, upload-time

# Canonical names (PEP 503) need neither HTML nor JSON nor URL escaping: the root's fast path
# checks all names at once, joined by "," (harmless in HTML, JSON and URLs alike), and when
# some name is odd, escapes just the names that need it.
_PLAIN_NAMES = re.compile(r"[a-z0-9._,-]*")
_plain_name = re.compile(r"[a-z0-9._-]+").fullmatch


def _iso(when: datetime | None) -> str | None:
    """ISO 8601 in UTC with a "Z", as PEP 700 spells upload-time (naive means UTC)."""
    if when is None:
        return None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def human_size(size: int) -> str:
    """Bytes as people read them (1 KiB = 1024 B)."""
    if size < 1024:
        return f"{size} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}"
    raise AssertionError("unreachable")


def _human_time(when: datetime | None) -> str:
    if when is None:
        return ""
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _safe_url(url: str | None) -> str | None:
    """Only relative and http(s) links go into an href (never javascript: and the like)."""
    if not url:
        return None
    if url.startswith(("/", "http://", "https://")) or ":" not in url.split("/", 1)[0]:
        return url
    return None


_env = environment("piw_services.index")
_env.filters.update(
    human_size=human_size,
    human_time=_human_time,
    iso=_iso,
    safe_url=_safe_url,
    pip_dependencies=lambda requires_dist: pip_dependencies(requires_dist),
)


def _dumps(data: object) -> str:
    """Compact JSON (ASCII-only, so no lone surrogate from upstream can break the writer)."""
    return json.dumps(data, separators=(",", ":"))


def _version_key(version: str) -> tuple:
    """packaging's order; versions it cannot parse (old legacy ones) sort first, by text."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


# --- the simple repository API (PEP 503/592/629/658/691/700/714) -------------------------


@dataclass(frozen=True)
class _SimpleFile:
    """One file as both simple pages list it: yanked if the file or its release is."""

    filename: str
    href: str  # relative: files live beside the page
    sha256: str
    size: int
    upload_time: str | None
    requires_python: str | None
    yanked: bool
    yanked_reason: str  # "" when yanked without a reason (or not yanked)
    metadata_sha256: str | None


def _simple_files(project: Project) -> list[_SimpleFile]:
    files = []
    for version in project.versions:
        for f in version.files:
            yanked = f.yanked or version.yanked
            files.append(_SimpleFile(
                filename=f.filename,
                href=file_href(f.filename),
                sha256=f.sha256.lower(),
                size=f.size,
                upload_time=_iso(f.upload_time),
                requires_python=f.requires_python or None,
                yanked=yanked,
                yanked_reason=(f.yanked_reason or version.yanked_reason or "") if yanked else "",
                metadata_sha256=f.metadata_sha256.lower() if f.metadata_sha256 else None,
            ))
    files.sort(key=lambda f: f.filename)
    return files


def simple_root_html(names: Sequence[str]) -> str:
    """PEP 503 root: one anchor per canonical name, ``href="<name>/"``. Joined from strings,
    not a jinja2 loop, so 500,000 names take a fraction of a second; the output is what the
    template loop would give (markupsafe escaping)."""
    if _PLAIN_NAMES.fullmatch(",".join(names)):
        pairs: Iterable[tuple[str, str]] = ((n, n) for n in names)
    else:
        pairs = ((n, n) if _plain_name(n) else (escape(file_href(n)), escape(n))
                 for n in names)
    anchors = "\n".join([f'    <a href="{href}/">{text}</a>' for href, text in pairs])
    return _env.get_template("simple_root.html").render(
        anchors=Markup(anchors), api_version=API_VERSION
    )


def simple_root_json(names: Sequence[str]) -> str:
    """PEP 691 root: ``{"meta": {"api-version": "1.1"}, "projects": [{"name": ...}, ...]}``."""
    head = f'{{"meta":{{"api-version":"{API_VERSION}"}},"projects":['
    if _PLAIN_NAMES.fullmatch(",".join(names)):
        body = ",".join([f'{{"name":"{n}"}}' for n in names])
    else:
        body = ",".join([f'{{"name":"{n}"}}' if _plain_name(n) else f'{{"name":{_dumps(n)}}}'
                         for n in names])
    return head + body + "]}"


def simple_project_html(project: Project) -> str:
    """PEP 503 project page with PEP 592 yanks, PEP 629 version, PEP 658/714 metadata."""
    return _env.get_template("simple_project.html").render(
        project=project, files=_simple_files(project), api_version=API_VERSION
    )


def simple_project_json(project: Project) -> str:
    """PEP 691 project detail with PEP 700's versions, size and upload-time; files sorted by
    filename, versions by packaging's order."""
    files = []
    for f in _simple_files(project):
        meta: dict | bool = {"sha256": f.metadata_sha256} if f.metadata_sha256 else False
        entry: dict = {"filename": f.filename, "url": f.href, "hashes": {"sha256": f.sha256}}
        if f.requires_python:
            entry["requires-python"] = f.requires_python
        entry["yanked"] = (f.yanked_reason or True) if f.yanked else False
        entry["core-metadata"] = meta
        # PEP 714: never "dist-info-metadata" in JSON: pip 22.3 to 23.1 fails on it with
        # "TypeError: unhashable type: 'dict'", and Debian bookworm's (Raspberry Pi OS's)
        # python3-pip is 23.0.1. PyPI keeps its old misspelling beside core-metadata instead
        # (warehouse/packaging/utils.py, _simple_detail), which no pip reads; so do we.
        entry["data-dist-info-metadata"] = meta
        entry["size"] = f.size
        if f.upload_time:
            entry["upload-time"] = f.upload_time
        files.append(entry)
    versions = sorted({v.version for v in project.versions}, key=_version_key)
    return _dumps({
        "meta": {"api-version": API_VERSION},
        "name": project.name,
        "files": files,
        "versions": versions,
    })


# --- the human pages ------------------------------------------------------------------------


def project_html(project: Project, site: SiteInfo) -> str:
    """/project/<name>/: what we built of each version, for which target (ABI and platform),
    and what a Pi needs from apt to use each file."""
    return _env.get_template("project.html").render(project=project, site=site)


def _version_json(name: str, version: ShownVersion) -> dict:
    return {
        "version": version.version,
        "released": _iso(version.released),
        "prerelease": version.prerelease,
        "yanked": version.yanked,
        "yanked_reason": version.yanked_reason,
        "skip": version.skip,
        "quarantined": version.quarantined,
        "builds": [
            {"target": b.abi, "abi": b.python_abi, "platform": b.platform, "state": b.state,
             "note": b.note, "duration": b.duration, "log_url": b.log_url, "armv6": b.armv6}
            for b in version.builds
        ],
        "files": [_file_json(name, f) for f in version.files],
    }


def _file_json(name: str, f: IndexFile) -> dict:
    return {
        "filename": f.filename,
        "url": f"/simple/{name}/{file_href(f.filename)}",
        "size": f.size,
        "sha256": f.sha256,
        "requires_python": f.requires_python,
        "apt_depends": list(f.apt_depends),
        "unresolved": list(f.unresolved),
        "target": f.abi,
        "upload_time": _iso(f.upload_time),
    }


def pip_dependencies(requires_dist: Iterable[str]) -> list[str]:
    """The canonical names a wheel needs from pip: its Requires-Dist less those only an extra
    asks for, sorted (piwheels' slave/builder.py, ``calc_pip_dependencies``)."""
    names = set()
    for value in requires_dist:
        try:
            req = Requirement(value.strip())
        except InvalidRequirement:
            continue
        if req.marker is not None and "extra" in str(req.marker):
            continue
        names.add(canonicalize_name(req.name))
    return sorted(names)


def _wheel_tags(filename: str) -> tuple[str, str]:
    """(ABI tag, platform tag) as a wheel's name spells them (``cp311``, ``linux_armv7l``;
    compressed tag sets kept whole), as piwheels records a file's ``abi_tag`` and
    ``platform_tag``."""
    parts = filename.removesuffix(".whl").split("-")
    return (parts[-2], parts[-1]) if len(parts) >= 5 else ("", "")


def _piwheels_release(name: str, version: ShownVersion) -> dict:
    """One entry of piwheels' ``releases``: its keys, in its order, of its types."""
    files = {}
    for f in version.files:
        abi_tag, platform = _wheel_tags(f.filename)
        files[f.filename] = {
            "file_url": f"/simple/{name}/{file_href(f.filename)}",
            "filehash": f.sha256,
            "filesize": f.size,
            "builder_abi": f.abi.partition("-")[0],
            "file_abi_tag": abi_tag,
            "platform": platform,
            "requires_python": f.requires_python,
            "apt_dependencies": sorted(f.apt_depends),
            "pip_dependencies": pip_dependencies(f.requires_dist),
        }
    released = version.released
    if released is not None and released.tzinfo is not None:
        released = released.astimezone(UTC)
    return {
        "released": released.strftime("%Y-%m-%d %H:%M:%S") if released else "",
        "prerelease": version.prerelease,
        "yanked": version.yanked,
        "skip_reason": version.skip or "",
        "files": files,
    }


def project_json(project: Project, base_url: str = "") -> str:
    """/project/<name>/json/: first what piwheels.org serves there, key for key and type for
    type (piwheels' master/the_scribe.py ``write_project_json`` and templates/json.pt), so
    scripts written for piwheels work unchanged; then ours (``versions`` with every build per
    target, ``downloads``), which those scripts never look at. Versions newest first."""
    return _dumps({
        "package": project.name,
        "summary": project.summary or "",
        "pypi_url": f"https://pypi.org/project/{project.name}",
        "piwheels_url": f"{base_url}/project/{project.name}/",
        "releases": {v.version: _piwheels_release(project.name, v) for v in project.versions},
        "name": project.name,
        "display_name": project.display_name,
        "downloads": {"30d": project.downloads_30d, "all": project.downloads_all,
                      "per_day": [[d.isoformat(), n] for d, n in project.downloads_per_day]},
        "versions": [_version_json(project.name, v) for v in project.versions],
    })


def faq_html(site: SiteInfo) -> str:
    """/faq.html: how to use the index, what the platform tags mean, how to ask for a removal
    (piwheels' templates/faq.pt, written as the_scribe.py writes its static pages)."""
    return _env.get_template("faq.html").render(site=site)


def json_api_html(site: SiteInfo) -> str:
    """/json.html: the JSON API, piwheels-compatible (piwheels' templates/json.pt)."""
    return _env.get_template("json.html").render(site=site)


def not_found_html(site: SiteInfo) -> str:
    """/404.html: what the web service (and nginx) answer a browser's 404 with outside
    /simple/, with a search box that asks the home page's search (piwheels' templates/404.pt)."""
    return _env.get_template("404.html").render(site=site)


#: Links per sitemap file (the sitemaps protocol's limit; piwheels' the_scribe.py too).
SITEMAP_LINKS = 50_000
#: The pages that are not a project's, listed in sitemap0.xml.
STATIC_PAGES = ("/", "/faq.html", "/json.html", "/stats/", "/status/")


def sitemaps(base_url: str, names: Sequence[str], today: str) -> dict[str, str]:
    """``sitemap.xml`` (an index) and the files it lists, by path in the tree: sitemap0.xml
    for the static pages, then the project pages SITEMAP_LINKS to a file, as piwheels'
    the_scribe.py ``write_sitemap`` splits them. Locations are absolute only when BASE_URL is
    set (the protocol wants absolute URLs: set it in a deployment)."""
    chunks = [list(STATIC_PAGES)] + [
        [f"/project/{n}/" for n in names[i:i + SITEMAP_LINKS]]
        for i in range(0, len(names), SITEMAP_LINKS)]
    page = _env.get_template("sitemap_page.xml")
    files = {f"sitemap{n}.xml": page.render(base_url=base_url, paths=paths)
             for n, paths in enumerate(chunks)}
    files["sitemap.xml"] = _env.get_template("sitemap.xml").render(
        base_url=base_url, pages=range(len(chunks)), today=today)
    return files


def home_html(site: SiteInfo) -> str:
    """The front page: what the index is, the pip.conf that uses it, and a search box that
    filters /packages.json in the browser (the page still says all it must without JS)."""
    return _env.get_template("home.html").render(site=site)


def packages_json(rows: Sequence[PackageSummary]) -> str:
    """/packages.json, for the home page's search and for scripts written against piwheels.org:
    compact arrays, since it holds every project (500k rows), in piwheels' order (its
    master/the_scribe.py ``write_search_index``: name, downloads in the last 30 days, all
    time) and then ours, which its readers' ``pkg, d_month, d_all, *_`` ignore:
    ``[[name, downloads_30d, downloads_all, summary], ...]``, ``summary`` "" when none."""
    return _dumps([[r.name, r.downloads_30d, r.downloads_all, r.summary or ""] for r in rows])
