"""Convergence (contract point 2) of the pure LWW catalog, against the naive reference."""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from piw_services.reorderer.catalog import apply_rows
from piw_services.reorderer.parse import Row, parse_row
from tests.reorderer.reference import fold_events, reference, safe_order, view
from tests.reorderer.strategies import logs

NOW = 2_000_000_000


def parsed(raw_rows):
    return [r for r in (parse_row(raw, NOW) for raw in raw_rows) if isinstance(r, Row)]


@settings(max_examples=400)
@given(logs(), st.randoms(use_true_random=False))
def test_any_arrival_order_converges_to_time_order(raw, rnd):
    """Any order, but for a legacy rename arriving after newer rows of its old name (see
    reorderer/catalog.py: what those rows replaced is gone by then)."""
    rows = parsed(raw)
    shuffled = safe_order(rows, rnd)
    assume(shuffled is not None)
    packages = {}
    events = apply_rows(packages, shuffled)
    assert view(packages) == reference(rows)
    # A consumer that only sees the events believes the same thing.
    assert fold_events(events) == reference(rows)


@settings(max_examples=200)
@given(logs(), st.randoms(use_true_random=False))
def test_duplicates_change_nothing(raw, rnd):
    rows = parsed(raw)
    first, again = safe_order(rows, rnd), safe_order(rows, rnd)
    assume(first is not None and again is not None)
    packages = {}
    events = apply_rows(packages, first)
    assert apply_rows(packages, again) == []
    assert view(packages) == reference(rows)
    assert fold_events(events) == reference(rows)


def test_a_legacy_rename_moves_releases_and_files_to_the_new_name():
    """Old PyPI renamed 'oldname' to 'NewName': the releases went with it; the old name's
    tombstone stays; a row of the old name from before the rename that arrives late still
    reaches the new name; the old name registered again later is a new project."""
    log = [["oldname", None, 1000, "create", 1],
           ["oldname", "1.0", 1001, "new release", 2],
           ["oldname", "1.0", 1002, "add source file oldname-1.0.tar.gz", 3],
           ["NewName", None, 1010, "rename from oldname", 5],
           ["NewName", "2.0", 1011, "new release", 6],
           ["oldname", None, 1020, "create", 7],
           ["oldname", "1.0", 1003, "yank release", 4]]  # late, from before the rename
    packages = {}
    events = apply_rows(packages, parsed(log))
    got = view(packages)
    assert got == reference(parsed(log))
    assert got["newname"] == {"display": "NewName", "quarantined": False, "versions": {
        "1.0": {"yanked": True, "quarantined": False,
                "files": {"oldname-1.0.tar.gz": "source"}},
        "2.0": {"yanked": False, "quarantined": False, "files": {}}}}
    assert got["oldname"]["versions"] == {}  # a new life: nothing of the old one
    assert fold_events(events) == got


def test_chai_sequence_from_design():
    """docs/architecture.md's real example: in time order the remove comes first and is a no-op."""
    log = [
        ["chai", "0.1.18", 1320779633, "new release", 256850],
        ["chai", "0.1.19", 1320788944, "new release", 256914],
        ["chai", "0.1.17", 1320416429, "new release", 258871],
        ["chai", "0.1.16", 1320361649, "new release", 259151],
        ["chai", None, 1299029402, "create", 264082],
        ["chai", "0.1.0", 1299029402, "new release", 264084],
        ["chai", None, 1299029397, "remove", 264426],
    ]
    packages = {}
    apply_rows(packages, parsed(log))  # serial order, as upstream sends it
    assert sorted(view(packages)["chai"]["versions"]) == [
        "0.1.0", "0.1.16", "0.1.17", "0.1.18", "0.1.19"]


@pytest.mark.xfail(strict=True, reason=(
    "known defect: a deletion older than every creating row still names a new life, so "
    "consumers delete and rebuild the wheels (fix: a min-register of the oldest creating key, "
    "with the store loading whole packages when a late older creation lowers it)"))
@pytest.mark.parametrize("deletion", [
    ["chai", None, 1299029397, "remove", 264426],
    ["chai", "0.1.0", 1299029397, "remove release", 264426],
])
def test_a_deletion_older_than_everything_it_would_delete_ends_no_life(deletion):
    """chai's remove arrives last but is first in time: it deleted nothing, so consumers who
    saw the releases should see no event (no package removed and added again, no new life:
    their wheels stay), and the state the one it would be had the remove come first."""
    log = [["chai", None, 1299029402, "create", 264082],
           ["chai", "0.1.0", 1299029402, "new release", 264084],
           ["chai", "0.1.0", 1299029403, "add source file chai-0.1.0.tar.gz", 264085]]
    packages = {}
    apply_rows(packages, parsed(log))
    assert apply_rows(packages, parsed([deletion])) == []
    assert packages["chai"].life == 0
    first = {}
    events = apply_rows(first, parsed([deletion] + log))
    assert {e.get("life") for e in events} == {0}
    assert view(first) == view(packages) == reference(parsed(log + [deletion]))


def test_a_deletion_after_a_creation_still_ends_a_life_whatever_the_order():
    log = [["pkg", None, 100, "create", 1], ["pkg", "1.0", 101, "new release", 2],
           ["pkg", None, 102, "remove", 3], ["pkg", None, 103, "create", 4]]
    for order in (log, log[::-1], [log[2], log[3], log[0], log[1]]):
        packages = {}
        apply_rows(packages, parsed(order))
        assert packages["pkg"].life == 3 and packages["pkg"].alive
        assert view(packages) == reference(parsed(log))
