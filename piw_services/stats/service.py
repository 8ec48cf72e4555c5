"""nameko service ``stats``: records the web's download and search events and every builder
heartbeat, samples the master host, and answers for the /stats/ and /status/ pages.

* ``web.downloads`` / ``web.searches`` (lists of events, piw_services/web/service.py): stored by
  store.ingest_* in one round trip per batch; redelivery counts nothing twice.
* heartbeats: a queue of its own (``piw.builder-status.stats``) bound to the builders' status
  routing key, so build_dispatch's registry still gets its copy.
* timers: the master host every STATS_SAMPLE_INTERVAL s; readings older than
  STATS_READINGS_DAYS pruned hourly; ``stats/stats.json`` and ``status/status.json`` (and the
  HTML pages, when piw_services.stats.pages exists) every STATS_PAGE_INTERVAL s; and every
  STATS_INDEX_INTERVAL s a ``downloads_changed`` event names the packages downloaded since, so
  the index rewrites their pages and packages.json and the download counts follow.
* RPC: ``report(days)``, ``status()``, ``package_downloads(package, days)``, JSON-able dicts.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import eventlet
import eventlet.tpool
from nameko.dependency_providers import Config
from nameko.events import SERVICE_POOL, EventDispatcher, event_handler
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy
from nameko.timer import timer

from builders import protocol, sysinfo
from piw_services import events as ev
from piw_services.builder_queues import builder_queue
from piw_services.db.dependency import Database
from piw_services.rpc import rpc
from piw_services.settings import Settings
from piw_services.site.tree import TreeWriter
from piw_services.stats import queries, store

log = logging.getLogger(__name__)

#: The stats service's own copy of the builders' heartbeats.
HEARTBEATS = f"{protocol.STATUS}.stats"
#: Seconds to wait for the upstream service's status (behind_upstream is None without it).
UPSTREAM_TIMEOUT = 5
PRUNE_INTERVAL = 3600


class State(DependencyProvider):
    """The www tree, and when the timers last did their work (per service process)."""

    def setup(self) -> None:
        self.settings = Settings.from_config(self.container.config)
        self.tree = TreeWriter(self.settings.www)
        self.sampled = self.written = self.marked = self.pruned = 0.0
        self.marked_at = time.time()

    def due(self, what: str, interval: float) -> bool:
        now = time.monotonic()
        if now - getattr(self, what) < interval:
            return False
        setattr(self, what, now)
        return True

    def get_dependency(self, worker_ctx: Any) -> State:
        return self


class StatsService:
    name = "stats"

    db = Database()
    config = Config()
    state = State()
    upstream = RpcProxy("upstream")
    dispatch = EventDispatcher()

    # -- events -------------------------------------------------------------------------------
    @event_handler("web", "downloads", handler_type=SERVICE_POOL)
    def downloads(self, events: Any) -> None:
        with self.db() as s, s.begin():
            store.ingest_downloads(s, events)

    @event_handler("web", "searches", handler_type=SERVICE_POOL)
    def searches(self, events: Any) -> None:
        with self.db() as s, s.begin():
            store.ingest_searches(s, events)

    @builder_queue(HEARTBEATS, routing_key=protocol.STATUS)
    def heartbeat(self, body: Any, headers: dict[str, Any]) -> None:
        msg = protocol.check_heartbeat(body)
        with self.db() as s, s.begin():
            store.record_heartbeat(s, msg)

    # -- timers -------------------------------------------------------------------------------
    @timer(interval=1)
    def tick(self) -> None:
        settings = self.state.settings
        if self.state.due("sampled", settings.stats_sample_interval):
            self.sample()
        if self.state.due("pruned", PRUNE_INTERVAL):
            with self.db() as s, s.begin():
                gone = store.prune(s, settings.stats_readings_days)
            if gone:
                log.info("pruned %d readings", gone)
        if self.state.due("written", settings.stats_page_interval):
            self.write_pages()
        if self.state.due("marked", settings.stats_index_interval):
            self.announce_downloads()

    def sample(self) -> None:
        """Record the master host's numbers (builders/sysinfo.py, as a builder's heartbeat)."""
        readings = sysinfo.snapshot(self.state.settings.www)
        caught_up, problem = False, None
        try:
            with eventlet.Timeout(UPSTREAM_TIMEOUT, TimeoutError):
                upstream = self.upstream.status()
            caught_up, problem = upstream.get("failures") == 0, upstream.get("refused")
        except Exception as exc:  # upstream not running: how far behind is unknown
            log.debug("upstream status unavailable: %s", exc)
        with self.db() as s, s.begin():
            store.record_master(s, readings, store.behind_upstream(s, caught_up),
                                problem if isinstance(problem, str) else None)

    def write_pages(self) -> None:
        """stats/stats.json and status/status.json, then the HTML pages if they exist."""
        stats_report, status_report = self._reports()
        tree = self.state.tree
        tree.write("stats/stats.json", json.dumps(store.as_json(stats_report)))
        tree.write("status/status.json", json.dumps(store.as_json(status_report)))
        try:
            from piw_services.stats.pages import write_pages
        except ImportError:
            return
        # drawing the charts is CPU-bound (~0.5 s, ~30 ms more per builder): in a thread of
        # its own, the hub keeps taking events and answering the broker's heartbeats meanwhile
        eventlet.tpool.execute(write_pages, tree, stats_report, status_report)

    def announce_downloads(self) -> None:
        """Tell the index which packages were downloaded since the last time (their pages
        and packages.json show download counts); the time moves on only once it is sent."""
        since, now = self.state.marked_at, time.time()
        with self.db() as s:
            packages = store.downloaded_since(s, since)
        for start in range(0, len(packages), ev.DOWNLOADS_CHANGED_BATCH):
            self.dispatch(ev.DOWNLOADS_CHANGED,
                          {"packages": packages[start:start + ev.DOWNLOADS_CHANGED_BATCH]})
        self.state.marked_at = now

    def _reports(self) -> tuple[Any, Any]:
        with self.db() as s:
            return store.report(s), store.status(s, silence_limit=self._silence_limit())

    def _silence_limit(self) -> float:
        return self.state.settings.builder_silence_limit

    # -- questions ----------------------------------------------------------------------------
    @rpc
    def report(self, days: int = 30) -> dict[str, Any]:
        """What /stats/ shows (store.report), as JSON-able data."""
        with self.db() as s:
            return store.as_json(store.report(s, days=int(days)))

    @rpc
    def status(self) -> dict[str, Any]:
        """What /status/ shows (store.status), as JSON-able data."""
        with self.db() as s:
            return store.as_json(store.status(s, silence_limit=self._silence_limit()))

    @rpc
    def package_downloads(self, package: str, days: int = 30) -> dict[str, Any]:
        """One package's downloads: last *days* (total and per day) and all time."""
        with self.db() as s:
            return store.as_json(queries.package_downloads(s, package, int(days)))
