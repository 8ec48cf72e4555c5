"""Anchored parsing of upstream changelog rows (docs/architecture.md, the reorderer, point 4).

Every action is matched whole: ``remove Owner x`` is a role change, not a removal, and
``add Owner filebot`` is not a file upload. Rows that do not fit are reported as
:class:`Malformed` with a reason, never raised, so one bad row cannot stop the pipeline.
"""

from __future__ import annotations

import enum
import math
import re
import reprlib
import time
from dataclasses import dataclass

from piw_services.names import canonical, is_valid_name

#: Bumped whenever the parser understands rows it used to call malformed: rows recorded by an
#: older one are parsed again (reorderer.store.reparse_malformed). 1: until 2026-12-03;
#: 2: warehouse's "release quarantined" / "release quarantine cleared", numeric character
#: references in actions.
PARSER_VERSION = 2

#: k = timestamp * K_SCALE + serial orders rows by (timestamp, serial) in one bigint.
K_SCALE = 1_000_000_000
MAX_SERIAL = K_SCALE - 1
#: Rows stamped more than this far in the future of the wall clock are absurd.
FUTURE_SLACK = 86_400
MAX_VERSION_LENGTH = 128
MAX_FILENAME_LENGTH = 255


class Kind(enum.StrEnum):
    CREATE = "create"
    RELEASE = "new release"
    ADD_FILE = "add file"
    REMOVE_FILE = "remove file"
    REMOVE_RELEASE = "remove release"
    REMOVE_PROJECT = "remove project"
    YANK = "yank release"
    UNYANK = "unyank release"
    RENAME = "rename from"
    QUARANTINE = "project quarantined"
    UNQUARANTINE = "project quarantine cleared"
    RELEASE_QUARANTINE = "release quarantined"
    RELEASE_UNQUARANTINE = "release quarantine cleared"


#: Kinds that make a package exist (a later one after a deletion starts a new life).
CREATING = frozenset({Kind.CREATE, Kind.RELEASE, Kind.ADD_FILE, Kind.RENAME})
#: Kinds that need a version.
VERSIONED = frozenset(
    {Kind.RELEASE, Kind.ADD_FILE, Kind.REMOVE_FILE, Kind.REMOVE_RELEASE, Kind.YANK, Kind.UNYANK,
     Kind.RELEASE_QUARANTINE, Kind.RELEASE_UNQUARANTINE}
)


@dataclass(slots=True)
class Row:
    """One valid changelog row, parsed. Not frozen, though nothing changes one: a replay
    makes millions, and a frozen dataclass's ``__init__`` costs a sixth of the parse."""

    serial: int
    timestamp: int
    name: str  # as upstream spelled it (the display name)
    package: str  # PEP 503 canonical name
    version: str | None
    kind: Kind
    filename: str | None = None
    pyver: str | None = None
    old_name: str | None = None  # for RENAME: the canonical name it was renamed from

    @property
    def k(self) -> int:
        """Order key: (timestamp, serial) packed in one integer."""
        return self.timestamp * K_SCALE + self.serial


@dataclass(frozen=True, slots=True)
class Ignored:
    """A valid row whose action does not change the catalog (roles, docs, metadata)."""

    serial: int
    action: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """A row that cannot be used; ``serial`` is kept when it could be read."""

    serial: int | None
    reason: str
    raw: object


_SIMPLE = {
    "create": Kind.CREATE,
    "new release": Kind.RELEASE,
    "remove release": Kind.REMOVE_RELEASE,
    "remove project": Kind.REMOVE_PROJECT,
    "yank release": Kind.YANK,
    "unyank release": Kind.UNYANK,
    "project quarantined": Kind.QUARANTINE,
    "project quarantine cleared": Kind.UNQUARANTINE,
    # warehouse/utils/project.py quarantine_release / clear_release_quarantine (2026)
    "release quarantined": Kind.RELEASE_QUARANTINE,
    "release quarantine cleared": Kind.RELEASE_UNQUARANTINE,
}
_ADD_FILE = re.compile(r"add (\S+) file (\S+)")
_REMOVE_FILE = re.compile(r"remove file (\S+)")
_RENAME = re.compile(r"rename from (\S+)")
_IGNORED = [
    # Roles and invitations: "add Owner x", "remove Maintainer x", "change Owner x to ..."
    re.compile(r"\S+(?: \S+)? (?:Owner|Maintainer)\b.*"),
    re.compile(r"(?:docupdate|docdestroy)"),
    re.compile(r"(?:update|change) .*"),
    re.compile(r"(?:add|remove) url .*"),
]
_BAD_TEXT = re.compile(r"[\s\x00-\x1f\x7f]")
#: warehouse sends actions through ``_clean_for_xml`` (legacy/api/xmlrpc/views.py):
#: ``encode("ascii", "xmlcharrefreplace")``, so "add Owner jürgen" arrives as the text
#: "add Owner j&#252;rgen" (the & itself escaped on the wire). Only the action is treated so.
_CHARREF = re.compile(r"&#(\d{1,7});")


