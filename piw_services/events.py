"""The one schema of the events services send each other.

Two kinds travel between piw's services:

- **ordered events**, written to the outbox by the reorderer (catalog changes and
  ``version_info``) and by the admin service (``admin``), relayed in batches and applied by
  every consumer in seq order (piw_services.ordered_events);
- **service events**, dispatched by nameko: file_manager's ``files_changed`` and
  build_dispatch's ``builds_changed``, which tell the index a package's pages are stale.

Each has a type name constant and a TypedDict of its shape here, so producers and consumers
cannot drift apart on a string; :func:`check_ordered_event` and :func:`check_service_event`
validate a dict against the shape (producers' tests run every event they emit through them;
consumers of service events, which arrive over RabbitMQ from another process, check them on
receipt). The builders' wire protocol is apart, in builders/protocol.py: builders never import
the server's code.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypedDict

# -- ordered events: the catalog (reorderer/catalog.py) ------------------------------------------
PACKAGE_ADDED = "package_added"
PACKAGE_REMOVED = "package_removed"
PACKAGE_RENAMED = "package_renamed"
PACKAGE_QUARANTINED = "package_quarantined"
PACKAGE_UNQUARANTINED = "package_unquarantined"
VERSION_ADDED = "version_added"
VERSION_REMOVED = "version_removed"
VERSION_YANKED = "version_yanked"
VERSION_UNYANKED = "version_unyanked"
#: warehouse's release quarantine (utils/project.py): withheld until cleared
VERSION_QUARANTINED = "version_quarantined"
VERSION_UNQUARANTINED = "version_unquarantined"
VERSION_BUILDABLE = "version_buildable"
FILE_ADDED = "file_added"
FILE_REMOVED = "file_removed"
#: what upstream's JSON API says of a version (reorderer/store.py ``set_version_info``)
VERSION_INFO = "version_info"
#: an operator's change, written by the admin service (admin/actions.py)
ADMIN = "admin"

# -- service events: nameko event types, and the services that dispatch them -----------------
FILES_CHANGED = "files_changed"
FILES_CHANGED_SOURCE = "file_manager"
BUILDS_CHANGED = "builds_changed"
BUILDS_CHANGED_SOURCE = "build_dispatch"
#: packages downloaded since the last such event: their pages and packages.json show counts
DOWNLOADS_CHANGED = "downloads_changed"
DOWNLOADS_CHANGED_SOURCE = "stats"
#: packages per downloads_changed event, so one message stays small whatever the traffic
DOWNLOADS_CHANGED_BATCH = 1000


class _CatalogEvent(TypedDict):
    """What every catalog event carries: the package (canonical name) and the upstream row
    that caused it."""

    type: str
    package: str
    serial: int
    timestamp: int


class PackageAdded(_CatalogEvent):
    display_name: str
    life: int


class PackageRemoved(_CatalogEvent):
    life: int


class PackageRenamed(_CatalogEvent):
    display_name: str


class PackageQuarantine(_CatalogEvent):
    """``package_quarantined`` and ``package_unquarantined``."""


class VersionAdded(_CatalogEvent):
    version: str
    life: int
    released: int
    yanked: bool
    yanked_reason: str | None
    buildable: bool
    unbuildable_reason: str | None
    quarantined: bool


class VersionRemoved(_CatalogEvent):
    version: str


class VersionYank(_CatalogEvent):
    """``version_yanked`` and ``version_unyanked``."""

    version: str
    reason: str | None


class VersionQuarantine(_CatalogEvent):
    """``version_quarantined`` and ``version_unquarantined``."""

    version: str


class VersionBuildable(_CatalogEvent):
    version: str
    buildable: bool
    unbuildable_reason: str | None


class FileAdded(_CatalogEvent):
    version: str
    filename: str
    pyver: str


class FileRemoved(_CatalogEvent):
    version: str
    filename: str


class VersionInfo(TypedDict):
    type: str
    package: str
    version: str
    requires_python: str | None
    yanked_reason: str | None
    summary: str | None


class AdminEvent(TypedDict):
    """Already applied by build_dispatch (in the admin's transaction); file_manager deletes the
    files of ``revoked_jobs`` and the index rewrites the package's pages (for
    ``rebuild_pages``: the part of the site named by ``pages``, every page when no package)."""

    type: str
    action: Literal["remove", "remove_package", "skip", "unskip", "rebuild", "add",
                    "rebuild_pages", "import", "kill", "skip_build"]
    package: str | None
    version: str | None
    abi: str | None
    pages: str | None
    revoked_jobs: list[str]


class FilesChanged(TypedDict):
    package: str
    version: str
    added: list[str]
    removed: list[str]


class BuildsChanged(TypedDict):
    package: str
    version: str


class DownloadsChanged(TypedDict):
    packages: list[str]


OrderedEvent = (PackageAdded | PackageRemoved | PackageRenamed | PackageQuarantine
                | VersionAdded | VersionRemoved | VersionYank | VersionQuarantine
                | VersionBuildable | FileAdded
                | FileRemoved | VersionInfo | AdminEvent)

#: every ordered event type and its shape
ORDERED: dict[str, type] = {
    PACKAGE_ADDED: PackageAdded, PACKAGE_REMOVED: PackageRemoved,
    PACKAGE_RENAMED: PackageRenamed, PACKAGE_QUARANTINED: PackageQuarantine,
    PACKAGE_UNQUARANTINED: PackageQuarantine, VERSION_ADDED: VersionAdded,
    VERSION_REMOVED: VersionRemoved, VERSION_YANKED: VersionYank,
    VERSION_UNYANKED: VersionYank, VERSION_QUARANTINED: VersionQuarantine,
    VERSION_UNQUARANTINED: VersionQuarantine, VERSION_BUILDABLE: VersionBuildable,
    FILE_ADDED: FileAdded,
    FILE_REMOVED: FileRemoved, VERSION_INFO: VersionInfo, ADMIN: AdminEvent,
}
#: every service event type and its shape
SERVICE: dict[str, type] = {FILES_CHANGED: FilesChanged, BUILDS_CHANGED: BuildsChanged,
                            DOWNLOADS_CHANGED: DownloadsChanged}


class EventError(ValueError):
    """An event that does not have its type's shape."""


