"""The fake PyPI's event log: PyPI's changelog as an append-only list of rows.

Each row is what ``changelog_since_serial`` returns on the real PyPI
(``[name, version, timestamp, action, serial]``) plus a few optional keys that
tell the fake what to serve for that release (``kind``, ``requires_python``,
``summary``, ``yanked_reason``).  A row may also be ``{"raw": [...], "serial": N}``
so tests can feed clients deliberately malformed rows.

Rows appended while serving are marshalled to XML-RPC once, when they enter the
log, so that a page of 50,000 rows is served by joining byte strings.  A history
loaded from a file (:meth:`EventLog.load`) stays in the file: it is validated once
and indexed in a temporary SQLite database (serial -> offset, project -> serials,
file -> project), and pages and projects are read back from the file when asked,
so a history of millions of rows is served in bounded memory.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from os import PathLike
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as _sax_escape

import orjson
from packaging.utils import canonicalize_name

from .sdists import default_sdist_filename
from .state import ADD_FILE_RE, ProjectState, PyPIState, apply_events

#: What ``make_sdist`` knows how to generate.
KINDS = frozenset({"pure", "c-zlib", "broken"})

_KNOWN_KEYS = frozenset(
    {"name", "version", "timestamp", "action", "serial", "yanked_reason", "requires_python"}
    | {"kind", "summary"}
)
_XMLRPC_INT_MIN = -(2**31)
_XMLRPC_INT_MAX = 2**31 - 1


class EventLogError(ValueError):
    """An event could not be loaded or appended; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Event:
    """One changelog row.

    ``raw`` is set only for deliberately malformed rows: then the XML-RPC row is
    exactly ``raw`` and every other field except ``serial`` is meaningless.
    ``kind``/``summary`` are ``None`` when the line did not say (so a file row
    can inherit them from its release).
    """

    name: str
    version: str | None
    timestamp: int
    action: str
    serial: int
    yanked_reason: str | None = None
    requires_python: str | None = None
    kind: str | None = None
    summary: str | None = None
    raw: list[Any] | None = None

    def row(self) -> list[Any]:
        """The row exactly as ``changelog_since_serial`` serves it."""
        if self.raw is not None:
            return list(self.raw)
        return [self.name, self.version, self.timestamp, self.action, self.serial]

    def to_json(self) -> dict[str, Any]:
        """The JSONL form of this event (round-trips through :func:`parse_event`)."""
        if self.raw is not None:
            return {"raw": self.raw, "serial": self.serial}
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "timestamp": self.timestamp,
            "action": self.action,
            "serial": self.serial,
        }
        for key in ("yanked_reason", "requires_python", "kind", "summary"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def _is_int(value: object) -> bool:
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


def _opt_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and type(value) is not str and not isinstance(value, str):
        raise EventLogError(f"{where}: {key!r} must be a string or null, not {value!r}")
    return value


_MISSING = object()
_BASE_KEYS = frozenset({"name", "version", "timestamp", "action", "serial"})


def parse_event(obj: object, serial: int | None = None, where: str = "event") -> Event:
    """Validate one decoded JSON object and turn it into an :class:`Event`.

    ``serial`` is used when the object has none (control API appends); ``where``
    prefixes error messages (e.g. ``"events.jsonl line 3"``).
    """
    # Fast path for the common, well-formed row (loading 1M-row logs matters).
    if type(obj) is dict and "raw" not in obj:
        get = obj.get
        name, version, action = get("name"), get("version", _MISSING), get("action")
        timestamp, row_serial = get("timestamp"), get("serial", serial)
        if (
            type(name) is str
            and type(action) is str
            and (version is None or type(version) is str)
            and type(timestamp) is int
            and type(row_serial) is int
        ):
            if _BASE_KEYS.issuperset(obj):
                return Event(name, version, timestamp, action, row_serial)
            if _KNOWN_KEYS.issuperset(obj):
                kind = _opt_str(obj, "kind", where)
                if kind is None or kind in KINDS:
                    return Event(
                        name,
                        version,
                        timestamp,
                        action,
                        row_serial,
                        yanked_reason=_opt_str(obj, "yanked_reason", where),
                        requires_python=_opt_str(obj, "requires_python", where),
                        kind=kind,
                        summary=_opt_str(obj, "summary", where),
                    )
    return _parse_event_slow(obj, serial, where)


def _parse_event_slow(obj: object, serial: int | None, where: str) -> Event:
    """Full validation with precise error messages (and raw rows)."""
    if type(obj) is not dict and not isinstance(obj, Mapping):  # fast path for JSON dicts
        raise EventLogError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "serial" in obj:
        serial = obj["serial"]
    if serial is None:
        raise EventLogError(f"{where}: missing 'serial'")
    if not _is_int(serial):
        raise EventLogError(f"{where}: 'serial' must be an integer, not {serial!r}")
    if "raw" in obj:
        extra = set(obj) - {"raw", "serial"}
        if extra:
            raise EventLogError(f"{where}: a raw row may only have 'raw' and 'serial', not {extra}")
        if not isinstance(obj["raw"], list):
            raise EventLogError(f"{where}: 'raw' must be a JSON list")
        return Event("", None, 0, "", serial, raw=list(obj["raw"]))
    unknown = set(obj) - _KNOWN_KEYS
    if unknown:
        raise EventLogError(f"{where}: unknown keys {sorted(unknown)}")
    for key in ("name", "action"):
        if not isinstance(obj.get(key), str):
            raise EventLogError(f"{where}: {key!r} must be a string, not {obj.get(key)!r}")
    if "version" not in obj:
        raise EventLogError(f"{where}: missing 'version' (use null for none)")
    timestamp = obj.get("timestamp")
    if not _is_int(timestamp):
        raise EventLogError(f"{where}: 'timestamp' must be integer UTC seconds, not {timestamp!r}")
    kind = _opt_str(obj, "kind", where)
    if kind is not None and kind not in KINDS:
        raise EventLogError(f"{where}: 'kind' must be one of {sorted(KINDS)}, not {kind!r}")
    return Event(
        name=obj["name"],
        version=_opt_str(obj, "version", where),
        timestamp=timestamp,
        action=obj["action"],
        serial=serial,
        yanked_reason=_opt_str(obj, "yanked_reason", where),
        requires_python=_opt_str(obj, "requires_python", where),
        kind=kind,
        summary=_opt_str(obj, "summary", where),
    )


# --- XML-RPC marshalling ---------------------------------------------------
# Byte-for-byte what xmlrpc.client.Marshaller(allow_none=True) writes, except that
# integers beyond 32 bits (which the stdlib refuses) become <i8> so raw rows can
# carry them.


def _escape(text: str) -> str:
    if "&" in text or "<" in text or ">" in text:
        return _sax_escape(text)
    return text


def _marshal_value(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("<value><nil/></value>")
    elif isinstance(value, bool):
        out.append(f"<value><boolean>{int(value)}</boolean></value>\n")
    elif isinstance(value, int):
        tag = "int" if _XMLRPC_INT_MIN <= value <= _XMLRPC_INT_MAX else "i8"
        out.append(f"<value><{tag}>{value}</{tag}></value>\n")
    elif isinstance(value, float):
        out.append(f"<value><double>{value!r}</double></value>\n")
    elif isinstance(value, str):
        out.append(f"<value><string>{_escape(value)}</string></value>\n")
    elif isinstance(value, list | tuple):
        out.append("<value><array><data>\n")
        for item in value:
            _marshal_value(item, out)
        out.append("</data></array></value>\n")
    elif isinstance(value, Mapping):
        out.append("<value><struct>\n")
        for key, item in value.items():
            out.append(f"<member>\n<name>{_escape(str(key))}</name>\n")
            _marshal_value(item, out)
            out.append("</member>\n")
        out.append("</struct></value>\n")
    else:
        raise TypeError(f"cannot marshal {type(value).__name__} to XML-RPC")


def marshal_value(value: Any) -> str:
    """Marshal one value as an XML-RPC ``<value>`` element, as the stdlib would."""
    out: list[str] = []
    _marshal_value(value, out)
    return "".join(out)


#: Characters XML 1.0 does not allow (warehouse's ``_illegal_xml_chars_re``, in part).
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def clean_for_xml(text: str) -> str:
    """An action as warehouse sends it (legacy/api/xmlrpc/views.py ``_clean_for_xml``):
    non-ASCII as character references (``jürgen`` -> ``j&#252;rgen``, whose ``&`` the
    marshaller then escapes), characters XML cannot carry removed."""
    if text.isascii() and not _ILLEGAL_XML.search(text):
        return text
    return _ILLEGAL_XML.sub("", text.encode("ascii", "xmlcharrefreplace").decode("ascii"))


def _marshal_event(event: Event) -> bytes:
    if event.raw is not None:
        return marshal_value(event.raw).encode("utf-8")
    version = (
        "<value><nil/></value>"
        if event.version is None
        else f"<value><string>{_escape(event.version)}</string></value>\n"
    )
    ts = event.timestamp
    ts_tag = "int" if _XMLRPC_INT_MIN <= ts <= _XMLRPC_INT_MAX else "i8"
    serial_tag = "int" if event.serial <= _XMLRPC_INT_MAX else "i8"
    return (
        "<value><array><data>\n"
        f"<value><string>{_escape(event.name)}</string></value>\n"
        f"{version}"
        f"<value><{ts_tag}>{ts}</{ts_tag}></value>\n"
        f"<value><string>{_escape(clean_for_xml(event.action))}</string></value>\n"
        f"<value><{serial_tag}>{event.serial}</{serial_tag}></value>\n"
        "</data></array></value>\n"
    ).encode()


_canonical = lru_cache(maxsize=65536)(canonicalize_name)


def _owned_file(event: Event) -> str | None:
    """The file a row gives its project: an ``add ... file`` row's, a release's default sdist."""
    action = event.action
    if action.startswith("add ") and (match := ADD_FILE_RE.match(action)):
        return match.group(2)
    if action == "new release" and event.version is not None:
        return default_sdist_filename(event.name, event.version)
    return None


def _parse_line(line: bytes, where: str) -> Event:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:  # or beyond what orjson reads (integers over 64 bits)
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EventLogError(f"{where}: invalid JSON: {exc}") from None
    return parse_event(obj, where=where)


class HistoryFile:
    """A JSONL history read from its file whenever asked, indexed once in SQLite.

    Loading validates every line (a malformed one raises :class:`EventLogError` naming
    its line) and records, in a private temporary SQLite database that SQLite deletes
    when it is closed, each row's serial, byte offset and XML-RPC fragment, its project
    and the files it gives that project.  The process then holds no row: a page of the
    changelog is a range of fragments, a project's state is read from its own lines.
    The file must not change while it is served.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        # "" is a private on-disk database, removed on close; its page cache is SQLite's
        # default 2 MB, so the index costs disk, not memory.
        self._db = sqlite3.connect("", check_same_thread=False)
        self.count, self.last_serial = self._build()

    def _build(self) -> tuple[int, int | None]:
        db = self._db
        db.executescript(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
            "CREATE TABLE rows (serial INTEGER PRIMARY KEY, offset INTEGER NOT NULL,"
            " project TEXT, fragment BLOB NOT NULL);"
            "CREATE TABLE files (filename TEXT NOT NULL, serial INTEGER NOT NULL,"
            " project TEXT NOT NULL);"
        )
        count, last = 0, None
        rows: list[tuple[int, int, str | None, bytes]] = []
        files: list[tuple[str, int, str]] = []
        with open(self.path, "rb") as fh, db:
            offset = 0
            for lineno, line in enumerate(fh, start=1):
                start, offset = offset, offset + len(line)
                if not line.strip():
                    continue
                event = _parse_line(line, f"{self.path} line {lineno}")
                if last is not None and event.serial <= last:
                    raise EventLogError(
                        f"{self.path} line {lineno}: serial {event.serial} is not greater than "
                        f"the previous serial {last}; lines must be in ascending serial order"
                    )
                last = event.serial
                count += 1
                project = None if event.raw is not None else _canonical(event.name)
                rows.append((event.serial, start, project, _marshal_event(event)))
                if project is not None and (filename := _owned_file(event)) is not None:
                    files.append((filename, event.serial, project))
                if len(rows) >= 10_000:
                    db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?)", rows)
                    db.executemany("INSERT INTO files VALUES (?, ?, ?)", files)
                    rows.clear()
                    files.clear()
            db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?)", rows)
            db.executemany("INSERT INTO files VALUES (?, ?, ?)", files)
            db.execute("CREATE INDEX rows_project ON rows (project)")
            db.execute("CREATE INDEX files_filename ON files (filename, serial)")
        return count, last

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def rows_since(self, serial: int, limit: int | None = None) -> list[Event]:
        """Rows with a serial above ``serial``, at most ``limit``, read from the file."""
        found = self._query(
            "SELECT offset FROM rows WHERE serial > ? ORDER BY serial LIMIT 1", (serial,)
        )
        if not found or limit == 0:
            return []
        out: list[Event] = []
        with open(self.path, "rb") as fh:
            fh.seek(found[0][0])
            for line in fh:
                if line.strip():
                    out.append(_parse_line(line, str(self.path)))
                    if limit is not None and len(out) >= limit:
                        break
        return out

    def fragments_since(self, serial: int, limit: int | None = None) -> list[bytes]:
        """The XML-RPC fragments of :meth:`rows_since`'s rows."""
        rows = self._query(
            "SELECT fragment FROM rows WHERE serial > ? ORDER BY serial LIMIT ?",
            (serial, -1 if limit is None else limit),
        )
        return [fragment for (fragment,) in rows]

    def project_rows(self, canonical: str) -> list[Event]:
        """A project's rows in serial order (empty when the file never names it)."""
        offsets = self._query(
            "SELECT offset FROM rows WHERE project = ? ORDER BY serial", (canonical,)
        )
        out = []
        with open(self.path, "rb") as fh:
            for (offset,) in offsets:
                fh.seek(offset)
                out.append(_parse_line(fh.readline(), str(self.path)))
        return out

    def projects(self) -> Iterator[str]:
        """Canonical names of every project the file names, in order of first mention."""
        rows = self._query(
            "SELECT project FROM rows WHERE project IS NOT NULL GROUP BY project "
            "ORDER BY min(serial)", ()
        )
        return (project for (project,) in rows)

    def knows(self, canonical: str) -> bool:
        """Whether any valid row of the file names this project."""
        return bool(self._query("SELECT 1 FROM rows WHERE project = ? LIMIT 1", (canonical,)))

    def file_owner(self, filename: str) -> str | None:
        """The project the last row naming ``filename`` belongs to."""
        found = self._query(
            "SELECT project FROM files WHERE filename = ? ORDER BY serial DESC LIMIT 1",
            (filename,),
        )
        return found[0][0] if found else None


class EventLog:
    """An append-only, thread-safe changelog with precomputed XML-RPC fragments.

    Serials must be strictly ascending (they are PyPI's journal ids); loading or
    appending anything else raises :class:`EventLogError` and changes nothing.

    Events are also indexed by project, so the state of one project is replayed
    from that project's rows only, and only again after one of them changes:
    an append to a 1M-row log does not make the next index request replay it all.

    A log loaded from a file (``base``, a :class:`HistoryFile`) keeps the file's rows
    there; rows appended later (the control API) are held in memory after them, and
    only the last :data:`PROJECT_CACHE` projects' states are kept.
    """

    #: Projects whose state a file-backed log keeps (an in-memory log keeps all).
    PROJECT_CACHE = 4096

    def __init__(
        self,
        events: Iterable[Mapping[str, Any] | Event] = (),
        base: HistoryFile | None = None,
    ) -> None:
        self._base = base
        self._lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._events: list[Event] = []
        self._serials: list[int] = []
        self._fragments: list[bytes] = []
        self._generation = 0
        self._state: PyPIState | None = None
        self._state_generation = -1
        self._canonical: dict[str, str] = {}  # spelling -> canonical name
        self._by_project: dict[str, list[Event]] = {}  # canonical -> valid events
        self._file_owner: dict[str, str] = {}  # filename -> canonical name
        self._project_cache: OrderedDict[str, tuple[int, ProjectState | None]] = OrderedDict()
        self.append(events)

    @classmethod
    def load(cls, path: str | PathLike[str]) -> EventLog:
        """Serve a JSONL file from the file (see :class:`HistoryFile`); a missing or empty
        file gives an empty log."""
        path = Path(path)
        if not path.exists():
            return cls()
        return cls(base=HistoryFile(path))

    def __len__(self) -> int:
        return len(self._events) + (self._base.count if self._base is not None else 0)

    def _base_last(self) -> int | None:
        return self._base.last_serial if self._base is not None else None

    @property
    def generation(self) -> int:
        """Bumped by every successful append; lets caches know they are stale."""
        return self._generation

    @property
    def last_serial(self) -> int:
        """The highest serial in the log, 0 when empty (like ``changelog_last_serial``)."""
        with self._lock:
            return self._serials[-1] if self._serials else (self._base_last() or 0)

    def events(self) -> list[Event]:
        """A snapshot of every event, in serial order."""
        with self._lock:
            tail = list(self._events)
        return (self._base.rows_since(-(2**63)) if self._base is not None else []) + tail

    def append(self, rows: Iterable[Mapping[str, Any] | Event]) -> int:
        """Validate and append rows atomically; returns the new last serial.

        Rows without a ``serial`` get the next one.  If any row is invalid or out
        of order nothing is appended.
        """
        with self._lock:
            last = self._serials[-1] if self._serials else self._base_last()
            new: list[Event] = []
            for index, row in enumerate(rows):
                where = f"event #{index}"
                if isinstance(row, Event):
                    event = row
                else:
                    event = parse_event(row, serial=(last or 0) + 1, where=where)
                if last is not None and event.serial <= last:
                    raise EventLogError(
                        f"{where}: serial {event.serial} is not greater than the last "
                        f"serial {last}; events must be appended in ascending serial order"
                    )
                last = event.serial
                new.append(event)
            fragments = [_marshal_event(event) for event in new]
            if new:
                self._events.extend(new)
                self._serials.extend(event.serial for event in new)
                self._fragments.extend(fragments)
                self._index(new)
                self._generation += 1
            return self._serials[-1] if self._serials else (self._base_last() or 0)

    def _index(self, events: list[Event]) -> None:
        canonical_of, by_project, owner = self._canonical, self._by_project, self._file_owner
        for event in events:
            if event.raw is not None:
                continue
            canonical = canonical_of.get(event.name)
            if canonical is None:
                canonical = canonical_of[event.name] = canonicalize_name(event.name)
            project_events = by_project.get(canonical)
            if project_events is None:
                by_project[canonical] = [event]
            else:
                project_events.append(event)
            if (filename := _owned_file(event)) is not None:
                owner[filename] = canonical

    def _slice(self, since: int, limit: int | None) -> tuple[int, int]:
        start = bisect_right(self._serials, since)
        stop = len(self._serials) if limit is None else min(len(self._serials), start + limit)
        return start, stop

    def _in_base(self, serial: int) -> HistoryFile | None:
        """The file, if it has rows after ``serial`` (they all precede the appended ones)."""
        base_last = self._base_last()
        return None if base_last is None or serial >= base_last else self._base

    def since(self, serial: int, limit: int | None = None) -> list[Event]:
        """Events with serial greater than ``serial``, at most ``limit`` of them."""
        base = self._in_base(serial)
        head = base.rows_since(serial, limit) if base is not None else []
        if limit is not None:
            limit -= len(head)
        with self._lock:
            start, stop = self._slice(serial, limit)
            return head + self._events[start:stop]

    def fragments_since(self, serial: int, limit: int | None = None) -> list[bytes]:
        """Marshalled ``<value>`` fragments of :meth:`since`'s rows, ready to join."""
        base = self._in_base(serial)
        head = base.fragments_since(serial, limit) if base is not None else []
        if limit is not None:
            limit -= len(head)
        with self._lock:
            start, stop = self._slice(serial, limit)
            return head + self._fragments[start:stop]

    def is_known(self, name: str) -> bool:
        """Whether any valid row ever mentioned this project (live or removed)."""
        canonical = canonicalize_name(name)
        with self._lock:
            if canonical in self._by_project:
                return True
        return self._base is not None and self._base.knows(canonical)

    def file_owner(self, filename: str) -> str | None:
        """The canonical project a file row (or a release's default sdist) names."""
        with self._lock:
            owner = self._file_owner.get(filename)
        if owner is None and self._base is not None:
            return self._base.file_owner(filename)
        return owner

    def project_state(self, name: str) -> ProjectState | None:
        """The live state of one project (None if unknown or removed), cached per project."""
        return self._project_state(canonicalize_name(name))

    def _project_state(self, canonical: str) -> ProjectState | None:
        base = self._base
        with self._lock:
            events = self._by_project.get(canonical, [])
            count = len(events)  # the file's rows do not change
            cached = self._project_cache.get(canonical)
            if cached is not None and cached[0] == count:
                self._project_cache.move_to_end(canonical)
                return cached[1]
            snapshot = events[:]
        # Read and replayed outside the lock so changelog calls are never held up by it.
        if base is not None:
            snapshot = base.project_rows(canonical) + snapshot
        if not snapshot:
            return None
        result = apply_events(snapshot).projects.get(canonical)
        with self._lock:
            current = self._project_cache.get(canonical)
            if current is None or current[0] < count:
                self._project_cache[canonical] = (count, result)
                if base is not None and len(self._project_cache) > self.PROJECT_CACHE:
                    self._project_cache.popitem(last=False)
        return result

    def state(self) -> PyPIState:
        """What PyPI currently serves: a snapshot, rebuilt (cheaply) after appends.

        Unchanged projects keep their cached :class:`ProjectState` objects.
        """
        with self._state_lock:
            with self._lock:
                generation = self._generation
                if self._state is not None and self._state_generation == generation:
                    return self._state
                names = list(self._by_project)
            if self._base is not None:  # every project's state at once: not bounded
                names = list(dict.fromkeys([*self._base.projects(), *names]))
            projects = {}
            for canonical in names:
                project = self._project_state(canonical)
                if project is not None:
                    projects[canonical] = project
            state = PyPIState(projects, set(names))
            self._state, self._state_generation = state, generation
            return state


def write_jsonl(path: str | PathLike[str], events: Iterable[Mapping[str, Any] | Event]) -> None:
    """Write events as a JSONL file that :meth:`EventLog.load` accepts."""
    with open(path, "w", encoding="utf-8") as fh:
        for event in events:
            obj = event.to_json() if isinstance(event, Event) else dict(event)
            fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