def _charref(m: re.Match[str]) -> str:
    n = int(m.group(1))
    return chr(n) if 0 < n <= 0x10FFFF and not 0xD800 <= n <= 0xDFFF else m.group(0)


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 200
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 8, 8, 8


def _shown(value: object) -> str:
    """*value* for a reason: bounded, so a huge field makes neither a huge log line nor row."""
    return _REPR.repr(value)


def _bad_text(value: str, limit: int) -> bool:
    return not value or len(value) > limit or bool(_BAD_TEXT.search(value))


def _as_serial(value: object) -> int | None:
    if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
        return value if 0 < value <= MAX_SERIAL else None
    return None


def _as_timestamp(value: object, now: float) -> int | None:
    if type(value) is int:  # nearly every row: skip the conversions below
        return value if 0 < value <= now + FUTURE_SLACK else None
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = int(value)
    if isinstance(value, int) and 0 < value <= now + FUTURE_SLACK:
        return value
    return None


#: Valid names seen -> canonical form: a name comes back in many rows, and checking and
#: canonicalising it each time was a sixth of the parse. Emptied when full.
_CANONICAL: dict[str, str] = {}
_CANONICAL_SIZE = 200_000
#: Version strings seen valid (most releases are numbered alike), emptied when as full.
_GOOD_VERSIONS: set[str] = set()


def parse_row(raw: object, now: float | None = None) -> Row | Ignored | Malformed:
    """Parse one ``(name, version, timestamp, action, serial)`` row from the changelog."""
    if not isinstance(raw, (list, tuple)) or len(raw) != 5:
        n = len(raw) if isinstance(raw, list | tuple) else None
        serial = _as_serial(raw[-1]) if n else None
        return Malformed(serial, f"expected 5 fields, got {n if n is not None else 'no list'}", raw)
    name, version, timestamp, action, serial_raw = raw
    serial = _as_serial(serial_raw)
    if serial is None:
        return Malformed(None, f"bad serial {_shown(serial_raw)}", raw)
    if not isinstance(action, str):
        return Malformed(serial, f"action is {type(action).__name__}, not text", raw)
    if "&#" in action:
        action = _CHARREF.sub(_charref, action)
    package = _CANONICAL.get(name) if type(name) is str else None
    if package is None:
        if not is_valid_name(name):
            return Malformed(serial, f"invalid project name {_shown(name)}", raw)
        if len(_CANONICAL) >= _CANONICAL_SIZE:
            _CANONICAL.clear()
        package = _CANONICAL[name] = canonical(name)
    if version is not None and (type(version) is not str or version not in _GOOD_VERSIONS):
        if not isinstance(version, str) or _bad_text(version, MAX_VERSION_LENGTH):
            return Malformed(serial, f"invalid version {_shown(version)}", raw)
        if len(_GOOD_VERSIONS) >= _CANONICAL_SIZE:
            _GOOD_VERSIONS.clear()
        _GOOD_VERSIONS.add(version)
    ts = _as_timestamp(timestamp, time.time() if now is None else now)
    if ts is None:
        return Malformed(serial, f"bad timestamp {_shown(timestamp)}", raw)

    kind = _SIMPLE.get(action)
    filename = pyver = old_name = None
    if kind is None:
        if action == "remove":  # legacy: bare remove is a release or a whole project
            kind = Kind.REMOVE_PROJECT if version is None else Kind.REMOVE_RELEASE
        elif m := _ADD_FILE.fullmatch(action):
            kind, pyver, filename = Kind.ADD_FILE, m.group(1), m.group(2)
        elif m := _REMOVE_FILE.fullmatch(action):
            kind, filename = Kind.REMOVE_FILE, m.group(1)
        elif m := _RENAME.fullmatch(action):
            if not is_valid_name(m.group(1)):
                return Malformed(serial, f"invalid old name in {_shown(action)}", raw)
            kind, old_name = Kind.RENAME, canonical(m.group(1))
        elif any(p.fullmatch(action) for p in _IGNORED):
            return Ignored(serial, action)
        else:
            return Malformed(serial, f"unknown action {_shown(action)}", raw)
    if filename is not None and (
        _bad_text(filename, MAX_FILENAME_LENGTH) or "/" in filename or "\\" in filename
        or filename in (".", "..")
    ):
        return Malformed(serial, f"invalid filename in {_shown(action)}", raw)
    if kind in VERSIONED and version is None:
        return Malformed(serial, f"{_shown(action)} needs a version", raw)
    if kind in (Kind.REMOVE_PROJECT, Kind.CREATE, Kind.RENAME, Kind.QUARANTINE,
                Kind.UNQUARANTINE):
        version = None  # project-level actions; PyPI sends None here
    return Row(serial, ts, name, package, version, kind, filename, pyver, old_name)
