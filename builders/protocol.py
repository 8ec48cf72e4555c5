"""The messages between builders and the master: the one schema both sides import.

A Pi installs ``builders/`` only, so this module depends on nothing of the server's. Every
message a side receives goes through a ``check_*`` function here, which returns the message or
raises :class:`ProtocolError` naming the first thing wrong with it: a builder that sends garbage
gets a clear answer and changes nothing.

Topology (all durable; the master declares it, a builder's RabbitMQ user only uses it):

- ``piw.builds.<target>``: one job queue per build target (priority queue), filled by
  build_dispatch. A target is an ABI on a platform, keyed ``<abi>-<platform>``
  (``cp311-linux_armv7l``, ``cp311-linux_aarch64``): one ABI's armv7l and aarch64 builders
  must not take each other's jobs, since their wheels differ.
- exchange ``piw.builders`` (direct): the only exchange a builder may publish to. Its routing
  keys name the queues behind it: ``piw.requests`` (hello, claim, result: answered on the
  builder's reply queue), ``piw.uploads`` (file chunks, then a commit that is answered), and
  ``piw.builder-status`` (heartbeats, never answered).
- ``piw.orders.<builder id>.<RabbitMQ user>``: one queue per builder for its operator's orders
  (pause, resume, kill or skip its build), declared by the master when the builder says hello
  and filled by the admin service; only that RabbitMQ user may read it. The master learns the
  user from the hello's ``user_id`` property, which RabbitMQ checks against the connection's
  user, so a builder cannot name another's queue. An order waits there while the builder is
  offline, for at most ORDER_EXPIRY seconds; the hello's answer says whether an operator's
  pause stands (``paused``).

A job's life on a builder: receive it, ``claim`` it (the master says build or drop: a removed,
skipped, already built or duplicate job is dropped cheaply), build, upload each wheel (chunks,
then ``commit``, answered once the file is in the store), send the ``result`` (answered once
recorded), and only then ack the job. A builder that dies at any point has its job redelivered.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import zlib
from collections.abc import Mapping
from typing import Any

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

EXCHANGE = "piw.builders"
REQUESTS = "piw.requests"
UPLOADS = "piw.uploads"
STATUS = "piw.builder-status"
#: RabbitMQ priorities of job queues run 0..MAX_PRIORITY; higher is built sooner.
MAX_PRIORITY = 9
#: The largest upload chunk either side accepts.
MAX_CHUNK = 1024 * 1024
#: The largest wheel the file store accepts (a guard against a builder announcing nonsense).
MAX_FILE_SIZE = 4 * 1024 ** 3
#: Seconds without a heartbeat after which the master marks a builder gone.
DEFAULT_SILENCE_LIMIT = 60
# Sizes a builder's messages may have: whatever a builder sends is stored or shown, and a
# hostile one should not fill the master's database, disk or memory.
#: A builder's label (characters), as piw-builder's LABEL setting allows.
MAX_LABEL = 100
#: hello's free-text facts (board, python, host; the distro's three, 4x as JSON) and each
#: preinstalled package name.
MAX_INFO_TEXT = 200
#: A whole hello as JSON (its list of preinstalled packages is most of it: a desktop image
#: has ~1,800).
MAX_HELLO_JSON = 1024 * 1024
#: A heartbeat's readings, and its current job, each as JSON (builders.sysinfo: ~300 bytes).
MAX_READINGS_JSON = 16 * 1024
#: A build log: the gzip+base64 text in a result, and what it decompresses to (piw-builder
#: keeps pip's first and last MiB; undecodable bytes become U+FFFD, three bytes each).
MAX_LOG_B64 = 12 * 1024 * 1024
MAX_LOG = 8 * 1024 * 1024

#: Seconds an operator's order waits in a builder's queue for an offline builder: one that
#: comes back within a day obeys it; a kill or skip older than that is moot (the master
#: changed the job at once), and a pause stands anyway (the master says so at hello).
ORDER_EXPIRY = 24 * 3600
#: The orders a builder takes (piwheels' monitor: SLEEP, WAKE, KILL, SKIP).
ORDERS = frozenset({"pause", "resume", "kill", "skip"})
#: The header build_dispatch's queues add to a message: the RabbitMQ user that sent it,
#: from the ``user_id`` property RabbitMQ checked (replacing any header of that name).
SENDER = "x-piw-sender"

BUILD_STATUSES = frozenset({"success", "failed", "timeout", "cancelled"})
# \Z, not $: "$" also matches before a trailing newline ("cp311\n" was an ABI tag, "j1\n" a
# job id, a sha256 with a newline a sha256)
_ABI = re.compile(r"^[a-z]{2}\d{2,3}[a-z]*\Z")
#: A wheel platform tag as ``packaging`` spells it (linux_armv7l, linux_aarch64, linux_x86_64).
_PLATFORM = re.compile(r"^[a-z][a-z0-9_]{0,60}\Z")
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}\Z")


class ProtocolError(ValueError):
    """A message that does not follow this protocol; the text says what is wrong."""


def target_key(abi: str, platform: str) -> str:
    """The key of a build target: ``cp311`` on ``linux_armv7l`` -> ``cp311-linux_armv7l``.
    Neither tag can contain ``-`` (wheel filenames use it between tags), so the key splits
    back unambiguously."""
    return f"{check_abi(abi)}-{check_platform(platform)}"


def split_target(key: object) -> tuple[str, str]:
    """``cp311-linux_armv7l`` -> ``("cp311", "linux_armv7l")``; ProtocolError otherwise."""
    if not isinstance(key, str) or key.count("-") != 1:
        raise ProtocolError(f"not a build target like cp311-linux_armv7l: {key!r:.80}")
    abi, platform = key.split("-")
    try:
        return check_abi(abi), check_platform(platform)
    except ProtocolError as exc:
        raise ProtocolError(f"not a build target like cp311-linux_armv7l: {key!r:.80} "
                            f"({exc})") from None


def check_target(key: object) -> str:
    split_target(key)
    return key  # type: ignore[return-value]


def check_target_or_abi(value: object) -> str:
    """A build target (``cp311-linux_armv7l``) or a bare ABI tag (``cp311``: each of its
    targets), as operators name what to rebuild."""
    if isinstance(value, str) and "-" not in value:
        try:
            return check_abi(value)
        except ProtocolError:
            pass
    try:
        return check_target(value)
    except ProtocolError:
        raise ProtocolError(f"not a build target like cp311-linux_armv7l or an ABI tag like "
                            f"cp311: {value!r:.80}") from None


def job_queue(target: str) -> str:
    """The job queue of one build target (``piw.builds.cp311-linux_armv7l``)."""
    check_target(target)
    return f"piw.builds.{target}"


def builder_permissions(target: str | None = None, user: str | None = None
                        ) -> dict[str, str]:
    """A builder's RabbitMQ permissions (regexes on resource names): publish to the builders'
    exchange, consume the job queue of its build target (of every target when None), its
    own order queues (``piw.orders.<id>.<user>``, when *user* is given) and its own
    server-named reply queue. Nothing else: not nameko's RPC exchange, not another target's
    queue, not another builder's orders, not another service's queue."""
    jobs = re.escape(job_queue(target)) if target else r"piw\.builds\..*"
    orders = rf"|piw\.orders\.[0-9]+\.{re.escape(user)}" if user else ""
    return {"configure": r"^amq\.gen-.*$", "write": f"^{re.escape(EXCHANGE)}$",
            "read": rf"^({jobs}{orders}|amq\.gen-.*)$"}


def order_queue(builder_id: int, user: str) -> str:
    """The queue of one builder's orders: its id, then its RabbitMQ user (the id is digits,
    so the user name after it is exactly the user, whatever dots it has)."""
    if not isinstance(builder_id, int) or isinstance(builder_id, bool) or builder_id < 0:
        raise ProtocolError(f"not a builder id: {builder_id!r:.40}")
    if not isinstance(user, str) or not user or len(user) > 200 or \
            any(ord(c) < 32 for c in user):
        raise ProtocolError(f"not a RabbitMQ user name: {user!r:.80}")
    return f"piw.orders.{builder_id}.{user}"


def check_abi(abi: object) -> str:
    if not isinstance(abi, str) or not _ABI.match(abi):
        raise ProtocolError(f"not an ABI tag like cp311: {abi!r:.80}")
    return abi


def check_platform(platform: object) -> str:
    if not isinstance(platform, str) or not _PLATFORM.match(platform) or platform == "any":
        raise ProtocolError(f"not a platform tag like linux_armv7l: {platform!r:.80}")
    return platform


def _fits(tag_platform: str, platform: str) -> bool:
    """Whether a wheel's platform tag runs on *platform*: the same tag, or a manylinux or
    musllinux tag of the same architecture (manylinux_2_17_aarch64 on linux_aarch64)."""
    if tag_platform == platform:
        return True
    arch = platform.removeprefix("linux_")
    return arch != platform and tag_platform.startswith(("manylinux", "musllinux")) \
        and tag_platform.endswith("_" + arch)


def wheel_target_problem(filename: str, target: str) -> str | None:
    """Why a wheel cannot be a build of *target*, or None when it can: every platform tag of
    it must be ``any`` (a pure wheel fits every platform) or the target's platform (its
    manylinux/musllinux spellings included). An aarch64 wheel sent for an armv7l job would
    otherwise be served to armv7l Pis, which cannot load it."""
    _, platform = split_target(target)
    _, _, _, tags = parse_wheel_filename(check_wheel_filename(filename))
    wrong = sorted({t.platform for t in tags
                    if t.platform != "any" and not _fits(t.platform, platform)})
    if wrong:
        return (f"{filename} is built for {', '.join(wrong)}, but its job is for "
                f"{platform} (target {target})")
    return None


def check_wheel_filename(filename: object) -> str:
    """A bare, valid wheel filename: no directory part, no ``..``, no NUL, parseable tags."""
    if not isinstance(filename, str) or not filename:
        raise ProtocolError(f"filename must be a non-empty string, not {filename!r:.80}")
    if "/" in filename or "\\" in filename or "\0" in filename or ".." in filename:
        raise ProtocolError(f"refusing filename with a path separator, '..' or NUL: "
                            f"{filename!r:.300}")
    if len(filename) > 255:
        raise ProtocolError(f"filename longer than 255 characters: {filename[:60]!r}...")
    try:
        parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise ProtocolError(f"not a valid wheel filename: {filename!r:.300} ({exc})") from None
    return filename


def _field(msg: Mapping[str, Any], key: str, kind: type | tuple[type, ...],
           optional: bool = False) -> Any:
    value = msg.get(key)
    if value is None and optional:
        return None
    # bool is an int: never accept one where a number is meant (a tuple of kinds too: True
    # was a duration)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kinds):
        want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ProtocolError(f"{msg.get('type', 'message')}: field {key!r} must be {want}, "
                            f"not {value!r:.80}")
    return value


def _mapping(msg: object, kind: str) -> Mapping[str, Any]:
    if not isinstance(msg, Mapping):
        raise ProtocolError(f"{kind}: expected a JSON object, not {type(msg).__name__}")
    if msg.get("type") != kind:
        raise ProtocolError(f"expected a {kind!r} message, not {msg.get('type')!r:.40}")
    return msg


def _id(msg: Mapping[str, Any], key: str) -> str:
    value = _field(msg, key, str)
    if not _ID.match(value):
        raise ProtocolError(f"{msg['type']}: field {key!r} is not an id: {value!r:.80}")
    return value


def _sha256(msg: Mapping[str, Any], key: str) -> str:
    value = _field(msg, key, str)
    if not _HEX64.match(value):
        raise ProtocolError(f"{msg['type']}: field {key!r} is not a hex sha256: {value!r:.80}")
    return value


# -- master -> builder -------------------------------------------------------------------------
def job(job_id: str, package: str, version: str, target: str,
        upstream_files: list[str]) -> dict[str, Any]:
    """A build job for a *target* (``cp311-linux_armv7l``; ``abi`` and ``platform`` say the
    same in parts). ``upstream_files`` are filenames upstream already serves for the version:
    a built wheel with one of these names is recorded but never uploaded (pip would see two
    hashes for one filename)."""
    abi, platform = split_target(target)
    return {"type": "job", "job_id": job_id, "package": package, "version": version,
            "target": target, "abi": abi, "platform": platform,
            "upstream_files": upstream_files}


def check_job(msg: object) -> Mapping[str, Any]:
    m = _mapping(msg, "job")
    _id(m, "job_id")
    _field(m, "package", str)
    _field(m, "version", str)
    check_target(m.get("target"))
    files = _field(m, "upstream_files", list)
    if not all(isinstance(f, str) for f in files):
        raise ProtocolError("job: upstream_files must be a list of filenames")
    return m


# -- builder -> master: requests (answered) ----------------------------------------------------
def hello(label: str, abi: str, info: Mapping[str, Any]) -> dict[str, Any]:
    """A builder announcing itself; ``info`` holds platform, distro, board, python,
    preinstalled (apt packages of the target image) and host. Its build target is
    ``target_key(abi, platform)``: the queue it consumes."""
    return {"type": "hello", "label": label, "abi": abi, **info}


def hello_target(msg: Mapping[str, Any]) -> str:
    """The build target a (checked) hello announces."""
    return target_key(msg["abi"], msg["platform"])


def _label(m: Mapping[str, Any]) -> str:
    label = _field(m, "label", str)
    if not 0 < len(label) <= MAX_LABEL or not label.isprintable():
        raise ProtocolError(f"{m['type']}: label must be 1-{MAX_LABEL} printable characters, "
                            f"not {label!r:.120}")
    return label


def _json_size(m: Mapping[str, Any], key: str | None, limit: int) -> None:
    """Refuse *key* (the whole message when None) if it takes more than *limit* bytes as
    JSON."""
    value = m if key is None else m.get(key)
    size = len(json.dumps(value, separators=(",", ":")).encode("utf-8", "surrogatepass"))
    if size > limit:
        what = "message" if key is None else f"field {key!r}"
        raise ProtocolError(f"{m.get('type', 'message')}: {what} is {size} bytes as JSON, "
                            f"more than {limit}")


def check_hello(msg: object) -> Mapping[str, Any]:
    m = _mapping(msg, "hello")
    _label(m)
    check_abi(m.get("abi"))
    check_platform(m.get("platform"))
    for key in ("board", "python", "host"):
        value = _field(m, key, str, optional=True)
        if value is not None and len(value) > MAX_INFO_TEXT:
            raise ProtocolError(f"hello: {key} longer than {MAX_INFO_TEXT} characters")
    _json_size(m, "distro", MAX_INFO_TEXT * 4)  # os-release's ID, VERSION_ID, CODENAME
    pre = _field(m, "preinstalled", list)
    if not all(isinstance(p, str) and len(p) <= MAX_INFO_TEXT for p in pre):
        raise ProtocolError("hello: preinstalled must be a list of package names "
                            f"(at most {MAX_INFO_TEXT} characters each)")
    _json_size(m, None, MAX_HELLO_JSON)
    return m


def claim(builder_id: int, job_id: str, redelivered: bool) -> dict[str, Any]:
    return {"type": "claim", "builder_id": builder_id, "job_id": job_id,
            "redelivered": redelivered}


def check_claim(msg: object) -> Mapping[str, Any]:
    m = _mapping(msg, "claim")
    _field(m, "builder_id", int)
    _id(m, "job_id")
    _field(m, "redelivered", bool)
    return m


def result(builder_id: int, job_id: str, status: str, duration: float, log_gz_b64: str,
           files: list[dict[str, Any]], not_uploaded: list[str]) -> dict[str, Any]:
    """The outcome of a build. ``files`` are the inspection records (builders.inspection
    WheelInfo.as_dict()) of the wheels uploaded; ``not_uploaded`` names wheels withheld
    because upstream serves the same filename."""
    return {"type": "result", "builder_id": builder_id, "job_id": job_id, "status": status,
            "duration": duration, "log_gz_b64": log_gz_b64, "files": files,
            "not_uploaded": not_uploaded}


def check_result(msg: object) -> Mapping[str, Any]:
    m = _mapping(msg, "result")
    _field(m, "builder_id", int)
    _id(m, "job_id")
    # a str first: a list or an object is unhashable, and "in" a frozenset raised TypeError
    # (the master answered "master failed ... retry", and the builder sent it again forever)
    if not isinstance(m.get("status"), str) or m.get("status") not in BUILD_STATUSES:
        raise ProtocolError(f"result: status must be one of {sorted(BUILD_STATUSES)}, "
                            f"not {m.get('status')!r:.40}")
    duration = _field(m, "duration", (int, float))
    if not 0 <= duration < math.inf:  # NaN fails this too
        raise ProtocolError(f"result: duration must be a finite number of seconds >= 0, not "
                            f"{duration!r}")
    check_log(_field(m, "log_gz_b64", str))
    for f in _field(m, "files", list):
        check_file_info(f)
    for fn in _field(m, "not_uploaded", list):
        check_wheel_filename(fn)
    return m


def check_log(log_gz_b64: str) -> str:
    """A result's build log: base64 of gzip, at most MAX_LOG_B64 characters that decompress
    to at most MAX_LOG bytes (the web service decompresses logs for clients without gzip: a
    small gzip bomb would be gigabytes there). Empty is no log."""
    if len(log_gz_b64) > MAX_LOG_B64:
        raise ProtocolError(f"result: log_gz_b64 is {len(log_gz_b64)} characters, more than "
                            f"{MAX_LOG_B64}")
    if not log_gz_b64:
        return log_gz_b64
    try:
        packed = base64.b64decode(log_gz_b64, validate=True)
        inflate = zlib.decompressobj(wbits=31)  # gzip only
        out = inflate.decompress(packed, MAX_LOG + 1)
    except (binascii.Error, ValueError, zlib.error) as exc:
        raise ProtocolError(f"result: log_gz_b64 is not base64 of gzip ({exc})") from None
    if len(out) > MAX_LOG or inflate.unconsumed_tail:
        raise ProtocolError(f"result: the build log decompresses to more than {MAX_LOG} bytes")
    if not inflate.eof:
        raise ProtocolError("result: log_gz_b64 is a truncated gzip stream")
    return log_gz_b64


def check_file_info(info: object) -> Mapping[str, Any]:
    """One wheel's inspection record, as a result or a commit carries it."""
    if not isinstance(info, Mapping):
        raise ProtocolError("file info must be a JSON object")
    m = {"type": "file info", **info}
    check_wheel_filename(m.get("filename"))
    size = _field(m, "size", int)
    if not 0 < size <= MAX_FILE_SIZE:
        raise ProtocolError(f"file info: size out of range: {size}")
    _sha256(m, "sha256")
    _field(m, "requires_python", str, optional=True)
    for key in ("requires_dist", "apt_depends", "unresolved"):
        values = _field(m, key, list)
        if not all(isinstance(v, str) for v in values):
            raise ProtocolError(f"file info: {key} must be a list of strings")
    return info