def check_ordered_event(event: Any) -> OrderedEvent:
    """*event* as the ordered event it is, or :class:`EventError` naming what is wrong."""
    if not isinstance(event, Mapping):
        raise EventError(f"an ordered event is an object, not {type(event).__name__}")
    shape = ORDERED.get(event.get("type"))  # type: ignore[arg-type]
    if shape is None:
        raise EventError(f"unknown ordered event type {event.get('type')!r:.60}")
    _check(event, shape, str(event["type"]))
    return typing.cast(OrderedEvent, event)


def check_service_event(event_type: str, payload: Any) -> Mapping[str, Any]:
    """*payload* of the service event *event_type*, or :class:`EventError`."""
    shape = SERVICE.get(event_type)
    if shape is None:
        raise EventError(f"unknown service event type {event_type!r:.60}")
    if not isinstance(payload, Mapping):
        raise EventError(f"{event_type}: a payload is an object, not {type(payload).__name__}")
    _check(payload, shape, event_type)
    return payload


def _check(event: Mapping[str, Any], shape: type, name: str) -> None:
    hints = typing.get_type_hints(shape)
    missing = sorted(set(hints) - set(event))
    if missing:
        raise EventError(f"{name}: missing {', '.join(missing)}")
    extra = sorted(set(event) - set(hints))
    if extra:
        raise EventError(f"{name}: unexpected {', '.join(map(str, extra))[:200]}")
    for key, hint in hints.items():
        if not _fits(event[key], hint):
            raise EventError(f"{name}: {key} is {event[key]!r:.60}, not {_name(hint)}")


def _fits(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is int:  # bool is an int to Python, never to us
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
