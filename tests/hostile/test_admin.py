"""Operators' actions and piw-remove with hostile package and version strings: path
separators, SQL metacharacters, unicode, huge, empty, control characters. Each is refused as
UnknownPackage, UnknownVersion or BadRequest with a clear message (one line, bounded, its
control characters escaped), and the database is what it was (table snapshots, as
tests/admin/test_actions.py takes them).

tests/admin covers one example of each kind; here they are generated, for every action.
"""

from __future__ import annotations

import socket

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from packaging.version import Version
from sqlalchemy import text

from piw_services.admin import PAGE_PART_ALIASES, PAGE_PARTS, actions
from piw_services.cli import admin as cli
from piw_services.names import canonical, is_valid_name
from tests.admin.test_actions import snapshot
from tests.hostile.conftest import any_text, examples, tried

AREA = "admin"
PACKAGES = st.one_of(any_text(), st.sampled_from(
    ["foo/../bar", "../foo", "foo\\bar", "foo; DROP TABLE packages; --", "foo' OR '1'='1",
     "foo%", "fo_", "f%o", "*", "foo\n", "\nfoo", "foo\x00", "FOO\r", "ｆｏｏ", "fo\u0301o",
     "f\u200bo\u200bo", "foo\u202e", "\u0130", "K\u212a", "x" * 201, "x" * 100_000, "",
     " ", "foo ", " foo", "-foo", "foo-", ".foo", "foo..", "nope", "bar"]))
VERSIONS = st.one_of(any_text(), st.sampled_from(
    ["1.0/../2.0", "../1.0", "1.0\\", "1.0'; DELETE FROM builds; --", "1.0%", "1._",
     "1.0\n", "1.0\x00", "\x1b[2J", "１.０", "1.0\u200b", "9" * 129, "9" * 100_000, "",
     " ", "v1.0", "1.0.0.0.0.1", "1!1.0", "1.0+evil", "latest", None, 1.0, ["1.0"]]))
ACTIONS = {
    "remove": lambda s, p, v: actions.remove(s, p, v),
    "remove -s": lambda s, p, v: actions.remove(s, p, v, skip=True),
    "remove_package": lambda s, p, v: actions.remove_package(s, p),
    "skip": lambda s, p, v: actions.skip(s, p, v, reason="hostile test"),
    "unskip": lambda s, p, v: actions.unskip(s, p, v),
    "rebuild": lambda s, p, v: actions.rebuild(s, p, v),
    "add": lambda s, p, v: actions.add(s, p, v),
    # the version's place takes the part of the site: a hostile part, or a hostile package
    "rebuild_pages": lambda s, p, v: actions.rebuild_pages(s, v, p),
    # an order (the version's place) to a builder (the package's): the catalog has none
    "builder_control": lambda s, p, v: actions.builder_control(s, v, p, "hostile test"),
}
LIVE = {"1.0", "2.0"}


def names_foo(package) -> bool:
    return is_valid_name(package) and canonical(package) == "foo"


def names_live(version) -> bool:
    if not isinstance(version, str):
        return False
    if version in LIVE:
        return True
    try:
        return Version(version) in {Version(v) for v in LIVE}
    except ValueError:  # InvalidVersion, or an integer of more than 4,300 digits
        return False


def addable(version) -> bool:
    """A version piw-add takes as a new entry of foo (PEP 440, spelled without spaces)."""
    try:
        return actions._new_version(version) == version
    except actions.AdminError:
        return False


def clear(message: str) -> bool:
    """One line of bounded text, every control character escaped."""
    return 0 < len(message) <= 700 and not any(ord(c) < 32 or ord(c) == 127 for c in message)


@examples(150)
@given(action=st.sampled_from(sorted(ACTIONS)), package=PACKAGES, version=VERSIONS,
       foo=st.sampled_from(["foo", "FOO", "Foo", None]))
