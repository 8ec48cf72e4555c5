"""``piw-logger``: sends the web service's download and search events for nginx's access log.

Deployments that serve the www tree with nginx (config/nginx/piw.conf) never pass downloads
through the web service, so its stats events would be missing; this fills them in. Every line
is classified, its user agent read and its client hashed by the web service's own functions
(serve.classify, serve.make_event), and the events go out as service ``web``, types
``downloads`` and ``searches``, in batches of at most MAX_BATCH, about once a second: consumers
cannot tell nginx's traffic from the web service's.

The log format is nginx's ``combined``, optionally followed by ``"$http_x_forwarded_for"`` (the
``piw`` format of piw.conf, the same as the ``main`` of nginx's stock nginx.conf). Fields are
expected in nginx's default escaping (``\\xHH``); ``escape=json`` is read too.

With ``--follow`` it keeps reading as the file grows, like ``tail -F``: when logrotate moves
the file away it reads the new one from its start while still draining the old one for
ROTATE_GRACE seconds (nginx writes there until it is told to reopen), and a truncated file
(copytruncate) is read again from its start. While RabbitMQ is unreachable it retries and
stops reading: the log file is the buffer. Without ``--follow`` (or from stdin) it stops at
the end of the input, sends what is left and prints how many lines it read.
"""

from __future__ import annotations

import functools
import logging
import logging.config
import os
import re
import secrets
import select
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, BinaryIO

from builders.commandline import command_parser, configure_logging
from piw_services.config import CONFIG_HELP, load_config
from piw_services.web.serve import Hit, classify, make_event, salt_key

with warnings.catch_warnings():  # nameko imports eventlet, which announces its deprecation
    warnings.simplefilter("ignore")
    from nameko.standalone.events import event_dispatcher

    from piw_services.web.service import FLUSH_INTERVAL, KINDS, MAX_BATCH, SERVICE

log = logging.getLogger("piw.logger")

#: Seconds between looks at a file that has no new lines (--follow), or at a silent stdin.
POLL = 0.25
#: Seconds a rotated-away log is still read after its last new line.
ROTATE_GRACE = 5.0
#: Bytes read at a time.
CHUNK = 1 << 16
#: A line longer than this is not one nginx writes for a real request: skipped as malformed.
MAX_LINE = 1 << 16
#: One warning for this many malformed lines.
WARN_EVERY = 1000
#: Longest wait between attempts to send to an unreachable RabbitMQ.
MAX_RETRY_DELAY = 30.0

Stop = Callable[[], bool]

# A quoted field as nginx writes it: any quote or backslash inside is escaped.
_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
# $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer"
# "$http_user_agent" ["$http_x_forwarded_for"]. $remote_user (the client's to choose) ends at
# the first " [<time>] \"" : it cannot hold a quote, so it cannot fake one; each try of the
# lazy match costs a few characters, so matching stays linear.
_LINE = re.compile(
    r"(\S+) \S+ .*? \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "
    + _QUOTED + r" (\d{3}) (?:\d+|-) " + _QUOTED + " " + _QUOTED
    + r"(?: " + _QUOTED + r")?[ \t\r\n]*")
_TIME = re.compile(r"(\d\d)/([A-Z][a-z]{2})/(\d{4}):(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")
_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|.)", re.DOTALL)
_JSON_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
_REQUEST = re.compile(r"(\S+) (\S+)(?: \S+)?")
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")


