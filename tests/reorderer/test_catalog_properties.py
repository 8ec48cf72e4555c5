"""Convergence (contract point 2) of the pure LWW catalog, against the naive reference."""

from hypothesis import given, settings
from hypothesis import strategies as st

from piw_services.reorderer.catalog import apply_rows
from piw_services.reorderer.parse import Row, parse_row
from tests.reorderer.reference import fold_events, reference, view
from tests.reorderer.strategies import logs

NOW = 2_000_000_000


def parsed(raw_rows):
    return [r for r in (parse_row(raw, NOW) for raw in raw_rows) if isinstance(r, Row)]


@settings(max_examples=400)
@given(logs(), st.randoms(use_true_random=False))
def test_any_arrival_order_converges_to_time_order(raw, rnd):
    rows = parsed(raw)
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    packages = {}
    events = apply_rows(packages, shuffled)
    assert view(packages) == reference(rows)
    # A consumer that only sees the events believes the same thing.
    assert fold_events(events) == reference(rows)


@settings(max_examples=200)
@given(logs(), st.randoms(use_true_random=False))
def test_duplicates_change_nothing(raw, rnd):
    rows = parsed(raw)
    packages = {}
    events = apply_rows(packages, rows)
    again = rows[:]
    rnd.shuffle(again)
    assert apply_rows(packages, again) == []
    assert view(packages) == reference(rows)
    assert fold_events(events) == reference(rows)


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
