"""The reorderer's persistence: buffer, upstream position, catalog and outbox in one transaction.

:func:`ingest` is the whole of contract points 1-3 for one batch of raw rows: rows are keyed by
serial (re-reading a range changes nothing), held until they are older than the newest upstream
time minus the hold window, applied to the catalog in (timestamp, serial) order, and the events
they cause are written to the outbox before the same commit.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from piw_services import outbox
from piw_services.db.bulk import insert_rows
from piw_services.names import canonical, is_valid_name
from piw_services.reorderer.catalog import (
    FileState,
    PackageState,
    VersionState,
    apply_rows,
    timestamp_of,
)
from piw_services.reorderer.parse import K_SCALE, Ignored, Kind, Malformed, Row, parse_row

log = logging.getLogger(__name__)

#: Upstream times within this many seconds of the wall clock mean we are following live, and
#: the hold window also runs on the wall clock so a quiet upstream still releases rows.
LIVE_LAG = 86_400

ROW_COLUMNS = {"serial": "bigint", "k": "bigint", "ts": "bigint", "name": "text",
               "package": "text", "version": "text", "kind": "text", "filename": "text",
               "pyver": "text", "old_name": "text", "applied": "boolean"}
PKG_COLUMNS = {"name": "text", "display_name": "text", "display_k": "bigint",
               "created_k": "bigint", "deleted_k": "bigint", "quarantine_k": "bigint",
               "quarantined": "boolean"}
VER_COLUMNS = {"package": "text", "version": "text", "created_k": "bigint", "deleted_k": "bigint",
               "release_k": "bigint", "yank_k": "bigint", "yanked": "boolean",
               "yanked_reason": "text", "requires_python": "text"}
FILE_COLUMNS = {"package": "text", "version": "text", "filename": "text", "pyver": "text",
                "added_k": "bigint", "removed_k": "bigint"}


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def horizon(max_ts: int, hold: float, now: float) -> int:
    """Rows with a timestamp below this are released from the hold window."""
    h = int(max_ts - hold)
    if now - max_ts < LIVE_LAG:
        h = max(h, int(now - hold))
    return h


def _cursor(session: Session) -> Any:
    return session.connection().connection.dbapi_connection.cursor()


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


def _row_to_db(row: Row, applied: bool) -> tuple:
    return (row.serial, row.k, row.timestamp, row.name, row.package, row.version,
            row.kind.value, row.filename, row.pyver, row.old_name, applied)


def load_packages(cur: Any, names: Iterable[str]) -> dict[str, PackageState]:
    """The named packages with all of their versions and files (absent ones are left out)."""
    names = list(set(names))
    packages: dict[str, PackageState] = {}
    cur.execute(f"SELECT {', '.join(PKG_COLUMNS)} FROM packages WHERE name = ANY(%s)", (names,))
    for r in cur.fetchall():
        packages[r[0]] = PackageState(*r)
    cur.execute(f"SELECT {', '.join(VER_COLUMNS)} FROM versions WHERE package = ANY(%s)",
                (names,))
    for r in cur.fetchall():
        packages[r[0]].versions[r[1]] = VersionState(*r[2:])
    cur.execute(f"SELECT {', '.join(FILE_COLUMNS)} FROM upstream_files "
                "WHERE package = ANY(%s)", (names,))
    for package, version, filename, *rest in cur.fetchall():
        packages[package].versions[version].files[filename] = FileState(*rest)
    return packages


def save_packages(cur: Any, packages: Iterable[PackageState]) -> None:
    """Write back what :func:`apply_rows` changed, parents before children."""
    pkgs, vers, files = [], [], []
    for p in packages:
        if p.dirty or p.dirty_versions:
            pkgs.append((p.name, p.display_name, p.display_k, p.created_k, p.deleted_k,
                         p.quarantine_k, p.quarantined))
        for ver in p.dirty_versions:
            v = p.versions[ver]
            vers.append((p.name, ver, v.created_k, v.deleted_k, v.release_k, v.yank_k, v.yanked,
                         v.yanked_reason, v.requires_python))
        for ver, fn in p.dirty_files:
            f = p.versions[ver].files[fn]
            files.append((p.name, ver, fn, f.pyver, f.added_k, f.removed_k))
        p.dirty = False
        p.dirty_versions.clear()
        p.dirty_files.clear()
    insert_rows(cur, "packages", PKG_COLUMNS, pkgs, key=("name",), upsert=True)
    insert_rows(cur, "versions", VER_COLUMNS, vers, key=("package", "version"), upsert=True)
    insert_rows(cur, "upstream_files", FILE_COLUMNS, files,
                key=("package", "version", "filename"), upsert=True)


def _record_malformed(cur: Any, bad: list[Malformed]) -> None:
    """Keep each malformed row once (by serial, or by content when it has none)."""
    for m in bad:
        raw = json.dumps(m.raw, default=repr)[:4000]
        if m.serial is None:
            cur.execute("INSERT INTO malformed_rows (serial, reason, raw) VALUES (NULL, %s, %s) "
                        "ON CONFLICT (md5(raw)) WHERE serial IS NULL DO NOTHING RETURNING id",
                        (m.reason, raw))
        else:
            cur.execute("INSERT INTO malformed_rows (serial, reason, raw) VALUES (%s, %s, %s) "
                        "ON CONFLICT (serial) WHERE serial IS NOT NULL DO NOTHING RETURNING id",
                        (m.serial, m.reason, raw))
        if cur.fetchone():
            log.warning("skipping malformed upstream row (serial %s): %s", m.serial, m.reason)


def _apply_released(cur: Any, released: list[Row]) -> list[dict[str, Any]]:
    released.sort(key=lambda r: r.k)
    names = {r.package for r in released} | {r.old_name for r in released if r.old_name}
    packages = load_packages(cur, names)
    events = apply_rows(packages, released)
    save_packages(cur, packages.values())
    return events


def ingest(session: Session, raw_rows: Sequence[object], hold: float,
           now: float | None = None) -> IngestResult:
    """Take one page of upstream rows, inside the caller's transaction."""
    now = time.time() if now is None else now
    cur = _cursor(session)
    prev_serial, prev_max_ts = _lock_state(cur)
    valid: list[Row] = []
    malformed: list[Malformed] = []
    ignored = 0
    top = prev_serial
    for raw in raw_rows:
        parsed = parse_row(raw, now)
        serial = parsed.serial
        if serial is not None:
            top = max(top, serial)
        if isinstance(parsed, Row):
            valid.append(parsed)
        elif isinstance(parsed, Ignored):
            ignored += 1
        else:
            malformed.append(parsed)

    # Rows are keyed by serial: anything at or below our position may have been seen before.
    maybe_seen = [r.serial for r in valid if r.serial <= prev_serial]
    if maybe_seen:
        cur.execute("SELECT serial FROM upstream_rows WHERE serial = ANY(%s)", (maybe_seen,))
        seen = {s for (s,) in cur.fetchall()}
        valid = [r for r in valid if r.serial not in seen]
    unique: dict[int, Row] = {r.serial: r for r in valid}
    valid = list(unique.values())
    _record_malformed(cur, malformed)

    max_ts = max([prev_max_ts] + [r.timestamp for r in valid])
    h = horizon(max_ts, hold, now)
    released = [r for r in valid if r.timestamp < h]
    insert_rows(cur, "upstream_rows", ROW_COLUMNS, [_row_to_db(r, r.timestamp < h) for r in valid])
    cur.execute("SELECT serial, k, ts, name, package, version, kind, filename, pyver, old_name "
                "FROM upstream_rows WHERE NOT applied AND k < %s", (h * K_SCALE,))
    earlier = [_row_from_db(r) for r in cur.fetchall()]
    if earlier:
        cur.execute("UPDATE upstream_rows SET applied = true WHERE serial = ANY(%s)",
                    ([r.serial for r in earlier],))
    released.extend(earlier)
    events = _apply_released(cur, released) if released else []
    seqs = outbox.write(session, events) if events else []
    cur.execute("UPDATE upstream_state SET last_serial = %s, max_ts = %s, updated_at = now() "
                "WHERE id = 1", (top, max_ts))
    cur.execute("SELECT count(*) FROM upstream_rows WHERE NOT applied")
    held = cur.fetchone()[0]
    return IngestResult(top, max_ts, len(raw_rows), len(valid), len(released), held, ignored,
                        len(malformed), len(events), seqs)


