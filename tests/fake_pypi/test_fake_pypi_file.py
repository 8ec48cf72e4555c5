"""A history served from its file: the same answers as the in-memory log, in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
import xmlrpc.client

import pytest
import requests

from piw_services.fake_pypi.history import synthetic_history
from piw_services.fake_pypi.log import EventLog, EventLogError, write_jsonl

from .fake_pypi_helpers import ev


def _history(n: int) -> list[dict]:
    """A synthetic history with a raw (malformed on purpose) row and a gap in the serials."""
    events = list(synthetic_history(n, seed=3))
    for event in events[n // 2:]:
        event["serial"] += 10
    events.insert(n // 3, {"raw": ["only", "three", None], "serial": events[n // 3]["serial"]})
    for event in events[n // 3 + 1:]:
        event["serial"] += 1
    return events


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    events = _history(3000)
    path = tmp_path_factory.mktemp("history") / "events.jsonl"
    write_jsonl(path, events)
    return events, path


def test_a_file_log_answers_as_the_in_memory_log(history):
    events, path = history
    memory, on_file = EventLog(events), EventLog.load(path)
    assert on_file._events == []  # nothing of the file is held
    assert len(on_file) == len(memory) == len(events)
    assert on_file.last_serial == memory.last_serial
    assert on_file.events() == memory.events()
    serials = [0, 1, events[1000]["serial"], events[1000]["serial"] + 5, memory.last_serial - 1,
               memory.last_serial, memory.last_serial + 100, -5]
    for since in serials:
        for limit in (None, 0, 1, 7, 500):
            assert on_file.since(since, limit) == memory.since(since, limit), (since, limit)
            assert on_file.fragments_since(since, limit) == memory.fragments_since(since, limit)
    names = {e["name"] for e in events if "name" in e}
    for name in sorted(names)[:300] + ["never-seen", "NEVER.seen"]:
        assert on_file.project_state(name) == memory.project_state(name), name
        assert on_file.is_known(name) == memory.is_known(name), name
    files = [e["action"].split()[-1] for e in events if e.get("action", "").startswith("add ")]
    for filename in files[:300] + ["nothing-1.0.tar.gz"]:
        assert on_file.file_owner(filename) == memory.file_owner(filename), filename
    assert on_file.state() == memory.state()


def test_rows_appended_to_a_file_log_follow_the_file(history):
    events, path = history
    on_file, memory = EventLog.load(path), EventLog(events)
    last = on_file.last_serial
    with pytest.raises(EventLogError, match=f"not greater than the last serial {last}"):
        on_file.append([ev("late", None, "create", last)])
    name = next(e["name"] for e in events if e.get("action") == "new release")
    added = [ev(name, "99.0", "new release", last + 1),
             ev(name, "99.0", f"add py3 file {name}-99.0-py3-none-any.whl", last + 2),
             ev("brand-new", None, "create", last + 3)]
    for log in (on_file, memory):
        generation = log.generation
        assert log.append(added) == last + 3
        assert log.generation == generation + 1
    assert len(on_file) == len(events) + 3
    for since in (0, last - 3, last, last + 2):
        for limit in (None, 2, 4):
            assert on_file.since(since, limit) == memory.since(since, limit), (since, limit)
            assert on_file.fragments_since(since, limit) == memory.fragments_since(since, limit)
    assert on_file.project_state(name) == memory.project_state(name)
    assert "99.0" in on_file.project_state(name).releases
    assert on_file.file_owner(f"{name}-99.0-py3-none-any.whl") == memory.file_owner(
        f"{name}-99.0-py3-none-any.whl")
    assert on_file.is_known("Brand_New")
    assert on_file.state() == memory.state()


def test_a_file_log_keeps_a_bounded_number_of_project_states(history, monkeypatch):
    _, path = history
    monkeypatch.setattr(EventLog, "PROJECT_CACHE", 10)
    log = EventLog.load(path)
    names = [project for project in log._base.projects()][:50]
    first = log.project_state(names[0])
    assert log.project_state(names[0]) is first  # cached
    for name in names:
        log.project_state(name)
    assert len(log._project_cache) == 10
    assert log.project_state(names[0]) == first  # read again from the file


def test_a_file_served_over_xmlrpc_and_json_as_from_memory(history, make_server, proxy):
    events, path = history
    on_file = make_server(path, page_size=700)
    memory = make_server(events, page_size=700)
    for since in (0, events[1500]["serial"], on_file.log.last_serial - 3):
        assert proxy(on_file).changelog_since_serial(since) == \
            proxy(memory).changelog_since_serial(since)
    assert len(proxy(on_file).changelog_since_serial(0)) == 700
    assert proxy(on_file).list_packages_with_serial() == proxy(memory).list_packages_with_serial()
    released = [e["name"] for e in events if e.get("action") == "new release"]
    for name in released[:20] + released[-20:]:
        a = requests.get(f"{on_file.url}/pypi/{name}/json", allow_redirects=False)
        b = requests.get(f"{memory.url}/pypi/{name}/json", allow_redirects=False)
        assert (a.status_code, a.text.replace(on_file.url, "")) == \
            (b.status_code, b.text.replace(memory.url, "")), name


def test_a_big_file_is_served_in_bounded_memory(tmp_path):
    """100,000 rows in memory cost ~100 MB of Python objects; served from the file, a few."""
    path = tmp_path / "big.jsonl"
    write_jsonl(path, synthetic_history(100_000, seed=5))
    tracemalloc.start()
    try:
        log = EventLog.load(path)
        loaded = tracemalloc.get_traced_memory()[0]
        since, pages, served = 0, 0, 0
        while fragments := log.fragments_since(since, 5000):
            served += len(fragments)
            since = log.since(since, 5000)[-1].serial
            pages += 1
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pages == 20 and served == 100_000 and since == log.last_serial == 100_000
    assert loaded < 10 * 2**20, loaded
    assert current < 10 * 2**20 and peak < 40 * 2**20, (current, peak)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"name": "a", "version": null, "timestamp": "x", "action": "create", "serial": 1500}',
         "'timestamp' must be integer"),
        ('{"name": "a", "version": null, "timestamp": 1, "act', "invalid JSON"),
        (b'{"name": "\xff", "version": null, "timestamp": 1, "action": "x", "serial": 1500}',
         "invalid JSON"),
        ('{"name": "a", "version": null, "timestamp": 1, "action": "create", "serial": 3}',
         "serial 3 is not greater than the previous serial 1499"),
    ],
)
def test_a_malformed_row_deep_in_the_file_is_refused_by_line(tmp_path, bad, message):
    path = tmp_path / "events.jsonl"
    lines = [json.dumps(ev(f"p{s}", None, "create", s)).encode() for s in range(1, 1500)]
    lines.append(bad if isinstance(bad, bytes) else bad.encode())
    lines.append(json.dumps(ev("after", None, "create", 2000)).encode())
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(EventLogError, match="line 1500") as info:
        EventLog.load(path)
    assert message in str(info.value) and str(path) in str(info.value)
    result = subprocess.run(
        [sys.executable, "-m", "piw_services.fake_pypi", "--events", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "line 1500" in result.stderr and message in result.stderr
    assert result.stdout == ""


def test_xmlrpc_client_reads_a_file_page_exactly(tmp_path, make_server):
    path = tmp_path / "e.jsonl"
    rows = [ev("Jürgen<&>", "1.0", "new release", 3), ev("a", None, "add Owner j\u00fcrgen", 9),
            {"raw": [1, None, "x", 2**40], "serial": 12}]
    write_jsonl(path, rows)
    server = make_server(path)
    served = xmlrpc.client.ServerProxy(server.url + "/pypi").changelog_since_serial(0)
    assert served == [["Jürgen<&>", "1.0", rows[0]["timestamp"], "new release", 3],
                      ["a", None, rows[1]["timestamp"], "add Owner j&#252;rgen", 9],
                      [1, None, "x", 2**40]]
