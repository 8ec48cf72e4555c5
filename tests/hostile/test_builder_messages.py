"""Builder messages and upload chunks with every field wrong in turn: through builders/protocol.py's
validators (all of them, every mutation, then hypothesis's random junk), then through the real
build_dispatch and file_manager over RabbitMQ and PostgreSQL. Each is refused with a clear
error (never "master failed"), nothing is stored, and the state is what it was.

tests/build_dispatch/test_service.py and tests/file_manager/test_service.py cover one garbage
request, someone else's result, hostile filenames and corrupt chunks by example; here every
field of every message takes every kind of wrong value.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import math
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from builders import protocol, sysinfo
from builders.builder import pack_log
from piw_services.file_manager.service import FileManagerService
from tests.build_dispatch.test_service import ARMV7, dispatch, emit, hello, version_added  # noqa: F401
from tests.conftest import wait_for
from tests.file_manager.conftest import FakeBuilder, add_target, info_of, wheel
from tests.hostile.conftest import examples, json_junk, tried

AREA = "builder messages"
MISSING = object()
ABI, PLATFORM = protocol.split_target(ARMV7)
SHA = "ab" * 32
#: wrong values every field gets in turn (MISSING: the field is left out)
WRONG = [MISSING, None, True, False, 0, -1, 2**63, -(2**63), 1.5, math.nan, math.inf, "",
         " ", "x" * 100_000, "../../etc/passwd", "a/b", "a\\b", "a\nb", "ok\n", "\x00",
         "\udc80", "\u202e", "' OR 1=1; --", [], ["x"], [1], {}, {"a": 1}, SHA.upper(),
         SHA + "\n", SHA[:-1], "-1", "1e9"]
INFO = {"filename": "foo-1.0-py3-none-any.whl", "size": 5, "sha256": SHA,
        "requires_python": None, "requires_dist": [], "apt_depends": [], "unresolved": [],
        "metadata_sha256": SHA}


def valid_messages(job_id: str = "j1", builder_id: int = 1) -> dict[str, tuple]:
    """(message, its validator) for each kind a builder sends."""
    return {
        "hello": (protocol.hello("pi1", ABI, {"platform": PLATFORM, "preinstalled": ["libc6"],
                                              "python": "3.11.2"}), protocol.check_hello),
        "claim": (protocol.claim(builder_id, job_id, False), protocol.check_claim),
        "result": (protocol.result(builder_id, job_id, "failed", 1.0, "", [dict(INFO)],
                                   ["foo-1.0-py3-none-any.whl"]), protocol.check_result),
        "commit": (protocol.commit("u1", builder_id, job_id, dict(INFO)), protocol.check_commit),
        "heartbeat": (protocol.heartbeat(builder_id, "pi1", {"load": [0.1]}, None),
                      protocol.check_heartbeat),
    }


def mutated(msg: Mapping, path: tuple, value) -> dict:
    """A copy of *msg* with the field at *path* (keys, into nested objects and lists) set to
    *value*, or removed when *value* is MISSING."""
    top = dict(msg)
    node = top
    for key in path[:-1]:
        child = node[key]
        child = list(child) if isinstance(child, list) else dict(child)
        node[key] = child
        node = child
    if value is MISSING:
        if isinstance(node, list):
            node.pop(path[-1])
        else:
            node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return top


def fields(msg: Mapping, prefix: tuple = ()) -> list[tuple]:
    """Every path into *msg*: its keys, the keys of nested objects, the first item of lists."""
    out = []
    for key, value in msg.items():
        out.append(prefix + (key,))
        if isinstance(value, Mapping):
            out += fields(value, prefix + (key,))
        elif isinstance(value, list) and value:
            out.append(prefix + (key, 0))
            if isinstance(value[0], Mapping):
                out += fields(value[0], prefix + (key, 0))
    return out


def _hex64(v):
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def _id(v):
    return isinstance(v, str) and 0 < len(v) <= 100 and all(
        c.isascii() and (c.isalnum() or c in "._:-") for c in v)


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _filename(v):
    try:
        protocol.check_wheel_filename(v)
    except protocol.ProtocolError:
        return False
    return "\n" not in v and v.isprintable()


def _strings(v):
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


#: What an accepted value of a field must be (a field not named may be anything).
SANE = {
    "type": lambda v: isinstance(v, str), "abi": lambda v: protocol._ABI.pattern and isinstance(
        v, str) and v.isascii() and v.isalnum() and v.islower() and len(v) <= 10,
    "platform": lambda v: isinstance(v, str) and v.isascii() and "\n" not in v and len(v) <= 61,
    "label": lambda v: isinstance(v, str), "preinstalled": _strings,
    "builder_id": _int, "job_id": _id, "upload_id": _id, "redelivered": lambda v: v in (
        True, False),
    "status": lambda v: v in protocol.BUILD_STATUSES,
    "duration": lambda v: _int(v) or (isinstance(v, float) and math.isfinite(v) and v >= 0),
    "log_gz_b64": lambda v: isinstance(v, str), "files": lambda v: isinstance(v, list),
    "not_uploaded": lambda v: isinstance(v, list) and all(_filename(x) for x in v),
    "filename": _filename, "size": lambda v: _int(v) and 0 < v <= protocol.MAX_FILE_SIZE,
    "sha256": _hex64, "requires_dist": _strings, "apt_depends": _strings,
    "unresolved": _strings, "requires_python": lambda v: v is None or isinstance(v, str),
    "readings": lambda v: isinstance(v, Mapping),
    "job": lambda v: v is None or isinstance(v, Mapping), "info": lambda v: isinstance(
        v, Mapping),
}

#: Fields the master reads nothing from (a heartbeat's label: the registry has the hello's).
UNUSED = {("heartbeat", "label")}


def judge(check, msg, path=None) -> str | None:
    """The validator's verdict: None when accepted (then every field it holds must be sane),
    else the refusal's text. Anything but ProtocolError fails the test."""
    try:
        checked = check(msg)
    except protocol.ProtocolError as exc:
        assert str(exc) and len(str(exc)) < 1000, exc
        return str(exc)
    assert checked is msg or checked == msg
    for p in fields(msg):
        value = msg
        for key in p:
            value = value[key]
        name = next((k for k in reversed(p) if isinstance(k, str)), None)
        kind = msg.get("type") if isinstance(msg.get("type"), str) else None
        if (kind, name) in UNUSED or p[0] not in KNOWN.get(kind, ()):
            continue  # not read by the master, or not a field of this kind of message
        if name in SANE and not (isinstance(p[-1], int) and name in ("files",)):
            if isinstance(p[-1], int):
                continue  # list items are judged with their list
            assert SANE[name](value), (path, p, value)
    return None


