"""build_dispatch's pure decisions: batch folding (against a one-event-at-a-time model), job
priority, pure-wheel tag logic and claims."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piw_services.build_dispatch import logic

PACKAGES = ("a", "b")
VERSIONS = ("1.0", "2.0")


def event_strategy():
    pkg, ver = st.sampled_from(PACKAGES), st.sampled_from(VERSIONS)
    return st.one_of(
        st.builds(lambda p: {"type": "package_removed", "package": p}, pkg),
        st.builds(lambda p, v: {"type": "version_removed", "package": p, "version": v},
                  pkg, ver),
        st.builds(lambda p, v, b, r: {"type": "version_added", "package": p, "version": v,
                                      "buildable": b, "released": r},
                  pkg, ver, st.booleans(), st.integers(0, 10)),
        st.builds(lambda p, v, b: {"type": "version_buildable", "package": p, "version": v,
                                   "buildable": b}, pkg, ver, st.booleans()),
        st.builds(lambda p: {"type": "package_renamed", "package": p}, pkg),
    )


def apply_one_by_one(model, events):
    """The meaning of events, one at a time: (package, version) -> [buildable, released],
    and the set of versions whose earlier builds are forgotten."""
    model, reset = {k: list(v) for k, v in model.items()}, set()
    for e in events:
        p = e["package"]
        if e["type"] == "package_removed":
            for k in [k for k in model if k[0] == p]:
                del model[k]
                reset.add(k)
        elif e["type"] == "version_removed":
            model.pop((p, e["version"]), None)
            reset.add((p, e["version"]))
        elif e["type"] == "version_added":
            model[(p, e["version"])] = [e["buildable"], e["released"]]
            reset.add((p, e["version"]))
        elif e["type"] == "version_buildable" and (p, e["version"]) in model:
            model[(p, e["version"])][0] = e["buildable"]
    return model, reset


def apply_plan(model, plan):
    """What store.apply_events does with a plan, on the same model."""
    model, reset = {k: list(v) for k, v in model.items()}, set()
    for k in [k for k in model if k[0] in plan.wiped]:
        del model[k]
        reset.add(k)
    for k, c in plan.versions.items():
        if c.reset:
            model.pop(k, None)
            reset.add(k)
        if c.alive:
            model[k] = [c.buildable, c.released]
        elif c.alive is None and c.buildable is not None and k in model:
            model[k][0] = c.buildable
    return model, reset


@given(st.dictionaries(st.tuples(st.sampled_from(PACKAGES), st.sampled_from(VERSIONS)),
                       st.tuples(st.booleans(), st.integers(0, 10))),
       st.lists(event_strategy(), max_size=12))
def test_fold_equals_one_event_at_a_time(start, events):
    model, reset = apply_plan(start, logic.fold_events(events))
    want_model, want_reset = apply_one_by_one(start, events)
    assert model == want_model
    # forgetting a version that did not exist is harmless; forgetting one that did must match
    assert reset & (set(start) | set(want_model)) == want_reset & (set(start) | set(want_model))


@given(st.integers(0, 2 * 10**9), st.integers(0, 2 * 10**9))
def test_newer_releases_never_get_a_lower_priority(released, other):
    now = 2 * 10**9
    if released > other:
        assert logic.priority(released, now) >= logic.priority(other, now)
    assert logic.priority(now - 60, now) > logic.priority(now - 10 * 86400, now) \
        > logic.priority(now - 400 * 86400, now)


def test_pure_wheel_satisfies_targets_of_its_python_on_every_platform():
    targets = ["cp39-linux_armv7l", "cp311-linux_armv7l", "cp311-linux_aarch64",
               "cp313-linux_aarch64"]
    pure = logic.pure_wheel_targets
    assert pure("foo-1.0-py3-none-any.whl", targets) == targets
    assert pure("foo-1.0-py2.py3-none-any.whl", targets) == targets
    assert pure("foo-1.0-py312-none-any.whl", targets) == ["cp313-linux_aarch64"]
    assert pure("foo-1.0-cp311-none-any.whl", targets) == ["cp311-linux_armv7l",
                                                           "cp311-linux_aarch64"]
    # a platform wheel settles only the job it was built for, never another target
    assert pure("foo-1.0-cp311-cp311-linux_armv7l.whl", targets) == []
    assert pure("foo-1.0-py3-none-linux_armv7l.whl", targets) == []
    assert pure("foo-1.0-py2-none-any.whl", targets) == []
    assert pure("not a wheel", targets) == []


def test_build_abis_setting_names_abi_platform_and_distro():
    parse = logic.parse_targets
    assert parse("cp311:linux_armv7l:bookworm, cp311:linux_aarch64:bookworm,"
                 "cp313:linux_aarch64:trixie", "linux_x86_64") == [
        ("cp311-linux_armv7l", "bookworm", False), ("cp311-linux_aarch64", "bookworm", False),
        ("cp313-linux_aarch64", "trixie", False)]
    # "host": this machine's platform (the demo and the tests build locally)
    assert parse(["cp311:host:bookworm"], "linux_x86_64") == [
        ("cp311-linux_x86_64", "bookworm", False)]
    assert parse("", "linux_x86_64") == parse(None, "linux_x86_64") == []
    assert parse("cp311:linux_armv7l:bookworm,cp311:linux_armv7l:bookworm", "x") == [
        ("cp311-linux_armv7l", "bookworm", False)]
    # the old abi:distro form says nothing of the platform: refused, naming the new form
    with pytest.raises(ValueError, match=r"'cp311:bookworm' is not abi:platform:distro\[:armv6\]"
                                         ", e.g. cp311:linux_armv7l:bookworm"):
        parse("cp311:bookworm", "linux_x86_64")
    # an image declared ARMv6-compatible (32-bit Raspberry Pi OS): its armv7l wheels also
    # serve armv6l; no other platform can be, and the word is only "armv6"
    assert parse("cp311:linux_armv7l:bookworm:armv6,cp311:linux_aarch64:bookworm", "x") == [
        logic.Target("cp311-linux_armv7l", "bookworm", True),
        logic.Target("cp311-linux_aarch64", "bookworm", False)]
    for bad, what in (("cp311:linux_aarch64:bookworm:armv6", "only linux_armv7l wheels"),
                      ("cp311:linux_armv7l:bookworm:yes", "the fourth word can only be 'armv6'"),
                      ("cp311:linux_armv7l:bookworm:armv6:x", "not abi:platform:distro")):
        with pytest.raises(ValueError, match=f"BUILD_ABIS: .*{what}"):
            parse(bad, "linux_x86_64")
    for bad, what in (("../etc:linux_armv7l:bookworm", "not an ABI tag"),
                      ("cp311:linux-armv7l:bookworm", "not a platform tag"),
                      ("cp311:any:bookworm", "not a platform tag"),
                      ("cp311::bookworm", "not abi:platform:distro")):
        with pytest.raises(ValueError, match=f"BUILD_ABIS: .*{what}"):
            parse(bad, "linux_x86_64")


def test_claims():
    decide = logic.claim_decision
    assert decide(None, None, 1, False, None, None)[0] is False
    assert decide("queued", None, 1, False, None, None) == (True, None)
    assert decide("pending", None, 1, False, None, None) == (True, None)
    assert decide("queued", None, 1, False, "too big", None) == (False, "skipped: too big")
    # a duplicate message of a job another builder holds is dropped ...
    assert decide("building", 2, 1, False, None, None)[0] is False
    # ... but a redelivery (the holder's connection is gone) is taken over
    assert decide("building", 2, 1, True, None, None) == (True, None)
    assert decide("building", 1, 1, False, None, None) == (True, None)
    built = decide("built", 2, 1, True, None, "pure wheel built for cp311")
    assert built == (False, "already built (pure wheel built for cp311)")
    assert decide("failed", 2, 1, True, None, None)[0] is False


@pytest.mark.parametrize(("spec", "abi", "excluded"), [
    (None, "cp311", False), ("", "cp311", False), (">=3.8", "cp311", False),
    (">=3.99", "cp311", True), ("<3.11", "cp311-linux_armv7l", True),
    ("~=3.12.0", "cp313-linux_aarch64", True),
    ("==3.11.*", "cp311", False), ("not a specifier", "cp311", False),
])
def test_requires_python_excludes_the_abis_python(spec, abi, excluded):
    reason = logic.python_excluded(spec, abi)
    assert bool(reason) is excluded
    if excluded:
        tag = abi.partition("-")[0]
        assert spec in reason and f"Python {tag[2]}.{tag[3:]}" in reason
