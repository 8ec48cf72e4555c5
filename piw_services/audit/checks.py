"""The consistency checks behind ``piw-audit``.

Three stores must agree: the database (``files`` rows, the catalog, ``build_targets``), the
file store (``<WWW>/simple/<package>/<wheel>`` and its ``.metadata``) and the pages the index
writes. Removals touch all three in turn, so a bug in any step leaves them disagreeing; this
module finds every such disagreement.

Gathering (:func:`gather`: database reads and directory walks) is kept apart from comparing
(:func:`compare` and the ``check_*`` functions: pure functions over plain sets and dicts), so
every rule can be tested without a database or a tree. Names read from disk or the database
are only ever looked up, never joined into paths, so hostile names cannot lead the audit
outside the tree.

Rules (the ones the system keeps):

- a version is *alive* (servable) when the catalog's view ``servable_versions`` has it: alive,
  in a package alive and not quarantined, and not itself quarantined upstream (the
  reorderer's rules, defined once in the views of migrations 0009 and 0011); a live version
  whose files are withheld (``live_versions.withheld``: it or its package is quarantined)
  keeps them, on no page;
- a file is *current* when some ``build_targets`` row of its package and version has its
  ``job_id`` (removals and rebuilds give targets new job ids; a pure wheel that satisfied
  several ABIs keeps the job id of the target that built it);
- a file is *servable* when its version is alive and it is current: exactly these must be
  on the package's simple pages, and the packages with any must be on the root pages;
- a build target (a queued or running job, or a record of one) exists only for a version
  build_dispatch knows alive, and a target not yet built only for one no operator skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

from sqlalchemy import text
from sqlalchemy.orm import Session

from piw_services import outbox
from piw_services.index import queries as index_queries

SIMPLE = "simple"
PROJECT = "project"
METADATA = ".metadata"
PAGES = ("index.html", "index.json")
#: the package name root-page disagreements are filed under (as in ``index_dirty``)
ROOT = ":root"
#: how many same-directory symlinks are followed to reach a file
MAX_HOPS = 8
#: pages larger than this are not parsed (the 500,000-name root is ~20 MB)
MAX_PAGE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, order=True)
class Disagreement:
    """One way the database, the file store and the pages disagree."""

    kind: str
    package: str
    detail: str

    def line(self) -> str:
        """``kind package: detail`` on one line, whatever characters the names hold."""
        return f"{self.kind} {_printable(self.package)}: {_printable(self.detail)}"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _printable(value: str) -> str:
    """*value* with control characters and undecodable bytes escaped (a hostile name must
    not break the one-line-per-disagreement output)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace")
                   .decode("ascii") for c in value)


@dataclass(frozen=True)
class FileRow:
    """The parts of a ``files`` row the audit compares."""

    filename: str
    package: str
    version: str
    job_id: str
    size: int
    sha256: str
    metadata_sha256: str | None = None
    link_of: str | None = None


@dataclass(frozen=True)
class Entry:
    """A directory entry as ``lstat`` saw it: ``file`` (regular, with its size), ``link``
    (with its target) or ``other`` (a directory, a socket, ...)."""

    kind: str
    size: int = 0
    target: str | None = None


@dataclass(frozen=True)
class ListedPage:
    """What one page lists: file (or project) names, each with the sha256 the page gives
    (None: none given); ``error`` when the page could not be read or parsed."""

    entries: Mapping[str, str | None] = field(default_factory=dict)
    error: str | None = None


Listing = Mapping[str, Entry]


@dataclass
class Snapshot:
    """Everything the comparison needs, as plain data.

    ``disk``: package directory name -> its entries (``<WWW>/simple/<package>/``);
    ``simple_pages``: package -> page name (``index.html``, ``index.json``) -> ListedPage, for
    the pages that exist; ``project_pages``: package -> the project pages that exist (relative
    paths); ``root_pages``: ``index.html``/``index.json`` of ``simple/`` that exist;
    ``hashes``: (package, name) -> sha256 of regular files, or None when not hashing.
    """

    rows: list[FileRow] = field(default_factory=list)
    disk: dict[str, dict[str, Entry]] = field(default_factory=dict)
    alive_packages: set[str] = field(default_factory=set)
    alive_versions: set[tuple[str, str]] = field(default_factory=set)
    targets: set[tuple[str, str, str]] = field(default_factory=set)
    #: live versions quarantined upstream (or of quarantined packages): files stay, on no page
    withheld: set[tuple[str, str]] = field(default_factory=set)
    simple_pages: dict[str, dict[str, ListedPage]] = field(default_factory=dict)
    project_pages: dict[str, list[str]] = field(default_factory=dict)
    root_pages: dict[str, ListedPage] = field(default_factory=dict)
    hashes: dict[tuple[str, str], str] | None = None
    #: (package, version, abi, state, why) of build targets that should not exist
    stray_targets: list[tuple[str, str, str, str, str]] = field(default_factory=list)

    @property
    def packages(self) -> set[str]:
        """Every package the audit looked at."""
        return ({r.package for r in self.rows} | set(self.disk) | set(self.simple_pages)
                | set(self.project_pages))