# -- builder -> master: uploads ----------------------------------------------------------------
def chunk_headers(upload_id: str, offset: int, sha256: str) -> dict[str, Any]:
    """Headers of one chunk message; its body is the raw bytes."""
    return {"piw-type": "chunk", "upload_id": upload_id, "offset": offset, "sha256": sha256}


def check_chunk(headers: Mapping[str, Any], body: object) -> Mapping[str, Any]:
    m = {"type": "chunk", **headers}
    _id(m, "upload_id")
    offset = _field(m, "offset", int)
    _sha256(m, "sha256")
    if not isinstance(body, bytes):
        raise ProtocolError("chunk: body must be raw bytes")
    if not 0 < len(body) <= MAX_CHUNK:
        raise ProtocolError(f"chunk: {len(body)} bytes, must be 1..{MAX_CHUNK}")
    if not 0 <= offset <= MAX_FILE_SIZE - len(body):
        raise ProtocolError(f"chunk: offset out of range: {offset}")
    return m


def commit(upload_id: str, builder_id: int, job_id: str, info: Mapping[str, Any]
           ) -> dict[str, Any]:
    """Sent after an upload's chunks: the file is complete when it has ``info['size']`` bytes
    hashing to ``info['sha256']``. ``info`` is the wheel's inspection record."""
    return {"type": "commit", "upload_id": upload_id, "builder_id": builder_id,
            "job_id": job_id, "info": dict(info)}


