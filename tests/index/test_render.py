"""The pure page renderers: valid HTML5 (strict), PEP 691/700 JSON, and simple pages that pip
itself reads the way we mean them, including hostile data."""

import json
import time
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from urllib.parse import quote
from xml.etree import ElementTree

import html5lib
import jsonschema
import pytest
from jinja2 import Environment
from packaging.version import Version

from piw_services.index import render
from piw_services.index.model import (
    BuildStatus,
    IndexFile,
    PackageSummary,
    Project,
    ShownVersion,
    SiteInfo,
)
from tests.index.pep691 import validate

T0 = datetime(2026, 11, 23, 15, 4, 5, 123456, tzinfo=UTC)
HOSTILE_SUMMARY = '<script>alert("x")</script> & </p><!-- "quoted" \'single\''
HOSTILE_REASON = 'broke "everything" & <more> \'really\''
SITE = SiteInfo("https://piw.example", projects=123456, files=7890123, abis=("cp311", "cp313"))


def sha(n: int) -> str:
    return f"{n:064x}"


def wheel(name, version, abi="cp311", **kw):
    kw.setdefault("sha256", sha(hash((name, version, abi)) & (2**256 - 1)))
    kw.setdefault("size", 123_456)
    kw.setdefault("upload_time", T0)
    kw.setdefault("requires_python", None)
    kw.setdefault("metadata_sha256", None)
    filename = f"{name}-{version}-{abi}-{abi}-linux_armv7l.whl"
    return IndexFile(filename=filename, abi=abi, **kw)


@pytest.fixture
def project():
    """Odd display name, a script in the summary, every yank and metadata case."""
    return Project(
        name="foo-bar-baz",
        display_name="Foo.Bar_baz",
        summary=HOSTILE_SUMMARY,
        downloads_30d=12345,
        downloads_all=9876543,
        downloads_per_day=((datetime(2026, 11, 22).date(), 5), (datetime(2026, 11, 23).date(), 7)),
        versions=(
            ShownVersion(
                "2.0rc1", T0, prerelease=True,
                builds=(BuildStatus("cp311", "pending"),),
            ),
            ShownVersion(
                "1.10", T0 - timedelta(days=3), prerelease=False,
                builds=(
                    BuildStatus("cp311-linux_armv7l", "built", duration=75.5, armv6=True),
                    BuildStatus("cp313-linux_aarch64", "failed",
                                note="gcc: internal error & <oops>",
                                duration=3601, log_url="/logs/0000/1234.txt.gz"),
                    BuildStatus("cp311-linux_aarch64", "pending"),
                ),
                files=(
                    wheel("foo_bar_baz", "1.10", "cp311", requires_python="<4,>=3.9",
                          metadata_sha256=sha(0xABC),
                          apt_depends=("libssl3", "libffi8"),
                          unresolved=("libweird.so.7",)),
                    wheel("foo_bar_baz", "1.10", "cp39", requires_python=">=3.9",
                          yanked=True, yanked_reason=HOSTILE_REASON, size=5 * 1024 * 1024),
                ),
            ),
            ShownVersion(
                "1.9", T0 - timedelta(days=30), prerelease=False, yanked=True,
                yanked_reason=None,
                builds=(BuildStatus("cp311-linux_armv7l", "built", duration=4.2, armv6=True),
                        BuildStatus("cp313-linux_aarch64", "skipped",
                                    note="needs Python <3.12")),
                files=(wheel("foo_bar_baz", "1.9", "cp311", size=900),),
            ),
            ShownVersion("1.2", None, prerelease=False, skip="binary-only upstream"),
        ),
    )


def strict_parse(page: str):
    """html5lib in strict mode raises on any HTML5 parse error."""
    return html5lib.HTMLParser(
        strict=True, tree=html5lib.getTreeBuilder("etree"), namespaceHTMLElements=False
    ).parse(page)


