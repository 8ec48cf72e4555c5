"""nameko service ``reorderer``: stores upstream rows, keeps the catalog, relays the outbox."""

from __future__ import annotations

import logging
import time
from typing import Any

import eventlet

from piw_services import outbox
from piw_services.db.dependency import Database
from piw_services.reorderer import queries, store
from piw_services.reorderer.dependencies import OutboxDispatcher
from piw_services.rpc import rpc
from piw_services.scheduled import Wakeup, scheduled
from piw_services.settings import SettingsProvider

log = logging.getLogger(__name__)

#: Seconds a page waits for the page before it to be stored (see ``ingest``).
TURN_WAIT = 30
#: The longest sleep of the tick: it also parses again what an older parser recorded and
#: relays what is unsent.
IDLE = 2.0


class ReordererService:
    name = "reorderer"

    db = Database()
    dispatch = OutboxDispatcher()
    settings = SettingsProvider()
    wakeup = Wakeup()

    def _hold(self) -> float:
        return self.settings.hold_seconds

    @rpc
    def ingest(self, rows: list[Any], since: int | None = None) -> dict[str, Any]:
        """Store one page of raw changelog rows, fetched after serial *since*; returns what
        happened to them. A page that comes before the one it follows is stored waits its
        turn for up to ``TURN_WAIT`` seconds, then fails (the poller then polls again from
        our place, so nothing is skipped)."""
        with store.collector_paused():
            page = store.parse_page(rows)
            deadline = time.monotonic() + TURN_WAIT
            while True:
                try:
                    with self.db() as s, s.begin():
                        result = store.store_page(s, page, self._hold(), since)
                    break
                except store.OutOfTurn:
                    if time.monotonic() > deadline:
                        raise
                    eventlet.sleep(0.05)
        if result.events:
            log.info("applied %d rows (%d held, %d malformed): %d events in batches %s",
                     result.applied, result.held, result.malformed, result.events,
                     result.outbox)
        if result.release_in is not None:  # held rows: the tick releases them when due
            self.wakeup("tick", result.release_in)
        self._relay()
        return result.as_dict()

    @rpc
    def release_held(self) -> dict[str, Any]:
        """Release the held rows that are due now (upstream asks when its last page said the
        first would be, then reads the new versions' details at once)."""
        return self._release().as_dict()

    @rpc
    def last_serial(self) -> int:
        with self.db() as s:
            return store.last_serial(s)

    @rpc
    def package_state(self, name: str) -> dict[str, Any]:
        """The catalog's view of one package (any spelling of its name)."""
        with self.db() as s:
            return queries.package_state(s, name)

    @rpc
    def versions_needing_info(self, limit: int, since_ts: int) -> list[list[str]]:
        """(package, version) pairs whose Requires-Python / yank reason upstream may know."""
        with self.db() as s:
            return store.versions_needing_info(s, limit, since_ts)

    @rpc
    def set_version_info(self, infos: list[dict[str, Any]]) -> int:
        """Store upstream's details of versions (from its JSON API)."""
        with self.db() as s, s.begin():
            changed = store.set_version_info(s, infos)
        self._relay()
        return changed

    @rpc
    def status(self) -> dict[str, Any]:
        with self.db() as s:
            return store.status(s)

    @scheduled(idle=IDLE)
    def tick(self) -> float:
        """Parse again what an older parser could not use (after an upgrade); release held
        rows on the wall clock when following live; relay what is unsent. Runs again when
        the first held row is due, and at least every ``IDLE`` seconds."""
        while True:
            with self.db() as s, s.begin():
                if store.reparse_malformed(s, self._hold()) < store.REPARSE_BATCH:
                    break
        result = self._release()
        return IDLE if result.release_in is None else min(result.release_in, IDLE)

    def _release(self) -> store.IngestResult:
        with store.collector_paused(), self.db() as s, s.begin():
            result = store.flush(s, self._hold())
        if result.applied:
            log.info("released %d held rows: %d events", result.applied, result.events)
        self._relay()
        return result

    def _relay(self) -> None:
        outbox.relay(self.db, lambda batch: self.dispatch(outbox.EVENT_TYPE, batch))
