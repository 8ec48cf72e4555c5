"""The event log (loading, validation, marshalling, appends) and the state model."""

from __future__ import annotations

import json
import threading
import xmlrpc.client

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from piw_services.fake_pypi.log import (
    Event,
    EventLog,
    EventLogError,
    clean_for_xml,
    marshal_value,
    write_jsonl,
)
from piw_services.fake_pypi.state import apply_events

from .fake_pypi_helpers import T0, ev


def _write(path, lines):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _stdlib_fragment(value):
    text = xmlrpc.client.dumps((value,), allow_none=True)
    prefix, suffix = "<params>\n<param>\n", "</param>\n</params>\n"
    assert text.startswith(prefix) and text.endswith(suffix)
    return text[len(prefix) : -len(suffix)]


# -- loading ------------------------------------------------------------------


def test_load_jsonl_with_raw_rows_and_blank_lines(tmp_path):
    path = _write(
        tmp_path / "events.jsonl",
        [
            ev("foo", None, "create", 1),
            ev("foo", "1.0", "new release", 2, kind="c-zlib", summary="s"),
            {"raw": ["only", "three", None], "serial": 5},
        ],
    )
    path.write_text(path.read_text() + "\n\n")
    log = EventLog.load(path)
    assert len(log) == 3
    assert log.last_serial == 5
    assert log.events()[1].kind == "c-zlib"
    assert log.events()[2].row() == ["only", "three", None]


@pytest.mark.parametrize("content", [None, "", "\n"])
def test_missing_or_empty_file_is_an_empty_log(tmp_path, content):
    path = tmp_path / "events.jsonl"
    if content is not None:
        path.write_text(content)
    log = EventLog.load(path)
    assert len(log) == 0
    assert log.last_serial == 0
    assert log.since(0) == []


@pytest.mark.parametrize("serials", [(2, 1), (2, 2)])
def test_load_refuses_serials_not_ascending(tmp_path, serials):
    lines = [ev("a", None, "create", serials[0]), ev("b", None, "create", serials[1])]
    path = _write(tmp_path / "e.jsonl", lines)
    with pytest.raises(EventLogError, match=r"line 2: serial \d+ is not greater than"):
        EventLog.load(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"name": "a", "version": null, "timestamp": 1, "action": "create"}', "missing 'serial'"),
        ('{"name": "a", "timestamp": 1, "action": "create", "serial": 1}', "missing 'version'"),
        ('{"name": 3, "version": null, "timestamp": 1, "action": "x", "serial": 1}', "'name'"),
        (
            '{"name": "a", "version": null, "timestamp": "1", "action": "x", "serial": 1}',
            "timestamp",
        ),
        ('{"name": "a", "version": null, "timestamp": 1, "action": "x", "serial": 1.5}', "serial"),
        (
            '{"name": "a", "version": "1", "timestamp": 1, "action": "", "serial": 1, "kind": "y"}',
            "'kind'",
        ),
        ('{"name": "a", "version": null, "timestamp": 1, "action": "x", "serial": 1, "z": 1}', "z"),
        ('{"raw": "not a list", "serial": 1}', "'raw' must be a JSON list"),
        ("[1, 2]", "expected a JSON object"),
        ("{not json", "invalid JSON"),
    ],
)
def test_load_refuses_malformed_lines_with_line_numbers(tmp_path, line, message):
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(ev("ok", None, "create", 0)) + "\n" + line + "\n")
    with pytest.raises(EventLogError, match="line 2") as info:
        EventLog.load(path)
    assert message in str(info.value)


def test_write_jsonl_round_trips(tmp_path):
    events = [
        ev("Foo", "1.0", "new release", 1, requires_python=">=3.8", summary="x"),
        ev("Foo", "1.0", "yank release", 2, yanked_reason="oops"),
        {"raw": [1, None, "x"], "serial": 3},
    ]
    write_jsonl(tmp_path / "e.jsonl", EventLog(events).events())
    again = EventLog.load(tmp_path / "e.jsonl")
    assert [e.to_json() for e in again.events()] == events


# -- appending -------------------------------------------------------------------