class Anchors(HTMLParser):
    """The anchors of a page as Python's own html.parser sees them (attributes unescaped)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.anchors = []
        self._current = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._current = {"attrs": dict(attrs), "text": ""}
            self.anchors.append(self._current)

    def handle_data(self, data):
        if self._current is not None:
            self._current["text"] += data

    def handle_endtag(self, tag):
        if tag == "a":
            self._current = None


def anchors_of(page: str):
    parser = Anchors()
    parser.feed(page)
    parser.close()
    return parser.anchors


def pip_links(page: str, content_type: str, url="https://piw.example/simple/foo-bar-baz/"):
    """pip's own parser for simple pages (HTML or JSON)."""
    collector = pytest.importorskip("pip._internal.index.collector")
    content = collector.IndexContent(
        page.encode("utf-8"), content_type, "utf-8", url, cache_link_parsing=False
    )
    return {link.filename: link for link in collector.parse_links(content)}


HOSTILE_NAMES = ["a.b", "x_y", "Odd Name", 'q"uote', "amp&er", "<tag>", "ünï"]


def all_html_pages(project):
    empty = Project(name="empty", display_name="Empty")
    return {
        "root": render.simple_root_html(["a", "b-c", "zope-interface", "0"]),
        "root-empty": render.simple_root_html([]),
        "root-hostile": render.simple_root_html(HOSTILE_NAMES),
        "simple-project": render.simple_project_html(project),
        "simple-empty": render.simple_project_html(empty),
        "project": render.project_html(project, SITE),
        "project-empty": render.project_html(empty, SiteInfo("")),
        "home": render.home_html(SITE),
        "home-relative": render.home_html(SiteInfo("")),
        "home-hostile": render.home_html(SiteInfo('https://x.example/"><script>', abis=("<b>",))),
        "faq": render.faq_html(SITE),
        "faq-hostile": render.faq_html(SiteInfo('https://x.example/"><script>', abis=("<b>",))),
        "json-api": render.json_api_html(SITE),
        "404": render.not_found_html(SITE),
    }


# --- every page -----------------------------------------------------------------------------


@pytest.mark.parametrize("which", [
    "root", "root-empty", "root-hostile", "simple-project", "simple-empty", "project",
    "project-empty", "home", "home-relative", "home-hostile", "faq", "faq-hostile", "json-api",
    "404",
])
def test_html_pages_are_strict_html5_with_nothing_external(project, which):
    page = all_html_pages(project)[which]
    assert page.startswith("<!DOCTYPE html>\n")
    doc = strict_parse(page)
    assert doc.find(".//head/meta[@charset='utf-8']") is not None
    for element in doc.iter():
        assert element.tag not in ("link", "iframe", "img", "object")
        if element.tag == "script":
            assert "src" not in element.attrib
            assert "alert" not in (element.text or "")  # no hostile data became a script
    assert "<script>alert" not in page and "<tag>" not in page and "<b>" not in page


def test_json_pages_are_valid_json_and_schema(project):
    validate(json.loads(render.simple_root_json(["a", "b-c"])), "project-list")
    validate(json.loads(render.simple_root_json(HOSTILE_NAMES)), "project-list")
    validate(json.loads(render.simple_root_json([])), "project-list")
    validate(json.loads(render.simple_project_json(project)), "project-detail")
    validate(json.loads(render.simple_project_json(Project("empty", "Empty"))), "project-detail")
    json.loads(render.project_json(project))
    json.loads(render.packages_json([PackageSummary("a", HOSTILE_SUMMARY)]))


def test_schema_rejects_what_it_should():
    """The schema is not vacuous."""
    good = {"meta": {"api-version": "1.1"}, "name": "a", "versions": ["1"], "files": [
        {"filename": "a-1-py3-none-any.whl", "url": "a-1-py3-none-any.whl",
         "hashes": {"sha256": sha(1)}, "size": 1, "upload-time": "2026-01-01T00:00:00Z"}]}
    validate(good, "project-detail")
    for breakage in (
        lambda d: d.pop("versions"),
        lambda d: d["meta"].update({"api-version": "1.0"}),
        lambda d: d.update({"name": "Not_Normal"}),
        lambda d: d["files"][0].pop("size"),
        lambda d: d["files"][0].update({"upload-time": "2026-01-01 00:00:00"}),
        lambda d: d["files"][0].update({"yanked": None}),
        lambda d: d["files"][0].update({"core-metadata": {"sha256": "XYZ"}}),
        lambda d: d["files"][0]["hashes"].update({"sha256": sha(0xABC).upper()}),
    ):
        bad = json.loads(json.dumps(good))
        breakage(bad)
        with pytest.raises(jsonschema.ValidationError):
            validate(bad, "project-detail")


