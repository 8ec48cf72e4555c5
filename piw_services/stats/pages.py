"""/stats/ and /status/: the report model (piw_services.stats.model) drawn as two static pages.

Pure renderers plus one writer: the stats service's page timer gathers the reports and calls
:func:`write_pages`, which writes through the site's
:class:`~piw_services.site.tree.TreeWriter` (temp file + rename), so no reader sees half a page
and an unchanged page is not rewritten. The pages extend the site's base template (the index's
header and CSS); every chart is inline SVG
made here (piw_services.stats.charts), so nothing is fetched from elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from piw_services.site.jinja import environment, human_duration
from piw_services.site.tree import TreeWriter

from . import charts
from .model import BuilderStatus, StatsReport, StatusReport

STATS_PAGE = "stats/index.html"
STATUS_PAGE = "status/index.html"


def human_age(seconds: float | None) -> str:
    """How long ago / how long for, coarse: "12 s", "4 min", "3 h 5 min", "2 days"."""
    if seconds is None:
        return ""
    if seconds >= 2 * 86400:
        return f"{seconds // 86400:.0f} days"
    return human_duration(seconds)


def is_silent(builder: BuilderStatus, limit: float) -> bool:
    """A builder to worry about: gone, or no heartbeat for longer than the limit."""
    return builder.state != "alive" or builder.silent_for > limit


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def _number(value: float | None, fmt: str = "{:.1f}") -> str:
    return "" if value is None else fmt.format(value)


_env = environment("piw_services.stats")
_env.filters.update(age=human_age, when=_when, percent=_percent, number=_number)


def _site(base_url: str) -> dict[str, str]:
    return {"base_url": base_url.rstrip("/")}


def render_stats(report: StatsReport, base_url: str = "") -> str:
    """The /stats/ page: downloads over time, top packages, Python and distro versions,
    architectures, installers and the searches we could not serve."""
    chart = {
        "downloads": charts.downloads_per_day(report.downloads_per_day, "downloads"),
        "top": charts.ranked(report.top_packages, f"Top packages, last {report.days} days",
                             "top"),
        "python": charts.stacked(report.python_versions, "Python versions per day", "python"),
        "distros": charts.stacked(report.distros, "Distributions per day", "distros"),
        "arch": charts.ranked(report.architectures, "Architectures", "arch"),
    }
    return _env.get_template("stats.html").render(
        site=_site(base_url), r=report, chart={k: Markup(v) for k, v in chart.items()})


def render_status(report: StatusReport, base_url: str = "") -> str:
    """The /status/ page: the master (queues, lag behind upstream, health), each builder
    (job, silence, health graphs) and the recent builds."""
    builders: list[dict[str, Any]] = []
    for b in report.builders:
        last = b.readings[-1] if b.readings else None
        builders.append({
            "b": b,
            "silent": is_silent(b, report.silence_limit),
            "last": last,
            "chart": Markup(charts.readings(
                b.readings, report.generated, f"Health of builder {b.label}",
                f"builder-{b.id}")),
        })
    master_chart = Markup(charts.readings(
        report.master.readings, report.generated, "Health of the master", "master",
        metrics=("load", "memory", "disk")))
    return _env.get_template("status.html").render(
        site=_site(base_url), r=report, m=report.master, builders=builders,
        master_chart=master_chart,
        silent_count=sum(1 for b in builders if b["silent"]))


def write_pages(tree: TreeWriter, stats_report: StatsReport, status_report: StatusReport,
                base_url: str = "") -> None:
    """Write stats/index.html and status/index.html into the www tree (each atomically;
    unchanged pages are left alone)."""
    tree.write(STATS_PAGE, render_stats(stats_report, base_url))
    tree.write(STATUS_PAGE, render_status(status_report, base_url))
