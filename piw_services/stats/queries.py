"""What other services may read of the stats service's data (the index shows downloads on
packages.json and project pages); the stats store writes it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from piw_services.stats.store import days_between, utc_today


def package_downloads(session: Session, package: str, days: int = 30
                      ) -> dict[str, Any]:
    """One package's downloads: the last *days* (total and per day, oldest first) and all
    time. The project page shows these."""
    last = utc_today()
    first = last - timedelta(days=days - 1)
    per_day = dict(session.execute(text(
        "SELECT day, count FROM downloads_daily WHERE package = :p AND day >= :f"),
        {"p": package, "f": first}).all())
    total = session.execute(text(
        "SELECT coalesce(sum(count), 0) FROM downloads_monthly WHERE package = :p"),
        {"p": package}).scalar_one()
    points = [(d, int(per_day.get(d, 0))) for d in days_between(first, last)]
    return {"package": package, "days": days, "window": sum(n for _, n in points),
            "all": int(total), "per_day": points}


def downloads_by_package(session: Session, days: int = 30) -> dict[str, tuple[int, int]]:
    """{package: (last *days*, all time)} for every package ever downloaded (packages.json)."""
    first = utc_today() - timedelta(days=days - 1)
    counts: dict[str, tuple[int, int]] = {}
    for package, window, total in session.execute(text(
            "SELECT m.package, coalesce(w.c, 0), m.c FROM (SELECT package, sum(count) c FROM "
            "downloads_monthly GROUP BY package) m LEFT JOIN (SELECT package, sum(count) c "
            "FROM downloads_daily WHERE day >= :f GROUP BY package) w USING (package)"),
            {"f": first}):
        counts[package] = (int(window), int(total))
    return counts