# -- comparing (pure) ----------------------------------------------------------------------
def resolve(listing: Listing, name: str) -> str | None:
    """The regular file *name* leads to in its directory (following symlinks that name a
    sibling, as the store makes them), or None when it leads nowhere or outside."""
    for _ in range(MAX_HOPS):
        entry = listing.get(name)
        if entry is None:
            return None
        if entry.kind == "file":
            return name
        target = entry.target
        if (entry.kind != "link" or not target or "/" in target or "\0" in target
                or target in (".", "..")):
            return None
        name = target
    return None


def _where(package: str, name: str) -> str:
    return f"{SIMPLE}/{package}/{name}"


def _kind_of(entry: Entry) -> str:
    if entry.kind == "link":
        return f"a symlink to {entry.target!r}"
    return "a regular file" if entry.kind == "file" else "not a file"


def check_files(rows: Iterable[FileRow], disk: Mapping[str, Listing],
                hashes: Mapping[tuple[str, str], str] | None = None) -> list[Disagreement]:
    """Every row's file on disk, as its row describes it: ``missing_file``, ``bad_link``,
    ``size_mismatch``, ``missing_metadata``, and with *hashes* ``hash_mismatch``."""
    found = []
    for row in rows:
        p, fn = row.package, row.filename
        listing = disk.get(p, {})
        entry = listing.get(fn)
        where = _where(p, fn)
        if entry is None:
            found.append(Disagreement("missing_file", p, f"{where} is not on disk"))
        elif row.link_of is None:
            if entry.kind != "file":
                kind = "bad_link" if entry.kind == "link" else "missing_file"
                found.append(Disagreement(kind, p, f"{where} should be the wheel itself, is "
                                                   f"{_kind_of(entry)}"))
            else:
                if entry.size != row.size:
                    found.append(Disagreement("size_mismatch", p, f"{where} is {entry.size} "
                                                                  f"bytes, files.size {row.size}"))
                have = hashes.get((p, fn)) if hashes is not None else None
                if have is not None and have != row.sha256.lower():
                    found.append(Disagreement("hash_mismatch", p, f"{where} hashes to {have}, "
                                                                  f"files.sha256 {row.sha256}"))
        elif entry.kind != "link" or entry.target != row.link_of:
            found.append(Disagreement("bad_link", p, f"{where} should be a symlink to "
                                                     f"{row.link_of!r}, is {_kind_of(entry)}"))
        elif resolve(listing, fn) is None:
            found.append(Disagreement("missing_file", p, f"{where} links to {row.link_of!r}, "
                                                         f"which is not on disk"))
        if row.metadata_sha256 is not None:
            meta = resolve(listing, fn + METADATA)
            if meta is None:
                found.append(Disagreement("missing_metadata", p,
                                          f"{where}{METADATA} is not on disk"))
            else:
                have = hashes.get((p, meta)) if hashes is not None else None
                if have is not None and have != row.metadata_sha256.lower():
                    found.append(Disagreement(
                        "hash_mismatch", p, f"{where}{METADATA} hashes to {have}, "
                                            f"files.metadata_sha256 {row.metadata_sha256}"))
    return found


def check_orphans(rows: Iterable[FileRow], disk: Mapping[str, Listing]) -> list[Disagreement]:
    """``orphan_file``: a wheel or its ``.metadata`` in a package directory with no row of
    that package (temp files, dot names and the pages themselves are not the store's)."""
    known = {(r.package, r.filename) for r in rows}
    found = []
    for package, listing in disk.items():
        for name in listing:
            if name.startswith("."):
                continue
            if name.endswith(".whl"):
                wheel = name
            elif name.endswith(".whl" + METADATA):
                wheel = name[:-len(METADATA)]
            else:
                continue
            if (package, wheel) not in known:
                found.append(Disagreement("orphan_file", package,
                                          f"{_where(package, name)} has no files row"))
    return found