# --- the simple root --------------------------------------------------------------------------


def test_simple_root_html_is_what_a_template_loop_gives():
    """The joined fast path (canonical names) and the escaping path both match the obvious
    jinja2 loop, which is what the docstring promises."""
    loop = Environment(autoescape=True).from_string(
        "{% for n in names %}    <a href=\"{{ n | urlencode }}/\">{{ n }}</a>\n{% endfor %}"
    )
    for names in (["a", "b-c", "zope-interface", "0", "x.y_z"], HOSTILE_NAMES[:-1]):
        page = render.simple_root_html(names)
        body = page.split("<body>\n", 1)[1].split("  </body>", 1)[0]
        assert body == loop.render(names=names)
        assert [(a["attrs"]["href"], a["text"]) for a in anchors_of(page)] == [
            (quote(n) + "/", n) for n in names
        ]
    assert '<meta name="pypi:repository-version" content="1.1">' in page


def test_simple_root_json():
    assert json.loads(render.simple_root_json(["a", "b-c"])) == {
        "meta": {"api-version": "1.1"}, "projects": [{"name": "a"}, {"name": "b-c"}]
    }
    assert [p["name"] for p in json.loads(render.simple_root_json(HOSTILE_NAMES))["projects"]] \
        == HOSTILE_NAMES


def test_simple_root_500k_names():
    names = [f"project-{i:06d}" for i in range(500_000)]
    start = time.perf_counter()
    page = render.simple_root_html(names)
    html_time = time.perf_counter() - start
    start = time.perf_counter()
    doc = render.simple_root_json(names)
    json_time = time.perf_counter() - start
    print(f"\n500k root: HTML {html_time:.3f} s ({len(page) / 1e6:.1f} MB), "
          f"JSON {json_time:.3f} s ({len(doc) / 1e6:.1f} MB)")
    assert page.count("<a href=") == 500_000
    assert page.count("</a>") == 500_000
    assert '    <a href="project-123456/">project-123456</a>\n' in page
    data = json.loads(doc)
    assert len(data["projects"]) == 500_000
    assert data["projects"][123456] == {"name": "project-123456"}


# --- the simple project page -------------------------------------------------------------------


def test_simple_project_html_attributes(project):
    page = render.simple_project_html(project)
    assert '<meta name="pypi:repository-version" content="1.1">' in page
    # escaped exactly once in the source, unescaped exactly once by a parser
    assert 'data-requires-python="&lt;4,&gt;=3.9"' in page
    assert 'data-requires-python="&gt;=3.9"' in page
    assert "&amp;lt;" not in page and "&amp;gt;" not in page

    anchors = {a["text"]: a["attrs"] for a in anchors_of(page)}
    files = {f.filename: f for f in project.files}
    assert list(anchors) == sorted(files)  # one anchor per file, text is the filename, sorted
    for filename, attrs in anchors.items():
        f = files[filename]
        assert attrs["href"] == f"{filename}#sha256={f.sha256}"
        assert attrs.get("data-requires-python") == f.requires_python
        if f.metadata_sha256:
            assert attrs["data-core-metadata"] == f"sha256={f.metadata_sha256}"
            assert attrs["data-dist-info-metadata"] == f"sha256={f.metadata_sha256}"
        else:
            assert "data-core-metadata" not in attrs
            assert "data-dist-info-metadata" not in attrs
    by_version = {f.filename.split("-")[1]: anchors[f.filename] for f in project.files}
    assert "data-yanked" not in anchors[project.versions[1].files[0].filename]
    assert anchors[project.versions[1].files[1].filename]["data-yanked"] == HOSTILE_REASON
    assert by_version["1.9"]["data-yanked"] == ""  # the release is yanked, without a reason
    assert 'data-yanked=""' in page


