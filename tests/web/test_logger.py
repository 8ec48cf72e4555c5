"""piw-logger: nginx's access log read into the web service's download and search events.

The lines below were written by a real nginx (1.22, piw.conf's ``piw`` format, default
escaping); test_same_events_as_the_web_service has nginx write them live.
"""

import email.utils
import hashlib
import json
import os
import subprocess
import threading
import time

import pytest
import requests

from piw_services.cli import logger
from piw_services.cli.logger import LogLine, Totals, main, parse_line, parse_time
from piw_services.useragent import FIELDS
from piw_services.web.serve import SIMPLE_JSON, Hit, make_event, salt_key
from piw_services.web.service import MAX_BATCH
from tests.conftest import BIN, ROOT
from tests.test_useragent import PIP, UV
from tests.web.conftest import OLD, RECEIVED, SALT, WHEEL, WHEEL_V6, wait_until
from tests.web.test_nginx import NGINX, nginx  # noqa: F401 (a fixture, used by name)

CLIENT = "203.0.113.7"
WHEN = "10/Oct/2023:13:55:36 +0200"
EPOCH = 1696938936.0  # 2023-10-10 11:55:36 UTC
PIP_LOGGED = ("pip/23.0.1 {\\x22ci\\x22:null,\\x22cpu\\x22:\\x22armv7l\\x22,\\x22distro\\x22:"
              "{\\x22id\\x22:\\x22bookworm\\x22,")
QUOTED = 'Mozilla/5.0 (X11) "quoted" \\back\\slash café'


def h(address, salt=SALT):
    return hashlib.blake2b(address.encode(), digest_size=16, key=salt.encode()).hexdigest()


def escape(text):
    """*text* as nginx's default log escaping writes it: quote, backslash, control characters
    and every byte outside ASCII as \\xHH."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02X}"
                   for b in text.encode())


def line(request, status=200, agent="-", addr=CLIENT, forwarded=None, when=WHEN, size=1234):
    """An access-log line in piw.conf's format (combined when *forwarded* is None)."""
    agent = agent if agent == "-" else escape(agent)
    text = f'{addr} - - [{when}] "{escape(request)}" {status} {size} "-" "{agent}"'
    return text + ("" if forwarded is None else f' "{forwarded}"') + "\n"


def test_escape_is_nginx_s():
    assert escape(PIP).startswith(PIP_LOGGED)


# -- parse_line ----------------------------------------------------------------------------------


def test_pip_download():
    text = line(f"GET /simple/foo-bar/{WHEEL} HTTP/1.1", agent=PIP, forwarded="-")
    assert PIP_LOGGED in text
    parsed = parse_line(text)
    assert parsed == LogLine(CLIENT, EPOCH, "GET", f"/simple/foo-bar/{WHEEL}", 200, PIP, None)
    assert parsed.hit == Hit("downloads", "foo-bar", WHEEL)
    event = make_event(parsed.hit, parsed.status, parsed.environ(), salt_key(SALT),
                       parsed.timestamp)
    assert event["installer_name"] == "pip" and event["arch"] == "armv7l"
    assert event["client"] == h(CLIENT) and event["timestamp"] == EPOCH


def test_uv_range_download_in_combined_format():
    parsed = parse_line(line(f"GET /simple/foo-bar/{WHEEL_V6} HTTP/2.0", 206, agent=UV))
    assert parsed.user_agent == UV and parsed.forwarded_for is None
    assert parsed.hit == Hit("downloads", "foo-bar", WHEEL_V6)