KNOWN = {kind: set(msg) for kind, (msg, _) in valid_messages().items()}


def every_wrong_field():
    """(kind, validator, path, wrong value, mutated message) for every field of every message
    and every wrong value."""
    for kind, (msg, check) in valid_messages().items():
        for path in fields(msg):
            for value in WRONG:
                yield kind, check, path, value, mutated(msg, path, value)


CASES = list(every_wrong_field())


def test_every_field_wrong_in_turn_is_refused_or_harmless():
    """Each of the ~1,500 (message, field, wrong value) cases: a ProtocolError naming the
    problem, or a message whose every field is still sane."""
    refused = 0
    for kind, check, path, value, msg in CASES:
        tried(AREA)
        if judge(check, msg, (kind, path, repr(value)[:40])) is not None:
            refused += 1
    for kind, (msg, check) in valid_messages().items():
        assert judge(check, msg) is None, kind
    assert refused > len(CASES) // 2


@examples(600)
@given(kind=st.sampled_from(sorted(valid_messages())), extra=st.dictionaries(
    st.sampled_from(["type", "builder_id", "job_id", "upload_id", "label", "abi", "platform",
                     "status", "duration", "files", "info", "readings", "size", "offset"]),
    json_junk, max_size=4), whole=st.one_of(st.none(), json_junk))
def test_random_junk_is_refused_or_harmless(kind, extra, whole):
    tried(AREA)
    msg, check = valid_messages()[kind]
    judge(check, whole if whole is not None else {**msg, **extra})


@examples(400)
@given(headers=st.dictionaries(st.sampled_from(["upload_id", "offset", "sha256", "piw-type"]),
                               st.one_of(json_junk, st.sampled_from(WRONG[1:])), max_size=4),
       body=st.one_of(st.binary(max_size=64), st.text(max_size=5), st.none(), st.integers(),
                      st.just(b"x" * (protocol.MAX_CHUNK + 1))))