def test_simple_project_html_through_pips_parser(project):
    links = pip_links(render.simple_project_html(project), "text/html")
    assert set(links) == {f.filename for f in project.files}
    cp311, cp39 = project.versions[1].files
    link = links[cp311.filename]
    assert link.url == f"https://piw.example/simple/foo-bar-baz/{cp311.filename}#sha256={cp311.sha256}"
    assert link.hash_name == "sha256" and link.hash == cp311.sha256
    assert link.requires_python == "<4,>=3.9"
    assert not link.is_yanked
    assert link.metadata_file_data is not None
    assert link.metadata_file_data.hashes == {"sha256": cp311.metadata_sha256}
    assert link.metadata_link().url.endswith(f"/{cp311.filename}.metadata")
    assert links[cp39.filename].is_yanked
    assert links[cp39.filename].yanked_reason == HOSTILE_REASON
    assert links[cp39.filename].metadata_file_data is None
    old = links[project.versions[2].files[0].filename]
    assert old.is_yanked and old.yanked_reason == ""
    assert old.requires_python is None


def test_simple_project_json(project):
    data = json.loads(render.simple_project_json(project))
    validate(data, "project-detail")
    assert set(data) == {"meta", "name", "files", "versions"}
    assert data["meta"] == {"api-version": "1.1"}
    assert data["name"] == "foo-bar-baz"
    # PEP 700: every version, including those without files, sorted by packaging's order
    assert data["versions"] == ["1.2", "1.9", "1.10", "2.0rc1"]
    assert [f["filename"] for f in data["files"]] == sorted(f.filename for f in project.files)
    files = {f["filename"]: f for f in data["files"]}
    cp311, cp39 = project.versions[1].files
    assert files[cp311.filename] == {
        "filename": cp311.filename,
        "url": cp311.filename,
        "hashes": {"sha256": cp311.sha256},
        "requires-python": "<4,>=3.9",
        "yanked": False,
        "core-metadata": {"sha256": cp311.metadata_sha256},
        "data-dist-info-metadata": {"sha256": cp311.metadata_sha256},
        "size": 123_456,
        "upload-time": "2026-11-23T15:04:05.123456Z",
    }
    assert files[cp39.filename]["yanked"] == HOSTILE_REASON
    assert files[cp39.filename]["core-metadata"] is False
    assert files[cp39.filename]["data-dist-info-metadata"] is False
    # PEP 714: the key pip 22.3-23.1 (Debian bookworm's 23.0.1) crashes on is never served
    assert not [f for f in files.values() if "dist-info-metadata" in f]
    old = files[project.versions[2].files[0].filename]
    assert old["yanked"] is True
    assert "requires-python" not in old
    for f in data["files"]:  # PEP 700
        assert isinstance(f["size"], int)
        assert datetime.fromisoformat(f["upload-time"]) == T0

    links = pip_links(render.simple_project_json(project), "application/vnd.pypi.simple.v1+json")
    assert links[cp311.filename].url == f"https://piw.example/simple/foo-bar-baz/{cp311.filename}"
    assert links[cp311.filename].requires_python == "<4,>=3.9"
    assert links[cp311.filename].metadata_file_data.hashes == {"sha256": cp311.metadata_sha256}
    assert links[cp39.filename].yanked_reason == HOSTILE_REASON


def test_simple_pages_odd_filenames_and_versions():
    """A local version's "+" stays, a character that would end the path is quoted; versions
    packaging cannot parse sort first instead of failing the page."""
    f = wheel("odd", "1.0+local.1", sha256=sha(5))
    g = IndexFile("odd-1.0 #x.whl", sha(6), 1, T0, None, None)
    project = Project("odd", "odd", versions=(
        ShownVersion("1.0+local.1", T0, False, files=(f, g)),
        ShownVersion("0.9", T0, False),
        ShownVersion("not a version", None, False),
    ))
    page = render.simple_project_html(project)
    anchors = {a["text"]: a["attrs"]["href"] for a in anchors_of(page)}
    assert anchors[f.filename] == f"{f.filename}#sha256={f.sha256}"
    assert anchors["odd-1.0 #x.whl"] == f"odd-1.0%20%23x.whl#sha256={sha(6)}"
    links = pip_links(render.simple_project_html(project), "text/html")
    assert links["odd-1.0 #x.whl"].hash == sha(6)
    data = json.loads(render.simple_project_json(project))
    validate(data, "project-detail")
    assert data["versions"] == ["not a version", "0.9", "1.0+local.1"]


