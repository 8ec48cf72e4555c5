"""nameko service ``web``: serves the www tree over HTTP to pip, uv and browsers (the request
logic is in serve.py), and reports downloads and searches to the stats service.

HTTP: ``GET``/``HEAD`` on any path (anything else is 405), bound to the ``WEB_SERVER_ADDRESS``
setting (nameko's own key, ``[host:]port``). Not nameko's ``@http``: the :class:`TreeServer`
dependency runs eventlet's WSGI server with app.py's application from the container's
``start()``, so a request costs no nameko worker (bench/serve: about twice the requests a
second). The service's RPC and timer entrypoints work as in any service.

Events, each a list of dicts gathered in memory and sent about once a second by a timer:

* ``web.downloads``: a GET of a wheel under ``/simple/<name>/`` answered 200 or 206;
* ``web.searches``: a GET of ``/simple/<name>/`` (canonical URL), found or not.

Every dict holds ``timestamp`` (epoch float), ``package`` (canonical name), ``filename``
(downloads only), ``status`` (HTTP status), ``client`` (blake2b of the client's address keyed
by the ``STATS_SALT`` setting, 16 bytes in hex: never the address) and the user agent's
fields (useragent.FIELDS: ``installer_name``, ``installer_version``, ``python_version``,
``implementation_name``, ``implementation_version``, ``distro_name``, ``distro_version``,
``distro_id``, ``system_name``, ``system_release``, ``arch``; None when unknown).

Events still in memory when the service stops are sent then. While RabbitMQ is unreachable
they stay in memory, at most MAX_PENDING of each kind (the oldest go first).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from typing import Any

from nameko.events import EventDispatcher
from nameko.extensions import DependencyProvider
from nameko.timer import timer
from nameko.web.server import parse_address

from piw_services.rpc import rpc
from piw_services.settings import Settings
from piw_services.web.app import HttpServer, Limits, TreeApp
from piw_services.web.serve import SIMPLE_JSON, Hit, ServedTree, make_event, salt_key

log = logging.getLogger(__name__)

SERVICE = "web"
KINDS = ("downloads", "searches")
FLUSH_INTERVAL = 1.0
#: Events of one kind held while they cannot be sent.
MAX_PENDING = 200_000
#: Events per message.
MAX_BATCH = 5000


class TreeServer(DependencyProvider):
    """Serves the www tree (``WWW``) over HTTP on ``WEB_SERVER_ADDRESS`` from ``start()`` to
    ``stop()``, reporting hits to the :class:`StatsRecorder` named *recorder*; injects the
    :class:`~piw_services.web.serve.ServedTree`."""

    def __init__(self, recorder: str = "recorder") -> None:
        self.recorder_name = recorder

    def setup(self) -> None:
        settings = Settings.from_config(self.container.config)
        self.tree = ServedTree(settings.www)
        bind = parse_address(settings.web_address)
        self.address = (bind.address, bind.port)
        self.limits = Limits(keepalive=settings.web_keepalive, timeout=settings.web_timeout,
                             max_headers=settings.web_max_headers)
        self.server: HttpServer | None = None

    def start(self) -> None:
        recorder = next(dep for dep in self.container.dependencies
                        if dep.attr_name == self.recorder_name)
        app = TreeApp(self.tree, recorder.served)
        self.server = HttpServer(app, self.address, self.container.spawn_managed_thread,
                                 self.limits)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx: Any) -> ServedTree:
        return self.tree


class StatsRecorder(DependencyProvider):
    """Collects stats events in memory until the timer sends them."""

    def setup(self) -> None:
        settings = Settings.from_config(self.container.config)
        self.trusted = settings.web_trusted_proxies
        salt = settings.stats_salt
        if not salt:
            log.warning("STATS_SALT is not set: client hashes are salted with a random value "
                        "and do not match across processes or restarts")
            salt = secrets.token_hex(32)
        self.key = salt_key(str(salt))
        self.pending: dict[str, deque[dict[str, Any]]] = {
            kind: deque(maxlen=MAX_PENDING) for kind in KINDS}
        self.counts = dict.fromkeys(KINDS, 0)  # recorded since start, for status()
        self.json_pages = 0  # simple pages served as PEP 691 JSON (uv, recent pip)

    def get_dependency(self, worker_ctx: Any) -> StatsRecorder:
        return self

    def served(self, hit: Hit, status: int, environ: dict[str, Any], content_type: str) -> None:
        """What the HTTP server reports for each download and search."""
        self.record(hit, status, environ)
        if content_type.startswith(SIMPLE_JSON):
            self.json_pages += 1

    def record(self, hit: Hit, status: int, environ: dict[str, Any]) -> None:
        self.pending[hit.kind].append(make_event(hit, status, environ, self.key, time.time(),
                                                 self.trusted))
        self.counts[hit.kind] += 1

    def take(self, kind: str) -> list[dict[str, Any]]:
        queue = self.pending[kind]
        batch = list(queue)
        queue.clear()
        return batch

    def put_back(self, kind: str, events: list[dict[str, Any]]) -> None:
        queue = self.pending[kind]
        room = MAX_PENDING - len(queue)
        if room < len(events):
            log.warning("dropping %d %s events that could not be sent",
                        len(events) - max(room, 0), kind)
            events = events[len(events) - max(room, 0):]
        queue.extendleft(reversed(events))

    def stop(self) -> None:
        if not any(self.pending.values()):
            return
        from nameko.standalone.events import event_dispatcher

        try:
            dispatch = event_dispatcher(self.container.config)
            for kind in KINDS:
                batch = self.take(kind)
                for start in range(0, len(batch), MAX_BATCH):
                    dispatch(SERVICE, kind, batch[start:start + MAX_BATCH])
        except Exception:
            log.exception("stats events lost at shutdown")


class WebService:
    name = SERVICE

    recorder = StatsRecorder()
    tree = TreeServer(recorder="recorder")
    dispatch = EventDispatcher()

    @rpc
    def status(self) -> dict[str, Any]:
        """Downloads and searches served since start (and how many simple pages went out as
        PEP 691 JSON), and those not yet sent to stats."""
        return {**self.recorder.counts, "json_pages": self.recorder.json_pages,
                "unsent": {kind: len(q) for kind, q in self.recorder.pending.items()}}

    @timer(interval=FLUSH_INTERVAL)
    def flush(self) -> None:
        """Send what was recorded since the last tick, one event per kind (per MAX_BATCH)."""
        for kind in KINDS:
            batch = self.recorder.take(kind)
            for start in range(0, len(batch), MAX_BATCH):
                try:
                    self.dispatch(kind, batch[start:start + MAX_BATCH])
                except Exception:
                    log.warning("cannot send %s events; keeping %d for later", kind,
                                len(batch) - start, exc_info=True)
                    self.recorder.put_back(kind, batch[start:])
                    break