def test_real_lines():
    lines = [
        '127.0.0.1 - - [23/Nov/2026:16:19:28 +0000] "GET /simple/foo-bar/ HTTP/1.1" 200 3 "-" '
        '"curl/7.88.1" "-"',
        '::1 - - [23/Nov/2026:16:19:28 +0000] "GET /simple/foo-bar/?format=x HTTP/1.1" 200 3 '
        '"-" "Mozilla/5.0 \\x22quoted\\x22 \\x5Cback\\x5Cslash caf\\xC3\\xA9" "-"',
        '127.0.0.1 - - [23/Nov/2026:16:19:29 +0000] "HEAD /simple/foo-bar/foo_bar-1.0-cp311-'
        'cp311-linux_armv7l.whl HTTP/1.1" 200 0 "-" "curl/7.88.1" "-"',
        '127.0.0.1 - - [23/Nov/2026:16:19:29 +0000] "POST /simple/foo-bar/ HTTP/1.1" 405 150 '
        '"-" "curl/7.88.1" "-"',
        '127.0.0.1 - we ird[user] [23/Nov/2026:16:19:29 +0000] "GET /simple/nope/ HTTP/1.1" '
        '404 14 "-" "curl/7.88.1" "-"',
        '127.0.0.1 - - [23/Nov/2026:16:19:33 +0000] "\\x16\\x03\\x01\\x00\\xA5\\x01\\x00\\x00'
        '\\xA1\\x03\\x03" 400 150 "-" "-" "-"',
        '127.0.0.1 - - [23/Nov/2026:16:19:33 +0000] "GET /simple/foo-bar/ HTTP/1.1" 200 3 "-" '
        '"" "-"',
        '127.0.0.1 - - [23/Nov/2026:16:19:33 +0000] "GET /simple/foo%2Dbar/ HTTP/1.1" 200 3 '
        '"-" "a\\x01b" "-"',
    ]
    curl, quoted, head, post, user, tls, empty, encoded = map(parse_line, lines)
    assert curl.hit == Hit("searches", "foo-bar") and curl.user_agent == "curl/7.88.1"
    assert curl.timestamp == 1795450768.0
    # bytes come back as latin-1 characters, as WSGI gives headers to the web service
    assert quoted.user_agent == 'Mozilla/5.0 "quoted" \\back\\slash caf\xc3\xa9'
    assert quoted.remote_addr == "::1" and quoted.path == "/simple/foo-bar/"
    assert quoted.hit == Hit("searches", "foo-bar")
    assert head.hit is None and head.method == "HEAD"
    assert post.hit is None and post.status == 405
    assert user.hit == Hit("searches", "nope") and user.status == 404
    assert tls is not None and (tls.method, tls.path, tls.hit) == ("", "", None)
    assert empty.user_agent == "" and empty.hit == Hit("searches", "foo-bar")
    assert encoded.hit == Hit("searches", "foo-bar") and encoded.user_agent == "a\x01b"


@pytest.mark.parametrize("request_line, status, hit", [
    (f"GET /simple/foo-bar/{WHEEL} HTTP/1.1", 304, None),
    (f"GET /simple/foo-bar/{WHEEL} HTTP/1.1", 416, None),
    (f"GET /simple/foo-bar/{WHEEL} HTTP/1.1", 404, None),
    (f"HEAD /simple/foo-bar/{WHEEL} HTTP/1.1", 200, None),
    (f"GET /simple/foo-bar/{WHEEL}.metadata HTTP/1.1", 200, None),
    (f"GET /simple/Foo_Bar/{WHEEL} HTTP/1.1", 301, None),
    (f"GET /simple/foo-bar/{WHEEL}?x=1 HTTP/1.1", 200, Hit("downloads", "foo-bar", WHEEL)),
    (f"GET http://example.org/simple/foo-bar/{WHEEL} HTTP/1.1", 200,
     Hit("downloads", "foo-bar", WHEEL)),
    ("GET /simple/foo-bar/ HTTP/1.1", 304, Hit("searches", "foo-bar")),
    ("GET /simple/foo-bar/ HTTP/1.1", 406, Hit("searches", "foo-bar")),
    ("GET /simple/foo-bar/?format=json HTTP/1.1", 200, Hit("searches", "foo-bar")),
    ("GET /simple/foo-bar/ HTTP/1.0", 200, Hit("searches", "foo-bar")),
    ("GET /simple/foo-bar/", 200, Hit("searches", "foo-bar")),  # HTTP/0.9
    ("HEAD /simple/foo-bar/ HTTP/1.1", 200, None),
    ("POST /simple/foo-bar/ HTTP/1.1", 405, None),
    ("GET /simple/Foo.Bar/ HTTP/1.1", 301, None),
    ("GET /simple/foo-bar HTTP/1.1", 301, None),
    ("GET /simple/ HTTP/1.1", 200, None),
    ("GET /project/foo-bar/ HTTP/1.1", 200, None),
    ("GET /simple/../simple/foo-bar/ HTTP/1.1", 400, None),
    ("GET /simple/%2e%2e/ HTTP/1.1", 404, None),
    ("-", 400, None),
    ("GARBAGE", 400, None),
])
def test_classification(request_line, status, hit):
    parsed = parse_line(line(request_line, status, agent="curl/8.5.0"))
    assert parsed is not None and parsed.status == status
    assert parsed.hit == hit


