"""nameko service ``file_manager``: takes wheel uploads from builders into the www tree, keeps
the ``files`` rows, removes files when upstream or an operator removes their version.

Uploads arrive on ``piw.uploads`` (builders/protocol.py): chunks (written where they belong,
never answered) and a commit per file (answered once the file is served, or refused). Every
change to the set of served files is announced as a ``files_changed`` event for the index.

Commits and removals meet on one PostgreSQL advisory lock: a commit installs holding it shared,
a removal deletes holding it exclusively. A removal therefore sees every file whose commit
started before it, and a commit that starts after it finds the version gone from the catalog
(the reorderer commits the catalog change before the event exists) or its job revoked (the
admin service gives targets new job ids before its event exists), so no file of a removed
version or a revoked job survives the race.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import eventlet
from nameko.events import EventDispatcher
from nameko.timer import timer
from packaging.utils import canonicalize_name, parse_wheel_filename
from sqlalchemy.orm import Session

from builders import protocol
from piw_services import events as ev
from piw_services import ordered_events
from piw_services.build_dispatch import queries as builds
from piw_services.builder_queues import builder_queue
from piw_services.db.dependency import Database
from piw_services.faults import crash_point
from piw_services.file_manager import store
from piw_services.file_manager.dependencies import Disk
from piw_services.file_manager.disk import UploadRefused, armv6l_name
from piw_services.names import same_version
from piw_services.reorderer import queries as catalog
from piw_services.rpc import rpc
from piw_services.settings import SettingsProvider

log = logging.getLogger(__name__)

COMMIT_POLL = 0.1
SWEEP_INTERVAL = 600


class JobLost(UploadRefused):
    """The job is no longer the committing builder's (removed, or taken over): the builder
    should send nothing more for it (protocol.job_lost)."""


class FileManagerService(ordered_events.OrderedEventsConsumer):
    consumer_name = "file_manager"
    name = "file_manager"

    db = Database()
    disk = Disk()
    dispatch = EventDispatcher()
    settings = SettingsProvider()

    # -- uploads ---------------------------------------------------------------------------
    @builder_queue(protocol.UPLOADS)
    def upload(self, body: Any, headers: dict[str, Any]) -> dict[str, Any] | None:
        """Chunks and commits share the queue, so a commit is handled after its chunks were
        at least delivered; see :meth:`_verify` for the workers still writing them."""
        if headers.get("piw-type") == "chunk":
            self._chunk(body, headers)
            return None
        return self._commit(body)

    def _chunk(self, body: Any, headers: dict[str, Any]) -> None:
        m = protocol.check_chunk(headers, body)
        try:
            if not self.disk.write_chunk(m["upload_id"], m["offset"], body, m["sha256"]):
                log.warning("upload %s: corrupt chunk at offset %d", m["upload_id"],
                            m["offset"])
        except UploadRefused as exc:
            raise protocol.ProtocolError(str(exc)) from None

    def _commit(self, body: Any) -> dict[str, Any]:
        msg = protocol.check_commit(body)
        upload_id = msg["upload_id"]
        try:
            reply = self._commit_checked(msg)
        except UploadRefused as exc:
            self.disk.discard(upload_id)
            log.warning("refused commit of %s (upload %s, job %s): %s",
                        msg["info"]["filename"], upload_id, msg["job_id"], exc)
            if isinstance(exc, JobLost):
                return protocol.job_lost(str(exc))
            return protocol.error(str(exc), retry=exc.retry)
        return reply

    def _commit_checked(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        info, upload_id = msg["info"], msg["upload_id"]
        filename = info["filename"]
        with self.db() as s:
            package, version, abi = self._job_of(s, msg)
            row = store.file_row(s, filename)
        # a repeated commit of a file we serve needs no upload (its part may be long gone)
        served = row is not None and self.disk.is_published(package, filename)
        if not served:
            self._verify(upload_id, info)
        with self.db() as s, s.begin():
            store.lock_for_commit(s, filename)
            if catalog.version_alive(s, package, version) is False:
                raise JobLost(f"{package} {version} has been removed upstream; "
                              f"{filename} is not published")
            # again under the lock: an operator may have revoked the job since (its files
            # are deleted by a removal that waits for this lock, or refused here)
            self._job_of(s, msg)
            done = self._already_served(s, package, filename, info, upload_id)
            if done:
                return done
            if served:  # removed since we looked: take the upload if it is complete
                verdict = self.disk.verify(upload_id, info["size"], info["sha256"])
                if not verdict.ok:
                    raise UploadRefused(verdict.problem or "incomplete upload", retry=True)
            link = self._link_for(s, package, filename, abi)
            installed = self.disk.install(upload_id, package, filename, link)
            store.upsert(s, package, version, abi, msg["job_id"], info,
                         installed.metadata_sha256, link)
        added = [filename] + ([link] if link else [])
        log.info("published %s (%d bytes)%s", installed.path, info["size"],
                 f" and {link}" if link else "")
        if info.get("metadata_sha256") not in (None, installed.metadata_sha256):
            log.warning("%s: builder's metadata_sha256 %s differs from the served METADATA's "
                        "%s", filename, info["metadata_sha256"], installed.metadata_sha256)
        self._announce([{"package": package, "version": version, "added": added,
                         "removed": []}])
        return protocol.ok(filename=filename, path=installed.path, links=[link] if link else [])

    def _job_of(self, s: Session, msg: Mapping[str, Any]) -> tuple[str, str, str]:
        """(package, version, target) of the commit's job, once the commit may publish at
        all: a wheel of that version whose platform is the target's (or ``any``)."""
        job_id, builder_id, filename = msg["job_id"], msg["builder_id"], msg["info"]["filename"]
        target = builds.job(s, job_id)
        if target is None or target.state != "building" or target.builder_id != builder_id:
            raise JobLost(f"job {job_id} is not being built by builder {builder_id}")
        name, wheel_version, _, _ = parse_wheel_filename(filename)
        package = canonicalize_name(target.package)
        if name != package or not same_version(str(wheel_version), target.version):
            raise UploadRefused(f"{filename} is not a wheel of job {job_id}'s "
                             f"{target.package} {target.version}")
        wrong_platform = protocol.wheel_target_problem(filename, target.target)
        if wrong_platform:
            raise UploadRefused(f"refused: {wrong_platform}")
        if catalog.upstream_serves(s, package, filename):
            raise UploadRefused(f"upstream already serves {filename}: publishing another file "
                             f"under that name would give pip two hashes for one name")
        return package, target.version, target.target

    def _already_served(self, s: Session, package: str, filename: str, info: dict[str, Any],
                        upload_id: str) -> dict[str, Any] | None:
        """The answer to a commit of a file we already serve, or None.

        The same bytes again (a redelivered or repeated commit): ok, after re-making whatever a
        crash may have left undone (under the files lock, like any change to the tree). Other
        bytes under a served name (say a pure wheel built by
        two ABIs at once): the served file stays, since pip may have cached its hash; the job
        still has its file, so that is ok too, and says so.
        """
        row = store.file_row(s, filename)
        if row is None or not self.disk.is_published(package, filename):
            return None  # a row without its file (lost on disk): take this upload instead
        path = self.disk.relative(self.disk.wheel_path(package, filename))
        if row.sha256 != info["sha256"]:
            self.disk.discard(upload_id)
            log.warning("%s is already served with sha256 %s; discarded upload %s (%s)",
                        filename, row.sha256, upload_id, info["sha256"])
            return protocol.ok(filename=filename, path=path, kept_existing=True,
                               sha256=row.sha256)
        if row.link_of is None:
            link = self._link_for(s, package, filename, row.abi)
            if self.disk.repair(package, filename, link) is None:
                return None  # row without its file: install it again
        self.disk.discard(upload_id)
        return protocol.ok(filename=filename, path=path, already=True)

    def _verify(self, upload_id: str, info: dict[str, Any]) -> None:
        """Wait (briefly) until the upload is complete. Workers of this or another instance may
        still be writing its last chunks when the commit arrives, so a short or mismatched file
        is looked at again until FILE_COMMIT_WAIT has passed; a corrupt chunk is final."""
        deadline = time.monotonic() + self.settings.file_commit_wait
        while True:
            verdict = self.disk.verify(upload_id, info["size"], info["sha256"])
            if verdict.ok:
                return
            if verdict.final or time.monotonic() >= deadline:
                raise UploadRefused(verdict.problem or "incomplete upload", retry=True)
            eventlet.sleep(COMMIT_POLL)

    def _link_for(self, s: Session, package: str, filename: str, target: str) -> str | None:
        """The armv6l name to serve an armv7l wheel under: only when its target's image is
        ARMv6-compatible (build_abis.armv6; a Debian armhf build would crash a Pi Zero with
        "Illegal instruction"), and not when upstream serves that name or a real (not
        linked) armv6l wheel has it."""
        link = armv6l_name(filename)
        if link is None or not builds.links_armv6(s, target):
            return None
        if catalog.upstream_serves(s, package, link):
            return None
        row = store.file_row(s, link)
        if row is not None and row.link_of != filename:
            return None
        return link

    # -- removals --------------------------------------------------------------------------
    def _consume_ordered_events(self, batch: dict[str, Any] | None) -> None:
        # announce removals only once their transaction (with the consumer mark) committed
        self._pending: list[dict[str, Any]] = []
        super()._consume_ordered_events(batch)
        self._announce(self._pending)

    def apply_events(self, session: Session, seq: int, events: list[dict[str, Any]]) -> None:
        """Delete our files of removed packages and versions, any file of ours whose name
        upstream now serves itself (pip must never see two hashes for one name), and the
        files of jobs an operator revoked (admin events)."""
        packages: set[str] = set()
        versions: set[tuple[str, str]] = set()
        filenames: set[str] = set()
        jobs: set[str] = set()
        for event in events:
            kind = event.get("type")
            if kind == ev.PACKAGE_REMOVED:
                packages.add(event["package"])
            elif kind == ev.VERSION_REMOVED:
                versions.add((event["package"], event["version"]))
            elif kind == ev.FILE_ADDED:
                filenames.add(event["filename"])
            elif kind == ev.ADMIN:
                jobs.update(event.get("revoked_jobs") or ())
        where = store.removal_condition(packages, versions, filenames, jobs)
        if where is None:
            return
        changes = self._remove(session, where)
        if changes:
            log.info("ordered events batch %d: removed %d files", seq,
                     sum(len(c["removed"]) for c in changes))
        if not hasattr(self, "_pending"):
            self._pending = []
        self._pending.extend(changes)

    def _remove(self, s: Session, where: Any) -> list[dict[str, Any]]:
        """Delete the files matching *where* (and links to them): read the rows, delete the
        files on disk, then the rows. Returns the files_changed payloads."""
        by_version = store.files_to_remove(s, where)
        if not by_version:
            return []
        by_package: dict[str, list[str]] = defaultdict(list)
        for (package, _), filenames in by_version.items():
            by_package[package].extend(filenames)
        for package, filenames in by_package.items():
            self.disk.delete(package, filenames)
        crash_point("file_manager.files_deleted")  # files gone, rows not: redone on restart
        store.delete_rows(s, [fn for fns in by_version.values() for fn in fns])
        return [{"package": p, "version": v, "added": [], "removed": sorted(fns)}
                for (p, v), fns in sorted(by_version.items())]

    @rpc
    def delete_files(self, package: str, version: str | None = None) -> list[str]:
        """Remove the files of a package (or of one version of it); returns their names.
        For the admin service: removal, rebuild."""
        with self.db() as s, s.begin():
            changes = self._remove(s, store.package_files(canonicalize_name(package), version))
        self._announce(changes)
        return sorted(fn for c in changes for fn in c["removed"])

    def _announce(self, changes: list[dict[str, Any]]) -> None:
        for change in changes:
            self.dispatch(ev.FILES_CHANGED, change)

    # -- housekeeping ----------------------------------------------------------------------
    @rpc
    def status(self) -> dict[str, Any]:
        with self.db() as s:
            files, links, size = store.totals(s)
        uploads, upload_bytes = self.disk.uploads_in_progress()
        return {"files": files, "links": links, "bytes": size, "uploads": uploads,
                "upload_bytes": upload_bytes}

    @timer(interval=SWEEP_INTERVAL)
    def sweep_uploads(self) -> None:
        """Remove uploads abandoned by builders that died mid-upload."""
        removed = self.disk.sweep(self.settings.upload_max_age)
        if removed:
            log.info("removed %d abandoned upload files", removed)
