"""The reorderer's persistence: buffer, upstream position, catalog and outbox in one transaction.

:func:`ingest` is the whole of contract points 1-3 for one batch of raw rows: rows are keyed by
serial (re-reading a range changes nothing), held until they are older than the newest upstream
time minus the hold window, applied to the catalog in (timestamp, serial) order, and the events
they cause are written to the outbox before the same commit.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from piw_services import events as ev
from piw_services import outbox
from piw_services.build_dispatch import queries as build_queries
from piw_services.db.bulk import copy_rows, upsert_rows
from piw_services.reorderer.catalog import (
    FileState,
    Links,
    PackageState,
    VersionState,
    apply_rows,
    chain,
    created_after,
    is_move,
    targets,
)
from piw_services.reorderer.parse import (
    K_SCALE,
    PARSER_VERSION,
    Ignored,
    Kind,
    Malformed,
    Row,
    parse_row,
)

log = logging.getLogger(__name__)

#: Upstream times within this many seconds of the wall clock mean we are following live, and
#: the hold window also runs on the wall clock so a quiet upstream still releases rows.
LIVE_LAG = 86_400

ROW_COLUMNS = (
    "serial",
    "k",
    "ts",
    "name",
    "package",
    "version",
    "kind",
    "filename",
    "pyver",
    "old_name",
)
PKG_COLUMNS = (
    "name",
    "display_name",
    "display_k",
    "created_k",
    "deleted_k",
    "quarantine_k",
    "quarantined",
)
VER_COLUMNS = (
    "package",
    "version",
    "created_k",
    "deleted_k",
    "release_k",
    "yank_k",
    "yanked",
    "yanked_reason",
    "requires_python",
    "quarantine_k",
    "quarantined",
)
FILE_COLUMNS = ("package", "version", "filename", "pyver", "added_k", "removed_k")


@dataclass
class IngestResult:
    last_serial: int
    max_ts: int
    received: int
    new: int
    applied: int
    held: int
    ignored: int
    malformed: int
    events: int
    outbox: list[int]
    #: seconds until the first held row is due on the wall clock (following live), else None
    release_in: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def horizon(max_ts: int, hold: float, now: float) -> int:
    """Rows with a timestamp below this are released from the hold window: those older than
    the newest upstream time minus the hold and, following live, those stamped *hold*
    seconds ago or more (``ts + hold <= now``: with no hold a row is released on arrival,
    not when its whole second is over)."""
    h = int(max_ts - hold)
    if live(max_ts, now):
        h = max(h, math.floor(now - hold) + 1)
    return h


def live(max_ts: int, now: float) -> bool:
    """Upstream times near the wall clock: we follow upstream live."""
    return now - max_ts < LIVE_LAG


def dbapi_cursor(session: Session) -> Any:
    dbapi: Any = session.connection().connection.dbapi_connection
    return dbapi.cursor()


def _lock_state(cur: Any) -> tuple[int, int]:
    """Lock the single state row: concurrent reorderers take turns, never interleave."""
    cur.execute("SELECT last_serial, max_ts FROM upstream_state WHERE id = 1 FOR UPDATE")
    return cur.fetchone()


def last_serial(session: Session) -> int:
    """The newest upstream serial we hold (valid, ignored or malformed alike)."""
    return session.execute(text("SELECT last_serial FROM upstream_state WHERE id = 1")).scalar_one()


def _row_from_db(r: Sequence[Any]) -> Row:
    serial, _k, ts, name, package, version, kind, filename, pyver, old_name = r
    return Row(serial, ts, name, package, version, Kind(kind), filename, pyver, old_name)


def _row_to_db(row: Row) -> tuple:
    return (row.serial, row.k, row.timestamp, row.name, row.package, row.version,
            row.kind.value, row.filename, row.pyver, row.old_name)


def _select_versions() -> str:
    """Versions with their files (a row a file, or one with NULL file columns), for whole
    packages (first parameter) and for (package, version) pairs (second and third): one
    statement, so a version is found once and its files by the index from there. The halves
    each probe the primary key (see :data:`_PROBE_BY_KEY`): one ``OR`` of both made
    PostgreSQL scan the whole table."""
    cols = ", ".join(f"t.{c}" for c in VER_COLUMNS)
    files = ", ".join(f"f.{c}" for c in FILE_COLUMNS[2:])
    return (f"SELECT v.*, {files} FROM ("
            f"SELECT {cols} FROM unnest(%s::text[]) AS w(p) JOIN versions t "
            f"ON t.package = w.p UNION ALL "
            f"SELECT {cols} FROM unnest(%s::text[], %s::text[]) AS u(p, v) JOIN versions t "
            f"ON t.package = u.p AND t.version = u.v) v "
            f"LEFT JOIN upstream_files f ON f.package = v.package AND f.version = v.version")


#: A page names up to 50,000 (package, version) pairs, a small part of a catalog of millions.
#: PostgreSQL's planner still prefers to hash or sort the whole table for that many keys (at
#: 550,000 files: 0.83 s a page, growing with the catalog); index probes take 0.3 s, growing
#: only with the page. So the planner is told to probe while these statements run.
_PROBE_BY_KEY = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; " \
                "SET LOCAL jit = off"
_PLAN_FREELY = "RESET enable_hashjoin; RESET enable_mergejoin; RESET jit"


def load_packages(cur: Any, names: Iterable[str],
                  versions: Iterable[tuple[str, str | None]] | None = None,
                  deletions: dict[str, int] | None = None) -> dict[str, PackageState]:
    """The named packages (absent ones are left out) with their versions and files: all of
    them, or, when *versions* is given, only those (package, version) pairs and the versions
    of packages named in *versions* as ``(package, None)``.

    *deletions* names packages a row deletes, with that row's key: all their versions are
    loaded (a deletion is seen by each), unless the package holds no fact newer than the
    deletion. Then every version it holds dies with it, unchanged, and what consumers see is
    the package removed (see ``catalog._diff``): its other versions and their files, a
    package's whole history, need not be read."""
    names = list(set(names))
    packages: dict[str, PackageState] = {}
    cur.execute(f"SELECT {', '.join(PKG_COLUMNS)} FROM packages WHERE name = ANY(%s)", (names,))
    for r in cur.fetchall():
        pkg = packages[r[0]] = PackageState(*r)
        pkg.stored = True
    if not packages:
        return packages
    if versions is None:
        whole, some = names, []
    else:
        pairs = {pv for pv in versions if pv[0] in packages}
        if deletions:
            pairs.update((name, None) for name, k in deletions.items()
                         if name in packages and created_after(packages[name], k))
        whole = [p for p, v in pairs if v is None]
        everything = set(whole)
        some = [pv for pv in pairs if pv[1] is not None and pv[0] not in everything]
    cur.execute(_PROBE_BY_KEY)
    cur.execute(_select_versions(), [whole, [p for p, _ in some], [v for _, v in some]])
    found = cur.fetchall()
    cur.execute(_PLAN_FREELY)
    for r in found:
        pkg = packages[r[0]]
        version = r[1]
        v = pkg.versions.get(version)
        if v is None:
            v = pkg.versions[version] = VersionState(*r[2:11])
            pkg.stored_versions.add(version)
        if r[11] is not None:
            v.files[r[11]] = FileState(r[12], r[13], r[14])
            pkg.stored_files.add((version, r[11]))
    return packages