def check_catalog(rows: Iterable[FileRow], alive_versions: set[tuple[str, str]],
                  targets: set[tuple[str, str, str]],
                  withheld: set[tuple[str, str]] = frozenset()) -> list[Disagreement]:
    """``dead_version_file`` (its version is not alive) and ``revoked_file`` (no current
    target has its job id); a dead version's file is reported as that alone. Files of a
    version quarantined upstream (or of a quarantined package) are *withheld*: kept, but on
    no page."""
    found = []
    for row in rows:
        p, v = row.package, row.version
        if (p, v) not in alive_versions and (p, v) not in withheld:
            found.append(Disagreement("dead_version_file", p, f"{row.filename}: version "
                                                              f"{v} is not alive"))
        elif (p, v, row.job_id) not in targets:
            found.append(Disagreement("revoked_file", p, f"{row.filename}: made by job "
                                                         f"{row.job_id}, which no build target "
                                                         f"of {p} {v} holds now"))
    return found


def servable(rows: Iterable[FileRow], alive_versions: set[tuple[str, str]],
             targets: set[tuple[str, str, str]]) -> dict[str, dict[str, FileRow]]:
    """The files that must be served (alive version, current job), by package and name."""
    served: dict[str, dict[str, FileRow]] = defaultdict(dict)
    for row in rows:
        if ((row.package, row.version) in alive_versions
                and (row.package, row.version, row.job_id) in targets):
            served[row.package][row.filename] = row
    return dict(served)


def check_pages(rows: Iterable[FileRow], disk: Mapping[str, Listing],
                served: Mapping[str, Mapping[str, FileRow]], alive_packages: set[str],
                simple_pages: Mapping[str, Mapping[str, ListedPage]],
                project_pages: Mapping[str, Iterable[str]]) -> list[Disagreement]:
    """Each package's simple pages list exactly its servable files with their hashes:
    ``page_lists_missing``, ``page_lacks_file``, ``page_hash_mismatch``, ``stale_page``,
    ``missing_page``, ``unreadable_page``; project pages exist only for live packages."""
    by_key = {(r.package, r.filename): r for r in rows}
    found = []
    for package in sorted(set(disk) | set(served) | set(simple_pages)):
        files = served.get(package, {})
        listing = disk.get(package, {})
        pages = simple_pages.get(package, {})
        for name in PAGES:
            where = _where(package, name)
            page = pages.get(name)
            if page is None:
                if files:
                    found.append(Disagreement("missing_page", package, f"{where} is missing; "
                                              f"{len(files)} servable files"))
                continue
            if page.error is not None:
                found.append(Disagreement("unreadable_page", package, f"{where}: {page.error}"))
                continue
            if package not in alive_packages or not files:
                why = "is not alive" if package not in alive_packages else "has no servable file"
                found.append(Disagreement("stale_page", package, f"{where} exists but the "
                                                                 f"package {why}"))
                continue
            for filename, sha in sorted(page.entries.items()):
                row = by_key.get((package, filename))
                if row is None:
                    found.append(Disagreement("page_lists_missing", package,
                                              f"{where} lists {filename}, which has no row"))
                elif resolve(listing, filename) is None:
                    found.append(Disagreement("page_lists_missing", package,
                                              f"{where} lists {filename}, which is not on disk"))
                elif sha is None or sha.lower() != row.sha256.lower():
                    found.append(Disagreement("page_hash_mismatch", package,
                                              f"{where} gives {filename} sha256 {sha}, "
                                              f"files.sha256 {row.sha256}"))
            for filename in sorted(set(files) - set(page.entries)):
                found.append(Disagreement("page_lacks_file", package,
                                          f"{where} does not list {filename}"))
    for package, paths in sorted(project_pages.items()):
        if package not in alive_packages:
            found.extend(Disagreement("stale_page", package, f"{path} exists but the package "
                                                             f"is not alive")
                         for path in sorted(paths))
    return found


