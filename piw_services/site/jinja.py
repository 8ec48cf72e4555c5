"""The jinja environment of every page of the site, and the filters all of them use."""

from __future__ import annotations

from urllib.parse import quote

from jinja2 import ChoiceLoader, Environment, PackageLoader, StrictUndefined
from markupsafe import Markup


def file_href(filename: str) -> str:
    """A filename (or an odd project name) as a URL path segment: wheel names pass unchanged
    ("+" of local versions included), anything odd is percent-quoted so it cannot end the path
    or start a fragment."""
    return quote(filename, safe="+!~", errors="replace")


def human_duration(seconds: float | None) -> str:
    """A build time: "42 s", "3 min 5 s", "1 h 20 min"."""
    if seconds is None:
        return ""
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def finalize(value: object) -> object:
    """Every value a template prints: a lone surrogate (json.loads lets "\\ud800" through from
    upstream metadata) becomes "?" here, or writing the page as UTF-8 would fail."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            cleaned = value.encode("utf-8", "replace").decode("utf-8")
            return Markup(cleaned) if isinstance(value, Markup) else cleaned
    return value


def environment(package: str) -> Environment:
    """An environment for *package*'s ``templates``, which extend the site's ``base.html``:
    autoescape on (every value escaped exactly once, by the template), strict undefined."""
    env = Environment(
        loader=ChoiceLoader([PackageLoader(package, "templates"),
                             PackageLoader("piw_services.site", "templates")]),
        autoescape=True,
        finalize=finalize,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(file_href=file_href, human_duration=human_duration,
                       thousands=lambda n: f"{n:,}")
    return env
