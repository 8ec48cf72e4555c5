"""The /stats/ and /status/ pages: strict HTML5, every hostile string escaped (in the HTML and
in the SVG text), empty reports drawn as "no data yet", silent builders marked, output
deterministic and fast."""

import time
from dataclasses import replace
from xml.etree import ElementTree

import html5lib
import pytest

from piw_services.site.tree import TreeWriter
from piw_services.stats import charts, pages
from piw_services.stats.model import Count, Reading
from tests.stats import sample


def strict_parse(page: str):
    """html5lib in strict mode raises on any HTML5 parse error (as tests/index does)."""
    return html5lib.HTMLParser(
        strict=True, tree=html5lib.getTreeBuilder("etree"), namespaceHTMLElements=False
    ).parse(page)


SVG = "{http://www.w3.org/2000/svg}"


def svgs(element) -> list:
    """The inline <svg> elements under *element* (html5lib puts them in the SVG namespace)."""
    return list(element.iter(f"{SVG}svg"))


def all_text(doc) -> str:
    return "".join(doc.itertext())


PAGES = {
    "stats": lambda hostile: pages.render_stats(sample.stats_report(hostile=hostile)),
    "status": lambda hostile: pages.render_status(sample.status_report(hostile=hostile)),
    "stats-empty": lambda hostile: pages.render_stats(sample.empty_stats_report()),
    "status-empty": lambda hostile: pages.render_status(sample.empty_status_report()),
}


@pytest.mark.parametrize("which", sorted(PAGES))
@pytest.mark.parametrize("hostile", [False, True])
def test_pages_are_strict_html5_and_self_contained(which, hostile):
    page = PAGES[which](hostile)
    doc = strict_parse(page)
    assert doc.find(".//header") is not None  # the index's base template
    for element in doc.iter():
        for attr in ("src", "href"):
            value = element.get(attr) or ""
            assert not value.startswith(("http:", "https:", "//")), (element.tag, value)
        assert element.tag != "script", "the stats pages need no script"
    assert svgs(doc), "every page has at least one chart (or its placeholder)"


@pytest.mark.parametrize("which", ["stats", "status"])
def test_hostile_strings_are_escaped(which):
    page = PAGES[which](True)
    assert "<script" not in page
    assert "&lt;script&gt;alert(" in page
    doc = strict_parse(page)
    assert sample.HOSTILE in all_text(doc)  # shown literally, as text
    assert doc.find(".//script") is None


def test_svg_text_of_hostile_labels_is_literal():
    """matplotlib would read "$x$" as mathtext (and a bad formula raises): labels are drawn
    literally, and XML-escaped inside the SVG."""
    svg = charts.ranked([Count(sample.HOSTILE, 3), Count(r"\frac $\frac$ x", 2)], "t", "n")
    root = ElementTree.fromstring(svg)
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert sample.HOSTILE in texts
    assert r"\frac $\frac$ x" in texts


def test_empty_reports_say_no_data_yet():
    stats = strict_parse(PAGES["stats-empty"](False))
    assert all_text(stats).count("no data yet") >= 4
    assert "No downloads yet." in all_text(stats)
    status = strict_parse(PAGES["status-empty"](False))
    assert "No builder has said hello yet." in all_text(status)
    assert "unknown" in all_text(status)  # behind upstream not known


def test_charts_are_inline_svg_and_each_builder_has_one():
    report = sample.status_report(builders=5)
    doc = strict_parse(pages.render_status(report))
    for b in report.builders:
        section = doc.find(f".//section[@id='b{b.id}']")
        assert section is not None
        (svg,) = svgs(section)
        assert svg.find(f"{SVG}title").text == f"Health of builder {b.label}"
        assert list(svg.iter(f"{SVG}path")), "the chart draws lines"
    stats = strict_parse(pages.render_stats(sample.stats_report()))
    titles = [s.find(f"{SVG}title").text for s in svgs(stats)]
    assert titles == ["Downloads per day", "Top packages, last 30 days",
                      "Python versions per day", "Distributions per day", "Architectures"]