def check_root(served: Mapping[str, Mapping[str, FileRow]],
               root_pages: Mapping[str, ListedPage]) -> list[Disagreement]:
    """The root pages list exactly the packages with servable files: ``root_lists_extra``,
    ``root_lacks``, ``missing_page``, ``unreadable_page``."""
    expected = {p for p, files in served.items() if files}
    found = []
    for name in PAGES:
        where = f"{SIMPLE}/{name}"
        page = root_pages.get(name)
        if page is None:
            if expected:
                found.append(Disagreement("missing_page", ROOT, f"{where} is missing; "
                                                                f"{len(expected)} packages"))
            continue
        if page.error is not None:
            found.append(Disagreement("unreadable_page", ROOT, f"{where}: {page.error}"))
            continue
        listed = set(page.entries)
        found += [Disagreement("root_lists_extra", p, f"{where} lists it; it has no servable "
                                                      f"file") for p in sorted(listed - expected)]
        found += [Disagreement("root_lacks", p, f"{where} does not list it")
                  for p in sorted(expected - listed)]
    return found


def compare(snap: Snapshot) -> list[Disagreement]:
    """Every disagreement in *snap*, sorted (and without duplicates)."""
    served = servable(snap.rows, snap.alive_versions, snap.targets)
    found = (check_files(snap.rows, snap.disk, snap.hashes)
             + check_orphans(snap.rows, snap.disk)
             + check_catalog(snap.rows, snap.alive_versions, snap.targets, snap.withheld)
             + check_pages(snap.rows, snap.disk, served, snap.alive_packages,
                           snap.simple_pages, snap.project_pages)
             + check_root(served, snap.root_pages)
             + check_targets(snap.stray_targets))
    return sorted(set(found))


def check_targets(stray: Iterable[tuple[str, str, str, str, str]]) -> list[Disagreement]:
    """Targets (jobs) of versions that are gone or skipped: their builders would build for
    nothing, and their files would be published for a version nobody serves."""
    return [Disagreement("stray_target", package, f"{version} {abi} is {state}: {why}")
            for package, version, abi, state, why in stray]


# -- page parsing (pure) -------------------------------------------------------------------
class PageError(ValueError):
    """A page that cannot be read as what it should be."""


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(value for key, value in attrs if key == "href" and value)


def _name_of(href: str, directory: bool) -> tuple[str, str | None]:
    """(name, sha256 or None) of an anchor: the last path segment, URL-unquoted, and the
    ``#sha256=`` fragment."""
    path, _, fragment = href.partition("#")
    path = path.partition("?")[0]
    if directory:
        path = path.rstrip("/")
    sha = fragment[len("sha256="):].lower() if fragment.startswith("sha256=") else None
    return unquote(path.rsplit("/", 1)[-1], errors="surrogateescape"), sha


def parse_html(page: str, directory: bool = False) -> dict[str, str | None]:
    """The names a PEP 503 page links to (``directory``: the root's ``<name>/`` links), each
    with its ``#sha256=`` (None when the anchor has none)."""
    parser = _Anchors()
    try:
        parser.feed(page)
        parser.close()
    except Exception as exc:  # html.parser is lenient; anything it still raises is a bad page
        raise PageError(f"not parseable as HTML: {exc}") from None
    return dict(_name_of(href, directory) for href in parser.hrefs)


def parse_root_html(page: str) -> dict[str, str | None]:
    """The project names the PEP 503 root links to (``<name>/``)."""
    return parse_html(page, directory=True)


def _json(page: str, key: str) -> list[dict]:
    try:
        data = json.loads(page)
    except ValueError as exc:
        raise PageError(f"not JSON: {exc}") from None
    items = data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise PageError(f"no list of objects under {key!r}")
    return items


def parse_project_json(page: str) -> dict[str, str | None]:
    """PEP 691 project detail: ``files[].filename`` with ``files[].hashes.sha256``."""
    found: dict[str, str | None] = {}
    for item in _json(page, "files"):
        filename, hashes = item.get("filename"), item.get("hashes")
        if not isinstance(filename, str):
            raise PageError("a file without a filename")
        sha = hashes.get("sha256") if isinstance(hashes, dict) else None
        found[filename] = sha.lower() if isinstance(sha, str) else None
    return found


def parse_root_json(page: str) -> dict[str, str | None]:
    """PEP 691 root: ``projects[].name``."""
    names = [item.get("name") for item in _json(page, "projects")]
    if not all(isinstance(n, str) for n in names):
        raise PageError("a project without a name")
    return dict.fromkeys(names)


