"""The operators' actions, each one transaction: check the request against the catalog, change
build_dispatch's state, and return what it did with the event that tells the others.

Nothing is deleted here but database state that decides what may exist: jobs get new ids (a
builder still working on an old one can publish nothing: file_manager checks the job under its
lock), builds are forgotten, skips recorded. The event, written to the outbox in the same
transaction by the service, makes file_manager delete the files of the revoked jobs and the
index rewrite the pages, each exactly once and after any crash (docs/architecture.md, the reorderer,
point 3). A request that cannot be done raises :class:`AdminError` and changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version
from sqlalchemy.orm import Session

from builders import protocol
from piw_services import events as ev
from piw_services.admin import PAGE_PART_ALIASES, PAGE_PARTS
from piw_services.build_dispatch import operations as builds
from piw_services.build_dispatch import queries as build_state
from piw_services.file_manager.queries import files_of_jobs, served_sha256
from piw_services.names import MAX_NAME_LENGTH, canonical, is_valid_name, same_version
from piw_services.reorderer import operations as operator_entries
from piw_services.reorderer.parse import MAX_VERSION_LENGTH
from piw_services.reorderer.queries import package_state, upstream_serves
from piw_services.stats import operations as stats

MAX_TEXT = 500
DEFAULT_SKIP_REASON = "skipped by an operator"


class AdminError(Exception):
    """A request that cannot be done; nothing was changed."""


class UnknownPackage(AdminError):
    pass


class UnknownVersion(AdminError):
    pass


class BadRequest(AdminError):
    pass


@dataclass
class Outcome:
    action: str
    package: str
    version: str | None = None
    abi: str | None = None
    #: what was done, in the past tense; ``plan``: the same as a dry run says it (what would
    #: be done), which the service answers as the summary of a dry run
    summary: str = ""
    pages: str | None = None  # rebuild_pages: the part of the site (PAGE_PARTS)
    plan: str = field(default="", repr=False)
    skip: str | None = None
    builds_forgotten: int = 0
    files: list[str] = field(default_factory=list)
    jobs_revoked: int = 0
    downloads_deleted: int = 0
    queued: list[list[str]] = field(default_factory=list)
    dropped: list[list[str]] = field(default_factory=list)
    #: import_wheels: the files to upload, those already served, and the job they go under
    #: (held by the import's builder row, as a builder holds a claimed job)
    imported: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    job_id: str | None = None
    builder_id: int | None = None
    #: builder_control: the orders to send, ``{"builder_id", "label", "queue", "order"}``
    orders: list[dict[str, Any]] = field(default_factory=list)
    #: job ids whose files file_manager deletes (in the event, not shown)
    revoked_jobs: list[str] = field(default_factory=list, repr=False)

    def event(self) -> dict[str, Any] | None:
        """The admin event for the outbox; None when nothing but builders is told."""
        if self.action in ("pause", "resume"):
            return None
        return {"type": ev.ADMIN, "action": self.action, "package": self.package,
                "version": self.version, "abi": self.abi, "pages": self.pages,
                "revoked_jobs": self.revoked_jobs}

    def as_dict(self, dry_run: bool = False) -> dict[str, Any]:
        result = asdict(self)
        del result["revoked_jobs"]
        plan = result.pop("plan")
        if dry_run:
            result["summary"] = plan or result["summary"]
        return result


# -- checking a request --------------------------------------------------------------------------
def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{what} must be a non-empty string, not {_shown(value)}")
    if len(value) > MAX_TEXT or any(ord(c) < 32 for c in value):
        raise BadRequest(f"{what} {_shown(value)} is not acceptable "
                         f"(control characters, or longer than {MAX_TEXT})")
    return value


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _live_package(session: Session, package: Any) -> dict[str, Any]:
    """The catalog's state of a live package, or UnknownPackage."""
    _text(package, "package")
    if not is_valid_name(package):
        raise UnknownPackage(f"{_shown(package)} is not a valid package name "
                             f"(PEP 508, at most {MAX_NAME_LENGTH} characters)")
    state = package_state(session, package)
    if not state["alive"]:
        raise UnknownPackage(f"unknown package {package!r}: the catalog has no live package "
                             f"{canonical(package)!r} (never seen, or removed upstream)")
    return state


