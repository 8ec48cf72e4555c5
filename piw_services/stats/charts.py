"""Charts for /stats/ and /status/: plain model data in, an inline ``<svg>`` string out.

Made by matplotlib (object API, no pyplot, so no global figure state) with its SVG backend,
text kept as ``<text>`` (smaller and faster than glyph paths, and searchable). Output is
deterministic: a fixed hash salt per chart (ids differ between charts of one page but not
between runs) and no date in the metadata, so an unchanged report rewrites nothing in the
www tree. Every function copes with empty data by drawing "no data yet".
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime
from functools import lru_cache

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath
from matplotlib.ticker import FuncFormatter, MaxNLocator

from .model import Count, Reading, Series

ACCENT = "#c51a4a"  # the site's raspberry (index/templates/base.html)
PALETTE = ("#c51a4a", "#2a6fb0", "#1a7f37", "#9a6700", "#6f42c1", "#0e7c86", "#b35900",
           "#555555", "#d4a5b5", "#8fb3d9")
#: Series drawn in a stacked chart; the rest are summed as "other".
MAX_SERIES = 8
#: Bars in a ranked bar chart.
MAX_BARS = 15

_RC = {
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.edgecolor": "#888888",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "xtick.color": "#444444",
    "ytick.color": "#444444",
}
_PROLOGUE = re.compile(r"\A.*?(?=<svg\b)", re.S)
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.S)
_ID = re.compile(r'(\bid="|url\(#|href="#)([^")]+)')
_SIZE = re.compile(r'<svg([^>]*?) width="([\d.]+)pt" height="([\d.]+)pt"')
_TEXT_PATH = TextToPath()
#: Room (inches) beside a measured label: tick padding, or a legend's handle and gaps.
_LABEL_PAD, _LEGEND_PAD = 0.12, 0.15
#: The widest a bar's label may be (inches of an 8-inch chart); longer ones end in "…".
MAX_LABEL_WIDTH = 3.2


def _text(label: str) -> str:
    """A label as matplotlib draws it literally: "$" would start mathtext (and a bad formula
    raises), so it is escaped."""
    return label.replace("$", r"\$")


def _svg(fig: Figure, name: str, title: str) -> str:
    """*fig* as an inline SVG element: no XML prologue or DOCTYPE (not allowed inside HTML),
    no metadata, scalable to its container, with an accessible title."""
    buf = io.StringIO()
    with matplotlib.rc_context({**_RC, "svg.hashsalt": f"piw-{name}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches=None)
    svg = _METADATA.sub("", _PROLOGUE.sub("", buf.getvalue(), count=1), count=1)
    # matplotlib's ids (figure_1, axes_1, clip paths) repeat from chart to chart: one page
    # holds many charts and ids must be unique in it, so each chart's get its name as prefix.
    svg = _ID.sub(lambda m: f"{m[1]}{name}-{m[2]}", svg)
    svg = _SIZE.sub(r'<svg\1 class="chart" width="100%" role="img"', svg, count=1)
    return svg.replace(">", f"><title>{_xml(title)}</title>", 1).strip() + "\n"


def _label_width(labels: Sequence[str], size: float) -> float:
    """Inches the widest of *labels* takes in the charts' font at *size* points (measured,
    not guessed from its length: "Debian GNU/Linux 12" was clipped by a fixed margin)."""
    font = FontProperties(family=_RC["font.family"], size=size)
    return max(_TEXT_PATH.get_text_width_height_descent(label, font, ismath=False)[0]
               for label in labels) / 72


def _room_for_legend(fig: Figure, ax: Axes) -> None:
    """Narrow the axes so the legend beside them (right of the axes) fits in the figure."""
    with matplotlib.rc_context(_RC):
        renderer = FigureCanvasAgg(fig).get_renderer()
        width = ax.get_legend().get_window_extent(renderer).width / fig.dpi
    fig.subplots_adjust(right=min(0.8, 1 - (width + _LEGEND_PAD) / fig.get_figwidth()))


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _figure(width: float, height: float, left: float = 0.08, right: float = 0.98,
            bottom: float | None = None, top: float | None = None) -> Figure:
    """A figure with fixed margins (in inches for top and bottom, so labels fit at any
    height): constrained layout would measure every label and doubles the time."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=left, right=right,
                        bottom=(0.3 if bottom is None else bottom) / height,
                        top=1 - (0.3 if top is None else top) / height)
    return fig


