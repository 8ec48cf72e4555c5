"""The stats service's database work: downloads and searches (raw rows and their daily and
monthly aggregates), builder and master readings, and the reports the pages are drawn from.

Events arrive at least once (a list per message, see piw_services/web/service.py), so every
event gets a key, a hash of all its fields, that the raw tables hold unique: a redelivered batch
inserts no row and counts nothing twice. A batch is one COPY into a temporary table and one
statement that inserts the raw rows and adds the new ones (only) to the aggregates. The report
reads aggregates only: the raw rows are history, kept, never scanned for a page.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, is_dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from piw_services.build_dispatch import queries as build_queries
from piw_services.db.bulk import copy_rows
from piw_services.file_manager.queries import HAS_FILES
from piw_services.names import canonical, is_valid_name
from piw_services.reorderer import queries as catalog
from piw_services.stats import model
from piw_services.useragent import FIELDS, MAX_FIELD

log = logging.getLogger(__name__)

#: Longest filename, client hash accepted in an event (anything longer is not ours).
MAX_FILENAME = 255
MAX_CLIENT = 64
#: Oldest timestamp accepted (2000-01-01), and how far in the future (clock skew).
MIN_TIMESTAMP = 946684800
MAX_SKEW = 86400
#: Points per graph on the status page: readings are averaged into this many time buckets.
MAX_POINTS = 240

# -- events ------------------------------------------------------------------------------------
DOWNLOAD_COLUMNS = ("ts", "package", "version", "filename", "status", "client", *FIELDS)
SEARCH_COLUMNS = ("ts", "package", "status", "client", *FIELDS)
_AGENT = ", ".join(FIELDS)

#: SQL: (dimension, value) pairs of a download row aliased ``n``, the labels the report shows.
DIMENSIONS = (
    "(VALUES ('python', coalesce(substring(n.python_version from '^[0-9]+\\.[0-9]+'), "
    "'unknown')), ('distro', coalesce(nullif(concat_ws(' ', n.distro_name, n.distro_version), "
    "''), 'unknown')), ('arch', coalesce(n.arch, 'unknown')), "
    "('installer', coalesce(lower(n.installer_name), 'unknown'))) d(dimension, value)")
#: SQL: the UTC day and month of a row aliased ``n``.
DAY = "(n.at AT TIME ZONE 'UTC')::date AS day"
MONTH = "date_trunc('month', n.at AT TIME ZONE 'UTC')::date AS month"


class BadEvent(ValueError):
    pass


def _short(value: Any, limit: int, what: str, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadEvent(f"{what} {str(value)[:40]!r}")
    return value


def _common(event: Any, now: float) -> tuple[float, str, int, str | None, list[str | None]]:
    """The fields downloads and searches share, checked: an event is client-derived data."""
    if not isinstance(event, Mapping):
        raise BadEvent(f"not a mapping: {type(event).__name__}")
    ts = event.get("timestamp")
    if (isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts)
            or not MIN_TIMESTAMP <= ts <= now + MAX_SKEW):
        raise BadEvent(f"timestamp {str(ts)[:40]!r}")
    package = event.get("package")
    if not isinstance(package, str) or not is_valid_name(package):
        raise BadEvent(f"package {str(package)[:40]!r}")
    status = event.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise BadEvent(f"status {str(status)[:40]!r}")
    client = _short(event.get("client"), MAX_CLIENT, "client")
    agent = [_short(event.get(f), MAX_FIELD, f) for f in FIELDS]
    return float(ts), canonical(package), status, client, agent


def wheel_version(filename: str) -> str | None:
    """The version part of a wheel's (or sdist's) filename, as written there."""
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        return parts[1] if len(parts) >= 5 else None
    return None


def _checked(events: Any, kind: str, row: Any) -> list[tuple[Any, ...]]:
    now = time.time()
    rows, dropped, reason = [], 0, ""
    for event in events if isinstance(events, list) else []:
        try:
            rows.append(row(event, now))
        except BadEvent as exc:
            dropped, reason = dropped + 1, reason or str(exc)
    if not isinstance(events, list):
        dropped, reason = 1, f"a batch must be a list, not {type(events).__name__}"
    if dropped:
        log.warning("dropped %d malformed %s events (first: %s)", dropped, kind, reason)
    return rows


def _download_row(event: Any, now: float) -> tuple[Any, ...]:
    ts, package, status, client, agent = _common(event, now)
    filename = _short(event.get("filename"), MAX_FILENAME, "filename", optional=False)
    assert filename is not None
    return (ts, package, wheel_version(filename), filename, status, client, *agent)


def _search_row(event: Any, now: float) -> tuple[Any, ...]:
    ts, package, status, client, agent = _common(event, now)
    return (ts, package, status, client, *agent)


def _load(session: Session, table: str, columns: tuple[str, ...], types: str,
          rows: list[tuple[Any, ...]]) -> Any:
    """COPY *rows* into a fresh temporary *table*; returns the cursor."""
    cur = session.connection().connection.dbapi_connection.cursor()
    agent = ", ".join(f"{f} text" for f in FIELDS)
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({types}, {agent}) "
                f"ON COMMIT DELETE ROWS; DELETE FROM {table}")
    copy_rows(cur, table, columns, rows)
    return cur


def _upsert(table: str, keys: str, select: str, add: str = "count") -> str:
    sets = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in add.split(", "))
    return (f"INSERT INTO {table} {select} ORDER BY {keys} "
            f"ON CONFLICT ({keys}) DO UPDATE SET {sets}")


def ingest_downloads(session: Session, events: Any) -> int:
    """Record a batch of ``web.downloads`` events; returns how many were new."""
    rows = _checked(events, "download", _download_row)
    if not rows:
        return 0
    cur = _load(session, "_stats_downloads", DOWNLOAD_COLUMNS,
                "ts float8, package text, version text, filename text, status int2, "
                "client text", rows)
    cols = f"package, version, filename, status, client, {_AGENT}"
    cur.execute(
        "WITH n AS (INSERT INTO downloads (key, at, " + cols + ") "
        "SELECT DISTINCT ON (md5(t::text)) md5(t::text)::uuid, to_timestamp(ts), " + cols
        + " FROM _stats_downloads t ON CONFLICT (key) DO NOTHING RETURNING *), "
        "a AS (" + _upsert("downloads_daily", "day, package",
                           f"SELECT {DAY}, package, count(*) FROM n GROUP BY 1, 2") + "), "
        "b AS (" + _upsert("downloads_monthly", "month, package",
                           f"SELECT {MONTH}, package, count(*) FROM n GROUP BY 1, 2") + "), "
        "c AS (" + _upsert("download_dims_daily", "day, dimension, value",
                           f"SELECT {DAY}, d.dimension, d.value, count(*) "
                           f"FROM n CROSS JOIN LATERAL {DIMENSIONS} GROUP BY 1, 2, 3") + "), "
        "e AS (" + _upsert("download_dims_monthly", "month, dimension, value",
                           f"SELECT {MONTH}, d.dimension, d.value, count(*) "
                           f"FROM n CROSS JOIN LATERAL {DIMENSIONS} GROUP BY 1, 2, 3") + ") "
        "SELECT count(*) FROM n")
    return cur.fetchone()[0]


def ingest_searches(session: Session, events: Any) -> int:
    """Record a batch of ``web.searches`` events; returns how many were new. A search counts
    as unserved when it was answered with an error or we had no file of the package."""
    rows = _checked(events, "search", _search_row)
    if not rows:
        return 0
    cur = _load(session, "_stats_searches", SEARCH_COLUMNS,
                "ts float8, package text, status int2, client text", rows)
    cols = f"package, status, client, {_AGENT}"
    cur.execute(
        "WITH n AS (INSERT INTO searches (key, at, " + cols + ") "
        "SELECT DISTINCT ON (md5(t::text)) md5(t::text)::uuid, to_timestamp(ts), " + cols
        + " FROM _stats_searches t ON CONFLICT (key) DO NOTHING RETURNING *), "
        "a AS (" + _upsert(
            "searches_daily", "day, package",
            f"SELECT {DAY}, n.package, count(*), count(*) FILTER (WHERE n.status >= 400 OR "
            f"NOT {HAS_FILES.format('n.package')}) "
            "FROM n GROUP BY 1, 2", add="count, unserved") + ") "
        "SELECT count(*) FROM n")
    return cur.fetchone()[0]


def downloaded_since(session: Session, since: float) -> list[str]:
    """Packages with downloads on or after the UTC day of *since* (a Unix time), by name."""
    return list(session.execute(text(
        "SELECT DISTINCT package FROM downloads_daily WHERE day >= "
        "(to_timestamp(:t) AT TIME ZONE 'UTC')::date ORDER BY package"), {"t": since}).scalars())


# -- readings ----------------------------------------------------------------------------------
def _fraction(used_of: float | None, total: Any) -> float | None:
    if used_of is None or not isinstance(total, int | float) or total <= 0:
        return None
    return min(1.0, max(0.0, used_of / total))


def reading_fractions(readings: Mapping[str, Any]) -> dict[str, float | None]:
    """builders.sysinfo.snapshot()'s shape as the numbers a graph shows (fractions used);
    a heartbeat is a builder's word, so anything odd in it is None, never an error."""
    def num(value: Any) -> float | None:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok and math.isfinite(value) else None

    mem = readings.get("memory") if isinstance(readings.get("memory"), Mapping) else {}
    disk = readings.get("disk") if isinstance(readings.get("disk"), Mapping) else {}
    load = readings.get("load_average")
    total, avail = num(mem.get("total")), num(mem.get("available"))
    swap_total, swap_free = num(mem.get("swap_total")), num(mem.get("swap_free"))
    disk_total, disk_free = num(disk.get("total")), num(disk.get("free"))
    return {
        "temperature": num(readings.get("cpu_temperature")),
        "load1": num(load[0]) if isinstance(load, list | tuple) and load else None,
        "memory_used": _fraction(None if total is None or avail is None else total - avail,
                                 total),
        "swap_used": _fraction(None if swap_total is None or swap_free is None
                               else swap_total - swap_free, swap_total),
        "disk_used": _fraction(None if disk_total is None or disk_free is None
                               else disk_total - disk_free, disk_total),
    }


