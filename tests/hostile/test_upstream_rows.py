"""Hostile upstream rows and answers: through the reorderer's parser, the catalog's pure
application, the real store on the real PostgreSQL, and the upstream client over a real HTTP
socket. Whatever upstream sends, a bad row is recorded and skipped, never a stopped pipeline,
and every spelling of a name is one package.

tests/reorderer covers convergence on well-formed logs and a table of known-bad rows;
tests/upstream/test_parse_changelog the fast XML path against xmlrpc.client on valid answers.
"""

from __future__ import annotations

import json
import threading
import time
import xmlrpc.client
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from piw_services.names import canonical, is_valid_name
from piw_services.reorderer import queries, store
from piw_services.reorderer.catalog import apply_rows
from piw_services.reorderer.parse import (
    CREATING,
    FUTURE_SLACK,
    MAX_FILENAME_LENGTH,
    MAX_SERIAL,
    MAX_VERSION_LENGTH,
    Ignored,
    Malformed,
    Row,
    parse_row,
)
from piw_services.upstream.poller import Poller, page_top
from piw_services.upstream_client import UpstreamClient, UpstreamError
from tests.conftest import reset_db
from tests.hostile.conftest import any_text, examples, hostile_text, json_junk, tried
from tests.upstream.test_poller import info_into

AREA = "upstream rows"
NOW = 1_700_000_000
WS = set(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
         + "".join(chr(c) for c in range(0x2000, 0x200b)))


# -- strategies ------------------------------------------------------------------------------------
@st.composite
def spellings(draw, base=None):
    """One project name under a spelling PEP 503 folds together: any case, any run of
    ``-_.`` between its words."""
    words = base or draw(st.lists(st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1,
                                          max_size=5), min_size=1, max_size=3))
    seps = [draw(st.text("-_.", min_size=1, max_size=3)) for _ in words[1:]]
    name = words[0] + "".join(s + w for s, w in zip(seps, words[1:], strict=True))
    return "".join(c.upper() if draw(st.booleans()) else c for c in name)


NAMES = [["zope", "interface"], ["foo", "bar"], ["a"]]
odd_versions = st.one_of(
    st.sampled_from(["1.0", "1.0.0", "v1.0", "1.0-final", "latest", "1!2.0", "2.0.dev-1",
                     "1.0+local.7", "\u0661.\u0660", "１.０", "1.0\u200b", "0x10", "-1", "..",
                     "1.0/../../etc", "1.0\\x", "1.0;DROP", "1.0%00", "a" * 128, "NaN"]),
    hostile_text(20))
timestamps = st.one_of(
    st.integers(NOW - 10**6, NOW), st.integers(-2**64, 2**64),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(
        ["1690000000", " 1690000000.5 ", "1e9", "nan", "inf", "-1", "", "1_690_000_000"]),
    st.none(), st.booleans())
serials = st.one_of(st.integers(1, 10**6), st.integers(-2**64, 2**70), st.just(MAX_SERIAL),
                    st.just(MAX_SERIAL + 1), st.none(), st.booleans(), st.floats(),
                    st.text(max_size=8))


def actions(filename=st.one_of(hostile_text(20), st.just("foo-1.0.tar.gz"))):
    return st.one_of(
        st.sampled_from(["create", "new release", "remove", "remove release", "remove project",
                         "yank release", "unyank release", "project quarantined",
                         "project quarantine cleared", "release quarantined",
                         "release quarantine cleared", "release quarantined ",
                         "add Owner j&#252;rgen", "add Owner &#0;", "add source file &#xFFFF;",
                         "add source file a&#1114112;.tar.gz", "add Owner filebot",
                         "remove Owner someone", "docupdate", "New Release", "create ",
                         " create", "remove  release", "remove project\n", "add  file x",
                         "add source file", "rename from", "rename from \x00"]),
        st.builds(lambda p, f: f"add {p} file {f}", st.sampled_from(["source", "py3", "cp311"]),
                  filename),
        st.builds(lambda f: f"remove file {f}", filename),
        st.builds(lambda n: f"rename from {n}", st.one_of(spellings(), hostile_text(12))),
        any_text())