def test_chunk_headers_and_bodies(headers, body):
    tried(AREA)
    base = protocol.chunk_headers("u1", 0, SHA)
    try:
        m = protocol.check_chunk({**base, **headers}, body)
    except protocol.ProtocolError as exc:
        assert str(exc)
        return
    assert _id(m["upload_id"]) and _hex64(m["sha256"]) and _int(m["offset"])
    assert isinstance(body, bytes) and 0 < len(body) <= protocol.MAX_CHUNK
    assert 0 <= m["offset"] <= protocol.MAX_FILE_SIZE - len(body)


# -- the real build_dispatch ----------------------------------------------------------------------
#: What a refused message must not change (a builder's state and last_seen are the silence
#: timer's: the fixture's limit is 2 s)
DISPATCH_TABLES = {"builders": "id, label, abi, info::text, preinstalled::text, job_id, "
                               "job_started_at, readings::text, first_seen",
                   "build_targets": "*", "builds": "*", "build_versions": "*"}


def dispatch_state(db):
    with db() as s:
        return {t: sorted(map(repr, s.execute(text(f"SELECT {cols} FROM {t}")).all()))
                for t, cols in DISPATCH_TABLES.items()}


def jsonable(value) -> bool:
    return value is not MISSING and not (isinstance(value, str) and "\udc80" in value)


def test_build_dispatch_refuses_every_wrong_field_and_changes_nothing(dispatch, db):  # noqa: F811
    b1 = hello(dispatch)
    b2 = hello(dispatch, "pi2")
    emit(db, [version_added("foo", "1.0")])
    job = protocol.check_job(dispatch.get_job(ARMV7).payload)
    assert dispatch.ask(protocol.claim(b1, job["job_id"], False))["build"]
    # builder_id a stranger's, job_id someone else's or no one's: the other fields are right
    strangers = [protocol.result(b2, job["job_id"], "success", 1.0, "", [dict(INFO)], []),
                 protocol.result(4242, job["job_id"], "failed", 1.0, "", [], []),
                 protocol.result(b1, "j-nobody", "failed", 1.0, "", [], []),
                 protocol.result(b1, job["job_id"] + "x", "failed", 1.0, "", [], [])]
    before = dispatch_state(db)
    sent = 0
    for kind, check, path, value, msg in [*CASES, *(("result", protocol.check_result, (), None,
                                                      m) for m in strangers)]:
        if kind not in ("claim", "result", "hello", "heartbeat") or not jsonable(value):
            continue
        if kind in ("claim", "result") and path:
            msg = {**msg, "builder_id": msg.get("builder_id") if path[0] == "builder_id"
                   else b1, "job_id": msg.get("job_id") if path[0] == "job_id"
                   else job["job_id"]}
        if path and check is not None and judge(check, msg) is None:
            continue  # accepted by the protocol: a valid message, not this test's business
        key = protocol.STATUS if kind == "heartbeat" else protocol.REQUESTS
        answer = dispatch.ask(msg, key)
        tried(AREA)
        sent += 1
        if not path and answer["ok"]:  # a job that is not (or no longer) wanted: dropped
            assert answer["build_id"] is None and answer["discarded"], answer
            continue
        assert answer["ok"] is False, (kind, path, value, answer)
        assert "master failed" not in answer["error"] and not answer["retry"], answer
        assert 0 < len(answer["error"]) < 1000
    assert sent > 100
    assert dispatch_state(db) == before
    # and it still answers the builder that holds the job
    done = dispatch.ask(protocol.result(b1, job["job_id"], "failed", 1.0, "", [], []))
    assert done["ok"], done


# -- the real file_manager ------------------------------------------------------------------------
@pytest.fixture
def store_root(tmp_path):
    return tmp_path / "store"


@pytest.fixture
def file_manager(db, db_url, rabbit_config, runner_factory, store_root):
    config = {"AMQP_URI": rabbit_config["AMQP_URI"], "DB_URL": db_url, "WWW": str(store_root),
              "serializer": "json", "max_workers": 10, "FILE_COMMIT_WAIT": 0.1}
    runner = runner_factory(config, FileManagerService)
    runner.start()
    builder = FakeBuilder(rabbit_config["AMQP_URI"])
    yield builder
    builder.close()