READING_COLUMNS = ("temperature", "load1", "memory_used", "swap_used", "disk_used")


def record_heartbeat(session: Session, msg: Mapping[str, Any]) -> None:
    """Store one builder heartbeat (builders/protocol.py heartbeat(), already checked)."""
    job = msg.get("job")
    label = None
    if isinstance(job, Mapping) and job.get("package"):
        label = f"{job.get('package')} {job.get('version') or ''}".strip()[:MAX_FILENAME]
    session.execute(text(
        "INSERT INTO builder_readings (builder_id, temperature, load1, memory_used, swap_used, "
        "disk_used, job) VALUES (:b, :temperature, :load1, :memory_used, :swap_used, "
        ":disk_used, :job)"),
        {"b": msg["builder_id"], "job": label, **reading_fractions(msg["readings"])})


def behind_upstream(session: Session, upstream_caught_up: bool) -> int | None:
    """Changelog rows we hold but have not applied yet (the reorderer's hold window), when
    upstream's poller last reached upstream's newest serial; None when that is unknown (the
    poller is failing or cannot be asked), since then rows may be waiting upstream too."""
    if not upstream_caught_up:
        return None
    return catalog.held_rows(session)


def record_master(session: Session, readings: Mapping[str, Any], behind: int | None,
                  upstream_problem: str | None = None) -> None:
    """Store one sample of the master host (sysinfo.snapshot() of the www tree's disk), with
    what upstream refuses, if anything."""
    session.execute(text(
        "INSERT INTO master_readings (temperature, load1, memory_used, swap_used, disk_used, "
        "queues, behind_upstream, upstream_problem) VALUES (:temperature, :load1, "
        ":memory_used, :swap_used, :disk_used, CAST(:q AS json), :behind, :problem)"),
        {"q": json.dumps(build_queries.waiting_jobs(session)), "behind": behind,
         "problem": upstream_problem[:2000] if upstream_problem else None,
         **reading_fractions(readings)})