def test_upload_time_is_utc_with_z():
    cest = timezone(timedelta(hours=2))
    assert render._iso(datetime(2026, 6, 1, 12, 0, tzinfo=cest)) == "2026-06-01T10:00:00.000000Z"
    assert render._iso(datetime(2026, 6, 1, 12, 0)) == "2026-06-01T12:00:00.000000Z"
    assert render._iso(None) is None


# --- the human pages --------------------------------------------------------------------------


def text_of(element) -> str:
    return " ".join("".join(element.itertext()).split())


def test_project_html(project):
    page = render.project_html(project, SITE)
    doc = strict_parse(page)
    main = doc.find(".//main")
    assert text_of(main.find("h1")) == "Foo.Bar_baz"
    assert text_of(main.find(".//p[@class='summary']")) == " ".join(HOSTILE_SUMMARY.split())
    assert "12,345" in text_of(main) and "9,876,543" in text_of(main)
    assert "pip install foo-bar-baz" in [text_of(p) for p in main.iter("pre")]

    sections = main.findall("section")
    assert [s.get("id") for s in sections] == ["v2.0rc1", "v1.10", "v1.9", "v1.2"]  # as given
    rc, v110, v19, v12 = sections
    assert text_of(rc.find("h2")) == "2.0rc1 pre-release"
    assert text_of(v19.find("h2")) == "1.9 yanked"
    assert "no reason given" in text_of(v19)
    assert "Not built: binary-only upstream" in text_of(v12)
    assert v12.find(".//table") is None

    builds = [[text_of(td) for td in tr.findall("td")]
              for tr in v110.findall(".//table[@class='builds']/tbody/tr")]
    # status per target: ABI and platform (armv7l wheels also serve armv6l)
    assert builds == [
        ["cp311", "linux_armv7l (also armv6l)", "built", "1 min 16 s", ""],
        ["cp313", "linux_aarch64", "failed (log)", "1 h 0 min", "gcc: internal error & <oops>"],
        ["cp311", "linux_aarch64", "pending", "", ""],
    ]
    log = v110.find(".//table[@class='builds']//a")
    assert log.get("href") == "/logs/0000/1234.txt.gz"
    assert [[text_of(td) for td in tr.findall("td")][:3]
            for tr in v19.findall(".//table[@class='builds']/tbody/tr")] == [
        ["cp311", "linux_armv7l (also armv6l)", "built"],
        ["cp313", "linux_aarch64", "skipped"]]
    assert "needs Python <3.12" in text_of(v19)
    assert "pending" in text_of(rc)

    rows = v110.findall(".//table[@class='files']/tbody/tr")
    assert len(rows) == 2
    cp311, cp39 = project.versions[1].files
    first = [text_of(td) for td in rows[0].findall("td")]
    link = rows[0].find("td/a")
    assert text_of(link) == cp311.filename
    assert link.get("href") == f"https://piw.example/simple/foo-bar-baz/{cp311.filename}"
    assert cp311.sha256 in first[0]
    assert first[1] == "120.6 KiB"
    assert first[2] == "<4,>=3.9"
    assert "sudo apt install libssl3 libffi8" in first[3]
    assert rows[0].find(".//*[@class='unresolved']") is not None
    assert "libweird.so.7" in first[3]
    second = [text_of(td) for td in rows[1].findall("td")]
    assert "yanked" in second[0] and second[1] == "5.0 MiB"
    assert "sudo apt" not in second[3] and rows[1].find(".//*[@class='unresolved']") is None
    assert [text_of(td) for td in v19.findall(".//table[@class='files']/tbody/tr/td")][1] \
        == "900 B"