def ask(builder: FakeBuilder, body, headers=None, timeout=20):
    """Publish a chunk or commit with a reply queue; its answer."""
    corr = uuid.uuid4().hex
    extra = {"headers": headers} if headers is not None else {}
    if isinstance(body, bytes):
        builder.producer.publish(body, routing_key=protocol.UPLOADS,
                                 content_type="application/data", content_encoding="binary",
                                 reply_to=builder.replies.name, correlation_id=corr, **extra)
    else:
        builder.producer.publish(body, routing_key=protocol.UPLOADS, serializer="json",
                                 reply_to=builder.replies.name, correlation_id=corr, **extra)
    return builder.reply(corr, timeout)


def store_state(db, root: Path):
    with db() as s:
        rows = {t: sorted(map(repr, s.execute(text(f"SELECT * FROM {t}")).all()))
                for t in ("files", "build_targets", "builds")}
    on_disk = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                     if p.is_file()) if root.exists() else []
    return rows, on_disk


def test_file_manager_refuses_every_wrong_chunk_and_commit_and_stores_nothing(
        file_manager, db, store_root, tmp_path):
    add_target(db)  # job j1, built by builder 1
    add_target(db, package="bar", job_id="j2", builder_id=2)  # someone else's
    src = wheel(tmp_path / "src", "foo-1.0-py3-none-any.whl")
    data = src.read_bytes()
    info = info_of(src)
    before = store_state(db, store_root)

    chunk_cases = []
    good_headers = protocol.chunk_headers("u1", 0, hashlib.sha256(data).hexdigest())
    for key in ("upload_id", "offset", "sha256"):
        for value in WRONG:
            # what AMQP headers can carry (a finite float, a signed 64-bit int)
            if jsonable(value) and not (isinstance(value, float) and not math.isfinite(value)
                                        ) and not (isinstance(value, int)
                                                   and not -2**63 <= value < 2**63):
                chunk_cases.append((mutated(good_headers, (key,), value), data))
    chunk_cases += [(good_headers, b""), (good_headers, "text, not bytes"),
                    ({**good_headers, "offset": protocol.MAX_FILE_SIZE}, data)]
    sent = 0
    for headers, body in chunk_cases:
        try:
            protocol.check_chunk(headers, body if isinstance(body, bytes) else body)
            continue  # a valid chunk (a wrong hash is refused by the store, unanswered)
        except protocol.ProtocolError:
            pass
        answer = ask(file_manager, body, headers)
        tried(AREA)
        sent += 1
        assert answer["ok"] is False and "master failed" not in answer["error"], answer
    commit_cases = [protocol.commit("u1", 1, "j1", mutated(info, (key,), value))
                    for key in ("filename", "size", "sha256", "requires_dist", "apt_depends",
                                "unresolved", "requires_python")
                    for value in WRONG if jsonable(value)]
    commit_cases += [mutated(protocol.commit("u1", 1, "j1", info), (key,), value)
                     for key in ("upload_id", "builder_id", "job_id", "type")
                     for value in WRONG if jsonable(value)]
    commit_cases += [protocol.commit("u1", 2, "j1", info),  # not the builder of j1
                     protocol.commit("u1", 1, "j2", info),  # someone else's job
                     protocol.commit("u1", 2, "j2", info),  # someone else's job, wheel of foo
                     protocol.commit("u1", 1, "nojob", info),
                     protocol.commit("u1", 1, "j1", {**info, "filename":
                                                     "bar-1.0-py3-none-any.whl"}),
                     protocol.commit("u1", 1, "j1", {**info, "filename":
                                                     "foo-9.9-py3-none-any.whl"}),
                     protocol.commit("u1", 1, "j1", {**info, "size": info["size"] + 1}),
                     protocol.commit("u1", 1, "j1", {**info, "sha256": SHA})]
    for msg in commit_cases:  # nothing was uploaded: each is refused one way or another
        answer = ask(file_manager, msg)
        tried(AREA)
        sent += 1
        assert answer["ok"] is False, (msg, answer)
        assert "master failed" not in answer["error"], answer
        assert 0 < len(answer["error"]) < 2000
    assert sent > 150
    assert store_state(db, store_root) == before
    # the same service then takes the real upload whole
    file_manager.send_chunks("u1", data)
    answer = wait_for(lambda: file_manager.commit("u1", info), 20, what="the good commit")
    assert answer["ok"], answer
    assert store_state(db, store_root) != before