def test_actions_refuse_hostile_names_and_change_nothing(s, action, package, version, foo):
    """A hostile package (or the real one, with a hostile version): refused with a clear
    message, nothing changed."""
    if foo is not None:
        package = foo  # the package exists: only the version is hostile
        # no version means the whole package, and remove_package needs none: both just work
        assume(version is not None and not names_live(version))
        assume(action != "remove_package")
    else:
        assume(not names_foo(package))
    assume(action != "rebuild_pages" or version not in (*PAGE_PARTS, *PAGE_PART_ALIASES))
    # piw-add makes what is new an operator's entry (tested below)
    assume(action != "add" or not (version is None and is_valid_name(package)
                                   or foo is not None and addable(version)))
    tried(AREA)
    before = snapshot(s)
    try:
        with pytest.raises(actions.AdminError) as caught:
            ACTIONS[action](s, package, version)
    finally:
        s.rollback()  # the service's transaction ends so, and a failure here leaks nothing
    assert type(caught.value) in (actions.UnknownPackage, actions.UnknownVersion,
                                  actions.BadRequest)
    assert clear(str(caught.value)), str(caught.value)[:300]
    assert snapshot(s) == before


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def no_broker(monkeypatch):
    """RabbitMQ nowhere: a request that passes the command's checks fails at the broker."""
    monkeypatch.setenv("PIW_AMQP_URI", f"pyamqp://guest:guest@127.0.0.1:{closed_port()}/")
    monkeypatch.setattr(cli, "CONNECT_TIMEOUT", 1)


@examples(120)
@given(package=PACKAGES.filter(lambda p: isinstance(p, str)),
       version=VERSIONS.filter(lambda v: isinstance(v, str)),
       extra=st.sampled_from([[], ["-s"], ["-q"], ["-v"], ["--", ]]))
def test_piw_remove_refuses_hostile_arguments_before_touching_anything(no_broker, capsys,
                                                                       package, version,
                                                                       extra):
    """piw-remove in-process: a hostile argument is a usage error (exit 2) naming it, escaped
    and bounded; one that passes the checks goes no further than the (absent) broker."""
    assume("\x00" not in package + version)  # no process can be given a NUL in its argv
    tried(AREA)
    argv = ["-y", *extra, package, version]
    try:
        status = cli.remove_main(argv)
    except SystemExit as exc:
        status = exc.code
    err = capsys.readouterr().err
    valid = is_valid_name(package) and cli._BAD_VERSION.search(version) is None and \
        0 < len(version) <= cli.MAX_VERSION_LENGTH
    if package.startswith("-") or version.startswith("-"):
        assert status in (1, 2)  # read as an option, or refused as one
    elif valid:
        assert status == 1 and "cannot reach RabbitMQ" in err, err[:300]
    else:
        assert status == 2, (status, err[:300])
        assert "not a package name" in err or "not a version" in err, err[:300]
    assert len(err) < 3000
    assert not any(c in err for c in "\x00\x1b\r\x7f"), err[:300]



@examples(150)
@given(field=st.sampled_from(["description", "aliases", "released", "skip", "who",
                              "version", "package"]),
       value=st.one_of(PACKAGES, VERSIONS, st.lists(PACKAGES, max_size=30),
                       st.integers(), st.floats(), st.booleans(), st.none()))
def test_piw_add_takes_hostile_entries_verbatim_or_refuses_them(s, field, value):
    """piw-add's new entries from hostile text: refused with a clear message and nothing
    changed, or recorded as given (the name canonical, nothing interpreted), never a crash."""
    tried(AREA)
    package, version, options = "newpkg", None, {}
    if field == "package":
        assume(not names_foo(value))  # foo is upstream's: piw-add of it only queues builds
        package = value
    elif field in ("description", "aliases"):
        options[field] = value
    else:  # a new version of a new package
        actions.add(s, package)
        s.commit()
        version = value if field == "version" else "1.0"
        if field != "version":
            options[field] = value
    before = snapshot(s)
    try:
        try:
            actions.add(s, package, version, **options)
        except actions.AdminError as exc:
            assert clear(str(exc)), str(exc)[:300]
            s.rollback()
            assert snapshot(s) == before
            return
        entries = snapshot(s)
        name = canonical(package)
        assert [r.name for r in entries["operator_packages"]] == [name]
        if version is not None:
            assert [(r.package, r.version) for r in entries["operator_versions"]] == \
                [(name, version)]
            assert addable(version)
        if field == "description":
            assert entries["operator_packages"][0].description == value
        if field == "aliases":
            assert sorted(entries["operator_packages"][0].aliases) == sorted(set(value or []))
            assert all(canonical(a) == name for a in value or [])
    finally:
        s.rollback()
        s.execute(text("DELETE FROM operator_versions; DELETE FROM operator_packages"))
        s.commit()
