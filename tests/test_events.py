"""piw_services.events: the schema checks refuse what their shapes do not allow, and mypy
checks the schema's users (the list in setup.cfg's [mypy] section must name every one)."""

import ast
import configparser
from pathlib import Path

import pytest

from piw_services import events as ev

ROOT = Path(__file__).resolve().parent.parent

VERSION_ADDED = {"type": ev.VERSION_ADDED, "package": "chai", "serial": 7, "timestamp": 1,
                 "version": "1.0", "life": 0, "released": 1, "yanked": False,
                 "yanked_reason": None, "buildable": True, "unbuildable_reason": None,
                 "quarantined": False}


def test_a_good_event_passes_as_it_is():
    assert ev.check_ordered_event(dict(VERSION_ADDED)) == VERSION_ADDED
    assert ev.check_service_event(ev.BUILDS_CHANGED, {"package": "chai", "version": "1"})
    admin = {"type": ev.ADMIN, "action": "remove", "package": "chai", "version": None,
             "abi": None, "pages": None, "revoked_jobs": ["j1"]}
    assert ev.check_ordered_event(admin) == admin


@pytest.mark.parametrize(("change", "message"), [
    ({"type": "version_eaten"}, "unknown ordered event type 'version_eaten'"),
    ({"life": None}, "life is None, not int"),
    ({"serial": True}, "serial is True, not int"),
    ({"yanked": 0}, "yanked is 0, not bool"),
    ({"yanked_reason": 3}, "yanked_reason is 3, not"),
    ({"extra": 1}, "version_added: unexpected extra"),
])
def test_a_wrong_field_is_named(change, message):
    with pytest.raises(ev.EventError, match=message):
        ev.check_ordered_event({**VERSION_ADDED, **change})


def test_missing_fields_and_wrong_payloads_are_named():
    with pytest.raises(ev.EventError, match="missing life, version"):
        ev.check_ordered_event({k: v for k, v in VERSION_ADDED.items()
                                if k not in ("life", "version")})
    with pytest.raises(ev.EventError, match="not list"):
        ev.check_ordered_event([1])
    with pytest.raises(ev.EventError, match="added is"):
        ev.check_service_event(ev.FILES_CHANGED, {"package": "p", "version": "1",
                                                  "added": "a.whl", "removed": []})
    with pytest.raises(ev.EventError, match="action is 'drop'"):
        ev.check_ordered_event({"type": ev.ADMIN, "action": "drop", "package": "p",
                                "version": None, "abi": None, "pages": None,
                                "revoked_jobs": []})
    with pytest.raises(ev.EventError, match="unknown service event type"):
        ev.check_service_event("files_eaten", {})


def _imports_events(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "piw_services" and \
                any(a.name == "events" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "piw_services.events":
            return True
    return False


def test_mypy_checks_every_user_of_the_schema():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    checked = {f.strip() for f in config["mypy"]["files"].split(",")}
    users = {str(p.relative_to(ROOT)) for p in (ROOT / "piw_services").rglob("*.py")
             if _imports_events(p)}
    assert users, "nobody imports piw_services.events?"
    assert users | {"piw_services/events.py"} <= checked, sorted(users - checked)