def test_a_project_without_wheels_says_why_and_links_no_simple_page():
    failed = Project("broken-pkg", "Broken.Pkg", versions=(
        ShownVersion("0.2", T0, False, builds=(
            BuildStatus("cp311-linux_armv7l", "failed", log_url="/logs/broken-pkg/7.log"),
            BuildStatus("cp311-linux_aarch64", "failed", log_url="/logs/broken-pkg/8.log"))),
        ShownVersion("0.1", T0, False, files=())))
    main = strict_parse(render.project_html(failed, SITE)).find(".//main")
    hrefs = [a.get("href") for a in main.iter("a")]
    assert not [h for h in hrefs if "/simple/" in h], hrefs  # there is no simple page
    assert "https://piw.example/project/broken-pkg/json/" in hrefs
    assert not list(main.iter("pre"))  # no pip line that cannot work
    why = main.find(".//p[@class='no-wheel']")
    assert text_of(why) == ("No wheel of Broken.Pkg is available here: the build of 0.2 failed "
                            "(build log for cp311-linux_armv7l, build log for "
                            "cp311-linux_aarch64).")
    assert [a.get("href") for a in why.iter("a")] == ["/logs/broken-pkg/7.log",
                                                      "/logs/broken-pkg/8.log"]
    for versions, said in [
            ((), "it has no versions yet"),
            ((ShownVersion("1.0", T0, False, skip="binary-only upstream"),),
             "1.0 is not built (binary-only upstream)"),
            ((ShownVersion("1.0", T0, False, builds=(
                BuildStatus("cp311-linux_armv7l", "pending"),)),), "1.0 is still to be built"),
            ((ShownVersion("1.0", T0, False, builds=(BuildStatus(
                "cp311-linux_armv7l", "skipped", note="needs Python >=3.99"),)),),
             "1.0 is not built (needs Python >=3.99)")]:
        page = strict_parse(render.project_html(Project("p", "p", versions=versions), SITE))
        assert text_of(page.find(".//p[@class='no-wheel']")) == \
            f"No wheel of p is available here: {said}.", versions


def test_project_html_refuses_script_urls():
    project = Project("p", "p", versions=(ShownVersion("1", None, False, builds=(
        BuildStatus("cp311", "failed", log_url="javascript:alert(1)"),)),))
    page = render.project_html(project, SITE)
    assert "javascript:" not in page
    strict_parse(page)


def test_project_json(project):
    data = json.loads(render.project_json(project))
    assert list(data) == ["package", "summary", "pypi_url", "piwheels_url", "releases",  # piwheels'
                          "name", "display_name", "downloads", "versions"]  # ours
    assert data["name"] == "foo-bar-baz" and data["display_name"] == "Foo.Bar_baz"
    assert data["summary"] == HOSTILE_SUMMARY
    assert data["downloads"] == {"30d": 12345, "all": 9876543,
                                 "per_day": [["2026-11-22", 5], ["2026-11-23", 7]]}
    assert [v["version"] for v in data["versions"]] == ["2.0rc1", "1.10", "1.9", "1.2"]
    rc, v110, v19, v12 = data["versions"]
    assert rc["prerelease"] is True and rc["released"] == "2026-11-23T15:04:05.123456Z"
    assert v19["yanked"] is True and v19["yanked_reason"] is None
    assert v12["skip"] == "binary-only upstream" and v12["released"] is None
    assert v12["builds"] == [] and v12["files"] == []
    assert v110["builds"][1] == {
        "target": "cp313-linux_aarch64", "abi": "cp313", "platform": "linux_aarch64",
        "state": "failed", "note": "gcc: internal error & <oops>",
        "duration": 3601, "log_url": "/logs/0000/1234.txt.gz", "armv6": False,
    }
    assert [(b["abi"], b["platform"], b["state"]) for b in v110["builds"]] == [
        ("cp311", "linux_armv7l", "built"), ("cp313", "linux_aarch64", "failed"),
        ("cp311", "linux_aarch64", "pending")]
    cp311 = project.versions[1].files[0]
    assert v110["files"][0] == {
        "filename": cp311.filename,
        "url": f"/simple/foo-bar-baz/{cp311.filename}",
        "size": 123_456,
        "sha256": cp311.sha256,
        "requires_python": "<4,>=3.9",
        "apt_depends": ["libssl3", "libffi8"],
        "unresolved": ["libweird.so.7"],
        "target": "cp311",
        "upload_time": "2026-11-23T15:04:05.123456Z",
    }