# -- parsing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    """One request of the access log, with what the web service would need to count it.

    ``path`` is the raw request path (still percent-encoded, no query) and ``hit`` what
    serve.classify makes of it; header values are None when nginx logged ``-``.
    """

    remote_addr: str
    timestamp: float
    method: str
    path: str
    status: int
    user_agent: str | None = None
    forwarded_for: str | None = None
    hit: Hit | None = field(default=None, compare=False)

    def environ(self) -> dict[str, str]:
        """The WSGI keys serve.make_event reads, as the web service would have had them."""
        environ = {"REMOTE_ADDR": self.remote_addr}
        if self.user_agent is not None:
            environ["HTTP_USER_AGENT"] = self.user_agent
        if self.forwarded_for is not None:
            environ["HTTP_X_FORWARDED_FOR"] = self.forwarded_for
        return environ


def _unescape_one(match: re.Match[str]) -> str:
    code = match[1]
    if len(code) > 1:  # \xHH (nginx's default) or \uHHHH (escape=json)
        return chr(int(code[1:], 16))
    return _JSON_ESCAPES.get(code, code)


def unescape(text: str) -> str:
    """A logged field as the client sent it. Bytes come back as latin-1 characters, which is
    how WSGI hands headers and paths to the web service.

    nginx escapes every backslash it logs, so each one starts an escape; Python's own codec
    reads nginx's (``\\xHH``, or ``\\"``, ``\\n``, ``\\u00HH`` with escape=json) 25 times
    faster than the regex, which is left for anything it refuses.
    """
    if "\\" not in text:
        return text
    try:
        return text.encode("latin-1").decode("unicode_escape")
    except (UnicodeError, ValueError, DeprecationWarning):  # the last with -W error
        return _ESCAPE.sub(_unescape_one, text)


def _header(text: str) -> str | None:
    return None if text == "-" else unescape(text)


@functools.lru_cache(maxsize=256)
def parse_time(text: str) -> float | None:
    """Epoch seconds of a ``$time_local`` (``10/Oct/2023:13:55:36 +0200``); None if invalid.
    Month names are nginx's (English), whatever the locale."""
    match = _TIME.fullmatch(text)
    if not match or match[2] not in _MONTHS:
        return None
    day, _, year, hour, minute, second, sign, off_h, off_m = match.groups()
    offset = timedelta(hours=int(off_h), minutes=int(off_m))
    try:
        when = datetime(int(year), _MONTHS[match[2]], int(day), int(hour), int(minute),
                        int(second), tzinfo=timezone(-offset if sign == "-" else offset))
    except ValueError:
        return None
    return when.timestamp()


def parse_line(line: str) -> LogLine | None:
    """The request an access-log line records, or None when the line is not in the format
    (see the module doc). A request line nginx could not read (``-``, a TLS hello) is a valid
    log line that counts as nothing: method and path are empty."""
    match = _LINE.fullmatch(line)
    if not match:
        return None
    addr, when, request, status, _referer, agent, forwarded = match.groups()
    timestamp = parse_time(when)
    if timestamp is None:
        return None
    method = path = ""
    parts = _REQUEST.fullmatch(unescape(request))
    if parts:
        method, target = parts.groups()
        if not target.startswith("/"):  # absolute-form: nginx serves its path
            target = _ABSOLUTE.sub("", target, count=1) or "/"
        path = target.partition("?")[0]
    code = int(status)
    return LogLine(addr, timestamp, method, path, code, _header(agent),
                   None if forwarded is None else _header(forwarded),
                   classify(method, path, code))


# -- reading -------------------------------------------------------------------------------------


class Lines:
    """Cuts a byte stream into lines; a partial last line waits for the rest of it."""

    def __init__(self) -> None:
        self.partial = b""
        self.overlong = False

    def feed(self, data: bytes) -> list[bytes]:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if self.overlong and lines:
            lines[0] = b""  # the end of a line too long to keep: counted as malformed
            self.overlong = False
        if len(self.partial) > MAX_LINE:
            self.partial, self.overlong = b"", True
        return lines

    def rest(self) -> list[bytes]:
        """What is left at the very end (a last line without its newline)."""
        rest, self.partial = self.partial, b""
        return [rest] if rest or self.overlong else []


class Tail:
    """One open log file, read a chunk at a time."""

    def __init__(self, path: str) -> None:
        self.file: BinaryIO = open(path, "rb")  # closed by close()
        st = os.fstat(self.file.fileno())
        self.ident = (st.st_dev, st.st_ino)
        self.lines = Lines()
        self.idle_since = time.monotonic()

    def read(self) -> list[bytes] | None:
        """The complete lines of the next chunk, or None at the end of the file for now."""
        data = self.file.read(CHUNK)
        if not data:
            return None
        self.idle_since = time.monotonic()
        return self.lines.feed(data)

    def truncated(self) -> bool:
        return os.fstat(self.file.fileno()).st_size < self.file.tell()

    def rewind(self) -> None:
        self.file.seek(0)
        self.lines = Lines()

    def close(self) -> None:
        self.file.close()