def flush(session: Session, hold: float, now: float | None = None) -> IngestResult:
    """Release whatever the hold window lets go now (for a quiet upstream)."""
    return ingest(session, [], hold, now)


def package_state(session: Session, name: str) -> dict[str, Any]:
    """What the catalog says of one package, under any spelling of its name."""
    key = canonical(name) if is_valid_name(name) else str(name)
    pkg = load_packages(_cursor(session), [key]).get(key)
    if pkg is None or not pkg.alive:
        return {"name": key, "alive": False, "versions": {}}
    versions = {}
    for ver, v in pkg.versions.items():
        if not pkg.version_alive(v):
            continue
        files = pkg.live_files(v)
        versions[ver] = {
            "yanked": pkg.version_yanked(v),
            "yanked_reason": v.yanked_reason if pkg.version_yanked(v) else None,
            "buildable": pkg.unbuildable_reason(v) is None,
            "unbuildable_reason": pkg.unbuildable_reason(v),
            "skip": None,
            "requires_python": v.requires_python,
            "released": timestamp_of(v.release_k or v.created_k),
            "files": {fn: {"pyver": f.pyver} for fn, f in sorted(files.items())},
        }
    return {"name": key, "display_name": pkg.display_name, "alive": True,
            "life": pkg.life, "quarantined": pkg.is_quarantined, "versions": versions}