def test_a_heartbeat_with_a_broken_sensor_still_counts(dispatch, db):  # noqa: F811
    """A Pi whose sensor gives NaN (or an infinite load) is alive all the same: its readings
    are stored with null in place of the numbers JSON has no room for."""
    b1 = hello(dispatch)
    readings = {"cpu_temperature": math.nan, "load": [math.inf, 0.5, -math.inf], "ok": 1.5}
    dispatch.send(protocol.heartbeat(b1, "pi1", readings, None), protocol.STATUS)
    tried(AREA)

    def stored():
        with db() as s:
            return s.execute(text("SELECT readings FROM builders WHERE id = :b"),
                             {"b": b1}).scalar()

    got = wait_for(stored, 10, what="the heartbeat's readings stored")
    assert got == {"cpu_temperature": None, "load": [None, 0.5, None], "ok": 1.5}


def test_sizes_a_builder_may_send_are_bounded():
    """Labels, hello's facts, heartbeat readings and build logs have limits (issue 18): a
    message over one is refused naming it; one at the limit passes."""
    def refused(check, msg, match):
        tried(AREA)
        with pytest.raises(protocol.ProtocolError, match=match):
            check(msg)

    base = {"platform": PLATFORM, "preinstalled": ["libc6"], "python": "3.11.2"}
    protocol.check_hello(protocol.hello("p" * protocol.MAX_LABEL, ABI, base))
    # what piw-builder sends (builder.py's _hello) passes
    real = {**base, "distro": sysinfo.distro(), "board": sysinfo.board() or "Raspberry Pi 4",
            "host": "pi42"}
    protocol.check_hello(protocol.hello("pi1", ABI, real))
    refused(protocol.check_hello, protocol.hello("pi1", ABI, {**real, "distro": {
        "ID": "d" * 1000}}), "field 'distro' is .* more than 800")
    refused(protocol.check_hello, protocol.hello("p" * (protocol.MAX_LABEL + 1), ABI, base),
            "label must be 1-100 printable")
    refused(protocol.check_hello, protocol.hello("pi\n1", ABI, base), "printable")
    refused(protocol.check_hello, protocol.hello("pi1", ABI, {**base, "board": "b" * 201}),
            "board longer than 200")
    refused(protocol.check_hello, protocol.hello("pi1", ABI, {**base, "preinstalled":
                                                               ["p" * 201]}), "at most 200")
    many = [f"package-number-{i}" for i in range(60_000)]  # ~1.3 MB as JSON
    refused(protocol.check_hello, protocol.hello("pi1", ABI, {**base, "preinstalled": many}),
            "more than 1048576")

    protocol.check_heartbeat(protocol.heartbeat(1, "pi1", {"x": "r" * 16_000}, None))
    refused(protocol.check_heartbeat, protocol.heartbeat(1, "pi1", {"x": "r" * 17_000}, None),
            "field 'readings' is .* more than 16384")
    refused(protocol.check_heartbeat,
            protocol.heartbeat(1, "pi1", {}, {"job_id": "j", "package": "p" * 17_000}),
            "field 'job' is")
    refused(protocol.check_heartbeat, protocol.heartbeat(1, "l" * 101, {}, None), "label")

    def result(log):
        return protocol.result(1, "j1", "failed", 1.0, log, [], [])

    text_log = "x" * (2 * 1024 * 1024)
    protocol.check_result(result(pack_log(text_log)))
    protocol.check_result(result(""))
    bomb = base64.b64encode(gzip.compress(b"\0" * (protocol.MAX_LOG + 1))).decode()
    assert len(bomb) < 100_000  # small on the wire, 8 MiB in the web service's memory
    refused(protocol.check_result, result(bomb), "decompresses to more than 8388608")
    refused(protocol.check_result, result("A" * (protocol.MAX_LOG_B64 + 1)), "more than")
    refused(protocol.check_result, result("not base64!"), "not base64 of gzip")
    refused(protocol.check_result, result(base64.b64encode(b"plain").decode()),
            "not base64 of gzip")
    refused(protocol.check_result, result(pack_log("hello")[:-8]), "truncated|not base64")