def save_packages(cur: Any, packages: Iterable[PackageState]) -> None:
    """Write back what :func:`apply_rows` changed: new rows by COPY, changed rows by upsert."""
    rows: dict[str, tuple[list, list]] = {"packages": ([], []), "versions": ([], []),
                                           "upstream_files": ([], [])}
    for p in packages:
        if p.dirty or p.dirty_versions:
            rows["packages"][p.stored].append(
                (p.name, p.display_name, p.display_k, p.created_k, p.deleted_k, p.quarantine_k,
                 p.quarantined))
        for ver in p.dirty_versions:
            v = p.versions[ver]
            rows["versions"][ver in p.stored_versions].append(
                (p.name, ver, v.created_k, v.deleted_k, v.release_k, v.yank_k, v.yanked,
                 v.yanked_reason, v.requires_python, v.quarantine_k, v.quarantined))
        for key in p.dirty_files:
            f = p.versions[key[0]].files[key[1]]
            rows["upstream_files"][key in p.stored_files].append(
                (p.name, *key, f.pyver, f.added_k, f.removed_k))
        p.stored = True
        p.stored_versions.update(p.dirty_versions)
        p.stored_files.update(p.dirty_files)
        p.dirty = False
        p.dirty_versions.clear()
        p.dirty_files.clear()
    unique_key: tuple[str, ...]
    for table, columns, unique_key in (("packages", PKG_COLUMNS, ("name",)),
                                       ("versions", VER_COLUMNS, ("package", "version")),
                                       ("upstream_files", FILE_COLUMNS,
                                        ("package", "version", "filename"))):
        new, changed = rows[table]
        if new:
            copy_rows(cur, table, columns, new)
        upsert_rows(cur, table, columns, unique_key, changed)