def test_append_assigns_serials_and_refuses_out_of_order():
    log = EventLog([ev("a", None, "create", 10)])
    assert log.append([{"name": "b", "version": None, "timestamp": T0, "action": "create"}]) == 11
    assert log.append([ev("c", None, "create", 20)]) == 20
    generation = log.generation
    with pytest.raises(EventLogError, match="not greater than the last serial 21"):
        log.append([ev("d", None, "create", 21), ev("e", None, "create", 15)])
    # Atomic: the valid first row of a refused batch was not appended either.
    assert log.last_serial == 20
    assert len(log) == 3
    assert log.generation == generation


def test_concurrent_appends_get_unique_ascending_serials():
    log = EventLog()
    row = {"name": "x", "version": None, "timestamp": T0, "action": "create"}

    def worker():
        for _ in range(200):
            log.append([row])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [e.serial for e in log.events()] == list(range(1, 1601))
    assert len(log.fragments_since(0)) == 1600


# -- marshalling ------------------------------------------------------------------


@pytest.mark.parametrize(
    "row",
    [
        ["foo", "1.0", T0, "new release", 1],
        ["Foo & <Bar>", None, T0, "remove project", 2],
        ["ünïcødé", "1.0+local", 0, "add source file ünï-1.0.tar.gz", 2**31 - 1],
    ],
)
def test_fragments_match_the_stdlib_marshaller(row):
    name, version, ts, action, serial = row
    log = EventLog([{"name": name, "version": version, "timestamp": ts, "action": action,
                     "serial": serial}])  # fmt: skip
    # the action as warehouse's _clean_for_xml leaves it: non-ASCII as character references
    served = [name, version, ts, clean_for_xml(action), serial]
    assert log.fragments_since(0)[0].decode() == _stdlib_fragment(served)
    assert clean_for_xml(action) == action.encode("ascii", "xmlcharrefreplace").decode()


def test_raw_values_match_the_stdlib_marshaller_and_big_ints_survive():
    value = ["x", 1, -2, 1.5, True, False, None, {"k": [1, "v"]}, [], "a&b<c>"]
    assert marshal_value(value) == _stdlib_fragment(value)
    big = [2**40, -(2**63)]
    wrapped = f"<params><param>{marshal_value(big)}</param></params>"
    assert xmlrpc.client.loads(wrapped)[0][0] == big


def test_since_uses_serial_boundaries():
    log = EventLog([ev("a", None, "create", s) for s in (10, 20, 30)])
    assert [e.serial for e in log.since(0)] == [10, 20, 30]
    assert [e.serial for e in log.since(10)] == [20, 30]
    assert [e.serial for e in log.since(15)] == [20, 30]
    assert [e.serial for e in log.since(10, limit=1)] == [20]
    assert log.since(30) == []


# -- state model ---------------------------------------------------------------------


def test_state_follows_the_changelog():
    events = [
        ev("Foo.Bar", None, "create", 1),
        ev("Foo.Bar", "1.0", "new release", 2, requires_python=">=3.8", kind="c-zlib"),
        ev("Foo.Bar", "1.0", "add source file foo_bar-1.0.tar.gz", 3),
        ev("Foo.Bar", "1.0", "add py3 file foo_bar-1.0-py3-none-any.whl", 4),
        ev("Foo.Bar", "1.0", "remove file foo_bar-1.0-py3-none-any.whl", 5),
        ev("Foo.Bar", "2.0", "new release", 6),
        ev("Foo.Bar", "2.0", "yank release", 7, yanked_reason="bad"),
        ev("Foo.Bar", "3.0", "new release", 8),
        ev("Foo.Bar", "3.0", "remove release", 9),
        ev("Foo.Bar", "4.0", "new release", 10),
        ev("Foo.Bar", "4.0", "remove", 11),
        ev("Gone", "1.0", "add source file gone-1.0.tar.gz", 12),
        ev("gone", None, "remove project", 13),
        ev("Also-Gone", "1.0", "new release", 14),
        ev("also_gone", None, "remove", 15),
        ev("Foo.Bar", None, "add Owner someone", 16),
        {"raw": ["Foo.Bar", "9.9", T0, "new release", 17], "serial": 17},
    ]
    state = apply_events(EventLog(events).events())
    assert set(state.projects) == {"foo-bar"}
    assert state.known == {"foo-bar", "gone", "also-gone"}
    project = state.project("FOO_bar")
    assert project.name == "Foo.Bar"
    assert project.last_serial == 16
    assert set(project.releases) == {"1.0", "2.0"}
    one = project.releases["1.0"]
    assert set(one.files) == {"foo_bar-1.0.tar.gz"}
    assert one.files["foo_bar-1.0.tar.gz"].python_version == "source"
    assert one.files["foo_bar-1.0.tar.gz"].kind == "c-zlib"
    assert one.files["foo_bar-1.0.tar.gz"].requires_python == ">=3.8"
    assert one.removed == {"foo_bar-1.0-py3-none-any.whl"}
    two = project.releases["2.0"]
    assert (two.yanked, two.yanked_reason, two.had_file_rows) == (True, "bad", False)