@lru_cache(maxsize=32)
def empty(name: str, title: str, width: float = 8, height: float = 1.2) -> str:
    """A chart with nothing to draw yet (a new index has no downloads)."""
    fig = _figure(width, height)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, "no data yet", ha="center", va="center", color="#777777", fontsize=12)
    return _svg(fig, name, f"{title}: no data yet")


def _day_ticks(ax: Axes, days: Sequence[date]) -> None:
    """Integer x positions labelled with dates ("11-23"), about six of them."""
    step = max(1, len(days) // 6)
    ticks = list(range(len(days) - 1, -1, -step))[::-1]
    ax.set_xticks(ticks, [days[i].strftime("%m-%d") for i in ticks])
    ax.set_xlim(-0.6, len(days) - 0.4)


def _thousands(value: float, _pos: object = None) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:,.0f}"


def downloads_per_day(points: Sequence[tuple[date, int]], name: str = "downloads") -> str:
    """Bars of downloads per day, oldest first."""
    title = "Downloads per day"
    if not points or not any(n for _, n in points):
        return empty(name, title)
    days = [d for d, _ in points]
    fig = _figure(8, 2.4)
    ax = fig.add_subplot()
    ax.bar(range(len(points)), [n for _, n in points], color=ACCENT, width=0.8)
    _day_ticks(ax, days)
    ax.yaxis.set_major_locator(MaxNLocator(4, integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.set_title(title, loc="left")
    return _svg(fig, name, title)


def ranked(counts: Sequence[Count], title: str, name: str, limit: int = MAX_BARS) -> str:
    """Horizontal bars, biggest on top: top packages, architectures, installers."""
    shown = [c for c in counts if c.count > 0][:limit]
    if not shown:
        return empty(name, title)
    fig = _figure(8, 0.7 + 0.2 * len(shown))
    ax = fig.add_subplot()
    ys = range(len(shown))
    ax.barh(ys, [c.count for c in shown], color=ACCENT, height=0.7)
    ax.set_yticks(ys, [""] * len(shown))
    # the labels as wide as they are drawn, in the size the tick labels got
    size = ax.get_yticklabels()[0].get_fontsize()
    labels = [_fit(_clip(c.label), size, MAX_LABEL_WIDTH) for c in shown]
    ax.set_yticks(ys, [_text(label) for label in labels])
    fig.subplots_adjust(left=max(0.08, (_label_width(labels, size) + _LABEL_PAD) / 8))
    ax.invert_yaxis()
    ax.xaxis.set_major_locator(MaxNLocator(4, integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.tick_params(axis="y", length=0)
    ax.set_title(title, loc="left")
    return _svg(fig, name, title)


def _clip(label: str, width: int = 40) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def _fit(label: str, size: float, inches: float) -> str:
    """*label*, shortened with "…" until it is at most *inches* wide at *size* points."""
    while len(label) > 1 and _label_width([label], size) > inches:
        label = label[:-2] + "…"
    return label


def stacked(series: Sequence[Series], title: str, name: str) -> str:
    """Per-day counts of several labels (Python versions, distros) stacked; the biggest
    MAX_SERIES by total are drawn, the rest summed as "other"."""
    days = sorted({d for s in series for d, _ in s.points})
    if not days or not any(n for s in series for _, n in s.points):
        return empty(name, title)
    where = {d: i for i, d in enumerate(days)}

    def row(points: Sequence[tuple[date, int]]) -> list[int]:
        values = [0] * len(days)
        for d, n in points:
            values[where[d]] += n
        return values

    ordered = sorted(series, key=lambda s: (-sum(n for _, n in s.points), s.label))
    rows = [(s.label, row(s.points)) for s in ordered[:MAX_SERIES]]
    rest = [p for s in ordered[MAX_SERIES:] for p in s.points]
    if rest:
        rows.append(("other", row(rest)))
    fig = _figure(8, 2.6, right=0.8)
    ax = fig.add_subplot()
    ax.stackplot(range(len(days)), *[values for _, values in rows],
                 labels=[_text(_clip(label, 32)) for label, _ in rows],
                 colors=PALETTE[: len(rows)], linewidth=0)
    _day_ticks(ax, days)
    ax.set_xlim(0, max(1, len(days) - 1))
    ax.yaxis.set_major_locator(MaxNLocator(4, integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8,
              reverse=True)
    _room_for_legend(fig, ax)
    ax.set_title(title, loc="left")
    return _svg(fig, name, title)


# -- status: readings over the last hours ----------------------------------------------------
_Metric = tuple[str, Callable[[Reading], float | None], str, bool]
#: (name, value, unit, is a fraction 0..1)
METRICS: dict[str, _Metric] = {
    "temperature": ("CPU", lambda r: r.cpu_temperature, " °C", False),
    "load": ("load", lambda r: r.load1, "", False),
    "memory": ("memory", lambda r: r.memory_used, "", True),
    "disk": ("disk", lambda r: r.disk_used, "", True),
}
_GAP = 0.12  # between panels, in panel widths


def _shown(value: float, unit: str, fraction: bool) -> str:
    return f"{value:.0%}" if fraction else f"{value:.1f}{unit}"


def readings(rows: Sequence[Reading], now: datetime, title: str, name: str,
             metrics: Sequence[str] = ("temperature", "load", "memory", "disk")) -> str:
    """One row of sparkline panels, one per metric, over the hours before *now*, each
    titled with its latest value and range. Drawn in one matplotlib axes (panels side by
    side in data space): a status page has a row per builder, and an axes each would cost
    ~20 ms apiece; a metric the board never reports says so in its panel."""
    if not rows:
        return empty(name, title, height=0.9)
    span = max((now - rows[0].at).total_seconds(), 60.0)
    xs_all = [1 + (r.at - now).total_seconds() / span for r in rows]  # 0..1, 1 = now
    fig = Figure(figsize=(8, 1.15))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.2, top=0.72)
    ax = fig.add_subplot()
    ax.set_axis_off()
    width = 1 + _GAP
    for k, key in enumerate(metrics):
        label, value, unit, fraction = METRICS[key]
        left = k * width
        ax.fill_between([left, left + 1], 0, 1, color="#f4f4f4", linewidth=0)
        points = [(x, v) for x, r in zip(xs_all, rows, strict=True) if (v := value(r)) is not None]
        if not points:
            ax.text(left, 1.12, label, fontsize=8.5, fontweight="bold", va="bottom")
            ax.text(left + 0.5, 0.5, "not reported", ha="center", va="center",
                    color="#777777", fontsize=8)
            continue
        values = [v for _, v in points]
        if fraction:
            low, high = 0.0, 1.0
        elif key == "load":
            low, high = 0.0, max(max(values) * 1.1, 1.0)
        else:
            low, high = min(values) - 1, max(values) + 1
        ax.plot([left + x for x, _ in points], [(v - low) / (high - low) for v in values],
                color=ACCENT, linewidth=1.1)
        latest = _shown(values[-1], unit, fraction)
        spread = f"{_shown(min(values), unit, fraction)}–{_shown(max(values), unit, fraction)}"
        ax.text(left, 1.12, f"{label} {latest}", fontsize=8.5, fontweight="bold", va="bottom")
        ax.text(left + 1, 1.12, spread, fontsize=7.5, color="#555555", ha="right",
                va="bottom")
    hours = span / 3600
    ago = f"{hours:.0f} h ago" if hours >= 1.5 else f"{span / 60:.0f} min ago"
    for k in range(len(metrics)):
        ax.text(k * width, -0.08, ago, fontsize=7, color="#777777", va="top")
        ax.text(k * width + 1, -0.08, "now", fontsize=7, color="#777777", va="top",
                ha="right")
    ax.set_xlim(-0.01, len(metrics) * width - _GAP + 0.01)
    ax.set_ylim(-0.02, 1.02)
    return _svg(fig, name, title)
