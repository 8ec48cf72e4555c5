"""What the stats and status pages (and piw-monitor) show, as plain data: the store fills these
from the database, the renderers draw them, and neither knows the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class Count:
    """A labelled count: a package, a Python version, a distro, an architecture..."""

    label: str
    count: int


@dataclass(frozen=True)
class Series:
    """Counts per day (oldest first) under one label, for a line or stacked chart."""

    label: str
    points: tuple[tuple[date, int], ...]


@dataclass(frozen=True)
class StatsReport:
    """Everything /stats/ shows (and /stats/stats.json holds)."""

    generated: datetime
    days: int  # the window of the "last N days" figures
    downloads_total: int  # all time
    downloads_window: int  # last `days` days
    downloads_per_day: tuple[tuple[date, int], ...]  # last `days` days, oldest first
    top_packages: tuple[Count, ...]  # last `days` days, most first
    top_packages_all_time: tuple[Count, ...]
    searches_without_wheels: tuple[Count, ...]  # package names asked for and not served
    python_versions: tuple[Series, ...]  # e.g. "3.11", per day
    distros: tuple[Series, ...]  # e.g. "Raspbian 12" / "Debian 13", per day
    architectures: tuple[Count, ...]  # e.g. armv7l, aarch64, over the window
    installers: tuple[Count, ...]  # pip, uv, unknown..., over the window


@dataclass(frozen=True)
class Reading:
    """One heartbeat's (or master sample's) numbers; None when the board cannot tell."""

    at: datetime
    cpu_temperature: float | None = None  # degrees C
    load1: float | None = None
    memory_used: float | None = None  # fraction 0..1
    swap_used: float | None = None  # fraction 0..1
    disk_used: float | None = None  # fraction 0..1 of the build disk


@dataclass(frozen=True)
class BuilderStatus:
    id: int
    label: str
    abi: str
    platform: str
    board: str | None
    state: str  # "alive" or "gone"
    silent_for: float  # seconds since its last heartbeat
    job: str | None  # "package version" being built, or None
    job_elapsed: float | None  # seconds
    readings: tuple[Reading, ...]  # the last hours, oldest first
    paused: bool = False  # by an operator's order, as its last heartbeat said


@dataclass(frozen=True)
class MasterStatus:
    readings: tuple[Reading, ...]  # the master host, last hours, oldest first
    queues: tuple[Count, ...]  # jobs waiting per ABI (database queue of record)
    behind_upstream: int | None  # upstream serials not yet applied; None if unknown
    builds_last_hour: int
    failures_last_hour: int
    upstream_problem: str | None = None  # upstream's last refusal, while it lasts
    malformed_rows: int = 0  # changelog rows we could not use (kept, with their reason)
    malformed_latest: tuple[tuple[int | None, str], ...] = ()  # (serial, reason), newest first


@dataclass(frozen=True)
class BlockedBuilder:
    """A RabbitMQ user blocked for too many refused messages, until ``piw-unblock``."""

    user: str
    since: datetime
    refusals: int
    reason: str


@dataclass(frozen=True)
class StatusReport:
    """Everything /status/ (and piw-monitor) shows."""

    generated: datetime
    silence_limit: float  # a builder silent longer is marked
    builders: tuple[BuilderStatus, ...]
    master: MasterStatus
    recent_builds: tuple[tuple[datetime, str, str, str, str], ...] = field(default=())
    # (finished, package, version, abi, status), newest first
    blocked: tuple[BlockedBuilder, ...] = ()