def read_page(path: Path, parse: Callable[[str], dict[str, str | None]],
              entry: Entry | None = None) -> ListedPage:
    """Read and parse one page (*entry*: its lstat); a page that cannot be read or parsed
    is a ListedPage with an error (reported as ``unreadable_page``), never an exception. Only
    regular files are read: a symlink or a FIFO in the tree must not lead the audit away."""
    if entry is not None and entry.kind != "file":
        return ListedPage(error=f"not a regular file ({_kind_of(entry)})")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PAGE_BYTES + 1)
    except OSError as exc:
        return ListedPage(error=f"cannot read: {exc.strerror or exc}")
    if len(data) > MAX_PAGE_BYTES:
        return ListedPage(error=f"larger than {MAX_PAGE_BYTES} bytes")
    try:
        return ListedPage(entries=parse(data.decode("utf-8", "replace")))
    except PageError as exc:
        return ListedPage(error=str(exc))


# -- gathering (database and disk) ---------------------------------------------------------
def _scan(directory: Path) -> dict[str, Entry]:
    """The entries of *directory*, by lstat (symlinks are not followed)."""
    entries: dict[str, Entry] = {}
    try:
        with os.scandir(directory) as it:
            for e in it:
                try:
                    if e.is_symlink():
                        entries[e.name] = Entry("link", target=os.readlink(e.path))
                    elif e.is_file(follow_symlinks=False):
                        entries[e.name] = Entry("file", e.stat(follow_symlinks=False).st_size)
                    else:
                        entries[e.name] = Entry("other")
                except FileNotFoundError:  # removed while we looked
                    continue
    except (FileNotFoundError, NotADirectoryError):
        pass
    return entries


def _entry(path: Path) -> Entry | None:
    """One path as lstat sees it, or None when it does not exist."""
    try:
        st = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(st.st_mode):
        return Entry("link", target=os.readlink(path))
    return Entry("file", st.st_size) if stat.S_ISREG(st.st_mode) else Entry("other")