def _record_malformed(cur: Any, bad: list[Malformed]) -> None:
    """Keep each malformed row once (by serial, or by content when it has none)."""
    for m in bad:
        raw = json.dumps(m.raw, default=repr)[:4000]
        if m.serial is None:
            cur.execute(
                "INSERT INTO malformed_rows (serial, reason, raw, parser) "
                "VALUES (NULL, %s, %s, %s) "
                "ON CONFLICT (md5(raw)) WHERE serial IS NULL DO NOTHING RETURNING id",
                (m.reason, raw, PARSER_VERSION),
            )
        else:
            cur.execute(
                "INSERT INTO malformed_rows (serial, reason, raw, parser) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (serial) WHERE serial IS NOT NULL DO NOTHING RETURNING id",
                (m.serial, m.reason, raw, PARSER_VERSION),
            )
        if cur.fetchone():
            log.warning("skipping malformed upstream row (serial %s): %s", m.serial, m.reason)


def _touched(row: Row, links: Links) -> set[str]:
    """The packages a row may change: its targets, and for a rename every heir of the new
    name (the old name's facts are carried along the renames that follow)."""
    names = {n for n, _ in targets(row, links)}
    if is_move(row):
        names |= chain(links, row.package)
    return names


def load_links(cur: Any, released: list[Row]) -> Links:
    """The legacy renames the rows may follow: stored ones reachable from the packages they
    touch (transitively), and the rows' own."""
    links: Links = {}
    moves = [row for row in released if is_move(row)]
    for row in moves:
        links.setdefault(row.old_name, []).append((row.package, row.k))  # type: ignore
    # A row that is no rename, of a package no rename among the rows starts from, touches
    # its own package only (nearly every row: no walk).
    todo = {row.package for row in released}
    for row in moves:
        todo |= _touched(row, links)
    for row in released:
        if row.package in links:
            todo |= _touched(row, links)
    asked: set[str] = set()
    while todo:
        asked |= todo
        cur.execute("SELECT old, new, k FROM renames WHERE old = ANY(%s)", (list(todo),))
        grown = set()
        for old, new, k in cur.fetchall():
            if (new, k) not in links.setdefault(old, []):
                links[old].append((new, k))
                grown.add(old)
        # A row reaches a name it did not before only through a rename found just now: ask
        # about what those lead to (a superset), not about every row's names again.
        todo = {n for old in grown for n in chain(links, old)} - asked
    return links