def check_commit(msg: object) -> Mapping[str, Any]:
    m = _mapping(msg, "commit")
    _id(m, "upload_id")
    _field(m, "builder_id", int)
    _id(m, "job_id")
    check_file_info(m.get("info"))
    return m


# -- builder -> master: heartbeats -------------------------------------------------------------
def heartbeat(builder_id: int, label: str, readings: Mapping[str, Any],
              job: Mapping[str, Any] | None, paused: bool = False) -> dict[str, Any]:
    """``readings`` is builders.sysinfo.snapshot(); ``job`` the current job (job_id, package,
    version, started: epoch seconds) or None when idle; ``paused``: by an operator's order."""
    return {"type": "heartbeat", "builder_id": builder_id, "label": label,
            "readings": dict(readings), "job": dict(job) if job else None, "paused": paused}


def check_heartbeat(msg: object) -> Mapping[str, Any]:
    m = _mapping(msg, "heartbeat")
    _field(m, "builder_id", int)
    if m.get("label") is not None:
        _label(m)
    _field(m, "readings", Mapping)
    _json_size(m, "readings", MAX_READINGS_JSON)
    _field(m, "job", Mapping, optional=True)
    _json_size(m, "job", MAX_READINGS_JSON)
    _field(m, "paused", bool, optional=True)
    return m