def prune(session: Session, days: float) -> int:
    """Delete builder and master readings older than *days*; returns how many went. Raw
    downloads and searches and every aggregate are kept."""
    gone = 0
    for table in ("builder_readings", "master_readings"):
        gone += session.execute(text(
            f"DELETE FROM {table} WHERE at < now() - make_interval(secs => :s)"),
            {"s": float(days) * 86400}).rowcount
    return gone


# -- reports -----------------------------------------------------------------------------------
def utc_today() -> date:
    return datetime.now(UTC).date()


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _series(session: Session, dimension: str, first: date, last: date, top: int
            ) -> tuple[model.Series, ...]:
    """Per-day counts of the *top* values of a dimension over the window (most first), the
    rest summed as "other"."""
    per: dict[str, dict[date, int]] = defaultdict(dict)
    for day, value, count in session.execute(text(
            "SELECT day, value, count FROM download_dims_daily WHERE dimension = :d "
            "AND day >= :f"), {"d": dimension, "f": first}):
        per[value][day] = int(count)
    ranked = sorted(per, key=lambda v: (-sum(per[v].values()), v))
    keep, rest = ranked[:top], ranked[top:]
    days = days_between(first, last)
    series = [model.Series(v, tuple((d, per[v].get(d, 0)) for d in days)) for v in keep]
    if rest:
        series.append(model.Series("other", tuple(
            (d, sum(per[v].get(d, 0) for v in rest)) for d in days)))
    return tuple(series)