def _apply_released(cur: Any, released: list[Row]) -> list[dict[str, Any]]:
    released.sort(key=lambda r: r.k)
    links = load_links(cur, released)
    # Each row's targets, once: apply_rows is handed them (links gains no rename there, as
    # load_links holds the rows' own).
    plan = [targets(row, links) for row in released]
    names: set[str] = set()
    versions: set[tuple[str, str | None]] = set()
    deletions: dict[str, int] = {}
    moves = []
    for row, row_targets in zip(released, plan, strict=True):
        if len(row_targets) == 1:  # nearly every row: one package, no rename
            name, kind = row_targets[0]
            names.add(name)
            if kind is Kind.REMOVE_PROJECT:
                deletions.setdefault(name, row.k)  # the first: rows are in key order
            elif row.version is not None:
                versions.add((name, row.version))
            continue
        if is_move(row):  # the old name and its heirs, whole: facts are carried over
            moves.append(row)
            touched = _touched(row, links)
            names.update(touched)
            versions.update((name, None) for name in touched)
            continue
        for name, kind in row_targets:
            names.add(name)
            if kind is Kind.REMOVE_PROJECT:
                versions.add((name, None))
            elif row.version is not None:
                versions.add((name, row.version))
    packages = load_packages(cur, names, versions, deletions)
    events = apply_rows(packages, released, links, plan)
    save_packages(cur, packages.values())
    if moves:
        cur.execute("INSERT INTO renames (old, new, k) SELECT * FROM unnest(%s::text[], "
                    "%s::text[], %s::bigint[]) ON CONFLICT DO NOTHING",
                    ([r.old_name for r in moves], [r.package for r in moves],
                     [r.k for r in moves]))
    return events


class OutOfTurn(Exception):
    """A page came before the page it follows was stored (the poller keeps two in flight):
    storing it now could move our place past rows that are not stored yet."""


@dataclass
class RowPage:
    """One page of upstream rows, parsed (outside any transaction)."""

    valid: list[Row]
    malformed: list[Malformed]
    ignored: int
    top: int  # the highest readable serial
    received: int
    now: float


#: Pages in hand (parsed, not yet committed), and pages stored since the collector last ran.
_in_hand = 0
_since_collected = 0
#: While pages overlap (upstream keeps two in flight when catching up) the collector stays
#: paused; one full pass every this many pages still bounds what cyclic garbage can pile up.
COLLECT_EVERY = 20


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a page is in hand, from its parse to its
    commit. A page of 50,000 rows makes hundreds of thousands of objects (rows, the catalog
    state it loads, events) that live until the commit; they set off four full passes of the
    collector a page, each walking the whole heap and finding nothing to free (a replay makes
    almost no cycles): about a fifth of the reorderer's CPU a row, growing with its heap.
    Reference counting frees a page's objects as before; the collector runs again as soon as
    no page is in hand."""
    global _in_hand, _since_collected
    if _in_hand == 0:
        gc.disable()
    _in_hand += 1
    try:
        yield
    finally:
        _in_hand -= 1
        _since_collected += 1
        if _in_hand == 0:
            gc.enable()
            _since_collected = 0
        elif _since_collected >= COLLECT_EVERY:
            gc.collect()
            _since_collected = 0


def parse_page(raw_rows: Sequence[object], now: float | None = None) -> RowPage:
    """Parse a page before any lock is taken, so that the next page's parsing runs while the
    page before it waits on PostgreSQL."""
    now = time.time() if now is None else now
    valid: list[Row] = []
    malformed: list[Malformed] = []
    ignored = 0
    page_top = 0
    for raw in raw_rows:
        parsed = parse_row(raw, now)
        serial = parsed.serial
        if serial is not None and serial > page_top:
            page_top = serial
        if isinstance(parsed, Row):
            valid.append(parsed)
        elif isinstance(parsed, Ignored):
            ignored += 1
        else:
            malformed.append(parsed)
    return RowPage(valid, malformed, ignored, page_top, len(raw_rows), now)


def ingest(
    session: Session, raw_rows: Sequence[object], hold: float, now: float | None = None
) -> IngestResult:
    """Take one page of upstream rows, inside the caller's transaction."""
    return store_page(session, parse_page(raw_rows, now), hold)


