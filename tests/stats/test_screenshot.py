"""Headless Chromium (Debian's chromium package, installed by ./run setup) loads /stats/ and
/status/ over HTTP from a www tree written by write_pages, and we check what it drew: a
non-trivial PNG whose chart area holds the charts' colour, and a DOM with the inline SVGs.
With PIW_UPDATE_DOCS=1 the screenshots are also saved as docs/stats.png and docs/status.png
(what the README shows)."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from piw_services.site.tree import TreeWriter
from piw_services.stats import pages
from piw_services.stats.model import Count, Series
from tests.conftest import free_port, wait_for
from tests.stats import sample

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DOCS = Path(__file__).resolve().parents[2] / "docs"
WIDTH, HEIGHT = 1000, 1800
ACCENT = (0xC5, 0x1A, 0x4A)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: ./run setup installs Debian's chromium")


#: Labels as long as real ones get: distros as os-release names them, long project names.
LONG_DISTROS = ("Debian GNU/Linux 12 (bookworm)", "Raspbian GNU/Linux 11 (bullseye)",
                "Ubuntu 24.04.1 LTS", "Debian GNU/Linux 13 (trixie)")
LONG_NAMES = ("opencv-contrib-python-headless", "types-backports.ssl-match-hostname",
              "WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW", "numpy")
#: Checks, in the browser, that every text of every chart lies inside its chart: a page
#: holding /stats/ or /status/ in a frame writes the texts that stick out into #out.
OVERFLOW_CHECK = """<!DOCTYPE html><html><body>
<iframe id="f" src="{page}" width="1000" height="1800"></iframe><pre id="out">pending</pre>
<script>
document.getElementById("f").onload = function () {{
  var out = [];
  this.contentDocument.querySelectorAll("svg.chart").forEach(function (svg) {{
    var box = svg.getBoundingClientRect();
    svg.querySelectorAll("text").forEach(function (t) {{
      var r = t.getBoundingClientRect();
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 ||
          r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5) {{ out.push(t.textContent); }}
    }});
  }});
  document.getElementById("out").textContent = JSON.stringify(out);
}};
</script></body></html>"""


def long_labels(report):
    """*report* with the labels of its bars and legends as long as real ones get."""
    def series(labels):
        points = report.distros[0].points
        return tuple(Series(label, tuple((d, n // (i + 2)) for d, n in points))
                     for i, label in enumerate(labels))
    return dataclasses.replace(
        report, distros=series(LONG_DISTROS),
        python_versions=series(("3.11.2 (main, Mar 13 2023)", "3.13.5", "3.9.2")),
        top_packages=tuple(Count(n, 1000 - i) for i, n in enumerate(LONG_NAMES)),
        installers=(Count("pip 25.1.1 (CPython 3.11.2)", 10), Count("uv 0.13.9", 5)))


def serve(root):
    """python -m http.server on *root*; its base URL (a generator for a fixture)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import urllib.request

        def up():
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/stats/", timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(up, timeout=20, what="http.server")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A www tree with both pages from a realistic report, served by python -m http.server."""
    root = tmp_path_factory.mktemp("www")
    pages.write_pages(TreeWriter(root), sample.stats_report(), sample.status_report())
    yield from serve(root)


@pytest.fixture(scope="module")
def long_site(tmp_path_factory):
    """Both pages with long labels, and a page each that checks them in the browser."""
    root = tmp_path_factory.mktemp("www-long")
    pages.write_pages(TreeWriter(root), long_labels(sample.stats_report()), sample.status_report())
    for page in ("stats", "status"):
        (root / f"check-{page}.html").write_text(OVERFLOW_CHECK.format(page=f"/{page}/"))
    yield from serve(root)


def chromium(tmp_path, *args):
    """Run headless chromium (no sandbox: tests may run as root in a container)."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def accent_pixels(png: Path, box: tuple[int, int, int, int]) -> int:
    """Pixels near the charts' raspberry colour inside *box* (left, top, right, bottom)."""
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == (WIDTH, HEIGHT)
        raw = image.convert("RGB").crop(box).tobytes()
    r0, g0, b0 = ACCENT
    return sum(1 for i in range(0, len(raw), 3)
               if abs(raw[i] - r0) < 40 and abs(raw[i + 1] - g0) < 40
               and abs(raw[i + 2] - b0) < 40)


@pytest.mark.parametrize("page", ["stats", "status"])
def test_screenshot_shows_the_charts(site, tmp_path, page):
    png = tmp_path / f"{page}.png"
    chromium(tmp_path, f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={png}",
             f"{site}/{page}/")
    assert png.stat().st_size > 50_000, "a page with charts is not a few bytes of PNG"
    # The first chart sits in the upper part of the page: the downloads bars on /stats/,
    # the master's sparklines on /status/; both are drawn in the accent colour (a blank
    # chart area has a few dozen such pixels, from badges).
    assert accent_pixels(png, (0, 200, WIDTH, 1000)) > 1_000
    if os.environ.get("PIW_UPDATE_DOCS"):
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(png, DOCS / f"{page}.png")


def test_dom_holds_the_inline_svgs(site, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", f"{site}/stats/").stdout
    assert dom.count("<svg") == 5 and "Downloads per day" in dom
    dom = chromium(tmp_path, "--dump-dom", f"{site}/status/").stdout
    assert dom.count("<svg") == 1 + len(sample.status_report().builders)
    assert "silent 45 min" in dom


@pytest.mark.parametrize("page", ["stats", "status"])
def test_every_chart_label_fits_its_chart(long_site, tmp_path, page):
    """Long legend entries and bar labels ("Debian GNU/Linux 12 (bookworm)") are drawn whole,
    inside the chart, in the browser's own font."""
    dom = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom",
                   f"{long_site}/check-{page}.html").stdout
    outside = json.loads(re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)[1])
    assert outside == [], f"texts drawn outside their chart on /{page}/: {outside}"
    if page == "stats":  # whole, not clipped to the legend's width
        svg = chromium(tmp_path, "--dump-dom", f"{long_site}/stats/").stdout
        assert all(label in svg for label in LONG_DISTROS[:3] + LONG_NAMES[:2])