# -- master -> builder: an operator's orders ---------------------------------------------------
def order(kind: str, job_id: str | None = None, reason: str | None = None) -> dict[str, Any]:
    """An operator's order: ``pause`` (finish the current build, take no new job),
    ``resume``, ``kill`` or ``skip`` (stop building *job_id* and drop it: the master has
    already given the job to another builder, or recorded it skipped for *reason*)."""
    return {"type": "order", "order": kind, "job_id": job_id, "reason": reason}


def check_order(msg: object) -> Mapping[str, Any]:
    m = _mapping(msg, "order")
    if m.get("order") not in ORDERS:
        raise ProtocolError(f"order: not one of {', '.join(sorted(ORDERS))}: "
                            f"{m.get('order')!r:.40}")
    if m["order"] in ("kill", "skip"):
        _id(m, "job_id")
    _field(m, "reason", str, optional=True)
    return m


# -- answers -----------------------------------------------------------------------------------
def ok(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


def error(message: str, retry: bool = False, **fields: Any) -> dict[str, Any]:
    """A refusal. ``retry`` tells the builder that sending again may work (a busy or
    restarting master, a corrupted upload); otherwise the request itself is wrong."""
    return {"ok": False, "error": message, "retry": retry, **fields}


def job_lost(message: str) -> dict[str, Any]:
    """A refusal of a commit or result meaning the job is no longer this builder's (its
    version was removed, or another builder took it over after a redelivery): the builder
    sends nothing more for it and acks it."""
    return error(message, job_lost=True)


def is_job_lost(reply: Mapping[str, Any]) -> bool:
    return reply.get("ok") is False and reply.get("job_lost") is True