def names():
    return st.one_of(spellings(), spellings(), hostile_text(15), st.just("a" * 201),
                     st.sampled_from(["foo\n", "\nfoo", "foo\x00", "foo ", "-foo", "foo-",
                                      "f\u00f6\u00f6", "K\u212a", "..", "foo/bar", ""]))


#: rows of the right arity with every field drawn from good and hostile values
rows5 = st.builds(list, st.tuples(
    st.one_of(names(), json_junk), st.one_of(st.none(), odd_versions, json_junk),
    st.one_of(timestamps, json_junk), st.one_of(actions(), json_junk),
    st.one_of(serials, json_junk)))
#: anything at all in place of a row
anything = st.one_of(rows5, rows5, json_junk, st.binary(max_size=40),
                     st.lists(json_junk, max_size=8), st.tuples(json_junk, json_junk))


def check_parsed(raw, parsed):
    """What a parse may give: a sane Row, an Ignored with the serial, or a Malformed."""
    assert isinstance(parsed, Row | Ignored | Malformed)
    if isinstance(parsed, Malformed):
        assert parsed.reason and len(parsed.reason) < 1000
        assert parsed.serial is None or 0 < parsed.serial <= MAX_SERIAL
        return
    assert isinstance(parsed.serial, int) and 0 < parsed.serial <= MAX_SERIAL
    if isinstance(parsed, Ignored):
        return
    assert is_valid_name(parsed.name) and parsed.name.isascii()
    assert "\n" not in parsed.name and parsed.package == canonical(parsed.name)
    assert 0 < parsed.timestamp <= NOW + FUTURE_SLACK
    if parsed.version is not None:
        assert 0 < len(parsed.version) <= MAX_VERSION_LENGTH
        assert not WS.intersection(parsed.version)
        assert not any(ord(c) < 32 or ord(c) == 127 for c in parsed.version)
    if parsed.filename is not None:
        fn = parsed.filename
        assert 0 < len(fn) <= MAX_FILENAME_LENGTH and fn not in (".", "..")
        assert "/" not in fn and "\\" not in fn and not any(ord(c) < 32 for c in fn)
    if parsed.old_name is not None:
        assert parsed.old_name == canonical(parsed.old_name)


# -- the parser ------------------------------------------------------------------------------------
@examples(600)
@given(anything)
def test_parser_never_raises_and_only_passes_sane_rows(raw):
    tried(AREA)
    check_parsed(raw, parse_row(raw, NOW))


@examples(80)
@given(st.lists(anything, max_size=20))
def test_page_top_reads_any_page(rows):
    tried(AREA)
    top = page_top(rows, 7)
    assert isinstance(top, int) and top >= min(7, top)


# -- the catalog (pure) ----------------------------------------------------------------------------
@examples(150)
@given(st.data())
def test_spellings_land_in_one_package_and_odd_versions_are_kept_verbatim(data):
    """Rows of one project under many spellings and non-PEP 440 versions, in any order: one
    package, named canonically, whose versions are exactly the strings upstream sent."""
    tried(AREA)
    base = data.draw(st.sampled_from(NAMES))
    versions = data.draw(st.lists(odd_versions, min_size=1, max_size=5))
    raw = []
    for serial in range(1, data.draw(st.integers(1, 25)) + 1):
        action = data.draw(st.sampled_from(["new release", "create", "add source file x.tar.gz",
                                            "yank release", "remove file x.tar.gz"]))
        raw.append([data.draw(spellings(base)), data.draw(st.sampled_from(versions)),
                    NOW - data.draw(st.integers(0, 100)), action, serial])
    parsed = [parse_row(r, NOW) for r in raw]
    for r, p in zip(raw, parsed, strict=True):
        check_parsed(r, p)
    rows = [p for p in parsed if isinstance(p, Row)]
    packages = {}
    events = apply_rows(packages, sorted(rows, key=lambda r: r.k))
    name = canonical("-".join(base))
    assert set(packages) <= {name}
    assert all(e["package"] == name for e in events)
    if rows:
        pkg = packages[name]
        creating = [r for r in rows if r.kind in CREATING]
        if creating:
            assert pkg.display_name == max(creating, key=lambda r: r.k).name
        kept = {r.version for r in rows if r.version is not None}
        assert set(pkg.versions) == kept  # verbatim: "1.0" and "1.0.0" are two strings
        for e in events:
            assert e.get("version") is None or e["version"] in kept


