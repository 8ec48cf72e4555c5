"""The decisions of build_dispatch as pure functions: no broker, no database.

- :func:`fold_events` turns one batch of ordered events into the net change per version, so
  the batch is applied with a few set-based statements instead of one per event.
- :func:`priority` orders jobs: new releases first.
- :func:`pure_wheel_abis` is the tag logic: which build ABIs a ``none``-ABI wheel satisfies.
- :func:`claim_decision` says whether a builder that received a job should build it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

DAY = 86400


@dataclass
class VersionChange:
    """The net effect of a batch on one version.

    ``reset``: whatever the database knew of the version goes first (it was removed, maybe
    then re-released: a new life starts with no builds). ``buildable``/``released``: its state
    after the batch, None when the batch leaves it gone (or, for buildable, unchanged).
    """

    reset: bool = False
    alive: bool | None = None  # True: (re)added in this batch; False: removed; None: unknown
    buildable: bool | None = None
    released: int | None = None


@dataclass
class BatchPlan:
    #: packages removed in the batch: every version the database has of them goes first
    wiped: set[str] = field(default_factory=set)
    versions: dict[tuple[str, str], VersionChange] = field(default_factory=dict)


def fold_events(events: Iterable[Mapping[str, Any]]) -> BatchPlan:
    """Reduce a batch, in order, to what it changes for build_dispatch."""
    plan = BatchPlan()
    for e in events:
        kind, package = e.get("type"), e.get("package")
        if kind == "package_removed":
            plan.wiped.add(package)
            for key in [k for k in plan.versions if k[0] == package]:
                del plan.versions[key]
        elif kind == "version_removed":
            plan.versions[(package, e["version"])] = VersionChange(reset=True, alive=False)
        elif kind == "version_added":
            change = plan.versions.setdefault((package, e["version"]), VersionChange())
            # a version_added for a version we may know means a new life of it
            change.reset, change.alive = True, True
            change.buildable, change.released = bool(e["buildable"]), int(e["released"])
        elif kind == "version_buildable":
            change = plan.versions.setdefault((package, e["version"]), VersionChange())
            change.buildable = bool(e["buildable"])
    return plan


#: (age below which, priority): new releases first (a Pi user is waiting for them), then
#: recent ones, then history.
PRIORITY_BANDS = ((2 * DAY, 9), (30 * DAY, 5))
HISTORY_PRIORITY = 1


def priority(released: int, now: float) -> int:
    """The job priority of a version released at *released* (upstream time)."""
    for age, value in PRIORITY_BANDS:
        if now - released < age:
            return value
    return HISTORY_PRIORITY


def priority_sql(released: str, now: float) -> str:
    """:func:`priority` as a SQL expression over the column *released*."""
    cases = " ".join(f"WHEN {int(now)} - {released} < {age} THEN {value}"
                     for age, value in PRIORITY_BANDS)
    return f"CASE {cases} ELSE {HISTORY_PRIORITY} END"


def python_excluded(requires_python: str | None, abi: str) -> str | None:
    """Why a version's Requires-Python rules out the ABI's Python (None when it does not, or
    cannot be read: then the build decides, as pip would)."""
    if not requires_python:
        return None
    try:
        spec = SpecifierSet(requires_python)
    except InvalidSpecifier:
        return None
    major, minor = abi_python(abi)
    python = f"{major}.{minor}"
    if spec.contains(python, prereleases=True):
        return None
    return f"Requires-Python {requires_python} excludes Python {python}"


def abi_python(abi: str) -> tuple[int, int]:
    """The Python version of a CPython ABI tag: cp311 -> (3, 11)."""
    digits = abi[2:].rstrip("dmu")
    return int(digits[0]), int(digits[1:])


@functools.lru_cache(maxsize=64)
def _pure_tags(abi: str) -> frozenset[Tag]:
    return frozenset(compatible_tags(python_version=abi_python(abi), interpreter=abi,
                                     platforms=["any"]))


def pure_wheel_abis(filename: str, abis: Iterable[str]) -> list[str]:
    """The ABIs in *abis* a wheel satisfies because it is pure (``none`` ABI, ``any``
    platform) and its Python tag fits them: py3-none-any satisfies cp39 and cp313 alike."""
    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return []
    if not all(t.abi == "none" and t.platform == "any" for t in tags):
        return []
    return [abi for abi in abis if abi.startswith("cp") and tags & _pure_tags(abi)]


def claim_decision(state: str | None, holder: int | None, builder_id: int, redelivered: bool,
                   skip_reason: str | None, note: str | None) -> tuple[bool, str | None]:
    """Whether a builder that received a job should build it, and if not, why.

    *state* is the job's target state (None: no such job, its version was removed or the job
    was replaced by a rebuild). A job held by another builder is only taken over when RabbitMQ
    redelivered it, which it does only once the holder's connection is gone.
    """
    if state is None:
        return False, "job no longer wanted (version removed, or replaced by a newer job)"
    if skip_reason:
        return False, f"skipped: {skip_reason}"
    if state in ("pending", "queued"):
        return True, None
    if state == "building":
        if holder == builder_id or redelivered:
            return True, None
        return False, f"already being built by builder {holder}"
    if state == "built":
        return False, f"already built{f' ({note})' if note else ''}"
    if state == "failed":
        return False, "already failed; an operator can ask for a rebuild"
    return False, f"job in state {state}"