def test_home_html():
    page = render.home_html(SITE)
    doc = strict_parse(page)
    main = doc.find(".//main")
    assert "[global]\nextra-index-url=https://piw.example/simple/" in [
        "".join(p.itertext()) for p in main.iter("pre")
    ]
    assert "123,456 projects" in text_of(main) and "7,890,123 files" in text_of(main)
    assert "Raspberry Pi" in text_of(main)
    assert "https://piw.example/simple/" in [a.get("href") for a in main.iter("a")]
    assert main.find(".//input[@id='q']") is not None
    script = "".join(s.text for s in doc.iter("script"))
    assert '"/packages.json"' in script and "textContent" in script
    assert "innerHTML" not in script  # summaries never become markup
    # no base URL: never a relative pip.conf line; the browser puts in the server it reached
    relative = strict_parse(render.home_html(SiteInfo("")))
    [conf] = ["".join(p.itertext()) for p in relative.iter("pre")]
    assert conf == "[global]\nextra-index-url=http://<this server>/simple/"
    assert relative.find(".//span[@id='origin']") is not None
    assert "location.origin" in "".join(s.text for s in relative.iter("script"))


def test_project_html_lists_pip_dependencies_with_links():
    f = wheel("p", "1", requires_dist=("Requests>=2", "pytest; extra == 'test'", "six"))
    page = render.project_html(Project("p", "p", versions=(ShownVersion("1", T0, False,
                                                                       files=(f,)),)), SITE)
    cell = [td for td in strict_parse(page).iter("td")
            if td.find(".//p[@class='pip']") is not None]
    [pip] = [c.find(".//p[@class='pip']") for c in cell]
    assert text_of(pip) == "pip: requests, six"
    assert [a.get("href") for a in pip.iter("a")] == [
        "https://piw.example/project/requests/", "https://piw.example/project/six/"]
    assert "none" not in text_of(cell[0])


def test_faq_and_json_api_pages():
    faq = strict_parse(render.faq_html(SITE))
    text = text_of(faq.find(".//main"))
    assert "[global]\nextra-index-url=https://piw.example/simple/" in [
        "".join(p.itertext()) for p in faq.iter("pre")]
    for words in ("armv6l", "armv7l", "aarch64", "piw-remove", "cp311"):
        assert words in text
    assert "https://piw.example/json.html" in [a.get("href") for a in faq.iter("a")]
    api = text_of(strict_parse(render.json_api_html(SITE)).find(".//main"))
    for key in ("pip_dependencies", "skip_reason", "https://piw.example/project/numpy/json/",
                "https://piw.example/packages.json", "for pkg, d_month, d_all, *_ in"):
        assert key in api
    for page in (render.home_html(SITE), render.project_html(Project("p", "p"), SITE)):
        links = [a.get("href") for a in strict_parse(page).iter("a")]
        assert "https://piw.example/faq.html" in links and "https://piw.example/json.html" in links


def test_404_page_has_a_search_box_the_home_page_answers():
    doc = strict_parse(render.not_found_html(SITE))
    [form] = doc.iter("form")
    assert form.get("action") == "https://piw.example/" and form.get("method") == "get"
    assert [i.get("name") for i in form.iter("input")] == ["q"]
    script = "".join(s.text for s in strict_parse(render.home_html(SITE)).iter("script"))
    assert 'URLSearchParams(window.location.search).get("q")' in script


def test_sitemaps(monkeypatch):
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    monkeypatch.setattr(render, "SITEMAP_LINKS", 2)
    files = render.sitemaps("https://piw.example", ["a", "b-c", "d"], "2026-12-03")
    assert sorted(files) == ["sitemap.xml", "sitemap0.xml", "sitemap1.xml", "sitemap2.xml"]
    index = ElementTree.fromstring(files["sitemap.xml"].encode())
    assert [e.text for e in index.findall("s:sitemap/s:loc", ns)] == [
        f"https://piw.example/sitemap{n}.xml" for n in range(3)]
    assert {e.text for e in index.findall("s:sitemap/s:lastmod", ns)} == {"2026-12-03"}
    locs = {name: [e.text for e in ElementTree.fromstring(text.encode()).findall(
        "s:url/s:loc", ns)] for name, text in files.items() if name != "sitemap.xml"}
    assert locs["sitemap0.xml"][:3] == ["https://piw.example/", "https://piw.example/faq.html",
                                        "https://piw.example/json.html"]
    assert locs["sitemap1.xml"] == ["https://piw.example/project/a/",
                                    "https://piw.example/project/b-c/"]
    assert locs["sitemap2.xml"] == ["https://piw.example/project/d/"]
    odd = render.sitemaps("https://x.example/?a=1&b=<2>", [], "2026-12-03")
    ElementTree.fromstring(odd["sitemap0.xml"].encode())  # escaped: still XML
    assert list(render.sitemaps("", [], "2026-12-03")) == ["sitemap0.xml", "sitemap.xml"]


