"""nameko service ``upstream``: polls the changelog, asks the reorderer to release held rows
and reads upstream's details of new versions, each when the poller says it is due."""

from __future__ import annotations

from typing import Any

import eventlet
from nameko.rpc import RpcProxy

from piw_services.rpc import rpc
from piw_services.scheduled import scheduled
from piw_services.upstream.dependencies import UpstreamPoller

#: Seconds to wait for the reorderer to store one page (a 50,000-row page takes ~5 s). A call
#: that times out stays queued and runs later, which is harmless: storing a page twice changes
#: nothing. nameko's stop waits for a running poll, so this also bounds a SIGTERM.
INGEST_TIMEOUT = 60
#: The longest sleep between two looks at what is due (the poller's interval is longer only
#: after failures; a look is a few comparisons).
IDLE = 5.0


class UpstreamService:
    name = "upstream"

    poller = UpstreamPoller()
    reorderer = RpcProxy("reorderer")

    @scheduled(idle=IDLE)
    def tick(self) -> float:
        """Poll, release and enrich when due; returns the seconds until the next is due."""
        if self.poller.due():
            self.poller.poll(self._last_serial, self._ingest)
        if self.poller.release_due():
            self.poller.release(self._release_held)
        if self.poller.enrich_due():
            self.poller.enrich(self._versions_needing_info, self._set_version_info)
        return min(self.poller.next_in(), IDLE)

    def _release_held(self) -> dict[str, Any]:
        with eventlet.Timeout(60, TimeoutError):
            return self.reorderer.release_held()

    def _versions_needing_info(self, limit: int, since_ts: int) -> list[list[str]]:
        with eventlet.Timeout(60, TimeoutError):
            return self.reorderer.versions_needing_info(limit, since_ts)

    def _set_version_info(self, infos: list[dict[str, Any]]) -> int:
        with eventlet.Timeout(60, TimeoutError):
            return self.reorderer.set_version_info(infos)

    def _last_serial(self) -> int:
        with eventlet.Timeout(60, TimeoutError):
            return self.reorderer.last_serial()

    def _ingest(self, rows: list[Any], since: int) -> Any:
        reply = self.reorderer.ingest.call_async(rows, since)

        def wait() -> dict[str, Any]:
            with eventlet.Timeout(INGEST_TIMEOUT, TimeoutError):
                return reply.result()
        return wait

    @rpc
    def status(self) -> dict[str, Any]:
        return self.poller.status()