def _subdirs(directory: Path) -> list[str]:
    """Real (not symlinked), non-dot subdirectories of *directory*."""
    try:
        with os.scandir(directory) as it:
            return sorted(e.name for e in it if not e.name.startswith(".")
                          and e.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return []


def hash_file(path: Path) -> str | None:
    """sha256 of a file read in pieces, or None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while piece := fh.read(1024 * 1024):
                digest.update(piece)
    except OSError:
        return None
    return digest.hexdigest()


def gather_rows(session: Session) -> list[FileRow]:
    return [FileRow(*r) for r in session.execute(text(
        "SELECT filename, package, version, job_id, size, sha256, metadata_sha256, link_of "
        "FROM files ORDER BY package, filename"))]


def gather_catalog(session: Session, packages: Iterable[str]
                   ) -> tuple[set[str], set[tuple[str, str]], set[tuple[str, str, str]]]:
    """(alive packages among *packages*, alive versions of files rows, current targets of
    files rows): the rules of the module docstring, in SQL, for only what the audit needs."""
    packages_alive = set(session.execute(text(
        "SELECT name FROM servable_packages WHERE name = ANY(:names)"),
        {"names": sorted(packages)}).scalars())
    versions = {(p, v) for p, v in session.execute(text(
        "SELECT DISTINCT package, version FROM files JOIN servable_versions "
        "USING (package, version)"))}
    targets = {(p, v, j) for p, v, j in session.execute(text(
        "SELECT DISTINCT t.package, t.version, t.job_id FROM build_targets t "
        "JOIN files f ON f.package = t.package AND f.version = t.version "
        "AND f.job_id = t.job_id"))}
    return packages_alive, versions, targets


def gather_stray_targets(session: Session) -> list[tuple[str, str, str, str, str]]:
    return [tuple(r) for r in session.execute(text(
        "SELECT t.package, t.version, t.abi, t.state, CASE WHEN bv.package IS NULL "
        "THEN 'build_dispatch does not know the version' ELSE 'the version is not alive' END "
        "FROM build_targets t LEFT JOIN build_versions bv "
        "ON bv.package = t.package AND bv.version = t.version "
        "LEFT JOIN live_versions lv ON lv.package = t.package AND lv.version = t.version "
        "WHERE bv.package IS NULL OR lv.package IS NULL "
        "UNION ALL SELECT t.package, t.version, t.abi, t.state, 'an operator skipped it: ' "
        "|| coalesce(ps.reason, bv.skip_reason) FROM build_targets t "
        "JOIN build_versions bv ON bv.package = t.package AND bv.version = t.version "
        "LEFT JOIN build_package_skips ps ON ps.package = t.package "
        "WHERE t.state <> 'built' AND coalesce(ps.reason, bv.skip_reason) IS NOT NULL "
        "ORDER BY 1, 2, 3"))]


def gather_withheld(session: Session) -> set[tuple[str, str]]:
    return {(p, v) for p, v in session.execute(text(
        "SELECT DISTINCT package, version FROM files JOIN live_versions "
        "USING (package, version) WHERE withheld"))}


def gather_disk(www: Path) -> tuple[dict[str, dict[str, Entry]], dict[str, dict[str, ListedPage]],
                                    dict[str, list[str]], dict[str, ListedPage]]:
    """(package directories' entries, simple pages, project pages, root pages) of *www*."""
    simple, project = www / SIMPLE, www / PROJECT
    disk, pages = {}, {}
    parsers = {"index.html": parse_html, "index.json": parse_project_json}
    for package in _subdirs(simple):
        listing = disk[package] = _scan(simple / package)
        found = {name: read_page(simple / package / name, parsers[name], listing[name])
                 for name in PAGES if name in listing}
        if found:
            pages[package] = found
    projects = {}
    for package in _subdirs(project):
        paths = [f"{PROJECT}/{package}/{rel}" for rel in ("index.html", "json/index.json")]
        existing = [p for p in paths if os.path.lexists(www / p)]
        if existing:
            projects[package] = existing
    root_parsers = {"index.html": parse_root_html, "index.json": parse_root_json}
    root = {name: read_page(simple / name, root_parsers[name], entry)
            for name in PAGES if (entry := _entry(simple / name)) is not None}
    return disk, pages, projects, root


def gather_hashes(www: Path, rows: Iterable[FileRow], disk: Mapping[str, Listing]
                  ) -> dict[tuple[str, str], str]:
    """sha256 of every regular file a row stands for (its wheel and ``.metadata``)."""
    hashes = {}
    for row in rows:
        listing = disk.get(row.package, {})
        names = [row.filename] if row.link_of is None else []
        if row.metadata_sha256 is not None:
            names.append(row.filename + METADATA)
        for name in names:
            real = resolve(listing, name)
            if real is None or (row.package, real) in hashes:
                continue
            digest = hash_file(www / SIMPLE / row.package / real)
            if digest is not None:
                hashes[(row.package, real)] = digest
    return hashes


def gather(session: Session, www: Path, hashes: bool = False) -> Snapshot:
    """Read everything the audit compares: the database (in *session*'s transaction; use
    REPEATABLE READ for one consistent view) first, then the tree."""
    rows = gather_rows(session)
    disk, pages, projects, root = gather_disk(Path(www))
    names = {r.package for r in rows} | set(disk) | set(projects)
    alive_packages, alive_versions, targets = gather_catalog(session, names)
    snap = Snapshot(rows=rows, disk=disk, alive_packages=alive_packages,
                    alive_versions=alive_versions, targets=targets, simple_pages=pages,
                    project_pages=projects, root_pages=root,
                    stray_targets=gather_stray_targets(session),
                    withheld=gather_withheld(session))
    if hashes:
        snap.hashes = gather_hashes(Path(www), rows, disk)
    return snap


def audit(session: Session, www: Path, hashes: bool = False) -> list[Disagreement]:
    """Every disagreement between the database, the file store and the pages under *www*."""
    return compare(gather(session, www, hashes))


# -- is the system quiet? --------------------------------------------------------------------
def activity(session: Session) -> list[str]:
    """What is still in flight (empty when quiet): batches the relay has not marked sent,
    consumers behind the outbox, packages waiting for the index to rewrite their pages. A live
    system is briefly inconsistent while events travel, so an audit worth trusting waits for
    this to be empty."""
    busy = []
    unsent = outbox.unsent_count(session)
    if unsent:
        busy.append(f"{unsent} outbox batches not yet relayed")
    top = outbox.last_seq(session)
    for consumer, seq in sorted(outbox.consumer_marks(session).items()):
        if seq < top:
            busy.append(f"{consumer} at {seq} of {top}")
    dirty = index_queries.pages_pending_count(session)
    if dirty:
        busy.append(f"{dirty} dirty pages in index_dirty")
    return busy