def _counts(rows: Iterable[Any]) -> tuple[model.Count, ...]:
    return tuple(model.Count(str(label), int(count)) for label, count in rows)


def report(session: Session, days: int = 30, top: int = 20) -> model.StatsReport:
    """What /stats/ shows, from the aggregates only (whatever the raw tables hold)."""
    last = utc_today()
    first = last - timedelta(days=days - 1)
    window = {"f": first, "n": top}
    per_day = dict(session.execute(text(
        "SELECT day, sum(count) FROM downloads_daily WHERE day >= :f GROUP BY day"),
        window).all())
    points = tuple((d, int(per_day.get(d, 0))) for d in days_between(first, last))
    total = session.execute(text(
        "SELECT coalesce(sum(count), 0) FROM downloads_monthly")).scalar_one()
    dims = "SELECT value, sum(count) c FROM download_dims_daily WHERE dimension = :d " \
           "AND day >= :f GROUP BY value ORDER BY c DESC, value LIMIT :n"
    return model.StatsReport(
        generated=datetime.now(UTC),
        days=days,
        downloads_total=int(total),
        downloads_window=sum(n for _, n in points),
        downloads_per_day=points,
        top_packages=_counts(session.execute(text(
            "SELECT package, sum(count) c FROM downloads_daily WHERE day >= :f "
            "GROUP BY package ORDER BY c DESC, package LIMIT :n"), window)),
        top_packages_all_time=_counts(session.execute(text(
            "SELECT package, sum(count) c FROM downloads_monthly GROUP BY package "
            "ORDER BY c DESC, package LIMIT :n"), window)),
        searches_without_wheels=_counts(session.execute(text(
            "SELECT package, sum(unserved) c FROM searches_daily s WHERE day >= :f "
            f"AND NOT {HAS_FILES.format('s.package')} "
            "GROUP BY package HAVING sum(unserved) > 0 ORDER BY c DESC, package LIMIT :n"),
            window)),
        python_versions=_series(session, "python", first, last, min(top, 10)),
        distros=_series(session, "distro", first, last, min(top, 10)),
        architectures=_counts(session.execute(text(dims), {**window, "d": "arch"})),
        installers=_counts(session.execute(text(dims), {**window, "d": "installer"})),
    )


