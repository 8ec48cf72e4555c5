"""A deliberately simple model of "what PyPI currently serves", derived from the log.

It is independent of whatever the system under test does with the changelog, so
tests can compare the two.  Rows are applied one by one in (timestamp, serial)
order; unknown actions (owner changes, doc updates, ...) are ignored, as are raw
(malformed) rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

if TYPE_CHECKING:
    from .log import Event

#: "add <python version> file <filename>": the action of a file upload row.
ADD_FILE_RE = re.compile(r"^add (\S+) file (\S.*)$")
_REMOVE_FILE = re.compile(r"^remove file (\S.*)$")


@dataclass
class UploadedFile:
    """A file that was uploaded and not removed."""

    filename: str
    python_version: str  # "source" for sdists, "py3", "cp311", ... as in the action
    timestamp: int
    serial: int
    requires_python: str | None
    kind: str
    summary: str


@dataclass
class ReleaseState:
    """A live version of a project."""

    version: str
    timestamp: int
    serial: int
    requires_python: str | None = None
    kind: str = "pure"
    summary: str = ""
    yanked: bool = False
    yanked_reason: str | None = None
    quarantined: bool = False  # "release quarantined": on no index until cleared
    had_file_rows: bool = False
    files: dict[str, UploadedFile] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)  # filenames removed by "remove file"


@dataclass
class ProjectState:
    """A live project; ``name`` is the display name from its latest row."""

    name: str
    canonical: str
    timestamp: int
    last_serial: int
    releases: dict[str, ReleaseState] = field(default_factory=dict)
    quarantined: bool = False  # "project quarantined": on no index until cleared


@dataclass
class PyPIState:
    """Live projects keyed by canonical name, plus every name the log ever mentioned."""

    projects: dict[str, ProjectState] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)

    def project(self, name: str) -> ProjectState | None:
        """Look a project up by any spelling of its name."""
        return self.projects.get(canonicalize_name(name))

    def release(self, name: str, version: str) -> ReleaseState | None:
        """Look a live release up by any spelling of the project name."""
        project = self.project(name)
        return None if project is None else project.releases.get(version)


def _project(state: PyPIState, event: Event, canonical: str) -> ProjectState:
    project = state.projects.get(canonical)
    if project is None:
        project = ProjectState(event.name, canonical, event.timestamp, event.serial)
        state.projects[canonical] = project
    project.name = event.name
    project.last_serial = max(project.last_serial, event.serial)
    return project


def _release(project: ProjectState, event: Event, version: str) -> ReleaseState:
    release = project.releases.get(version)
    if release is None:
        release = ReleaseState(version, event.timestamp, event.serial)
        project.releases[version] = release
    return release


def apply_events(events: Iterable[Event]) -> PyPIState:
    """Replay ``events`` (valid ones, in (timestamp, serial) order) into a state."""
    state = PyPIState()
    valid = [event for event in events if event.raw is None]
    valid.sort(key=lambda event: (event.timestamp, event.serial))
    for event in valid:
        canonical = canonicalize_name(event.name)
        state.known.add(canonical)
        action, version = event.action, event.version
        if action == "create":
            _project(state, event, canonical)
        elif action == "new release" and version is not None:
            release = _release(_project(state, event, canonical), event, version)
            if event.requires_python is not None:
                release.requires_python = event.requires_python
            if event.kind is not None:
                release.kind = event.kind
            if event.summary is not None:
                release.summary = event.summary
        elif (match := ADD_FILE_RE.match(action)) and version is not None:
            release = _release(_project(state, event, canonical), event, version)
            release.had_file_rows = True
            if release.requires_python is None and event.requires_python is not None:
                release.requires_python = event.requires_python
            pyver, filename = match.groups()
            release.removed.discard(filename)
            release.files[filename] = UploadedFile(
                filename=filename,
                python_version=pyver,
                timestamp=event.timestamp,
                serial=event.serial,
                requires_python=event.requires_python or release.requires_python,
                kind=event.kind or release.kind,
                summary=event.summary if event.summary is not None else release.summary,
            )
        elif match := _REMOVE_FILE.match(action):
            project = state.projects.get(canonical)
            if project is None:
                continue
            filename = match.group(1)
            candidates = [project.releases.get(version)] if version is not None else []
            candidates += list(project.releases.values())
            for release in candidates:
                if release is not None and filename in release.files:
                    del release.files[filename]
                    release.removed.add(filename)
                    break
            else:
                if version is not None and version in project.releases:
                    project.releases[version].removed.add(filename)
            project.last_serial = max(project.last_serial, event.serial)
        elif action in ("remove release", "remove") and version is not None:
            project = state.projects.get(canonical)
            if project is not None:
                project.releases.pop(version, None)
                project.last_serial = max(project.last_serial, event.serial)
        elif action == "remove project" or (action == "remove" and version is None):
            state.projects.pop(canonical, None)
        elif action in ("project quarantined", "project quarantine cleared"):
            project = state.projects.get(canonical)
            if project is not None:
                project.quarantined = action == "project quarantined"
                project.last_serial = max(project.last_serial, event.serial)
        elif action in ("release quarantined", "release quarantine cleared") and version:
            release = state.release(canonical, version)
            if release is not None:
                release.quarantined = action == "release quarantined"
                state.projects[canonical].last_serial = max(
                    state.projects[canonical].last_serial, event.serial)
        elif action in ("yank release", "unyank release") and version is not None:
            project = state.projects.get(canonical)
            release = None if project is None else project.releases.get(version)
            if release is not None:
                release.yanked = action == "yank release"
                release.yanked_reason = event.yanked_reason if release.yanked else None
                project.last_serial = max(project.last_serial, event.serial)
        else:
            project = state.projects.get(canonical)
            if project is not None:
                project.last_serial = max(project.last_serial, event.serial)
    return state
