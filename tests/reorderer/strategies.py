"""Hypothesis strategies for changelog logs: few names (with spellings that canonicalise
together), few versions, many collisions in time, every action the reorderer knows."""

from hypothesis import strategies as st

# Each inner list is one project under several spellings.
SPELLINGS = [["chai", "Chai", "CHAI"], ["foo-bar", "Foo_Bar", "foo.bar"], ["zed"]]
VERSIONS = ["0.1", "1.0", "2.0"]
BASE_TS = 1_300_000_000


def _action(name: str, version: str):
    stem = name.replace("-", "_").replace(".", "_").lower()
    sdist = f"{stem}-{version}.tar.gz"
    wheel = f"{stem}-{version}-py3-none-any.whl"
    versioned = st.sampled_from([
        ("new release", version), ("add source file " + sdist, version),
        ("add py3 file " + wheel, version), ("remove file " + sdist, version),
        ("remove file " + wheel, version), ("remove release", version), ("remove", version),
        ("yank release", version), ("unyank release", version),
        ("release quarantined", version), ("release quarantine cleared", version),
    ])
    unversioned = st.sampled_from([
        ("create", None), ("remove project", None), ("remove", None),
        ("project quarantined", None), ("project quarantine cleared", None),
        ("add Owner filebot", None), ("remove Owner someone", None),
    ])
    rename = st.sampled_from([s for group in SPELLINGS for s in group]).map(
        lambda old: (f"rename from {old}", None))
    return st.one_of(versioned, versioned, versioned, unversioned, rename)


@st.composite
def logs(draw, max_rows: int = 40, spread: int = 60):
    """A list of raw rows ``[name, version, timestamp, action, serial]`` in serial order, with
    timestamps drawn independently of serials (so time order and serial order disagree)."""
    n = draw(st.integers(1, max_rows))
    rows = []
    for serial in range(1, n + 1):
        group = draw(st.sampled_from(SPELLINGS))
        name = draw(st.sampled_from(group))
        action, version = draw(_action(name, draw(st.sampled_from(VERSIONS))))
        ts = BASE_TS + draw(st.integers(0, spread))
        rows.append([name, version, ts, action, serial])
    return rows
