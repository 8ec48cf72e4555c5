"""Shared pieces of the hostile-input suite (issue 8): one hypothesis settings profile, a tally of
the inputs each area tried (printed at the end of the run, and written as JSON to
``$PIW_HOSTILE_COUNTS`` when that is set), and strategies for hostile text.

The suite is bounded in time (about a minute on a 2-core machine): ``PIW_HOSTILE_SCALE``
multiplies every test's number of examples (e.g. 10 for a long fuzzing session).
"""

from __future__ import annotations

import json
import os
from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# the catalog and build state the operators' actions are tried on (Foo 1.0 and 2.0, two ABIs)
from tests.admin.test_actions import s  # noqa: F401

# the web service's fixtures (its tree with hostile bits, the service on a real socket)
from tests.web.conftest import listener, web, web_config, web_container, www  # noqa: F401

SCALE = float(os.environ.get("PIW_HOSTILE_SCALE", "1"))

settings.register_profile(
    "hostile",
    deadline=None,  # a shared 2-core machine: timing is not what is tested
    database=None,  # nothing written into the checkout
    print_blob=True,  # a failure in CI prints how to reproduce it
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
HOSTILE = settings.get_profile("hostile")


def examples(n: int) -> settings:
    """The hostile profile with *n* examples (scaled by ``PIW_HOSTILE_SCALE``)."""
    return settings(HOSTILE, max_examples=max(1, int(n * SCALE)))


# -- the tally -----------------------------------------------------------------------------------
#: inputs tried per area in this run (every example hypothesis ran, shrinking included, and
#: every case of the enumerated tables)
TALLY: Counter[str] = Counter()
AREAS = ("upstream rows", "http", "builder messages", "admin")


def tried(area: str, n: int = 1) -> None:
    assert area in AREAS, area
    TALLY[area] += n


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not TALLY:
        return
    terminalreporter.section("hostile inputs tried")
    for area in AREAS:
        terminalreporter.write_line(f"{area:>18}: {TALLY[area]:>7,}")
    terminalreporter.write_line(f"{'total':>18}: {sum(TALLY.values()):>7,}")
    path = os.environ.get("PIW_HOSTILE_COUNTS")
    if path:
        with open(path, "w") as f:
            json.dump(dict(TALLY), f, indent=1)


# -- hostile text ------------------------------------------------------------------------------
#: Characters that have broken parsers, paths, SQL and terminals somewhere.
NASTY = [
    "/", "\\", "..", ".", "%", "%2e", "%2f", "%00", "\x00", "\n", "\r", "\r\n", "\t", " ", "\x7f",
    "\x1b[31m", "'", '"', ";", "--", "/*", "*/", "' OR '1'='1", "'; DROP TABLE packages; --",
    "$(reboot)", "`id`", "|", "&", "<", ">", "<script>", "{", "}", "%s", "%(x)s", "{0}", "\\N",
    "\u2024", "\uff0e", "\u3002", "\u202e", "\u200b", "\ufeff", "\u0130", "\u212a", "\u00e9",
    "e\u0301", "\U0001f40d", "\ufffd", "\udc80", "\u2028", "\x85", "\xa0", "ﬁ", "１",
]


def hostile_text(max_size: int = 30) -> st.SearchStrategy[str]:
    """Short strings built from the nasty pieces, arbitrary unicode and plain letters."""
    piece = st.one_of(st.sampled_from(NASTY), st.text(max_size=4),
                      st.text("abcXYZ019-_.", min_size=1, max_size=6))
    return st.lists(piece, max_size=max_size // 3 or 1).map("".join)


def huge_text() -> st.SearchStrategy[str]:
    return st.builds(lambda c, n: c * n, st.sampled_from(["a", "1", ".", "/", "\u00e9", "%2e"]),
                     st.sampled_from([129, 201, 256, 501, 4_097, 100_000]))


def any_text() -> st.SearchStrategy[str]:
    return st.one_of(hostile_text(), hostile_text(), huge_text(), st.just(""))


#: JSON-able junk: what a confused builder or upstream could send in place of a value
json_junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
              st.floats(allow_nan=True, allow_infinity=True), any_text()),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=8)