def _live_version(state: dict[str, Any], version: Any) -> str:
    """The catalog's spelling of *version* of the package, or UnknownVersion."""
    _text(version, "version")
    versions = state["versions"]
    if version in versions:
        return version
    try:
        wanted = Version(version)
        same = [v for v in versions if _parsed(v) == wanted]
    except InvalidVersion:
        same = []
    if len(same) == 1:
        return same[0]
    newest = sorted(versions, key=lambda v: (_parsed(v) is not None, _parsed(v) or v))[-5:]
    raise UnknownVersion(
        f"{state['name']} has no live version {version!r}"
        + (f" (newest: {', '.join(reversed(newest))})" if newest else " (it has none)"))


def _request(session: Session, package: Any, version: Any
             ) -> tuple[dict[str, Any], str, str | None, list[str]]:
    """(catalog state, canonical name, version or None, the versions it covers) of a request
    for a live package and, unless *version* is None, one live version of it."""
    state = _live_package(session, package)
    version = None if version is None else _live_version(state, version)
    return state, state["name"], version, [version] if version else sorted(state["versions"])


def _parsed(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


def _skip_reason(skip: Any) -> str | None:
    """``skip`` as given to remove: False/None, True (the default reason) or a reason."""
    if skip is None or skip is False:
        return None
    if skip is True:
        return DEFAULT_SKIP_REASON
    return _text(skip, "skip reason")


def _revoked(outcome: Outcome, session: Session, revocation: builds.Revocation) -> Outcome:
    outcome.revoked_jobs = revocation.revoked_jobs
    outcome.jobs_revoked = len(revocation.revoked_jobs)
    outcome.builds_forgotten = revocation.builds_forgotten
    outcome.files = files_of_jobs(session, outcome.package, revocation.revoked_jobs)
    outcome.queued = [list(q) for q in revocation.queued]
    outcome.dropped = [list(d) for d in revocation.dropped]
    return outcome


def _what(package: str, version: str | None) -> str:
    return f"{package} {version}" if version else f"every version of {package}"


def _counts(outcome: Outcome, would: bool = False) -> str:
    n, files, queued = outcome.builds_forgotten, len(outcome.files), len(outcome.queued)
    if would:
        return f"would forget {n} builds, delete {files} files and queue {queued} builds"
    return f"{n} builds forgotten, {files} files deleted, {queued} builds queued"


# -- the actions -------------------------------------------------------------------------------
def remove(session: Session, package: Any, version: Any, skip: Any = False) -> Outcome:
    """Forget every build of the version and delete its files; it is built again later, or
    with *skip* never again."""
    state = _live_package(session, package)
    version = _live_version(state, version)
    return _remove(session, state, [version], version, _skip_reason(skip), "remove")


def remove_package(session: Session, package: Any, skip: Any = False) -> Outcome:
    """remove() for every version; with *skip* no version, present or future, is built."""
    state = _live_package(session, package)
    return _remove(session, state, sorted(state["versions"]), None, _skip_reason(skip),
                   "remove_package")


def _remove(session: Session, state: dict[str, Any], versions: list[str], version: str | None,
            reason: str | None, action: str) -> Outcome:
    """Upstream's versions are built again (or skipped); the operator's (piw-add's) entries
    go, with what was built or imported for them: nothing can build them again."""
    name = state["name"]
    mine = [v for v in versions if state["versions"][v].get("operator")]
    theirs = [v for v in versions if v not in mine]
    if reason is not None and version is not None and mine:
        raise BadRequest(f"{name} {version} is an operator's entry: piw-remove deletes it, "
                         "so there is nothing left to skip (remove it without -s)")
    if reason is not None:
        for v in theirs if version else []:
            builds.set_skip(session, name, v, reason)
        if version is None:
            builds.set_skip(session, name, None, reason)
    outcome = _revoked(Outcome(action, name, version, skip=reason), session, builds.revoke(
        session, name, theirs, forget_builds=True, requeue=reason is None))
    if mine:
        gone = builds.revoke(session, name, mine, forget_builds=True, requeue=False)
        outcome.revoked_jobs += gone.revoked_jobs
        outcome.jobs_revoked += len(gone.revoked_jobs)
        outcome.builds_forgotten += gone.builds_forgotten
        outcome.files = files_of_jobs(session, name, outcome.revoked_jobs)
        builds.forget_versions(session, name, mine)
    entries = (operator_entries.delete_package(session, name) if version is None
               else operator_entries.delete_versions(session, name, versions))
    # a removal deletes the version's logged downloads too (docs/operating.md, Operators)
    for v in versions:
        outcome.downloads_deleted += stats.delete_downloads(session, name, v)
    what = _what(name, version)
    if reason:
        then = f"skipped from now on: {reason}"
    elif outcome.queued:  # the targets are pending again: a builder takes them next
        then = "built again shortly, from upstream's sdist"
    elif mine and not theirs:
        then = "the operator's entry is deleted"
    else:
        then = "not built again: upstream has no sdist of it"
    if entries and not (mine and not theirs):
        then += f"; {entries} operator's entries deleted"
    outcome.summary = f"removed {what} ({_counts(outcome)}); {then}"
    outcome.plan = f"would remove {what} ({_counts(outcome, would=True)}); {then}"
    return outcome


def skip(session: Session, package: Any, version: Any = None, reason: Any = None) -> Outcome:
    """Build the version (or the package, now and in future) no more; what is built stays."""
    _, name, version, versions = _request(session, package, version)
    reason = _text(reason, "reason")
    builds.set_skip(session, name, version, reason)
    outcome = _revoked(Outcome("skip", name, version, skip=reason), session, builds.revoke(
        session, name, versions, forget_builds=False, requeue=False, keep_built=True))
    outcome.summary = (f"skipped {_what(name, version)}: {reason} "
                       f"({len(outcome.dropped)} pending builds dropped)")
    outcome.plan = (f"would skip {_what(name, version)}: {reason} "
                    f"(and drop {len(outcome.dropped)} pending builds)")
    return outcome


def _clear_skip(session: Session, name: str, version: str | None) -> None:
    """Lift the skip of a package (or of one version), refused when there is none, and for a
    version of a package skipped as a whole (unskip, piw-add --unskip)."""
    was = build_state.skip_reason(session, name, version)
    if was is None:
        raise BadRequest(f"{_what(name, version)} is not skipped")
    if version is not None and build_state.skip_reason(session, name) is not None:
        raise BadRequest(f"the whole of {name} is skipped ({was}): unskip the package")
    builds.set_skip(session, name, version, None)


def unskip(session: Session, package: Any, version: Any = None) -> Outcome:
    """Undo a skip; the versions that lack builds are queued."""
    _, name, version, versions = _request(session, package, version)
    _clear_skip(session, name, version)
    outcome = Outcome("unskip", name, version,
                      queued=[list(q) for q in builds.add_targets(session, name, versions)])
    outcome.summary = f"unskipped {_what(name, version)} ({len(outcome.queued)} builds queued)"
    outcome.plan = f"would unskip {_what(name, version)} (and queue {len(outcome.queued)} builds)"
    return outcome


def rebuild(session: Session, package: Any, version: Any = None, abi: Any = None) -> Outcome:
    """Build again: the files of the version's (or package's) builds for the target
    (``cp311-linux_armv7l``; a bare ABI ``cp311`` means each of its platforms; None: every
    target) are deleted and new jobs queued. Failed builds are how an operator retries."""
    _, name, version, versions = _request(session, package, version)
    if abi is not None:
        try:
            protocol.check_target_or_abi(abi)
        except protocol.ProtocolError as exc:
            raise BadRequest(str(exc)) from None
    reason = build_state.skip_reason(session, name, version)
    if reason is not None:
        raise BadRequest(f"{_what(name, version)} is skipped ({reason}): unskip it first")
    outcome = _revoked(Outcome("rebuild", name, version, abi), session, builds.revoke(
        session, name, versions, abi, forget_builds=False, requeue=True))
    what = f"{_what(name, version)}{f' for {abi}' if abi else ''}"
    outcome.summary = f"rebuilding {what} ({_counts(outcome)})"
    outcome.plan = f"would rebuild {what} ({_counts(outcome, would=True)})"
    return outcome


#: The most aliases one piw-add records.
MAX_ALIASES = 20


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{what} must be true or false, not {_shown(value)}")
    return value


def _aliases(aliases: Any, name: str) -> list[str]:
    """piwheels' ``piw-add --alias``: other spellings of the package's name, each of which
    must name the same project (its canonical form)."""
    if aliases is None:
        return []
    if not isinstance(aliases, list) or len(aliases) > MAX_ALIASES:
        raise BadRequest(f"aliases must be a list of at most {MAX_ALIASES} names")
    for alias in aliases:
        if not is_valid_name(alias) or canonical(alias) != name:
            raise BadRequest(f"alias {_shown(alias)} is not a spelling of {name} (its "
                             "canonical name must be the package's)")
    return list(aliases)


def _released(released: Any) -> int:
    """A release date as epoch seconds: now when None; else seconds, or ISO 8601 text
    (``2024-05-01 12:00:00``, UTC unless it says otherwise), not in the future."""
    now = int(time.time())
    if released is None:
        return now
    if isinstance(released, bool) or not isinstance(released, int | float | str):
        raise BadRequest(f"release date {_shown(released)} is not a time")
    when: float
    if isinstance(released, str):
        try:
            parsed = datetime.fromisoformat(_text(released, "release date"))
        except ValueError:
            raise BadRequest(f"release date {_shown(released)} is not a date like "
                             "2024-05-01 12:00:00") from None
        when = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    else:
        when = released
    if not 0 < when <= now + 60 or when != when:
        raise BadRequest(f"release date {_shown(released)} is not between 1970 and now")
    return int(when)


def _new_version(version: Any) -> str:
    """A version an operator adds: PEP 440 (PyPI takes no other), spelled as given."""
    _text(version, "version")
    if len(version) > MAX_VERSION_LENGTH or _parsed(version) is None or version != version.strip():
        raise BadRequest(f"{_shown(version)} is not a version PyPI could have (PEP 440, at "
                         f"most {MAX_VERSION_LENGTH} characters)")
    return version


def add(session: Session, package: Any, version: Any = None, *, description: Any = None,
        aliases: Any = None, released: Any = None, yank: Any = False, unyank: Any = False,
        skip: Any = None, unskip: Any = False, who: Any = None) -> Outcome:
    """piwheels' ``piw-add`` (its add/__init__.py and master/mr_chase.py ``do_add_package``
    / ``do_add_version``): a package or version upstream does not show becomes the
    operator's entry (with a description, aliases, a release date, yanked, skipped with a
    reason); a known one gets its description, aliases, unskip or (the operator's own
    version) unyank; and, as before, the builds a live version lacks are queued. Like
    piwheels, a known package or version is skipped with piw-skip, not here, and only a new
    version takes a release date or a yank."""
    _text(package, "package")
    if not is_valid_name(package):
        raise UnknownPackage(f"{_shown(package)} is not a valid package name "
                             f"(PEP 508, at most {MAX_NAME_LENGTH} characters)")
    name = canonical(package)
    aliases = _aliases(aliases, name)
    description = None if description is None else _text(description, "description")
    skip = None if skip is None else _text(skip, "skip reason")
    yank, unyank = _flag(yank, "yank"), _flag(unyank, "unyank")
    unskip = _flag(unskip, "unskip")
    who = None if who is None else _text(who, "who")
    if yank and unyank or skip and unskip:
        raise BadRequest("asked to do a thing and undo it at once (yank and unyank, or skip "
                         "and unskip)")
    if version is None and (released is not None or yank or unyank):
        raise BadRequest("a release date, --yank and --unyank go with a version")
    state = package_state(session, name)
    if version is None:
        if not state["alive"]:
            return _add_package(session, name, package, description, aliases, skip, unskip,
                                who)
        if skip is not None:
            raise BadRequest(f"{name} is known: skip it with piw-skip, not piw-add")
    elif not state["alive"]:
        raise UnknownPackage(f"unknown package {package!r}: the catalog has no live package "
                             f"{name!r}; add it first with piw-add {name}")
    noted = _note_package(session, state, name, package, description, aliases, who)
    if version is not None:
        try:
            version = _live_version(state, version)
        except UnknownVersion:
            return _add_version(session, state, name, _new_version(version), released, yank,
                                skip, unskip, who, noted)
    return _update(session, state, name, version, released, yank, unyank, skip, unskip, noted)


def _note_package(session: Session, state: dict[str, Any], name: str, typed: str,
                  description: str | None, aliases: list[str], who: str | None) -> list[str]:
    """Record a description or aliases of a live package; what was recorded, for the
    summary."""
    if description is None and not aliases:
        return []
    mine = state.get("operator")
    operator_entries.put_package(session, name, mine["display_name"] if mine else typed,
                            False, description, aliases, who)
    return (["its description"] if description is not None else []) + \
        ([f"aliases {', '.join(aliases)}"] if aliases else [])


def _add_package(session: Session, name: str, typed: str, description: str | None,
                 aliases: list[str], skip: str | None, unskip: bool, who: str | None
                 ) -> Outcome:
    if unskip:
        raise BadRequest(f"{name} is not known: there is nothing to unskip")
    operator_entries.put_package(session, name, typed, True, description, aliases, who)
    if skip is not None:
        builds.set_skip(session, name, None, skip)
    what = f"package {typed}" + (f", skipped: {skip}" if skip else "")
    return Outcome("add", name, None, skip=skip,
                   summary=f"added {what} (an operator's entry: upstream does not show it)",
                   plan=f"would add {what} (an operator's entry: upstream does not show it)")


def _add_version(session: Session, state: dict[str, Any], name: str, version: str,
                 released: Any, yank: bool, skip: str | None, unskip: bool, who: str | None,
                 noted: list[str]) -> Outcome:
    if unskip:
        raise BadRequest(f"{name} {version} is not known: there is nothing to unskip")
    when = _released(released)
    operator_entries.put_version(session, name, version, when, yank, who)
    builds.record_version(session, name, version, when)
    if skip is not None:
        builds.set_skip(session, name, version, skip)
    what = (f"{name} {version}, released {datetime.fromtimestamp(when, UTC):%Y-%m-%d %H:%M:%S}"
            + (", yanked" if yank else "") + (f", skipped: {skip}" if skip else "")
            + "".join(f"; {n}" for n in noted))
    return Outcome("add", name, version, skip=skip,
                   summary=f"added {what} (an operator's entry: upstream does not show it)",
                   plan=f"would add {what} (an operator's entry: upstream does not show it)")


def _update(session: Session, state: dict[str, Any], name: str, version: str | None,
            released: Any, yank: bool, unyank: bool, skip: str | None, unskip: bool,
            noted: list[str]) -> Outcome:
    """piw-add of a known package or version: notes, unskip, unyank, then the builds it
    lacks."""
    what = _what(name, version)
    mine = version is not None and state["versions"][version]["operator"]
    if version is not None:
        if skip is not None:
            raise BadRequest(f"{what} is known: skip it with piw-skip, not piw-add")
        if released is not None:
            raise BadRequest(f"{what} is known: a release date is given only to a new version")
        if (yank or unyank) and not mine:
            raise BadRequest(f"{what} is upstream's: piw follows upstream's yanks")
        if yank or unyank:
            if state["versions"][version]["yanked"] == yank:
                raise BadRequest(f"{what} is {'already' if yank else 'not'} yanked")
            operator_entries.set_yanked(session, name, version, yank)
            noted.append("yanked" if yank else "unyanked")
    if unskip:
        _clear_skip(session, name, version)
        noted.append("unskipped")
    if version is not None and not noted:  # only queueing asked: say why there is nothing
        mine_v = build_state.known_versions(session, name).get(version)
        if mine_v is None or not mine_v["buildable"]:
            raise BadRequest(f"{what} has no source file upstream: nothing to build"
                             f" ({state['versions'][version]['unbuildable_reason'] or ''})")
        reason = build_state.skip_reason(session, name, version)
        if reason is not None:
            raise BadRequest(f"{what} is skipped ({reason}): unskip it first")
    versions = [version] if version else sorted(state["versions"])
    outcome = Outcome("add", name, version,
                      queued=[list(q) for q in builds.add_targets(session, name, versions)])
    done = "; ".join(noted)
    if outcome.queued:
        queued = f"{len(outcome.queued)} builds of {what}"
        outcome.summary = f"queued {queued}" + (f" ({done})" if done else "")
        outcome.plan = f"would queue {queued}" + (f" (and record {done})" if done else "")
    elif done:
        which = f"{name} {version}" if version else name
        outcome.summary = f"recorded for {which}: {done}"
        outcome.plan = f"would record for {which}: {done}"
    else:
        outcome.summary = f"nothing to add: {what} has every build it can have"
    return outcome


def rebuild_pages(session: Session, part: Any, package: Any = None) -> Outcome:
    """Have the index rewrite a part of the site, as piwheels' ``piw-rebuild`` does: ``home``
    or ``search`` (the root pages: home page, packages.json, simple root), ``project`` or
    ``both`` of one live package, or of every live package when *package* is None. Nothing
    but pages changes; the index does it when it applies the event."""
    part = PAGE_PART_ALIASES.get(part, part) if isinstance(part, str) else part
    if part not in PAGE_PARTS:
        raise BadRequest(f"no such part of the site: {_shown(part)} (one of "
                         f"{', '.join(PAGE_PARTS)}, or index for both)")
    if part in ("home", "search"):
        if package is not None:
            raise BadRequest(f"{part} is one page for the whole site: name no package")
        pages = f"the {part} pages (home page, packages.json, simple root)"
        return Outcome("rebuild_pages", "", pages=part, summary=f"rewriting {pages}",
                       plan=f"would rewrite {pages}")
    name = _live_package(session, package)["name"] if package is not None else ""
    what = "simple and project pages" if part == "both" else "project pages"
    pages = f"the {what} of {name or 'every live package'}"
    return Outcome("rebuild_pages", name, pages=part, summary=f"rewriting {pages}",
                   plan=f"would rewrite {pages}")


def import_wheels(session: Session, package: Any, version: Any, target: Any, files: Any,
                  who: Any = None) -> Outcome:
    """Take wheels built elsewhere as the build of one live version for one build target
    (piwheels' master/mr_chase.py ``do_import``): the target gets a new job, held by the
    ``piw-import`` row of the builder registry, which the importer then uploads through
    file_manager and reports to build_dispatch as a builder does. The target's earlier job is
    revoked (its files go, as with piw-rebuild-wheels). Refused, changing nothing, when the
    version is unknown, removed or skipped, the target is not built for, a wheel is not of
    that version or target, upstream serves its name, or we serve its name with another
    hash; when every wheel is already served with its hash there is nothing to do."""
    state = _live_package(session, package)
    name = state["name"]
    version = _live_version(state, version)
    try:
        target = protocol.check_target(target)
    except protocol.ProtocolError as exc:
        raise BadRequest(str(exc)) from None
    if target not in build_state.enabled_abis(session):
        raise BadRequest(f"{target} is not a build target of this index (BUILD_ABIS: "
                         f"{', '.join(build_state.enabled_abis(session)) or 'none'})")
    reason = build_state.skip_reason(session, name, version)
    if reason is not None:
        raise BadRequest(f"{name} {version} is skipped ({reason}): unskip it first")
    if not isinstance(files, list) or not files or len(files) > 100:
        raise BadRequest("files must be a list of 1 to 100 wheels' inspection records")
    outcome = Outcome("import", name, version, target)
    for info in files:
        try:
            filename = protocol.check_wheel_filename(protocol.check_file_info(info)["filename"])
            wheel_name, wheel_version, _, tags = parse_wheel_filename(filename)
        except (protocol.ProtocolError, InvalidWheelFilename) as exc:
            raise BadRequest(str(exc)) from None
        if wheel_name != name or not same_version(str(wheel_version), version):
            raise BadRequest(f"{filename} is a wheel of {wheel_name} {wheel_version}, not of "
                             f"{name} {version}")
        problem = protocol.wheel_target_problem(filename, target)
        abi = target.partition("-")[0]
        if problem is None and not any(t.abi in (abi, "abi3", "none") for t in tags):
            problem = (f"{filename} is built for the ABI {', '.join(sorted({t.abi for t in tags}))}"
                       f", not {abi} (target {target})")
        if problem:
            raise BadRequest(problem)
        if upstream_serves(session, name, filename):
            raise BadRequest(f"upstream already serves {filename}: another file under that "
                             "name would give pip two hashes for one name")
        served = served_sha256(session, filename)
        if served is not None and served != info["sha256"]:
            raise BadRequest(f"{filename} is already served with another sha256 "
                             f"({served}): piw-remove or piw-rebuild-wheels it first")
        (outcome.already if served is not None else outcome.imported).append(filename)
    if not outcome.imported:
        outcome.summary = (f"nothing to import: {name} {version} already has "
                           f"{', '.join(outcome.already)} with the same hash")
        return outcome
    _revoked(outcome, session, builds.revoke(session, name, [version], target,
                                             forget_builds=False, requeue=False))
    outcome.dropped = []  # taken over by the import, not dropped
    outcome.builder_id, outcome.job_id = builds.import_job(
        session, name, version, target,
        f"imported by {_text(who, 'who') if who is not None else 'an operator'}")
    # targets a pure wheel of the revoked build had settled are built again
    outcome.queued = [list(q) for q in builds.add_targets(session, name, [version])]
    what = f"{len(outcome.imported)} files of {name} {version} for {target}"
    outcome.summary = f"importing {what} (job {outcome.job_id}; {_counts(outcome)})"
    outcome.plan = f"would import {what} ({_counts(outcome, would=True)})"
    return outcome


#: The builder registry's rows that hold imported builds' jobs (build_import_job, migration
#: 0017) take no orders.
IMPORT_LABEL = "piw-import"


#: piwheels' monitor's orders (SLEEP, WAKE, KILL, SKIP in master/slave_driver.py), by our names.
ORDER_NAMES = ("pause", "resume", "kill", "skip")


def _builders(session: Session, builder: Any) -> list[Any]:
    """The registry's rows of *builder* (an id, or a label naming one builder), or of every
    builder that takes orders when None."""
    if builder is not None and not (isinstance(builder, int) and not isinstance(builder, bool)):
        builder = _text(builder, "builder")
    rows = build_state.order_builders(session, builder, IMPORT_LABEL)
    if builder is None:
        return [r for r in rows if r.user is not None]
    if not rows:
        raise BadRequest(f"no builder {_shown(builder)} (an id or label the registry has)")
    if len(rows) > 1:
        raise BadRequest(f"the label {_shown(builder)} names builders "
                         f"{', '.join(str(r.id) for r in rows)}: give the id")
    if rows[0].user is None:
        raise BadRequest(f"builder {rows[0].id} ({rows[0].label}) did not name its RabbitMQ "
                         "user when it said hello (an older piw-builder): it takes no orders")
    return rows


def builder_control(session: Session, order: Any, builder: Any = None,
                    reason: Any = None) -> Outcome:
    """An operator's order to a builder (piwheels' monitor keys, master/slave_driver.py):
    ``pause`` (it finishes its build and takes no new job; the registry keeps it, so it
    outlives the builder's restarts) and ``resume``, of one builder or of every one when
    *builder* is None; ``kill`` its build (the job is revoked and queued
    again, so another builder builds it) or ``skip`` it (the target is recorded skipped with
    *reason*). The service sends the orders to the builders' order queues once this commits;
    the job's state changes here, so a builder that never gets the order can publish
    nothing of the old job."""
    if order not in ORDER_NAMES:
        raise BadRequest(f"no such order: {_shown(order)} (one of {', '.join(ORDER_NAMES)})")
    if order in ("kill", "skip") and builder is None:
        raise BadRequest(f"{order} needs a builder: the one whose build it stops")
    if order == "skip":
        reason = _text(reason, "reason")
    elif reason is not None:
        raise BadRequest(f"{order} takes no reason")
    rows = _builders(session, builder)
    outcome = Outcome(order, "")
    if order in ("kill", "skip"):
        row = rows[0]
        target = builds.current_build(session, row.id)
        if target is None:
            raise BadRequest(f"builder {row.id} ({row.label}) is not building anything")
        outcome.package, outcome.version, outcome.abi = target.package, target.version, \
            target.abi
        what = f"{target.package} {target.version} for {target.abi} on builder {row.id}"
        if order == "kill":
            outcome.action = "kill"
            _revoked(outcome, session, builds.revoke(
                session, target.package, [target.version], target.abi, forget_builds=False,
                requeue=True))
            outcome.summary = f"killed the build of {what}: queued again for another builder"
            outcome.plan = f"would kill the build of {what} and queue it again"
        else:
            outcome.action = "skip_build"
            outcome.skip = reason
            outcome.revoked_jobs = [target.job_id]
            outcome.jobs_revoked = 1
            builds.skip_build(session, target.job_id, f"skipped by an operator: {reason}")
            outcome.summary = f"skipped the build of {what}: {reason}"
            outcome.plan = f"would skip the build of {what}: {reason}"
        job_id = target.job_id
    else:
        job_id = None
        builds.hold(session, [r.id for r in rows], order == "pause")
        who = (f"builder {rows[0].id} ({rows[0].label})" if builder is not None
               else f"every builder ({len(rows)})")
        outcome.summary = f"{order}d {who}" if order == "pause" else f"resumed {who}"
        outcome.plan = f"would {order} {who}"
    outcome.orders = [{"builder_id": r.id, "label": r.label,
                       "queue": protocol.order_queue(r.id, r.user),
                       "order": protocol.order(order, job_id, reason)} for r in rows]
    return outcome