# -- the real store on the real PostgreSQL ---------------------------------------------------------
def _table(s, sql):
    return s.execute(text(sql)).all()


@examples(15)
@given(page=st.lists(st.one_of(anything, rows5), min_size=1, max_size=40),
       base=st.sampled_from(NAMES), data=st.data())
def test_the_store_records_bad_rows_and_keeps_going(db_engine, db, page, base, data):
    """A page of hostile rows and good rows under many spellings goes into the real store in
    one transaction: it never fails, every malformed row with a serial is recorded under it,
    the serial moves past all of them, every spelling is one canonical package, and the next
    page of good rows is applied as if nothing had happened."""
    tried(AREA, len(page) + 3)
    reset_db(db_engine)
    good = [[data.draw(spellings(base)), "1.0", NOW - 50, "new release", 10**6 + i]
            for i in range(3)]
    page = data.draw(st.permutations(page + good))
    parsed = [parse_row(r, NOW) for r in page]
    with db() as s, s.begin():
        result = store.ingest(s, page, hold=0, now=NOW)
    bad = {p.serial for p in parsed if isinstance(p, Malformed) and p.serial is not None}
    readable = [p.serial for p in parsed if p.serial is not None]
    valid = [p for p in parsed if isinstance(p, Row)]
    with db() as s:
        recorded = {r[0] for r in _table(
            s, "SELECT serial FROM malformed_rows WHERE serial IS NOT NULL")}
        held = {r[0] for r in _table(s, "SELECT serial FROM held_rows")}
        packages = {r[0]: r[1] for r in _table(s, "SELECT name, display_name FROM packages")}
        assert store.last_serial(s) == max(readable)
    # a serial shared by a good and a bad row: the good one is kept, the bad one recorded
    assert recorded == bad
    assert result.malformed == sum(isinstance(p, Malformed) for p in parsed)
    # hold 0: everything older than now was applied
    assert held <= {r.serial for r in valid if r.timestamp >= NOW}
    assert all(name == canonical(name) for name in packages)
    assert set(packages) <= {r.package for r in valid} | {r.old_name for r in valid}
    assert canonical("-".join(base)) in packages
    # the pipeline goes on: a clean page after the hostile one
    top = max(readable)
    nxt = top + 1 if top < MAX_SERIAL else min(set(range(1, 100)) - set(readable))
    with db() as s, s.begin():
        after = store.ingest(s, [["Next-Page", "1.0", NOW - 10, "new release", nxt]], hold=0,
                             now=NOW)
    assert after.last_serial == max(top, nxt) and after.applied >= 1
    with db() as s:
        assert "1.0" in queries.package_state(s, "next-page")["versions"]


# -- the upstream client over HTTP ---------------------------------------------------------------
class Garbage:
    """A tiny HTTP server answering every request with what the test last set."""

    def __init__(self):
        self.status, self.headers, self.body = 200, {}, b""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(outer.status)
                for k, v in outer.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            do_POST = do_GET = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def garbage():
    server = Garbage()
    yield server
    server.stop()


def _changelog(rows):
    return xmlrpc.client.dumps((rows,), methodresponse=True, allow_none=True).encode()


VALID = _changelog([["foo", "1.0", NOW - 5, "new release", 7], ["foo", None, NOW, "create", 8]])


