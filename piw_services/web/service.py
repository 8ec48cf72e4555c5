"""nameko service ``web``: serves the www tree over HTTP to pip, uv and browsers (the request
logic is in serve.py), and reports downloads and searches to the stats service.

Routes: ``GET``/``HEAD`` on ``/`` and ``/<path>`` (anything else is 405), bound to the
``WEB_SERVER_ADDRESS`` setting (nameko's own key, ``[host:]port``).

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
from nameko.rpc import rpc
from nameko.timer import timer
from nameko.web.handlers import HttpRequestHandler
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from piw_services.config import with_defaults
from piw_services.web.serve import SIMPLE_JSON, Hit, Tree, make_event, salt_key

log = logging.getLogger(__name__)

SERVICE = "web"
KINDS = ("downloads", "searches")
FLUSH_INTERVAL = 1.0
#: Events of one kind held while they cannot be sent.
MAX_PENDING = 200_000
#: Events per message.
MAX_BATCH = 5000


class TreeHttp(HttpRequestHandler):
    """nameko's @http, without werkzeug's slash merging and redirects: the tree's own rules
    decide what ``//x`` or a missing trailing slash means (serve.py)."""

    def get_url_rule(self) -> Rule:
        return Rule(self.url, methods=self.method.split(","), merge_slashes=False,
                    strict_slashes=False)


http = TreeHttp.decorator


class WwwTree(DependencyProvider):
    """Injects the :class:`~piw_services.web.serve.Tree` on the configured WWW root."""

    def setup(self) -> None:
        self.tree = Tree(with_defaults(self.container.config)["WWW"])

    def get_dependency(self, worker_ctx: Any) -> Tree:
        return self.tree


class StatsRecorder(DependencyProvider):
    """Collects stats events in memory until the timer sends them."""

    def setup(self) -> None:
        config = with_defaults(self.container.config)
        salt = config.get("STATS_SALT")
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

    def record(self, hit: Hit, status: int, environ: dict[str, Any]) -> None:
        self.pending[hit.kind].append(make_event(hit, status, environ, self.key, time.time()))
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

    tree = WwwTree()
    recorder = StatsRecorder()
    dispatch = EventDispatcher()

    @http("GET,HEAD", "/")
    def home(self, request: Request) -> Response:
        return self.serve(request)

    @http("GET,HEAD", "/<path:path>")
    def files(self, request: Request, path: str) -> Response:
        # *path* is werkzeug's decoded reading; serve.py works from the raw one.
        return self.serve(request)

    def serve(self, request: Request) -> Response:
        served = self.tree.serve(request)
        if served.hit is not None:
            self.recorder.record(served.hit, served.response.status_code, request.environ)
            if served.response.mimetype == SIMPLE_JSON:
                self.recorder.json_pages += 1
        return served.response

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
