"""The XML-RPC changelog, failure injection and the control API, via real clients."""

from __future__ import annotations

import xmlrpc.client

import pytest
import requests

from .fake_pypi_helpers import T0, ev


def _events(n, start=1):
    return [ev(f"pkg{i % 7}", f"1.{i}", "new release", i) for i in range(start, start + n)]


# -- changelog -------------------------------------------------------------------


def test_changelog_pages_on_serial_boundaries(make_server, proxy):
    server = make_server(_events(120), page_size=50)
    rpc = proxy(server)
    assert [row[4] for row in rpc.changelog_since_serial(0)] == list(range(1, 51))
    assert [row[4] for row in rpc.changelog_since_serial(50)] == list(range(51, 101))
    assert [row[4] for row in rpc.changelog_since_serial(100)] == list(range(101, 121))
    assert [row[4] for row in rpc.changelog_since_serial(119)] == [120]
    assert rpc.changelog_since_serial(120) == []
    assert rpc.changelog_since_serial(10**9) == []
    assert [row[4] for row in rpc.changelog_since_serial(-5)] == list(range(1, 51))
    assert rpc.changelog_last_serial() == 120


def test_changelog_rows_are_pypi_shaped(make_server, proxy):
    server = make_server([ev("Foo", "1.0", "new release", 7, ts=T0)])
    assert proxy(server).changelog_since_serial(0) == [["Foo", "1.0", T0, "new release", 7]]


def test_changelog_with_serial_gaps(make_server, proxy):
    server = make_server([ev("a", None, "create", s) for s in (10, 20, 30)], page_size=1)
    rpc = proxy(server)
    assert [row[4] for row in rpc.changelog_since_serial(15)] == [20]
    assert [row[4] for row in rpc.changelog_since_serial(20)] == [30]
    assert rpc.changelog_last_serial() == 30


def test_default_page_size_is_50000(make_server, proxy):
    server = make_server(_events(50010))
    rows = proxy(server).changelog_since_serial(0)
    assert len(rows) == 50000
    assert rows[-1][4] == 50000
    assert server.stats()["rows_served"] == 50000


def test_empty_log(make_server, proxy):
    rpc = proxy(make_server())
    assert rpc.changelog_since_serial(0) == []
    assert rpc.changelog_last_serial() == 0