def sleep(seconds: float, stop: Stop) -> None:
    """Sleep, but wake within POLL of *stop* turning true."""
    deadline = time.monotonic() + seconds
    while not stop():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, POLL))


def read_file(path: str, follow: bool, from_end: bool, stop: Stop) -> Iterator[bytes | None]:
    """The lines of the log at *path*; with *follow*, None whenever there is nothing new yet
    (the caller's moment to flush), and on through rotations until *stop*. The file is opened
    now, so that a missing one is an OSError here, not later."""
    current = Tail(path)
    if from_end:
        current.file.seek(0, os.SEEK_END)
    return _tail(path, current, follow, stop)


def _tail(path: str, current: Tail, follow: bool, stop: Stop) -> Iterator[bytes | None]:
    rotated: list[Tail] = []
    try:
        while not stop():
            lines = current.read()
            if lines is not None:
                yield from lines
                continue
            for old in list(rotated):
                while (lines := old.read()) is not None:
                    yield from lines
                if time.monotonic() - old.idle_since > ROTATE_GRACE:
                    yield from old.lines.rest()
                    old.close()
                    rotated.remove(old)
            if not follow:
                yield from current.lines.rest()
                return
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None  # moved away, not created again yet
            if st is not None and (st.st_dev, st.st_ino) != current.ident:
                try:
                    new = Tail(path)
                except FileNotFoundError:
                    pass
                else:
                    log.info("%s was rotated: reading the new file", path)
                    current.idle_since = time.monotonic()
                    rotated.append(current)
                    current = new
                    continue
            elif st is not None and current.truncated():
                log.info("%s was truncated: reading it again from the start", path)
                current.rewind()
                continue
            yield None
            sleep(POLL, stop)
    finally:
        for tail in (current, *rotated):
            tail.close()


def read_stream(stream: BinaryIO, stop: Stop) -> Iterator[bytes | None]:
    """The lines of a pipe (stdin) to its end; None whenever it is silent for POLL seconds."""
    fd = stream.fileno()
    lines = Lines()
    while not stop():
        ready, _, _ = select.select([fd], [], [], POLL)
        if not ready:
            yield None
            continue
        data = os.read(fd, CHUNK)
        if not data:
            break
        yield from lines.feed(data)
    yield from lines.rest()


# -- sending -------------------------------------------------------------------------------------


@dataclass
class Totals:
    lines: int = 0
    downloads: int = 0
    searches: int = 0
    malformed: int = 0
    unsent: int = 0

    def summary(self) -> str:
        text = (f"{self.lines} lines, {self.downloads} downloads, {self.searches} searches, "
                f"{self.malformed} malformed")
        return text + (f", {self.unsent} events NOT sent" if self.unsent else "")


class Sender:
    """Batches events by kind and sends them as the web service does. A batch RabbitMQ
    refuses is retried until it goes or *stop* is set; reading waits meanwhile."""

    def __init__(self, dispatch: Callable[[str, str, Any], None], stop: Stop) -> None:
        self.dispatch = dispatch
        self.stop = stop
        self.pending: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        self.last = time.monotonic()
        self.gave_up = False  # stopping, and RabbitMQ refused: no more tries

    def add(self, kind: str, event: dict[str, Any]) -> None:
        queue = self.pending[kind]
        queue.append(event)
        if len(queue) >= MAX_BATCH:
            self.send(kind)

    def due(self) -> bool:
        return time.monotonic() - self.last >= FLUSH_INTERVAL

    def flush(self) -> None:
        self.last = time.monotonic()
        for kind in KINDS:
            self.send(kind)

    def unsent(self) -> int:
        return sum(len(queue) for queue in self.pending.values())

    def send(self, kind: str) -> None:
        queue = self.pending[kind]
        while queue:
            batch = queue[:MAX_BATCH]
            if not self.publish(kind, batch):
                return
            del queue[:len(batch)]

    def publish(self, kind: str, batch: list[dict[str, Any]]) -> bool:
        delay = 1.0
        while not self.gave_up:
            try:
                self.dispatch(SERVICE, kind, batch)
                return True
            except Exception as exc:
                if self.stop():
                    log.error("cannot send %s events (%s); stopping", kind, exc)
                    self.gave_up = True
                    break
                log.warning("cannot send %d %s events (%s); retrying in %.0f s",
                            len(batch), kind, exc, delay)
                sleep(delay, self.stop)
                delay = min(delay * 2, MAX_RETRY_DELAY)
        return False