def test_state_unyank_and_recreate():
    events = [
        ev("a", "1.0", "new release", 1),
        ev("a", "1.0", "yank release", 2, yanked_reason="r"),
        ev("a", "1.0", "unyank release", 3),
        ev("b", None, "create", 4),
        ev("b", None, "remove project", 5),
        ev("b", "2.0", "new release", 6),
    ]
    state = apply_events(EventLog(events).events())
    assert state.release("a", "1.0").yanked is False
    assert state.release("a", "1.0").yanked_reason is None
    assert set(state.project("b").releases) == {"2.0"}


def test_state_applies_rows_in_timestamp_then_serial_order():
    # The removal has a later serial but an earlier timestamp: it happened first.
    events = [
        ev("a", "1.0", "new release", 1, ts=T0 + 100),
        ev("a", None, "remove project", 2, ts=T0 + 50),
        ev("b", "1.0", "new release", 3, ts=T0 + 200),
        ev("b", "1.0", "remove release", 4, ts=T0 + 200),
    ]
    state = apply_events(EventLog(events).events())
    assert set(state.project("a").releases) == {"1.0"}
    assert state.project("b").releases == {}


def test_state_is_cached_until_an_append():
    log = EventLog([ev("a", "1.0", "new release", 1)])
    first = log.state()
    assert log.state() is first
    log.append([ev("a", "1.0", "remove release", 2)])
    assert log.state() is not first
    assert log.state().project("a").releases == {}


def test_event_row_is_what_changelog_serves():
    event = Event("n", None, T0, "create", 3)
    assert event.row() == ["n", None, T0, "create", 3]


def test_project_state_is_replayed_only_when_its_rows_change():
    log = EventLog([ev("a", "1.0", "new release", 1), ev("B", "1.0", "new release", 2)])
    a, b = log.project_state("A"), log.project_state("b")
    log.append([ev("b", "2.0", "add source file b-2.0.zip", 3)])
    assert log.project_state("a") is a
    assert log.state().project("a") is a
    assert log.project_state("b") is not b
    assert set(log.project_state("b").releases) == {"1.0", "2.0"}
    assert log.file_owner("b-2.0.zip") == "b"
    assert log.file_owner("a-1.0.tar.gz") == "a"  # a release's default sdist
    assert log.project_state("nope") is None
    assert not log.is_known("nope") and log.is_known("A")


_names = st.sampled_from(["a", "A", "b_c", "B.C", "d"])
_versions = st.sampled_from([None, "1.0", "2.0", "3.0b1"])
_actions = st.sampled_from(
    [
        "create",
        "new release",
        "add source file x-1.0.tar.gz",
        "add py3 file x-1.0-py3-none-any.whl",
        "remove file x-1.0.tar.gz",
        "remove release",
        "remove project",
        "remove",
        "yank release",
        "unyank release",
        "add Owner someone",
    ]
)


@given(
    st.lists(st.tuples(_names, _versions, _actions, st.integers(0, 20)), min_size=0, max_size=40),
    st.integers(1, 39),
)
@settings(max_examples=150, deadline=None)
def test_per_project_state_equals_a_full_replay(rows, split):
    events = [
        ev(name, version, action, serial, ts=T0 + ts, yanked_reason="r")
        for serial, (name, version, action, ts) in enumerate(rows, start=1)
    ]
    log = EventLog(events[:split])
    log.state()  # warm the per-project caches, then append the rest
    log.append(events[split:])
    assert log.state() == apply_events(log.events())