def test_home_html_escapes_base_url_in_script():
    page = render.home_html(SiteInfo("https://x.example/</script><b>"))
    doc = strict_parse(page)
    assert len(list(doc.iter("script"))) == 1
    assert doc.find(".//b") is None


def test_packages_json():
    rows = [PackageSummary("numpy", "Arrays", 100, 1000), PackageSummary("x", None),
            PackageSummary("evil", HOSTILE_SUMMARY, 1, 2)]
    doc = render.packages_json(rows)
    assert json.loads(doc) == [["numpy", 100, 1000, "Arrays"], ["x", 0, 0, ""],
                               ["evil", 1, 2, HOSTILE_SUMMARY]]
    assert " " not in doc.replace(HOSTILE_SUMMARY.replace('"', '\\"'), "")  # compact
    assert render.packages_json([]) == "[]"


def test_lone_surrogates_cannot_break_the_writer():
    """Upstream JSON may decode to a lone surrogate; every page still encodes as UTF-8."""
    bad = "bad \ud800 text"
    f = IndexFile("s-1-py3-none-any.whl", sha(1), 1, T0, bad, None, yanked=True,
                  yanked_reason=bad, apt_depends=(bad,))
    project = Project("s", bad, bad, (ShownVersion("1", T0, False, skip=bad, files=(f,)),))
    for page in (render.simple_project_html(project), render.project_html(project, SITE),
                 render.simple_root_html(["s", bad]), render.home_html(SiteInfo(bad))):
        assert "bad ? text" in page
        strict_parse(page.encode("utf-8").decode("utf-8"))
    for doc in (render.simple_project_json(project), render.project_json(project),
                render.simple_root_json([bad]), render.packages_json([PackageSummary(bad, bad)])):
        assert json.loads(doc.encode("utf-8"))


def test_human_size():
    assert [render.human_size(n) for n in (0, 1023, 1024, 1536, 1024**2 * 3, 1024**3 * 5)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "3.0 MiB", "5.0 GiB"]


# --- a big project page ------------------------------------------------------------------------


def test_big_project_page_times():
    """~50 versions with 4 files each: print how long each page takes (no timing assert)."""
    versions = tuple(
        ShownVersion(
            f"1.{i}", T0, prerelease=False,
            builds=tuple(BuildStatus(abi, "built", duration=60.0) for abi in ("cp39", "cp311",
                                                                            "cp313", "cp314")),
            files=tuple(wheel("big", f"1.{i}", abi, requires_python=">=3.9",
                              metadata_sha256=sha(i), apt_depends=("libc6", "libssl3"))
                        for abi in ("cp39", "cp311", "cp313", "cp314")),
        )
        for i in range(50, 0, -1)
    )
    project = Project("big", "Big", "A big one", versions)
    assert len(project.files) == 200
    timings = {}
    for label, fn in (("simple html", lambda: render.simple_project_html(project)),
                      ("simple json", lambda: render.simple_project_json(project)),
                      ("project html", lambda: render.project_html(project, SITE)),
                      ("project json", lambda: render.project_json(project))):
        best = float("inf")
        for _ in range(5):  # the best of 5: a GC pause (after the 500k test) is not the page
            start = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - start)
        timings[label] = best * 1000
        if label.endswith("html"):
            strict_parse(out)
    assert len(anchors_of(render.simple_project_html(project))) == 200
    assert Version(json.loads(render.simple_project_json(project))["versions"][-1]) \
        == Version("1.50")
    print("\n50 versions/200 files: " + ", ".join(f"{k} {v:.1f} ms" for k, v in timings.items()))


def test_strict_mode_is_strict():
    """The html5lib check would catch a broken page."""
    with pytest.raises(html5lib.html5parser.ParseError):
        strict_parse("<!DOCTYPE html><html><body><p>x</i></body></html>")
    with pytest.raises(html5lib.html5parser.ParseError):
        strict_parse("<html><body></body></html>")
    assert isinstance(strict_parse("<!DOCTYPE html><title>x</title>"), ElementTree.Element)
