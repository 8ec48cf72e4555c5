"""The decisions of build_dispatch as pure functions: no broker, no database.

- :func:`fold_events` turns one batch of ordered events into the net change per version, so
  the batch is applied with a few set-based statements instead of one per event.
- :func:`priority` orders jobs: new releases first.
- :func:`parse_targets` reads ``BUILD_ABIS``: which build targets (ABI on a platform) exist.
- :func:`pure_wheel_targets` is the tag logic: which build targets a ``none``-ABI wheel
  satisfies.
- :func:`claim_decision` says whether a builder that received a job should build it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from builders import protocol
from piw_services import events as ev

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
        kind, package = e.get("type"), str(e.get("package"))
        if kind == ev.PACKAGE_REMOVED:
            plan.wiped.add(package)
            for key in [k for k in plan.versions if k[0] == package]:
                del plan.versions[key]
        elif kind == ev.VERSION_REMOVED:
            plan.versions[(package, e["version"])] = VersionChange(reset=True, alive=False)
        elif kind == ev.VERSION_ADDED:
            change = plan.versions.setdefault((package, e["version"]), VersionChange())
            # a version_added for a version we may know means a new life of it
            change.reset, change.alive = True, True
            change.buildable, change.released = bool(e["buildable"]), int(e["released"])
        elif kind == ev.VERSION_BUILDABLE:
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
    """:func:`priority` as a SQL expression over the column *released*: the SQL function of
    migration 0017, which the operators' changes (build_dispatch/operations.py) use too;
    tests/build_dispatch/test_store.py checks that the two agree."""
    return f"build_priority({released}, {int(now)})"


def python_excluded(requires_python: str | None, target: str) -> str | None:
    """Why a version's Requires-Python rules out the Python of a target (``cp311-...``, or a
    bare ABI tag): None when it does not, or cannot be read (then the build decides, as pip
    would)."""
    if not requires_python:
        return None
    try:
        spec = SpecifierSet(requires_python)
    except InvalidSpecifier:
        return None
    major, minor = abi_python(target)
    python = f"{major}.{minor}"
    if spec.contains(python, prereleases=True):
        return None
    return f"Requires-Python {requires_python} excludes Python {python}"


def abi_python(abi: str) -> tuple[int, int]:
    """The Python version of a CPython ABI tag or target: cp311 and cp311-linux_armv7l ->
    (3, 11)."""
    digits = abi.partition("-")[0][2:].rstrip("dmu")
    return int(digits[0]), int(digits[1:])


@functools.lru_cache(maxsize=64)
def _pure_tags(abi: str) -> frozenset[Tag]:
    return frozenset(compatible_tags(python_version=abi_python(abi), interpreter=abi,
                                     platforms=["any"]))


def pure_wheel_targets(filename: str, targets: Iterable[str]) -> list[str]:
    """The build targets in *targets* a wheel satisfies because it is pure (``none`` ABI,
    ``any`` platform) and its Python tag fits their ABI, whatever their platform:
    py3-none-any satisfies cp311-linux_armv7l, cp311-linux_aarch64 and cp313-linux_aarch64
    alike. A platform wheel satisfies only the target it was built for."""
    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return []
    if not all(t.abi == "none" and t.platform == "any" for t in tags):
        return []
    return [t for t in targets if t.startswith("cp") and tags & _pure_tags(t.partition("-")[0])]


#: The platform word of a ``BUILD_ABIS`` entry that means this machine's own platform tag
#: (one-machine setups: the demo and the tests, where master and builder share a host).
HOST_PLATFORM = "host"
#: The fourth word of a ``BUILD_ABIS`` entry declaring its image ARMv6-compatible.
ARMV6 = "armv6"


class Target(NamedTuple):
    """One ``BUILD_ABIS`` entry: the target key, its image's distro, and whether that image
    is ARMv6-compatible (its armv7l wheels are then also served as armv6l; see
    docs/builders.md, "armv6l")."""

    key: str
    distro: str
    armv6: bool = False


def parse_targets(setting: str | list[Any] | None, host_platform: str) -> list[Target]:
    """``BUILD_ABIS`` as ``"cp311:linux_armv7l:bookworm:armv6,cp311:linux_aarch64:bookworm"``
    (or a YAML list of such strings) -> ``[Target, ...]``. The platform ``host`` means
    *host_platform*. The old ``abi:distro`` form is refused by name: it said nothing of the
    platform, and guessing the master's own would queue jobs no Pi takes. ``armv6`` is only
    for ``linux_armv7l``: no other platform's wheels run on an ARMv6 Pi."""
    if not setting:
        return []
    items = setting.split(",") if isinstance(setting, str) else [str(s) for s in setting]
    targets: list[Target] = []
    for item in (i.strip() for i in items if i.strip()):
        parts = item.split(":")
        if len(parts) not in (3, 4) or not all(parts):
            raise ValueError(
                f"BUILD_ABIS: {item!r} is not abi:platform:distro[:{ARMV6}], e.g. "
                f"cp311:linux_armv7l:bookworm or cp311:linux_aarch64:bookworm "
                f"({HOST_PLATFORM!r} as the platform means this machine's, {host_platform})")
        abi, platform, distro = parts[:3]
        armv6 = len(parts) == 4
        if armv6 and parts[3] != ARMV6:
            raise ValueError(f"BUILD_ABIS: {item!r}: the fourth word can only be {ARMV6!r} "
                             f"(the image is ARMv6-compatible), not {parts[3]!r}")
        if platform == HOST_PLATFORM:
            platform = host_platform
        if armv6 and platform != "linux_armv7l":
            raise ValueError(f"BUILD_ABIS: {item!r}: only linux_armv7l wheels can be served "
                             f"to ARMv6 Pis, not {platform} ones")
        try:
            key = protocol.target_key(abi, platform)
        except protocol.ProtocolError as exc:
            raise ValueError(f"BUILD_ABIS: {item!r}: {exc}") from None
        if key not in (t.key for t in targets):
            targets.append(Target(key, distro, armv6))
    return targets


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