def test_forwarded_for_and_ipv6():
    key = salt_key(SALT)

    def client(parsed):
        return make_event(parsed.hit, parsed.status, parsed.environ(), key, 0)["client"]

    # behind a proxy on this machine: the last hop it added; from anyone else: ignored
    local = parse_line(line("GET /simple/foo-bar/ HTTP/1.1", addr="127.0.0.1",
                            forwarded="198.51.100.9, 203.0.113.7"))
    assert local.forwarded_for == "198.51.100.9, 203.0.113.7"
    assert client(local) == h("203.0.113.7")
    remote = parse_line(line("GET /simple/foo-bar/ HTTP/1.1", addr="2001:db8::7",
                             forwarded="198.51.100.9"))
    assert remote.remote_addr == "2001:db8::7" and client(remote) == h("2001:db8::7")
    assert client(parse_line(line("GET /simple/foo-bar/ HTTP/1.1", addr="::1",
                                  forwarded="-"))) == h("::1")


def test_json_escaping():
    text = ('192.0.2.1 - - [10/Oct/2023:13:55:36 +0200] "GET /simple/foo-bar/ HTTP/1.1" 200 5 '
            '"-" "x/1 \\"q\\" \\\\ \\u0001 caf\xc3\xa9" "-"\n')
    parsed = parse_line(text)
    assert parsed.user_agent == 'x/1 "q" \\ \x01 caf\xc3\xa9'


@pytest.mark.parametrize("text", [
    "",
    "\n",
    "garbage\n",
    "203.0.113.7 - - [10/Oct/2023:13:55:36 +0200] \"GET /simple/foo-bar/ HTTP/1.1\" 200\n",
    line("GET /simple/foo-bar/ HTTP/1.1").replace("Oct", "Okt"),
    line("GET /simple/foo-bar/ HTTP/1.1").replace("10/Oct", "32/Oct"),
    line("GET /simple/foo-bar/ HTTP/1.1").replace(" 200 ", " 2000 "),
    line("GET /simple/foo-bar/ HTTP/1.1").replace(" 1234 ", " many "),
    f'{CLIENT} - - [{WHEN}] "GET / HTTP/1.1" 200 1 "-" "x" y"\n',  # a quote nginx escapes
    line("GET /simple/foo-bar/ HTTP/1.1").replace('"-"\n', '"-" "-" "-"\n'),
    line("GET /simple/foo-bar/ HTTP/1.1")[:-20],
    '203.0.113.7 - - [10/Oct/2023:13:55:36 +0200] "GET / HTTP/1.1" 200 1 "-" "a\\"\n',
])
def test_malformed(text):
    assert parse_line(text) is None


def test_hostile_lines_parse_in_linear_time():
    start = time.monotonic()
    assert parse_line("1.2.3.4 - " + " [" * 50_000 + f" [{WHEN}] x") is None
    assert parse_line("1.2.3.4 - " + f" [{WHEN}] " * 5_000 + "x") is None
    assert parse_line(f'1.2.3.4 - - [{WHEN}] "' + "\\x" * 50_000) is None
    assert time.monotonic() - start < 2


def test_parse_time():
    assert parse_time(WHEN) == EPOCH
    assert parse_time("10/Oct/2023:11:55:36 +0000") == EPOCH
    assert parse_time("10/Oct/2023:06:25:36 -0530") == EPOCH
    assert parse_time("29/Feb/2023:00:00:00 +0000") is None


def test_lines_too_long_are_dropped():
    lines = logger.Lines()
    assert lines.feed(b"a\nb") == [b"a"]
    assert lines.feed(b"x" * (logger.MAX_LINE + 1)) == []
    assert lines.feed(b"more\nok\nhalf") == [b"", b"ok"]
    assert lines.rest() == [b"half"]


# -- sending ---------------------------------------------------------------------------------------