def test_ids_are_unique_across_charts_of_a_page():
    doc = strict_parse(pages.render_status(sample.status_report()))
    ids = [e.get("id") for e in doc.iter() if e.get("id")]
    assert len(ids) == len(set(ids))


def test_status_marks_silent_builders():
    report = sample.status_report(builders=4)
    doc = strict_parse(pages.render_status(report))
    marked = {row.get("id") for row in doc.iter("tr")
              if row.find(".//span[@class='badge yanked silent']") is not None}
    assert marked == {"builder-4"}  # the last one has been silent 45 min (limit 10 min)
    assert "1 of 4 builders silent" in all_text(doc)
    gone = replace(report, builders=tuple(replace(b, state="gone") for b in report.builders))
    doc = strict_parse(pages.render_status(gone))
    assert "4 of 4 builders silent" in all_text(doc)


def test_status_marks_paused_builders():
    """A builder an operator paused (its heartbeat says so) is shown paused, a silent one
    silent still."""
    report = sample.status_report(builders=4)
    builders = tuple(replace(b, paused=True) for b in report.builders)
    doc = strict_parse(pages.render_status(replace(report, builders=builders)))
    paused = {row.get("id") for row in doc.iter("tr")
              if row.find(".//span[@class='badge pre']") is not None}
    assert paused == {"builder-1", "builder-2", "builder-3"}  # builder-4 is silent


def test_status_says_what_upstream_refuses_and_how_many_rows_were_malformed():
    report = sample.status_report(builders=1)
    quiet = all_text(strict_parse(pages.render_status(report)))
    assert "refuses" not in quiet and "Malformed upstream rows" in quiet
    master = replace(report.master, upstream_problem="upstream refuses changelog_since_serial: "
                     "fault -32500: RuntimeError: This API has been deprecated.",
                     malformed_rows=3, malformed_latest=((9, "unknown action 'frobnicate'"),))
    text = all_text(strict_parse(pages.render_status(replace(report, master=master))))
    assert "upstream refuses changelog_since_serial: fault -32500" in text
    assert "serial 9: unknown action 'frobnicate'" in text


def test_a_board_without_a_thermometer_says_so():
    report = sample.status_report(builders=1)
    b = report.builders[0]
    b = replace(b, readings=tuple(replace(r, cpu_temperature=None) for r in b.readings))
    page = pages.render_status(replace(report, builders=(b,)))
    assert "not reported" in page


def test_a_single_reading_draws():
    r = Reading(at=sample.NOW, cpu_temperature=50.0, load1=0.1, memory_used=0.2,
                disk_used=0.3)
    assert "<svg" in charts.readings([r], sample.NOW, "t", "n")


def test_output_is_deterministic_and_unchanged_pages_are_not_rewritten(tmp_path):
    first = pages.render_stats(sample.stats_report()), pages.render_status(sample.status_report())
    again = pages.render_stats(sample.stats_report()), pages.render_status(sample.status_report())
    assert first == again
    tree = TreeWriter(tmp_path)
    pages.write_pages(tree, sample.stats_report(), sample.status_report())
    stamp = [(tmp_path / p).stat().st_mtime_ns for p in (pages.STATS_PAGE, pages.STATUS_PAGE)]
    assert (tmp_path / pages.STATS_PAGE).read_text() == first[0]
    time.sleep(0.01)
    pages.write_pages(tree, sample.stats_report(), sample.status_report())
    assert stamp == [(tmp_path / p).stat().st_mtime_ns
                     for p in (pages.STATS_PAGE, pages.STATUS_PAGE)]
    assert not [p for p in tmp_path.rglob(".*.tmp")]


def test_both_pages_render_every_builder_of_a_large_status():
    """Ten builders with six hours of minutely readings each; how long it takes is bench/stats'
    business ("stats and status HTML pages")."""
    status = sample.status_report(builders=10)
    html = pages.render_status(status)
    assert all(f"pi{i:02d}" in html for i in range(1, 11))
    assert "<svg" in pages.render_stats(sample.stats_report())
