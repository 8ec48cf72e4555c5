"""Pages as a browser shows them: headless Chromium (Debian's chromium, installed by ./run
setup) against the web service."""

import re

import pytest

from piw_services.index import render
from piw_services.index.model import SiteInfo
from tests.stats.test_screenshot import CHROMIUM, chromium
from tests.web.conftest import LOG_TEXT, LOG_URL, write

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: ./run setup installs Debian's chromium")


def test_home_page_pip_conf_names_this_server_without_a_base_url(www, web, tmp_path):
    write(www / "index.html", render.home_html(SiteInfo("", projects=1, files=1)))
    dom = chromium(tmp_path, "--dump-dom", web + "/").stdout
    conf = re.search(r"extra-index-url=(.*?)</code>", dom, re.S)[1]
    assert re.sub(r"<[^>]+>", "", conf) == f"{web}/simple/", conf


def test_a_build_log_shows_as_text(web, tmp_path):
    """Chromium asks with Accept-Encoding: gzip and shows the text (a download would leave
    the page empty)."""
    dom = chromium(tmp_path, "--dump-dom", web + LOG_URL).stdout
    assert "Building wheel for foo-bar (pyproject.toml): finished ✓" in dom
    assert dom.count("Collecting foo-bar") == LOG_TEXT.count("Collecting foo-bar")
