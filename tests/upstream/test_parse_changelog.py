"""The fast changelog parser must agree with xmlrpc.client on every answer, or step aside."""

import xmlrpc.client

from hypothesis import given
from hypothesis import strategies as st

from piw_services.upstream_client import parse_changelog

scalars = st.one_of(st.none(), st.integers(-2**31, 2**31 - 1),
                    # XML 1.0 text: no surrogates, no control characters but tab and newline
                    st.text(st.characters(blacklist_categories=("Cs", "Cc"))
                            | st.sampled_from(["\t", "\n"])))
rows = st.lists(st.lists(scalars, max_size=6), max_size=20)


def slow(body):
    (result,), _ = xmlrpc.client.loads(body, use_builtin_types=True)
    return result


@given(rows)
def test_fast_path_equals_xmlrpc_client(data):
    body = xmlrpc.client.dumps((data,), methodresponse=True, allow_none=True).encode()
    assert parse_changelog(body) == slow(body)


@given(st.lists(st.one_of(st.floats(allow_nan=False), st.booleans(), st.binary(),
                          st.dictionaries(st.text(), st.integers(-100, 100))), min_size=1))
def test_unusual_types_fall_back(values):
    body = xmlrpc.client.dumps(([values],), methodresponse=True, allow_none=True).encode()
    assert parse_changelog(body) is None


def test_faults_and_garbage_fall_back():
    fault = xmlrpc.client.dumps(xmlrpc.client.Fault(-32500, "slow down"), methodresponse=True)
    assert parse_changelog(fault.encode()) is None
    assert parse_changelog(b"\xff\xfe not xml") is None
    assert parse_changelog(b"<html>oops</html>") is None


def test_real_pypi_rows():
    data = [["chai", "0.1.18", 1320779633, "new release", 256850],
            ["chai", None, 1299029397, "remove", 264426],
            ["a&b <c>", "1.0", 1, "add source file x&y.tar.gz", 3]]
    body = xmlrpc.client.dumps((data,), methodresponse=True, allow_none=True).encode()
    assert parse_changelog(body) == data


def test_control_characters_expat_refuses_still_parse():
    """Expat refuses the whole page; the fast path reads it and the reorderer judges the row."""
    body = xmlrpc.client.dumps(([["a\x08b", None, 1, "create", 2]],), methodresponse=True,
                               allow_none=True).encode()
    assert parse_changelog(body) == [["a\x08b", None, 1, "create", 2]]
