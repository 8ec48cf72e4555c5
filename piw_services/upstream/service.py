"""nameko service ``upstream``: a timer that polls the changelog when the poller says so."""

from __future__ import annotations

from typing import Any

import eventlet
from nameko.rpc import RpcProxy
from nameko.timer import timer

from piw_services.rpc import rpc
from piw_services.upstream.dependencies import UpstreamPoller

#: Seconds to wait for the reorderer to store one page (a 50,000-row page takes ~5 s). A call
#: that times out stays queued and runs later, which is harmless: storing a page twice changes
#: nothing. nameko's stop waits for a running poll, so this also bounds a SIGTERM.
INGEST_TIMEOUT = 60


class UpstreamService:
    name = "upstream"

    poller = UpstreamPoller()
    reorderer = RpcProxy("reorderer")

    @timer(interval=1)
    def tick(self) -> None:
        if self.poller.due():
            self.poller.poll(self._last_serial, self._ingest)
            self.poller.enrich(self._versions_needing_info, self._set_version_info)

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