def test_none_version_is_marshalled_as_nil(make_server, proxy):
    server = make_server([ev("foo", None, "remove project", 1)])
    body = xmlrpc.client.dumps((0,), "changelog_since_serial")
    response = requests.post(server.url + "/pypi", data=body, headers={"Content-Type": "text/xml"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    assert "<nil/>" in response.text
    assert proxy(server).changelog_since_serial(0)[0][1] is None


def test_rpc2_path_works_too(make_server, proxy):
    server = make_server(_events(3))
    assert proxy(server, "/RPC2").changelog_last_serial() == 3


def test_raw_rows_are_served_verbatim(make_server, proxy):
    raws = [
        ["only-a-name"],
        ["a", "1.0", T0, "new release", 4, "extra", 6],
        [None, None, None, None, None],
        [123, 4.5, True, {"k": ["v"]}, [], 2**40],
        [],
    ]
    events = [ev("ok", "1.0", "new release", 1)]
    events += [{"raw": raw, "serial": 2 + i} for i, raw in enumerate(raws)]
    server = make_server(events)
    rows = proxy(server).changelog_since_serial(0)
    assert rows[0] == ["ok", "1.0", T0 + 1, "new release", 1]
    assert rows[1:] == raws
    # The raw line's own serial drives filtering even if its row says otherwise.
    assert proxy(server).changelog_since_serial(4) == raws[3:]


def test_unknown_method_and_bad_params_are_faults(make_server, proxy):
    rpc = proxy(make_server(_events(2)))
    with pytest.raises(xmlrpc.client.Fault) as info:
        rpc.no_such_method()
    assert info.value.faultCode == -32601
    with pytest.raises(xmlrpc.client.Fault) as info:
        rpc.changelog_since_serial("zero")
    assert info.value.faultCode == -32602
    with pytest.raises(xmlrpc.client.Fault):
        rpc.changelog_since_serial()


def test_malformed_request_is_a_parse_fault(make_server):
    server = make_server()
    response = requests.post(server.url + "/pypi", data=b"<not-xml")
    assert response.status_code == 200
    with pytest.raises(xmlrpc.client.Fault) as info:
        xmlrpc.client.loads(response.content)
    assert info.value.faultCode == -32700


def test_get_on_the_xmlrpc_endpoint_is_refused(make_server):
    response = requests.get(make_server().url + "/pypi")
    assert response.status_code == 405


def test_list_packages_with_serial(make_server, proxy):
    server = make_server(
        [ev("Foo", "1.0", "new release", 1), ev("bar", None, "create", 2), ev("Foo", None, "x", 3)]
    )
    assert proxy(server).list_packages_with_serial() == {"Foo": 3, "bar": 2}


# -- failure injection --------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "retry_after", "errcode", "header"),
    [
        ("429", None, 429, "1"),
        ("429", 7, 429, "7"),
        ("500", None, 500, None),
        ("503", None, 503, "1"),
    ],
)
def test_http_failures_then_success(make_server, proxy, mode, retry_after, errcode, header):
    server = make_server(_events(3))
    server.fail_next(mode, 2, retry_after=retry_after)
    rpc = proxy(server)
    for _ in range(2):
        with pytest.raises(xmlrpc.client.ProtocolError) as info:
            rpc.changelog_since_serial(0)
        assert info.value.errcode == errcode
        assert info.value.headers.get("Retry-After") == header
    assert len(rpc.changelog_since_serial(0)) == 3
    stats = server.stats()
    assert stats["xmlrpc_calls"] == 3
    assert stats["failures_served"] == 2
    assert stats["rows_served"] == 3


def test_fault_failure_then_success(make_server, proxy):
    server = make_server(_events(3))
    server.fail_next("fault", 1)
    rpc = proxy(server)
    with pytest.raises(xmlrpc.client.Fault) as info:
        rpc.changelog_last_serial()
    assert info.value.faultCode == -32500
    assert info.value.faultString.startswith("HTTPTooManyRequests: ")
    assert "Limit may reset in 1 seconds." in info.value.faultString
    assert rpc.changelog_last_serial() == 3


def test_failures_queue_in_order(make_server, proxy):
    server = make_server(_events(1))
    server.fail_next("429", 1, retry_after=3)
    server.fail_next(500, 1)
    server.fail_next("fault", 1, retry_after=9)
    rpc = proxy(server)
    with pytest.raises(xmlrpc.client.ProtocolError) as info:
        rpc.changelog_last_serial()
    assert (info.value.errcode, info.value.headers["Retry-After"]) == (429, "3")
    with pytest.raises(xmlrpc.client.ProtocolError) as info:
        rpc.changelog_last_serial()
    assert info.value.errcode == 500
    with pytest.raises(xmlrpc.client.Fault, match="reset in 9 seconds"):
        rpc.changelog_last_serial()
    assert rpc.changelog_last_serial() == 1
    assert server.pending_failures() == []


def test_failures_only_hit_xmlrpc(make_server):
    server = make_server(_events(1))
    server.fail_next("500", 1)
    assert requests.get(server.url + "/simple/").status_code == 200
    assert requests.get(server.url + "/_control/stats").json()["failures_served"] == 0


@pytest.mark.parametrize(
    ("mode", "count", "retry_after"), [("404", 1, None), ("429", -1, None), ("429", 1, "x")]
)
def test_fail_next_validates(make_server, mode, count, retry_after):
    with pytest.raises(ValueError):
        make_server().fail_next(mode, count, retry_after)


# -- appends and the control API ------------------------------------------------------------


def test_append_is_visible_to_clients(make_server, proxy):
    server = make_server(_events(2))
    rpc = proxy(server)
    assert server.append([ev("new", "1.0", "new release", 10)]) == 10
    assert (
        server.append([{"name": "n2", "version": None, "timestamp": T0, "action": "create"}]) == 11
    )
    assert [row[4] for row in rpc.changelog_since_serial(2)] == [10, 11]
    assert rpc.changelog_last_serial() == 11


def test_control_events(make_server, proxy):
    server = make_server(_events(2))
    url = server.url + "/_control/events"
    rows = [
        {"name": "live", "version": "1.0", "timestamp": T0, "action": "new release"},
        {"name": "live", "version": "1.0", "timestamp": T0, "action": "yank release"},
    ]
    response = requests.post(url, json=rows)
    assert response.status_code == 200
    assert response.json() == {"last_serial": 4}
    assert proxy(server).changelog_since_serial(2)[1] == ["live", "1.0", T0, "yank release", 4]
    assert requests.post(url, json={**rows[0], "serial": 9}).json() == {"last_serial": 9}
    # Out of order or malformed: 400, nothing appended.
    bad = requests.post(url, json=[{**rows[0], "serial": 10}, {**rows[0], "serial": 3}])
    assert bad.status_code == 400
    assert "ascending" in bad.json()["error"]
    assert requests.post(url, data=b"{nope").status_code == 400
    assert requests.post(url, json=[{"name": "x"}]).status_code == 400
    assert requests.post(url, json="a string").status_code == 400
    assert server.log.last_serial == 9
    assert requests.get(server.url + "/pypi/live/json").json()["info"]["yanked"] is True


def test_control_fail_and_stats(make_server, proxy):
    server = make_server(_events(5))
    response = requests.post(
        server.url + "/_control/fail", json={"mode": "429", "count": 1, "retry_after": 4}
    )
    assert response.json() == {"pending": [{"mode": "429", "count": 1, "retry_after": 4}]}
    rpc = proxy(server)
    with pytest.raises(xmlrpc.client.ProtocolError) as info:
        rpc.changelog_since_serial(0)
    assert info.value.headers["Retry-After"] == "4"
    rpc.changelog_since_serial(3)
    stats = requests.get(server.url + "/_control/stats").json()
    assert stats == {
        "xmlrpc_calls": 2,
        "failures_served": 1,
        "rows_served": 2,
        "files_served": 0,
        "last_serial": 5,
    }
    bad = requests.post(server.url + "/_control/fail", json={"mode": "418", "count": 1})
    assert bad.status_code == 400
    assert requests.get(server.url + "/_control/nothing").status_code == 404