@st.composite
def xmlrpc_answers(draw):
    kind = draw(st.sampled_from(["bytes", "cut", "flip", "insert", "shape", "fault", "deep",
                                 "entities"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "cut":
        return VALID[:draw(st.integers(0, len(VALID)))]
    if kind == "flip":
        i = draw(st.integers(0, len(VALID) - 1))
        return VALID[:i] + bytes([draw(st.integers(0, 255))]) + VALID[i + 1:]
    if kind == "insert":
        i = draw(st.integers(0, len(VALID)))
        return VALID[:i] + draw(st.sampled_from(
            [b"<array>", b"</array>", b"<value>", b"</value>", b"<nil/>", b"<string>",
             b"<int>x</int>", b"<i8>99999999999999999999999</i8>", b"&amp;", b"&#0;",
             b"&#xd800;", b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]>", b"\x00", b"\xff"])) + VALID[i:]
    if kind == "shape":
        value = draw(json_junk.filter(lambda v: not isinstance(v, float) or v == v))
        try:
            return xmlrpc.client.dumps((value,), methodresponse=True, allow_none=True).encode()
        except (OverflowError, TypeError, UnicodeError):
            return b"<methodResponse/>"
    if kind == "fault":
        code = draw(st.integers(-2**31, 2**31 - 1))
        return xmlrpc.client.dumps(xmlrpc.client.Fault(code, draw(st.text(max_size=20)
                                                                  .filter(str.isprintable))),
                                   methodresponse=True).encode()
    if kind == "deep":
        n = draw(st.integers(1, 3000))
        return (b"<?xml version='1.0'?><methodResponse><params><param><value>"
                + b"<array><data><value>" * n + b"<int>1</int>" + b"</value></data></array>" * n
                + b"</value></param></params></methodResponse>")
    # entity expansion (billion laughs): expat refuses, the client must say so, not hang
    return (b"<?xml version='1.0'?><!DOCTYPE l [<!ENTITY a 'aaaaaaaaaa'>"
            + b"".join(b"<!ENTITY %c '%s'>" % (98 + i, (b"&%c;" % (97 + i)) * 10)
                       for i in range(8))
            + b"]><methodResponse><params><param><value><string>&i;</string></value></param>"
            b"</params></methodResponse>")


@examples(100)
@given(body=xmlrpc_answers(),
       status=st.sampled_from([200, 200, 200, 204, 301, 400, 404, 418, 429, 500, 502, 503]),
       retry_after=st.sampled_from([None, "7", "-1", "nan", "inf", "1e309", "soon", "9" * 400]))
def test_client_turns_any_answer_into_rows_or_an_upstream_error(garbage, body, status,
                                                                retry_after):
    tried(AREA)
    garbage.status, garbage.body = status, body
    garbage.headers = {"Retry-After": retry_after} if retry_after else {}
    client = UpstreamClient(garbage.url, timeout=10)
    started = time.monotonic()
    try:
        rows = client.changelog_since_serial(0)
    except UpstreamError as exc:
        assert str(exc)
        ra = exc.retry_after
        assert ra is None or isinstance(ra, float)
    else:
        assert status == 200 and isinstance(rows, list)
        for raw in rows:  # whatever came is for the parser to judge, never to crash on
            check_parsed(raw, parse_row(raw, NOW))
        page_top(rows, 0)
    try:
        serial = client.changelog_last_serial()
    except UpstreamError:
        pass
    else:
        assert isinstance(serial, int)
    assert time.monotonic() - started < 10


# -- the JSON API: what the enrichment stores ------------------------------------------------------
json_answers = st.one_of(
    st.binary(max_size=100),
    json_junk.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"info": st.one_of(json_junk, st.fixed_dictionaries({
        "requires_python": st.one_of(json_junk, any_text(), st.just(">=3.9")),
        "yanked": st.one_of(st.booleans(), json_junk),
        "yanked_reason": st.one_of(json_junk, any_text()),
        "summary": st.one_of(json_junk, any_text())}))}).map(lambda v: json.dumps(v).encode()))


@examples(15)
@given(body=json_answers, status=st.sampled_from([200, 200, 200, 200, 403, 404, 500]))
def test_enrichment_survives_any_json_answer(db_engine, db, garbage, body, status):
    """Whatever the JSON API answers for a version, enrichment either stores clean text (or
    nothing) for it, or backs off; the database never refuses what it stores, so one odd
    version cannot block the versions after it."""
    tried(AREA)
    reset_db(db_engine)
    now = int(time.time())
    with db() as s, s.begin():
        store.ingest(s, [["odd", "1.0", now - 60, "new release", 1]], hold=0, now=now)
    garbage.status, garbage.body, garbage.headers = status, body, {}
    poller = Poller(UpstreamClient(garbage.url, timeout=10), interval=10, enrich_days=30)

    poller.enrich(*info_into(db))
    with db() as s:
        v = queries.package_state(s, "odd")["versions"]["1.0"]
    for key in ("requires_python", "yanked_reason"):
        assert v[key] is None or (isinstance(v[key], str) and v[key].isprintable()
                                  and len(v[key]) <= 1000), (key, v[key])