def _readings(session: Session, table: str, where: str, params: dict[str, Any],
              hours: float) -> dict[Any, list[model.Reading]]:
    """Readings of the last *hours*, averaged into at most MAX_POINTS buckets, by the first
    selected column (builder id, or 0 for the master)."""
    key = "builder_id" if table == "builder_readings" else "0"
    averages = ", ".join(f"avg({c})" for c in READING_COLUMNS)
    found: dict[Any, list[model.Reading]] = defaultdict(list)
    for row in session.execute(text(
            f"SELECT {key} AS k, max(at) AS at, {averages} FROM {table} "
            f"WHERE at >= now() - make_interval(secs => :h) {where} "
            "GROUP BY 1, date_bin(make_interval(secs => :b), at, TIMESTAMPTZ '2000-01-01') "
            "ORDER BY 1, 2"), {"h": hours * 3600, "b": max(hours * 3600 / MAX_POINTS, 1),
                               **params}):
        found[row[0]].append(model.Reading(row[1], *(
            None if v is None else float(v) for v in row[2:])))
    return found


def status(session: Session, hours: float = 6, silence_limit: float = 60.0
           ) -> model.StatusReport:
    """What /status/ (and piw-monitor) shows: every builder alive or seen in the last *hours*
    with its graphs, the master's graphs and queues, and the builds of the last hour."""
    now = datetime.now(UTC)
    builders = build_queries.builders_seen(session, hours)
    readings = _readings(session, "builder_readings", "AND builder_id = ANY(:ids)",
                         {"ids": [b.id for b in builders]}, hours) if builders else {}
    shown = []
    for b in builders:
        info = b.info if isinstance(b.info, dict) else {}
        silent = max(0.0, (now - b.last_seen).total_seconds())
        shown.append(model.BuilderStatus(
            id=b.id, label=b.label, abi=b.abi, platform=str(info.get("platform") or ""),
            board=info.get("board"),
            state="gone" if b.state == "gone" or silent > silence_limit else "alive",
            silent_for=silent,
            job=f"{b.package} {b.version}" if b.package else None,
            job_elapsed=(now - b.job_started_at).total_seconds()
            if b.package and b.job_started_at else None,
            readings=tuple(readings.get(b.id, ())), paused=info.get("paused") is True))
    behind, problem = session.execute(text(
        "SELECT behind_upstream, upstream_problem FROM master_readings "
        "ORDER BY at DESC LIMIT 1")).first() or (None, None)
    malformed, latest = catalog.malformed_rows(session)
    hour = build_queries.builds_last_hour(session)
    recent = build_queries.recent_builds(session)
    master = model.MasterStatus(
        readings=tuple(_readings(session, "master_readings", "", {}, hours).get(0, ())),
        queues=_counts(build_queries.waiting_jobs(session).items()),
        behind_upstream=behind, builds_last_hour=hour[0], failures_last_hour=hour[1],
        upstream_problem=problem, malformed_rows=malformed, malformed_latest=latest)
    blocked = tuple(model.BlockedBuilder(*row) for row in build_queries.blocked_builders(session))
    return model.StatusReport(generated=now, silence_limit=silence_limit,
                              builders=tuple(shown), master=master,
                              recent_builds=recent, blocked=blocked)  # type: ignore[arg-type]


def as_json(report: Any) -> Any:
    """A report (dataclasses, dates, tuples) as JSON-able data: dates as ISO strings."""
    def plain(value: Any) -> Any:
        if isinstance(value, datetime | date):
            return value.isoformat()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return plain(asdict(report) if is_dataclass(report) else report)