def test_sender_retries_until_rabbitmq_takes_it(monkeypatch, caplog):
    monkeypatch.setattr(logger, "sleep", lambda seconds, stop: None)
    sent, failures = [], [ConnectionError("down"), ConnectionError("still down")]

    def dispatch(service, kind, batch):
        if failures:
            raise failures.pop(0)
        sent.append((service, kind, list(batch)))

    sender = logger.Sender(dispatch, lambda: False)
    sender.add("downloads", {"n": 1})
    sender.flush()
    assert sent == [("web", "downloads", [{"n": 1}])]
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2


def test_unsent_events_when_stopped_while_rabbitmq_is_down(tmp_path, monkeypatch):
    def dispatch(service, kind, batch):
        raise ConnectionError("down")

    log = tmp_path / "access.log"
    log.write_text(line(f"GET /simple/foo-bar/{WHEEL} HTTP/1.1"))
    totals = logger.process(logger.read_file(str(log), False, False, lambda: False),
                            logger.Sender(dispatch, lambda: True), salt_key(SALT))
    assert totals == Totals(lines=1, downloads=1, unsent=1)


def test_missing_file(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("AMQP_URI: pyamqp://guest:guest@127.0.0.1:1/\n")
    assert main(["-c", str(config), str(tmp_path / "nothing.log")]) == 2
    assert "cannot read" in capsys.readouterr().err


# -- end to end, through RabbitMQ ----------------------------------------------------------------


def received(kind):
    return [event for batch in RECEIVED[kind] for event in batch]


def settle(counts, timeout=20.0):
    """Wait for at least *counts* events of each kind, then a little longer for strays."""
    wait_until(lambda: all(len(received(k)) >= n for k, n in counts.items()), timeout)
    time.sleep(1.5)


@pytest.fixture
def config_file(tmp_path, web_config):
    path = tmp_path / "logger.yaml"
    path.write_text(f"AMQP_URI: {web_config['AMQP_URI']}\nSTATS_SALT: {SALT}\n")
    return path


def test_events(listener, config_file, tmp_path, capsys):
    log = tmp_path / "access.log"
    log.write_text("".join([
        line(f"GET /simple/foo-bar/{WHEEL} HTTP/1.1", agent=PIP, addr="127.0.0.1",
             forwarded=CLIENT),
        line(f"GET /simple/foo-bar/{WHEEL_V6} HTTP/1.1", 206, agent=UV, addr="2001:db8::7",
             forwarded="-"),
        line(f"HEAD /simple/foo-bar/{WHEEL} HTTP/1.1", agent=PIP, forwarded="-"),
        line(f"GET /simple/foo-bar/{WHEEL} HTTP/1.1", 304, agent=PIP, forwarded="-"),
        "this is not a log line\n",
        line("GET /simple/foo-bar/ HTTP/1.1", agent=QUOTED),
        line("GET /simple/no-such-thing/ HTTP/1.1", 404, agent="curl/8.5.0"),
        line("GET /simple/ HTTP/1.1", agent="curl/8.5.0"),
    ]).rstrip("\n"))  # the last line without its newline still counts
    assert main(["-c", str(config_file), str(log)]) == 0
    assert capsys.readouterr().out.strip() == (
        "piw-logger: 8 lines, 2 downloads, 2 searches, 1 malformed")

    settle({"downloads": 2, "searches": 2})
    downloads, searches = received("downloads"), received("searches")
    assert [(e["package"], e["filename"], e["status"], e["client"]) for e in downloads] == [
        ("foo-bar", WHEEL, 200, h(CLIENT)), ("foo-bar", WHEEL_V6, 206, h("2001:db8::7"))]
    assert [(e["package"], e["status"], e["client"]) for e in searches] == [
        ("foo-bar", 200, h(CLIENT)), ("no-such-thing", 404, h(CLIENT))]
    for event in downloads:
        assert set(event) == {"timestamp", "package", "filename", "status", "client", *FIELDS}
    for event in searches:
        assert set(event) == {"timestamp", "package", "status", "client", *FIELDS}
    assert {e["timestamp"] for e in downloads + searches} == {EPOCH}
    assert downloads[0]["installer_name"] == "pip" and downloads[0]["arch"] == "armv7l"
    assert downloads[1]["installer_name"] == "uv" and downloads[1]["arch"] == "aarch64"
    assert searches[0]["installer_name"] == "Mozilla"
    assert searches[1]["installer_name"] == "curl"
    payload = json.dumps(RECEIVED)
    assert CLIENT not in payload and "2001:db8" not in payload and "127.0.0.1" not in payload


def test_batches_and_malformed_warnings(listener, config_file, tmp_path, capsys, caplog):
    count = 2 * MAX_BATCH + 7
    with open(tmp_path / "access.log", "w") as f:
        for i in range(count):
            f.write(line(f"GET /simple/p{i}/p{i}-1.0-py3-none-any.whl HTTP/1.1", agent=PIP))
            if i % 4 == 0:
                f.write("junk\n")
    malformed = (count + 3) // 4
    assert main(["-c", str(config_file), str(tmp_path / "access.log")]) == 0
    assert capsys.readouterr().out.strip() == (
        f"piw-logger: {count + malformed} lines, {count} downloads, 0 searches, "
        f"{malformed} malformed")
    warnings = [r for r in caplog.records if "malformed line" in r.getMessage()]
    assert len(warnings) == (malformed + 999) // 1000
    wait_until(lambda: len(received("downloads")) >= count, timeout=30)
    assert all(len(batch) <= MAX_BATCH for batch in RECEIVED["downloads"])
    assert len(RECEIVED["downloads"]) >= 3
    assert [e["package"] for e in received("downloads")] == [f"p{i}" for i in range(count)]


def test_console_script_reads_stdin(listener, config_file, tmp_path):
    log = tmp_path / "access.log"
    log.write_text(line(f"GET /simple/foo-bar/{WHEEL} HTTP/1.1", agent=UV)
                   + line("GET /simple/foo-bar/ HTTP/1.1"))
    with open(log, "rb") as stdin:
        proc = subprocess.run([BIN / "piw-logger", "-c", str(config_file), "-"], stdin=stdin,
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "piw-logger: 2 lines, 1 downloads, 1 searches, 0 malformed"
    settle({"downloads": 1, "searches": 1})
    assert [e["filename"] for e in received("downloads")] == [WHEEL]
    assert [e["package"] for e in received("searches")] == ["foo-bar"]


def download(name):
    return line(f"GET /simple/{name}/{name}-1.0-py3-none-any.whl HTTP/1.1", agent=PIP)


def append(path, *lines):
    with open(path, "a") as f:
        f.write("".join(lines))


def test_follow_through_growth_rotation_and_truncation(listener, config_file, tmp_path, capsys):
    log = tmp_path / "access.log"
    log.write_text(download("one") + "junk\n" + line("GET /simple/one/ HTTP/1.1"))
    stop = threading.Event()
    result = {}
    thread = threading.Thread(target=lambda: result.update(code=main(
        ["-c", str(config_file), "--follow", str(log)], stop=stop.is_set)))
    thread.start()
    try:
        def packages():
            return sorted(e["package"] for e in received("downloads"))

        wait_until(lambda: packages() == ["one"] and len(received("searches")) == 1)
        append(log, download("two"), download("three")[:40])  # nginx mid-write
        wait_until(lambda: packages() == ["one", "two"])
        append(log, download("three")[40:])
        wait_until(lambda: packages() == ["one", "three", "two"])

        # logrotate: the file moves away, a new one appears; nginx writes to the old one until
        # it is told to reopen
        os.rename(log, tmp_path / "access.log.1")
        append(log, download("four"))
        append(tmp_path / "access.log.1", download("late"))
        wait_until(lambda: packages() == ["four", "late", "one", "three", "two"])
        append(log, download("five"))
        wait_until(lambda: len(packages()) == 6)

        # copytruncate
        with open(log, "r+") as f:
            f.truncate(0)
        append(log, download("six"))
        wait_until(lambda: len(packages()) == 7)
        time.sleep(1.5)
        assert packages() == ["five", "four", "late", "one", "six", "three", "two"]
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive() and result == {"code": 0}
    assert capsys.readouterr().out.strip() == (
        "piw-logger: 9 lines, 7 downloads, 1 searches, 1 malformed")


def test_follow_from_the_end(listener, config_file, tmp_path):
    log = tmp_path / "access.log"
    log.write_text(download("old"))
    stop = threading.Event()
    thread = threading.Thread(target=main, args=(
        ["-c", str(config_file), "--follow", "--from-end", str(log)],), kwargs={
            "stop": stop.is_set})
    thread.start()
    try:
        time.sleep(0.5)
        append(log, download("new"))
        wait_until(lambda: received("downloads"))
        time.sleep(1.5)
        assert [e["package"] for e in received("downloads")] == ["new"]
    finally:
        stop.set()
        thread.join(10)


# -- against a real nginx --------------------------------------------------------------------------


@pytest.fixture
def logged_nginx(tmp_path, monkeypatch, request):
    """(base URL, access log) of nginx running piw.conf, its log in this test's directory."""
    from tests.web import test_nginx

    conf = test_nginx.CONF.read_text()
    assert conf.count("/var/log/nginx/piw.access.log piw;") == 1
    log = tmp_path / "piw.access.log"
    (tmp_path / "piw.conf").write_text(conf.replace("/var/log/nginx/piw.access.log", str(log)))
    monkeypatch.setattr(test_nginx, "CONF", tmp_path / "piw.conf")
    return request.getfixturevalue("nginx"), log


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_same_events_as_the_web_service(logged_nginx, web, config_file):
    """The same requests, once to the web service and once to nginx + piw-logger, give the
    same events (but for the timestamp, whole seconds in nginx's log)."""
    nginx_base, log = logged_nginx
    since = email.utils.formatdate(OLD, usegmt=True)
    asks = [
        ("GET", f"/simple/foo-bar/{WHEEL}", {"User-Agent": PIP, "X-Forwarded-For": CLIENT}),
        ("GET", f"/simple/foo-bar/{WHEEL_V6}", {"User-Agent": UV}),
        ("GET", f"/simple/foo-bar/{WHEEL}", {"User-Agent": UV, "Range": "bytes=0-9"}),
        ("HEAD", f"/simple/foo-bar/{WHEEL}", {"User-Agent": PIP}),
        ("GET", f"/simple/foo-bar/{WHEEL}", {"User-Agent": PIP, "If-Modified-Since": since}),
        ("GET", f"/simple/foo-bar/{WHEEL}.metadata", {"User-Agent": PIP}),
        ("GET", "/simple/Foo_Bar/", {"User-Agent": PIP}),
        ("GET", "/simple/foo-bar/", {"User-Agent": QUOTED, "Accept": SIMPLE_JSON}),
        ("GET", "/simple/foo-bar/", {"User-Agent": "curl/8.5.0", "Accept": "image/png"}),
        ("GET", "/simple/foo-bar/?format=x", {"User-Agent": "curl/8.5.0",
                                              "If-Modified-Since": since}),
        ("GET", "/simple/no-such-thing/", {"User-Agent": "", "X-Forwarded-For": "::1"}),
        ("GET", "/simple/", {}),
        ("GET", "/project/foo-bar/", {}),
    ]

    def ask_all(base):
        with requests.Session() as s:
            return [s.request(method, base + path, headers=headers, allow_redirects=False,
                              timeout=10).status_code for method, path, headers in asks]

    # the web service itself
    for batches in RECEIVED.values():
        batches.clear()
    start = time.time()
    statuses = ask_all(web)
    settle({"downloads": 3, "searches": 4})
    served = {kind: received(kind) for kind in RECEIVED}

    # nginx, and piw-logger on its access log
    for batches in RECEIVED.values():
        batches.clear()
    assert ask_all(nginx_base) == statuses
    # nginx logs a request once it has answered it: wait for the last one (the fixture's own
    # "GET /" probe comes first)
    wait_until(lambda: '"GET /project/foo-bar/ HTTP/1.1"' in log.read_text())
    assert main(["-c", str(config_file), str(log)]) == 0
    settle({"downloads": 3, "searches": 4})
    logged = {kind: received(kind) for kind in RECEIVED}

    for kind in RECEIVED:
        for web_event, log_event in zip(served[kind], logged[kind], strict=True):
            web_time, log_time = web_event.pop("timestamp"), log_event.pop("timestamp")
            assert start - 1 <= web_time and int(web_time) <= log_time <= time.time()
        assert logged[kind] == served[kind]
    assert [e["status"] for e in logged["downloads"]] == [200, 200, 206]
    assert [e["status"] for e in logged["searches"]] == [200, 406, 304, 404]
    assert logged["downloads"][0]["client"] == h(CLIENT)
    assert logged["searches"][0]["installer_name"] == "Mozilla"
    payload = json.dumps(logged)
    assert CLIENT not in payload and "127.0.0.1" not in payload
