"""Serving the www tree over HTTP: path resolution, PEP 691 negotiation, conditional and range
requests, and the stats events they give rise to. Pure request logic on werkzeug objects, with
no nameko in it (service.py is the thin nameko shell around :class:`ServedTree`).

Rules (docs/architecture.md, "The www tree"):

* A path is split on ``/`` *before* percent-decoding, one segment at a time, so an encoded
  slash, a backslash, NUL or any control character, a ``%`` left after decoding (double
  encoding), an empty segment (``//``) or a segment starting with ``.`` (``..``, ``.uploads``)
  is a 404. What remains is joined under the root, resolved (symlinks included) and served only
  if it is still inside the root and no part of the resolved path starts with a dot: the
  armv6l links beside their armv7l targets are served, a link out of the tree is not.
* Directories are served by an index file, never listed, and only under their slash URL (the
  bare URL is a 301). ``/simple/`` and ``/simple/<name>/`` pick ``index.json`` or
  ``index.html`` by the ``Accept`` header (or a ``?format=`` query, PEP 691) and always say
  ``Vary: Accept``; other directories serve ``index.html``, else ``index.json``.
* A project name that is not in PEP 503 form (``/simple/Foo_Bar/``, ``/project/Foo.Bar/...``)
  is a 301 to the canonical URL, in one hop with any missing trailing slash.
* Files stream from an open descriptor (never read whole) with Content-Length, a strong ETag
  (inode, mtime, size), Last-Modified, 304 on If-None-Match / If-Modified-Since, and single
  byte ranges (206; 416 past the end). A multi-range or unparsable Range is ignored (200).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import ipaddress
import os
import re
import stat
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_to_bytes

from werkzeug.datastructures import Headers
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.http import parse_range_header
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import wrap_file

from piw_services.names import canonical, is_valid_name
from piw_services.settings import Networks, networks
from piw_services.useragent import cached_fields

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
SIMPLE_HTML = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"
#: The representations of a simple page: (file, Content-Type), by the type that chose it.
VARIANTS = {
    SIMPLE_JSON: ("index.json", SIMPLE_JSON),
    SIMPLE_HTML: ("index.html", SIMPLE_HTML),
    TEXT_HTML: ("index.html", "text/html; charset=utf-8"),
}
#: The media types a client may name for each representation (PEP 691 ``latest`` included).
NAMES = {
    SIMPLE_JSON: frozenset({SIMPLE_JSON, "application/vnd.pypi.simple.latest+json"}),
    SIMPLE_HTML: frozenset({SIMPLE_HTML, "application/vnd.pypi.simple.latest+html"}),
    TEXT_HTML: frozenset({TEXT_HTML}),
}
#: Equal quality, named explicitly: JSON first (PEP 691 clients ask for it on purpose).
#: Equal quality, reached by a wildcard only (``*/*``): plain HTML, what every client reads.
EXPLICIT_ORDER = {SIMPLE_JSON: 3, SIMPLE_HTML: 2, TEXT_HTML: 1}
WILDCARD_ORDER = {TEXT_HTML: 3, SIMPLE_HTML: 2, SIMPLE_JSON: 1}

CONTENT_TYPES = {
    ".whl": "application/octet-stream",
    ".metadata": "application/octet-stream",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".gz": "application/gzip",
    ".txt": "text/plain; charset=utf-8",
    ".xml": "application/xml",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/vnd.microsoft.icon",
}
DEFAULT_TYPE = "application/octet-stream"
#: The page a 404 outside /simple/ shows (written by the index), and the most of it sent.
NOT_FOUND_PAGE = "404.html"
MAX_NOT_FOUND_PAGE = 64 * 1024
#: Build logs: stored gzipped as ``logs/<name>/<id>.log.gz``, linked as ``.../<id>.log`` and
#: served as text (nginx's gzip_static: Content-Encoding gzip to clients that accept it,
#: decompressed for the others), so a browser shows them instead of downloading them.
LOGS_DIR, LOG_SUFFIX, LOG_TYPE = "logs", ".log", "text/plain; charset=utf-8"
PAGE_SUFFIXES = (".html", ".json")
CACHE_PAGES = "public, max-age=60"
CACHE_FILES = "public, max-age=600"

#: Directories whose second segment is a project name.
PROJECT_DIRS = frozenset({"simple", "project"})
#: Files directly in those directories (not project names).
TOP_FILES = frozenset({"index.html", "index.json"})
DIR_INDEXES = ("index.html", "index.json")
#: Longer request paths are refused with 414 (the longest real one is far shorter).
MAX_PATH = 1024
#: Only this much of an Accept header is read, and this many media ranges.
MAX_ACCEPT = 4096
MAX_RANGES = 64
#: Files stream in pieces of this size.
CHUNK = 256 * 1024
#: Peers whose X-Forwarded-For is believed by default (a proxy on this machine); the
#: WEB_TRUSTED_PROXIES setting says otherwise.
TRUSTED_PROXIES = networks("127.0.0.1,::1")

_BAD_SEGMENT = re.compile(r"[\x00-\x1f\x7f/\\%]")
_TOKEN = r"[!#$%&'*+.^_`|~0-9a-z-]+"
_MEDIA_RANGE = re.compile(rf"^({_TOKEN})/({_TOKEN})$")
_QVALUE = re.compile(r"^(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)$")
_QUERY = re.compile(r"^[\x21-\x7e]*$")
_SEGMENT_SAFE = "!$&'()*+,;=:@~"
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
#: Where this process's descriptors show the path they were opened as (Linux), or "".
_PROC_FD = "/proc/self/fd/" if os.path.isdir("/proc/self/fd") else ""


# -- negotiation ----------------------------------------------------------------------------


def parse_accept(header: str) -> list[tuple[str, str, float]]:
    """The media ranges of an Accept header as (type, subtype, q), lower-cased, in order.

    Ranges that are malformed, or whose q is not an RFC 9110 qvalue (``q=2``, ``q=1e9``,
    ``q=nan``), are dropped; so is ``*/subtype``.
    """
    ranges = []
    for item in header[:MAX_ACCEPT].split(",")[:MAX_RANGES]:
        media, *params = item.split(";")
        match = _MEDIA_RANGE.match(media.strip().lower())
        if not match or (match[1] == "*" and match[2] != "*"):
            continue
        q: float | None = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                value = value.strip()
                q = float(value) if _QVALUE.match(value) else None
                break  # what follows q is accept-ext, not media type parameters
        if q is not None:
            ranges.append((match[1], match[2], q))
    return ranges


def negotiate(accept: str | None) -> str | None:
    """The representation of a simple page (SIMPLE_JSON, SIMPLE_HTML or TEXT_HTML) that an
    Accept header asks for, or None when it accepts none of them (406).

    Each representation gets the q of the most specific range that matches it (RFC 9110
    12.5.1); the highest q wins, then the more specific match, then EXPLICIT_ORDER or
    WILDCARD_ORDER. No header, or one without a single valid range, means text/html.
    """
    ranges = parse_accept(accept) if accept else []
    if not ranges:
        return TEXT_HTML
    best: tuple[tuple[float, int, int], str] | None = None
    for offer, names in NAMES.items():
        major = offer.partition("/")[0]
        quality, specificity = 0.0, -1
        for type_, subtype, q in ranges:
            if type_ == "*":
                level = 0
            elif subtype == "*":
                if type_ != major:
                    continue
                level = 1
            elif f"{type_}/{subtype}" in names:
                level = 2
            else:
                continue
            if level > specificity:
                quality, specificity = q, level
            elif level == specificity:
                quality = max(quality, q)
        if specificity < 0 or quality <= 0:
            continue
        order = EXPLICIT_ORDER if specificity == 2 else WILDCARD_ORDER
        key = (quality, specificity, order[offer])
        if best is None or key > best[0]:
            best = (key, offer)
    return best[1] if best else None


# -- paths ------------------------------------------------------------------------------------


def raw_path(environ: dict[str, Any]) -> str:
    """The request path as the client sent it (still percent-encoded), without the query."""
    raw = environ.get("RAW_PATH_INFO") or environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if raw:
        return raw.partition("?")[0]
    # PATH_INFO is already decoded (as latin-1, per WSGI): encode it again, so a "%" in it
    # stays a "%" after our own decoding and is refused.
    return quote(environ.get("PATH_INFO", "").encode("latin-1", "replace"), safe="/")


def split_path(raw: str) -> list[str] | None:
    """The decoded segments of a raw path (a trailing slash gives a last segment ``""``), or
    None when the path is not one this tree could hold (see the module doc)."""
    if not raw.startswith("/"):
        return None
    pieces = raw[1:].split("/")
    segments = []
    last = len(pieces) - 1
    for i, piece in enumerate(pieces):
        if not piece:
            if i == last:
                segments.append("")
                continue
            return None
        try:
            segment = unquote_to_bytes(piece.encode("latin-1")).decode("utf-8")
        except (UnicodeError, ValueError):
            return None
        if segment[0] == "." or _BAD_SEGMENT.search(segment):
            return None
        segments.append(segment)
    return segments


def url_for(parts: list[str], slash: bool) -> str:
    path = "/" + "/".join(quote(p, safe=_SEGMENT_SAFE) for p in parts)
    return path + "/" if slash and parts else path


# -- responses --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """A request the stats count: ``kind`` is ``downloads`` (``filename`` set) or
    ``searches``."""

    kind: str
    package: str
    filename: str | None = None


def classify(method: str, raw: str, status: int) -> Hit | None:
    """The stats hit a request is, from no more than an access log holds: its method, raw
    path (still percent-encoded, without the query) and status. The web service and
    piw-logger (nginx's access log) both count with this, so their events agree.

    A download is a GET of a wheel directly under ``/simple/<name>/`` answered 200 or 206; a
    search is a GET of ``/simple/<name>/``, whatever the answer (a 404 is a search for
    something we do not have). Only canonical names count: the others are redirects.
    """
    if method != "GET" or len(raw) > MAX_PATH:
        return None
    return _classify_get(raw, status)


@functools.lru_cache(maxsize=4096)  # the same few paths, again and again (7 us a request)
def _classify_get(raw: str, status: int) -> Hit | None:
    segments = split_path(raw)
    if segments is None or len(segments) != 3 or segments[0] != "simple":
        return None
    name, last = segments[1], segments[2]
    if not is_valid_name(name) or canonical(name) != name:
        return None
    if not last:
        return Hit("searches", name)
    if last.endswith(".whl") and status in (200, 206):
        return Hit("downloads", name, last)
    return None


@dataclass
class Served:
    response: Response
    hit: Hit | None = None


def plain(status: int, text: str, headers: Headers | None = None) -> Response:
    response = Response(text + "\n", status=status, headers=headers,
                        content_type="text/plain; charset=utf-8")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def not_found(headers: Headers | None = None) -> Response:
    return plain(404, "404 Not Found", headers)


def redirect(parts: list[str], slash: bool, environ: dict[str, Any]) -> Response:
    location = url_for(parts, slash)
    query = environ.get("QUERY_STRING", "")
    if query and _QUERY.match(query):
        location += "?" + query
    response = plain(301, f"301 Moved Permanently: {location}")
    response.headers["Location"] = location
    return response


def content_type_of(filename: str) -> str:
    return CONTENT_TYPES.get(os.path.splitext(filename)[1].lower(), DEFAULT_TYPE)


def etag_of(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def conditional_environ(environ: dict[str, Any]) -> dict[str, Any]:
    """*environ*, without a Range header that asks for anything but one byte range: such a
    header is ignored (RFC 9110 14.2), where werkzeug would answer 416."""
    value = environ.get("HTTP_RANGE")
    if value is None:
        return environ
    parsed = parse_range_header(value)
    if parsed is not None and parsed.units == "bytes" and len(parsed.ranges) == 1:
        return environ
    environ = dict(environ)
    del environ["HTTP_RANGE"]
    return environ


def file_response(environ: dict[str, Any], fd: int, st: os.stat_result, content_type: str,
                  headers: Headers | None = None) -> Response:
    """A response for the open file *fd* (which it owns from now on): read at once when it
    is small (pages: a green file wrapper costs more than the read), else streamed."""
    if st.st_size <= CHUNK:
        try:
            data = os.read(fd, st.st_size)
        finally:
            os.close(fd)
        response = Response(data, status=200, headers=headers, content_type=content_type)
    else:
        body = wrap_file(environ, os.fdopen(fd, "rb", buffering=0), buffer_size=CHUNK)
        response = Response(body, status=200, headers=headers, content_type=content_type,
                            direct_passthrough=True)
    response.headers["Content-Length"] = str(st.st_size)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.set_etag(etag_of(st))
    response.last_modified = st.st_mtime
    try:
        response.make_conditional(conditional_environ(environ), accept_ranges=True,
                                  complete_length=st.st_size)
    except RequestedRangeNotSatisfiable:
        response.close()
        refused = plain(416, "416 Range Not Satisfiable", headers)
        refused.headers["Content-Range"] = f"bytes */{st.st_size}"
        refused.headers["Accept-Ranges"] = "bytes"
        return refused
    return response


class ServedTree:
    """The www tree below *root*, resolved once; every request stats what it serves."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.realpath(root)
        self.prefix = self.root.rstrip(os.sep) + os.sep

    def inside(self, real: str) -> bool:
        """Whether the resolved path *real* is the root or below it, in no hidden part."""
        if real == self.root:
            return True
        if not real.startswith(self.prefix):
            return False
        relative = real[len(self.prefix):]
        return relative[0] != "." and f"{os.sep}." not in relative

    def open(self, parts: list[str]) -> tuple[int | None, os.stat_result] | None:
        """(descriptor or None for a directory, stat) of what *parts* names inside the tree;
        None when it is missing, outside the tree, hidden, or neither file nor directory.

        With /proc, the kernel resolves the path once in open() and the descriptor's own
        link names what was opened (no window between check and use); elsewhere realpath
        is checked first.
        """
        path = os.path.join(self.root, *parts)
        if not _PROC_FD:
            path = os.path.realpath(path)
            if not self.inside(path):
                return None
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError:
            return None
        try:
            if _PROC_FD and not self.inside(os.readlink(f"{_PROC_FD}{fd}")):
                os.close(fd)
                return None
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            return None
        if stat.S_ISREG(st.st_mode):
            return fd, st
        os.close(fd)
        return (None, st) if stat.S_ISDIR(st.st_mode) else None

    def serve(self, request: Request) -> Served:
        """The response to a GET or HEAD *request*, and the stats hit it is, if any."""
        response = self.respond(request)
        hit = classify(request.method, raw_path(request.environ), response.status_code)
        return Served(response, hit)

    def respond(self, request: Request) -> Response:
        """The response to a GET or HEAD *request*."""
        resolved = self.resolve(request.environ)
        if isinstance(resolved, Response):
            return resolved
        return resolved.response(request.environ)

    def resolve(self, environ: dict[str, Any]) -> OpenFile | Response:
        """What a GET or HEAD answers: the file to send, or a finished response (redirect,
        404, 406, 414). The file is not read yet, so a server can send it its own way. A 404
        outside /simple/ (where pip and uv ask, and get the plain one) is the tree's
        ``404.html`` page (the index writes it: a search box), when there is one."""
        resolved = self._resolve(environ)
        if isinstance(resolved, Response) and resolved.status_code == 404 \
                and not raw_path(environ).startswith("/simple/"):
            return self._not_found_page(resolved)
        return resolved

    def _not_found_page(self, plain_404: Response) -> Response:
        found = self.open([NOT_FOUND_PAGE])
        if found is None or found[0] is None:
            return plain_404
        fd, st = found
        try:
            with os.fdopen(fd, "rb") as fh:
                body = fh.read(min(st.st_size, MAX_NOT_FOUND_PAGE))
        except OSError:
            return plain_404
        response = Response(body, status=404, content_type="text/html; charset=utf-8")
        if "Vary" in plain_404.headers:
            response.headers["Vary"] = plain_404.headers["Vary"]
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def _resolve(self, environ: dict[str, Any]) -> OpenFile | Response:
        raw = raw_path(environ)
        if len(raw) > MAX_PATH:
            return plain(414, "414 URI Too Long")
        segments = split_path(raw)
        if segments is None:
            return not_found()
        slash = segments[-1] == ""
        parts = segments[:-1] if slash else segments
        top = parts[0] if parts else ""
        moved = False
        if (top in PROJECT_DIRS and len(parts) >= 2
                and not (len(parts) == 2 and not slash and parts[1] in TOP_FILES)):
            name = parts[1]
            if not is_valid_name(name):
                return not_found()
            canon = canonical(name)
            if canon != name:
                parts = [top, canon, *parts[2:]]
                moved = True
        simple_page = top == "simple" and len(parts) <= 2

        found = self.open(parts)
        if found is None and top == LOGS_DIR and not slash and parts[-1].endswith(LOG_SUFFIX):
            return self.log(environ, parts)
        if found is None:
            if moved or (top in PROJECT_DIRS and len(parts) == 2 and not slash):
                return redirect(parts, slash or len(parts) == 2, environ)
            headers = Headers({"Vary": "Accept"}) if simple_page and slash else None
            return not_found(headers)
        fd, st = found

        if fd is None:  # a directory
            if moved or not slash:
                return redirect(parts, True, environ)
            if simple_page:
                return self.simple_index(environ, parts)
            for index in DIR_INDEXES:
                found = self.open([*parts, index])
                if found is not None and found[0] is not None:
                    return OpenFile(found[0], found[1], content_type_of(index), CACHE_PAGES)
            return not_found()

        if slash or moved:
            os.close(fd)
            if slash:
                return not_found()
            return redirect(parts, False, environ)
        filename = parts[-1]
        cache = CACHE_PAGES if filename.endswith(PAGE_SUFFIXES) else CACHE_FILES
        return OpenFile(fd, st, content_type_of(filename), cache)

    def log(self, environ: dict[str, Any], parts: list[str]) -> OpenFile | Response:
        """A build log, ``<id>.log`` answered from ``<id>.log.gz``: as it is, with
        Content-Encoding gzip, when the client accepts gzip, else decompressed."""
        found = self.open([*parts[:-1], parts[-1] + ".gz"])
        if found is None or found[0] is None:
            return not_found()
        fd, st = found
        if accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING")):
            return OpenFile(fd, st, LOG_TYPE, CACHE_FILES, encoding="gzip")
        with os.fdopen(fd, "rb") as compressed:
            try:
                text = gzip.decompress(compressed.read())
            except (OSError, EOFError):  # not gzip after all: nothing to show
                return plain(500, "500 Internal Server Error: the log is damaged")
        response = Response(text, status=200, content_type=LOG_TYPE,
                            headers=Headers({"Cache-Control": CACHE_FILES,
                                             "Vary": "Accept-Encoding"}))
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.set_etag(etag_of(st) + "-identity")
        response.last_modified = st.st_mtime
        response.make_conditional(conditional_environ(environ), accept_ranges=True,
                                  complete_length=len(text))
        return response

    def simple_index(self, environ: dict[str, Any], parts: list[str]) -> OpenFile | Response:
        """``/simple/`` or ``/simple/<name>/``, in the representation the client accepts."""
        fmt = format_query(environ.get("QUERY_STRING"))
        choice = negotiate(fmt if fmt is not None else environ.get("HTTP_ACCEPT"))
        if choice is None:
            offered = ", ".join(NAMES)
            return plain(406, f"406 Not Acceptable: this page is served as {offered}",
                         Headers({"Vary": "Accept"}))
        index, content_type = VARIANTS[choice]
        found = self.open([*parts, index])
        if found is None or found[0] is None:
            return not_found(Headers({"Vary": "Accept"}))
        return OpenFile(found[0], found[1], content_type, CACHE_PAGES, vary=True)


def accepts_gzip(header: str | None) -> bool:
    """Whether an Accept-Encoding header names gzip (or ``*``) with a q above 0. No header
    counts as no (as nginx's gunzip has it): a plain ``curl`` gets the text."""
    if not header:
        return False
    for item in header[:MAX_ACCEPT].split(",")[:MAX_RANGES]:
        coding, *params = item.split(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                value = value.strip()
                return bool(_QVALUE.match(value)) and float(value) > 0
        return True
    return False


def format_query(query: str | None) -> str | None:
    """The first ``format`` parameter of a query string (PEP 691), or None."""
    if not query or "format" not in query:
        return None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "format":
            return value
    return None


@dataclass
class OpenFile:
    """An open file (descriptor *fd*, which the target owns) to answer a GET or HEAD with."""

    fd: int
    st: os.stat_result
    content_type: str
    cache: str
    vary: bool = False
    #: Content-Encoding of the stored bytes ("gzip" for a build log), "" for none
    encoding: str = ""

    def headers(self) -> Headers:
        headers = Headers({"Cache-Control": self.cache})
        if self.vary:
            headers["Vary"] = "Accept"
        if self.encoding:
            headers["Content-Encoding"] = self.encoding
            headers["Vary"] = "Accept-Encoding"
        return headers

    def response(self, environ: dict[str, Any]) -> Response:
        """The full werkzeug response: conditional requests and ranges included."""
        return file_response(environ, self.fd, self.st, self.content_type, self.headers())


# -- stats events -----------------------------------------------------------------------------


def salt_key(salt: str | bytes) -> bytes:
    """A blake2b key (at most 64 bytes) from the configured salt."""
    data = salt.encode() if isinstance(salt, str) else bytes(salt)
    return data if len(data) <= 64 else hashlib.blake2b(data).digest()


@functools.lru_cache(maxsize=1024)  # parsing the address is most of make_event's time
def trusted_peer(peer: str, trusted: Networks) -> bool:
    """Whether *peer* is in *trusted* (an IPv4 peer written as IPv6, ``::ffff:127.0.0.1``, as
    itself)."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in trusted)


def client_address(environ: dict[str, Any], trusted: Networks = TRUSTED_PROXIES) -> str:
    """Who asked: the peer, or when the peer is a trusted proxy (WEB_TRUSTED_PROXIES; a
    proxy on this machine by default), the hop that proxy added to X-Forwarded-For (the last
    one: anything before it is the client's own claim)."""
    peer = environ.get("REMOTE_ADDR") or ""
    if trusted_peer(peer, trusted):
        forwarded = environ.get("HTTP_X_FORWARDED_FOR") or ""
        hops = [hop.strip() for hop in forwarded[-1024:].split(",")]
        if hops and hops[-1]:
            return hops[-1][:100]
    return peer


def client_hash(address: str, key: bytes) -> str:
    """The salted hash that stands for a client address in the stats (16 bytes, hex)."""
    return hashlib.blake2b(address.encode("utf-8", "replace"), digest_size=16,
                           key=key).hexdigest()


def make_event(hit: Hit, status: int, environ: dict[str, Any], key: bytes,
               now: float, trusted: Networks = TRUSTED_PROXIES) -> dict[str, Any]:
    """The stats event for *hit* (see service.py for the payload)."""
    event: dict[str, Any] = {"timestamp": now, "package": hit.package}
    if hit.filename is not None:
        event["filename"] = hit.filename
    event["status"] = status
    event["client"] = client_hash(client_address(environ, trusted), key)
    event.update(cached_fields(environ.get("HTTP_USER_AGENT")))
    return event
