"""Where the fake follows warehouse (its module docstring lists each point and the file of
warehouse it comes from): quarantines, faults, escaped actions, 301s of the JSON API, and
a history with every journal action warehouse writes today."""

from __future__ import annotations

import xmlrpc.client

import pytest
import requests

from piw_services.fake_pypi.history import PEOPLE_ACTIONS, synthetic_history
from piw_services.fake_pypi.server import TURNED_OFF
from piw_services.fake_pypi.state import ADD_FILE_RE
from piw_services.reorderer.parse import Ignored, Row, parse_row

from .fake_pypi_helpers import ev

EVENTS = [
    ev("Shady", None, "create", 1),
    ev("Shady", "1.0", "new release", 2),
    ev("Shady", "2.0", "new release", 3),
    ev("Shady", "2.0", "release quarantined", 4),
    ev("Evil", None, "create", 5),
    ev("Evil", "1.0", "new release", 6),
    ev("Evil", None, "project quarantined", 7),
    ev("Shady", None, "add Owner j\u00fcrgen", 8),
]


@pytest.fixture
def server(make_server):
    return make_server(EVENTS)


def test_a_quarantined_release_is_on_no_index_until_cleared(server):
    page = requests.get(server.url + "/simple/shady/").text
    assert "shady-1.0.tar.gz" in page and "shady-2.0" not in page
    assert requests.get(server.url + "/pypi/shady/2.0/json").status_code == 404
    data = requests.get(server.url + "/pypi/shady/json").json()
    assert data["info"]["version"] == "1.0" and set(data["releases"]) == {"1.0"}
    assert requests.get(server.url + "/packages/shady-2.0.tar.gz").status_code == 404
    server.append([ev("Shady", "2.0", "release quarantine cleared", 9)])
    assert "shady-2.0.tar.gz" in requests.get(server.url + "/simple/shady/").text
    assert requests.get(server.url + "/pypi/shady/json").json()["info"]["version"] == "2.0"


def test_a_quarantined_project_is_gone_everywhere_until_cleared(server):
    assert requests.get(server.url + "/simple/evil/").status_code == 404
    assert requests.get(server.url + "/pypi/evil/json").status_code == 404
    assert 'href="/simple/evil/"' not in requests.get(server.url + "/simple/").text
    server.append([ev("Evil", None, "project quarantine cleared", 9)])
    assert requests.get(server.url + "/simple/evil/").status_code == 200
    assert 'href="/simple/evil/"' in requests.get(server.url + "/simple/").text


def test_the_changelog_carries_quarantines_and_escaped_actions(server, proxy):
    rows = proxy(server).changelog_since_serial(0)
    assert rows[3][3] == "release quarantined" and rows[6][3] == "project quarantined"
    # warehouse's _clean_for_xml: the text the client reads is the character reference
    assert rows[7][3] == "add Owner j&#252;rgen"
    assert parse_row(rows[7]) == Ignored(8, "add Owner j\u00fcrgen")


def test_a_non_canonical_json_name_is_answered_301(server):
    for path, canonical in (("/pypi/SHADY/json", "/pypi/shady/json"),
                            ("/pypi/Shady/1.0/json", "/pypi/shady/1.0/json")):
        response = requests.get(server.url + path, allow_redirects=False)
        assert response.status_code == 301 and response.headers["Location"] == canonical


def test_faults_come_with_http_200_as_warehouse_sends_them(server, proxy):
    server.fail_next("fault", 1, retry_after=12)
    response = requests.post(server.url + "/pypi", data=xmlrpc.client.dumps(
        (0,), "changelog_since_serial"), headers={"Content-Type": "text/xml"})
    assert response.status_code == 200 and response.headers["RateLimit"].endswith(";t=12")
    with pytest.raises(xmlrpc.client.Fault) as fault:
        xmlrpc.client.loads(response.content)
    assert fault.value.faultCode == -32500
    assert "Limit may reset in 12 seconds" in fault.value.faultString
    for mode, words in (("disabled", "This API has been deprecated"),
                        ("error", "application error")):
        server.fail_next(mode, 1)
        with pytest.raises(xmlrpc.client.Fault, match=words):
            proxy(server).changelog_since_serial(0)
    for method, words in TURNED_OFF.items():
        with pytest.raises(xmlrpc.client.Fault) as fault:
            getattr(proxy(server), method)(0)
        assert (fault.value.faultCode, fault.value.faultString) == (-32500, words)


def test_the_synthetic_history_has_every_action_warehouse_writes():
    actions = {e["action"] for e in synthetic_history(20_000, seed=3)}
    assert set(PEOPLE_ACTIONS) <= actions
    for action in ("release quarantined", "release quarantine cleared", "project quarantined",
                   "project quarantine cleared", "yank release", "remove project"):
        assert action in actions
    parsed = [parse_row([e["name"], e["version"], e["timestamp"], e["action"], e["serial"]])
              for e in synthetic_history(20_000, seed=3)]
    assert all(isinstance(p, Row | Ignored) for p in parsed)  # piw understands all of it


def test_the_dense_history_is_as_dense_in_packages_as_pypi():
    events = list(synthetic_history(30_000, seed=4, dense=True))
    creates = sum(e["action"] == "create" for e in events)
    renames = [e for e in events if e["action"].startswith("rename from ")]
    assert 8 <= len(events) / creates <= 10  # PyPI: ~600,000 projects in ~5.5 M rows
    files: dict[tuple[str, str], int] = {}
    for e in events:
        if e["action"] == "new release" or ADD_FILE_RE.match(e["action"]):
            files[e["name"], e["version"]] = files.get((e["name"], e["version"]), 0) + (
                e["action"] != "new release")
    whole = list(files.values())[:-1]  # the last release may be cut by the end
    assert min(whole) == 2 and max(whole) == 10
    assert renames and any(e["action"].startswith("remove") for e in events)
    parsed = [parse_row([e["name"], e["version"], e["timestamp"], e["action"], e["serial"]])
              for e in events]
    assert all(isinstance(p, Row | Ignored) for p in parsed)
    assert [e["serial"] for e in events] == list(range(1, 30_001))