def store_page(session: Session, page: RowPage, hold: float, since: int | None = None
               ) -> IngestResult:
    """Store a parsed page inside the caller's transaction. *since* is the serial the page
    was fetched after: when our place is still below it, the page before has not been
    stored, and :class:`OutOfTurn` is raised before anything changes."""
    valid, malformed, now = page.valid, page.malformed, page.now
    cur = dbapi_cursor(session)
    prev_serial, prev_max_ts = _lock_state(cur)
    if since is not None and prev_serial < since:
        raise OutOfTurn(f"a page after serial {since} came while we are at {prev_serial}")
    top = max(prev_serial, page.top)

    # Rows are keyed by serial. One at or below our position may be held already; one that
    # was applied may be applied again, which changes nothing (the catalog is LWW).
    maybe_held = [r.serial for r in valid if r.serial <= prev_serial]
    if maybe_held:
        cur.execute("SELECT serial FROM held_rows WHERE serial = ANY(%s)", (maybe_held,))
        held_already = {s for (s,) in cur.fetchall()}
        valid = [r for r in valid if r.serial not in held_already]
    unique: dict[int, Row] = {r.serial: r for r in valid}
    valid = list(unique.values())
    _record_malformed(cur, malformed)

    max_ts = max([prev_max_ts] + [r.timestamp for r in valid])
    h = horizon(max_ts, hold, now)
    released = [r for r in valid if r.timestamp < h]
    cur.execute(f"DELETE FROM held_rows WHERE k < %s RETURNING {', '.join(ROW_COLUMNS)}",
                (h * K_SCALE,))
    released.extend(_row_from_db(r) for r in cur.fetchall())
    # A package's held rows leave together: a release's files uploaded one by one, or a
    # release deleted seconds after its upload, make one batch (one page write, no build
    # queued and revoked) instead of one per row. Early is safe: the catalog is LWW.
    going = {r.package for r in released}
    if going:
        cur.execute(f"DELETE FROM held_rows WHERE package = ANY(%s) "
                    f"RETURNING {', '.join(ROW_COLUMNS)}", (list(going),))
        released.extend(_row_from_db(r) for r in cur.fetchall())
    hold_now = [_row_to_db(r) for r in valid if r.timestamp >= h and r.package not in going]
    released.extend(r for r in valid if r.timestamp >= h and r.package in going)
    if hold_now:
        copy_rows(cur, "held_rows", ROW_COLUMNS, hold_now)
    events = _apply_released(cur, released) if released else []
    seqs = outbox.write(session, events) if events else []
    cur.execute(
        "UPDATE upstream_state SET last_serial = %s, max_ts = %s, updated_at = now() WHERE id = 1",
        (top, max_ts),
    )
    cur.execute("SELECT count(*), min(k) FROM held_rows")
    held, first_k = cur.fetchone()
    return IngestResult(
        top,
        max_ts,
        page.received,
        len(valid),
        len(released),
        held,
        page.ignored,
        len(malformed),
        len(events),
        seqs,
        max(0.0, first_k // K_SCALE + hold - now) if held and live(max_ts, now) else None,
    )


#: Malformed rows parsed again per transaction.
REPARSE_BATCH = 5000


def reparse_malformed(session: Session, hold: float, now: float | None = None,
                      limit: int = REPARSE_BATCH) -> int:
    """Parse again the malformed rows an older parser recorded (``parser < PARSER_VERSION``,
    e.g. after an upgrade taught it warehouse's release quarantine): the ones now understood
    are stored like a late page (held, or applied at once in time order: the catalog is LWW,
    so it ends as if they had been understood on arrival) and leave ``malformed_rows``; the
    rest are kept, judged by this parser. Returns how many rows were looked at."""
    now = time.time() if now is None else now
    cur = dbapi_cursor(session)
    pending = "SELECT id, raw FROM malformed_rows WHERE parser < %s ORDER BY id LIMIT %s"
    cur.execute(pending, (PARSER_VERSION, limit))
    if not cur.fetchall():  # the usual case: no lock taken
        return 0
    _lock_state(cur)  # one writer at a time, as for a page; then read what is left
    cur.execute(pending, (PARSER_VERSION, limit))
    found = cur.fetchall()
    understood: list[Row] = []
    gone: list[int] = []
    for row_id, raw_text in found:
        try:
            raw = json.loads(raw_text)
        except ValueError:  # cut at 4,000 characters when recorded: still malformed
            parsed: Row | Ignored | Malformed = Malformed(None, "unreadable record", raw_text)
        else:
            parsed = parse_row(raw, now)
        if isinstance(parsed, Malformed):
            cur.execute("UPDATE malformed_rows SET parser = %s, reason = %s WHERE id = %s",
                        (PARSER_VERSION, parsed.reason, row_id))
            continue
        gone.append(row_id)
        if isinstance(parsed, Row):
            understood.append(parsed)
    cur.execute("DELETE FROM malformed_rows WHERE id = ANY(%s)", (gone,))
    if understood:
        result = store_page(session, RowPage(understood, [], 0, 0, len(understood), now), hold)
        log.warning("parsed %d malformed rows again: %d now understood (%d events)",
                    len(found), len(understood), result.events)
    return len(found)


def flush(session: Session, hold: float, now: float | None = None) -> IngestResult:
    """Release whatever the hold window lets go now (for a quiet upstream)."""
    return ingest(session, [], hold, now)


#: SQL: the newest row of a version whose details upstream's JSON API may have changed (its
#: creation, yank, or the clearing of its quarantine), of the versions row aliased v.
INFO_DUE = "greatest(v.quarantine_k, v.created_k, v.yank_k)"
#: SQL: the version (v) is one upstream may have details of now: live, not withheld, not
#: read since its newest creation, yank or quarantine clearing, its back-off over.
_INFO_NEEDED = (f"{INFO_DUE} > v.info_k AND (v.info_after IS NULL OR v.info_after <= now()) "
                "AND EXISTS (SELECT 1 FROM live_versions l WHERE l.package = v.package "
                "AND l.version = v.version AND NOT l.withheld)")
#: Failed look-ups in a row after which a version is taken as looked up, with nothing known
#: (back-offs of 1, 2, 4, 8 and 16 minutes between them), so its builds are not held back for ever.
INFO_GIVE_UP = 6


def versions_needing_info(session: Session, limit: int, since_ts: int) -> list[list[str]]:
    """Live versions, not withheld, whose upstream details (Requires-Python, yank reason,
    summary) we have not read since their newest creation, yank or quarantine clearing, and
    whose back-off after a failed look-up is over: first those with a build waiting, whatever
    their age (build_dispatch sends no job before its version's Requires-Python is known),
    then those released or yanked since *since_ts*, newest first.

    Two halves that read no more than they answer: the versions of the builds waiting, and
    the newest due versions through the partial index ``versions_info_due`` (migration
    0020). One query filtering every version took 0.2-0.6 s at 82,000 versions, once after
    every poll that brought rows."""
    rows = session.execute(text(
        "SELECT package, version FROM ("
        f"SELECT v.package, v.version, true AS waiting, {INFO_DUE} AS due "
        f"FROM ({build_queries.WAITING_VERSIONS}) w JOIN versions v USING (package, version) "
        f"WHERE {_INFO_NEEDED} "
        f"UNION ALL (SELECT v.package, v.version, false, {INFO_DUE} FROM versions v "
        f"WHERE {INFO_DUE} >= :since AND {_INFO_NEEDED} ORDER BY {INFO_DUE} DESC LIMIT :limit)"
        ") c GROUP BY package, version ORDER BY bool_or(waiting) DESC, max(due) DESC "
        "LIMIT :limit"),
        {"since": since_ts * K_SCALE, "limit": limit}).all()
    return [[str(package), str(version)] for package, version in rows]


def _lookup_failed(session: Session, package: str, version: str, reason: str) -> None:
    """One more failed look-up: try again after a back-off, or give up after INFO_GIVE_UP.
    A version withheld meanwhile (quarantined: PyPI's JSON API answers 404 for it) is not
    counted; it is looked up again once cleared."""
    row = session.execute(text(
        "UPDATE versions v SET info_failures = v.info_failures + 1, info_after = now() + "
        "make_interval(secs => 60 * 2 ^ v.info_failures) FROM live_versions l "
        "WHERE v.package = :p AND v.version = :v AND l.package = v.package "
        "AND l.version = v.version AND NOT l.withheld RETURNING v.info_failures"),
        {"p": package, "v": version}).first()
    if row is None:
        return
    if row[0] >= INFO_GIVE_UP:
        session.execute(text(
            f"UPDATE versions v SET info_k = {INFO_DUE}, info_failures = 0, info_after = NULL "
            "WHERE v.package = :p AND v.version = :v"), {"p": package, "v": version})
        log.warning("upstream's JSON API has nothing usable on %s %s after %d tries (%s): "
                    "built without its Requires-Python", package, version, row[0], reason)
    else:
        log.info("looking up %s %s upstream failed (%s): trying again later", package, version,
                 reason)


def set_version_info(session: Session, infos: list[dict[str, Any]]) -> int:
    """Record what upstream's JSON API says of versions (Requires-Python, yank reason,
    summary) and emit ``version_info`` events for the ones that changed; returns how many
    changed. An info with ``failed`` (why) is a look-up that failed: tried again later."""
    events = []
    for info in infos:
        if info.get("failed"):
            _lookup_failed(session, info["package"], info["version"], str(info["failed"]))
            continue
        row = session.execute(text(
            f"UPDATE versions v SET info_k = {INFO_DUE}, info_failures = 0, info_after = NULL, "
            "requires_python = :rp, yanked_reason = :reason, summary = :summary "
            "FROM versions old WHERE v.package = :p AND v.version = :v "
            "AND old.package = v.package AND old.version = v.version "
            "RETURNING old.requires_python IS DISTINCT FROM :rp "
            "OR old.yanked_reason IS DISTINCT FROM :reason "
            "OR old.summary IS DISTINCT FROM :summary"),
            {"p": info["package"], "v": info["version"], "rp": info.get("requires_python"),
             "reason": info.get("yanked_reason"), "summary": info.get("summary")}).first()
        if row and row[0]:
            events.append({"type": ev.VERSION_INFO, "package": info["package"],
                           "version": info["version"],
                           "requires_python": info.get("requires_python"),
                           "yanked_reason": info.get("yanked_reason"),
                           "summary": info.get("summary")})
    if events:
        outbox.write(session, events)
    return len(events)


def status(session: Session) -> dict[str, Any]:
    """What the reorderer's RPC ``status`` says: where upstream's log is, what is held or
    malformed, the outbox's head and what is unsent, live packages."""
    row = session.execute(text(
        "SELECT last_serial, max_ts, "
        "(SELECT count(*) FROM held_rows), "
        "(SELECT count(*) FROM malformed_rows), "
        "(SELECT coalesce(max(seq), 0) FROM outbox), "
        "(SELECT count(*) FROM outbox WHERE sent_at IS NULL), "
        "(SELECT count(*) FROM live_packages) "
        "FROM upstream_state WHERE id = 1")).one()
    keys = ("last_serial", "max_ts", "held", "malformed", "outbox_seq", "outbox_unsent",
            "packages")
    return dict(zip(keys, row, strict=True))