def process(lines: Iterator[bytes | None], sender: Sender, key: bytes) -> Totals:
    """Parse, classify and send every line; malformed ones are counted and skipped."""
    totals = Totals()
    for raw in lines:
        if raw is None:
            if sender.due():
                sender.flush()
            continue
        totals.lines += 1
        line = parse_line(raw.decode("latin-1"))
        if line is None:
            totals.malformed += 1
            if totals.malformed % WARN_EVERY == 1:
                log.warning("malformed line (%d so far, one warning per %d): %r",
                            totals.malformed, WARN_EVERY, raw[:200])
        elif line.hit is not None:
            if line.hit.kind == "downloads":
                totals.downloads += 1
            else:
                totals.searches += 1
            sender.add(line.hit.kind, make_event(line.hit, line.status, line.environ(), key,
                                                 line.timestamp))
        if sender.due():
            sender.flush()
    sender.flush()
    totals.unsent = sender.unsent()
    return totals


def stats_key(config: dict[str, Any]) -> bytes:
    """The client-hash key: the web service's (STATS_SALT), or hashes would not match."""
    salt = config.get("STATS_SALT")
    if not salt:
        log.warning("STATS_SALT is not set: client hashes are salted with a random value "
                    "and do not match the web service's or another run's")
        salt = secrets.token_hex(32)
    return salt_key(str(salt))


def main(argv: list[str] | None = None, stop: Stop | None = None) -> int:
    """The console script; *stop* (for tests) ends --follow, as SIGTERM or SIGINT does."""
    parser = command_parser("piw-logger", __doc__.splitlines()[0],
                            config=CONFIG_HELP + ": AMQP_URI and STATS_SALT, as the web "
                                                 "service's")
    parser.add_argument("-f", "--follow", action="store_true",
                        help="keep reading the file as it grows, across log rotation")
    parser.add_argument("--from-end", action="store_true",
                        help="with --follow, start at the end of the file (no events again "
                        "for lines a previous run sent)")
    parser.add_argument("logfile", nargs="?", default="-",
                        help="nginx access log, format combined or piw (default: stdin)")
    args = parser.parse_args(argv)
    if args.from_end and not (args.follow and args.logfile != "-"):
        parser.error("--from-end needs --follow and a file")
    config = load_config(args.config)
    if "LOGGING" in config:
        logging.config.dictConfig(config["LOGGING"])
    configure_logging(args, default=logging.getLogger().level if "LOGGING" in config
                      else logging.INFO, console_format="%(asctime)s %(levelname)s %(message)s")

    if stop is None:
        stopping = threading.Event()
        stop = stopping.is_set
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stopping.set())
    lines: Iterator[bytes | None]
    if args.logfile == "-":
        lines = read_stream(sys.stdin.buffer, stop)
    else:
        try:
            lines = read_file(args.logfile, args.follow, args.from_end, stop)
        except OSError as exc:
            print(f"piw-logger: cannot read {args.logfile}: {exc.strerror}", file=sys.stderr)
            return 2

    totals = process(lines, Sender(event_dispatcher(config), stop), stats_key(config))
    print(f"piw-logger: {totals.summary()}")
    return 1 if totals.unsent else 0


if __name__ == "__main__":
    sys.exit(main())
