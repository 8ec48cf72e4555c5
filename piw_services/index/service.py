"""nameko service ``index``: keeps the pages of the www tree in step with the database.

Ordered events (the catalog), ``files_changed`` (file_manager) and ``builds_changed``
(build_dispatch) only mark packages dirty; a flush rewrites each dirty package's pages once,
however many events it had, and the root pages (simple index, home, packages.json) at most once
every ROOT_INTERVAL seconds, and only when the set of projects with files changed.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from eventlet import tpool
from nameko.events import SERVICE_POOL, event_handler
from nameko.extensions import DependencyProvider
from nameko.timer import timer
from sqlalchemy.orm import Session

from piw_services import events as ev
from piw_services import ordered_events
from piw_services.db.dependency import Database
from piw_services.faults import crash_point
from piw_services.index import data, dirty, render
from piw_services.index.model import SiteInfo
from piw_services.rpc import rpc
from piw_services.settings import Settings, SettingsProvider
from piw_services.site.tree import TreeWriter

log = logging.getLogger(__name__)

#: Packages rendered per transaction.
FLUSH_BATCH = 200


def page_paths(name: str) -> dict[str, str]:
    """The pages of one project, by kind, relative to the tree's root."""
    return {"simple_html": f"simple/{name}/index.html", "simple_json": f"simple/{name}/index.json",
            "project_html": f"project/{name}/index.html",
            "project_json": f"project/{name}/json/index.json"}


class Pages(DependencyProvider):
    """The www tree, and when its root pages were last written (per service process)."""

    def setup(self) -> None:
        self.tree = TreeWriter(Settings.from_config(self.container.config).www)
        self.root_written = 0.0
        self.rendered = 0  # package renders since start (one per flush, however many events)
        self.root_checked = False
        self.started = time.monotonic()
        self.temps_swept = False

    def get_dependency(self, worker_ctx: Any) -> Pages:
        return self


class IndexService(ordered_events.OrderedEventsConsumer):
    consumer_name = "index"
    name = "index"

    db = Database()
    settings = SettingsProvider()
    pages = Pages()

    # -- what makes pages dirty ---------------------------------------------------------------
    def apply_events(self, session: Any, seq: int, events: list[dict[str, Any]]) -> None:
        dirty.mark(session, (e["package"] for e in events if e.get("package")))
        if any(e.get("type") == ev.VERSION_INFO for e in events):
            dirty.mark(session, [dirty.ROOT])  # a new summary for packages.json
        for e in events:  # an operator's piw-rebuild of pages (admin.rebuild_pages)
            if e.get("type") == ev.ADMIN and e.get("action") == "rebuild_pages":
                if e.get("pages") in ("home", "search"):
                    dirty.mark(session, [dirty.ROOT])
                elif not e.get("package"):
                    dirty.mark_all(session)

    def after_ordered_events(self) -> None:
        self._flush()

    @event_handler(ev.FILES_CHANGED_SOURCE, ev.FILES_CHANGED, handler_type=SERVICE_POOL)
    def on_files_changed(self, payload: Any) -> None:
        self._mark_and_flush(ev.FILES_CHANGED, payload)

    @event_handler(ev.BUILDS_CHANGED_SOURCE, ev.BUILDS_CHANGED, handler_type=SERVICE_POOL)
    def on_builds_changed(self, payload: Any) -> None:
        self._mark_and_flush(ev.BUILDS_CHANGED, payload)

    @event_handler(ev.DOWNLOADS_CHANGED_SOURCE, ev.DOWNLOADS_CHANGED,
                   handler_type=SERVICE_POOL)
    def on_downloads_changed(self, payload: Any) -> None:
        """Download counts show on project pages and in packages.json: marked dirty, written
        by the next tick (the stats service sends these every STATS_INDEX_INTERVAL)."""
        try:
            packages = ev.check_service_event(ev.DOWNLOADS_CHANGED, payload)["packages"]
        except ev.EventError as exc:
            log.warning("dropped a malformed %s event: %s", ev.DOWNLOADS_CHANGED, exc)
            return
        with self.db() as s, s.begin():
            dirty.mark(s, [*packages, dirty.ROOT])

    def _mark_and_flush(self, event_type: str, payload: Any) -> None:
        try:
            package = ev.check_service_event(event_type, payload)["package"]
        except ev.EventError as exc:
            log.warning("dropped a malformed %s event: %s", event_type, exc)
            return
        with self.db() as s, s.begin():
            dirty.mark(s, [package])
        self._flush()

    # -- writing ------------------------------------------------------------------------------
    @timer(interval=1)
    def tick(self) -> None:
        if not self.pages.root_checked:
            # a crash may have removed a project's simple page before its transaction (and
            # the root's mark) committed: the root is rewritten once from the database
            with self.db() as s, s.begin():
                dirty.mark(s, [dirty.ROOT])
            self.pages.root_checked = True
        self._flush()
        self._sweep_temps()

    def _sweep_temps(self) -> None:
        """Once, INDEX_TEMP_MAX_AGE seconds after start: remove the temp files that writers
        killed half-way through a write left in the tree (in a thread: it walks the tree)."""
        max_age = self.settings.index_temp_max_age
        if self.pages.temps_swept or time.monotonic() - self.pages.started < max_age:
            return
        self.pages.temps_swept = True
        removed = tpool.execute(self.pages.tree.sweep_temps, max_age)
        if removed:
            log.warning("removed %d temp files of interrupted writes from the www tree",
                        removed)

    def _flush(self) -> int:
        """Rewrite every dirty package's pages, then the root pages when due."""
        done = 0
        while True:
            with self.db() as s, s.begin():
                names = dirty.take(s, FLUSH_BATCH)
                root_changed = [self._render_package(s, name) for name in names]
                if any(root_changed):
                    dirty.mark(s, [dirty.ROOT])
            done += len(names)
            if len(names) < FLUSH_BATCH:
                break
        interval = self.settings.index_root_interval
        if time.monotonic() - self.pages.root_written >= interval:
            with self.db() as s, s.begin():
                if dirty.take_root(s):
                    self._render_root(s)
                    self.pages.root_written = time.monotonic()
        if done:
            self.pages.rendered += done
            log.info("rewrote the pages of %d packages", done)
        return done

    def _render_package(self, session: Session, name: str) -> bool:
        """Write (or remove) one project's pages; True when it gained or lost its simple page
        (so the root index changes)."""
        tree, paths = self.pages.tree, page_paths(name)
        project, logs = data.load_project(session, name)
        had_simple = tree.path(paths["simple_html"]).exists()
        if project is None:
            tree.remove(*paths.values())
            return had_simple
        if project.files:
            tree.write(paths["simple_html"], render.simple_project_html(project))
            tree.write(paths["simple_json"], render.simple_project_json(project))
        else:
            tree.remove(paths["simple_html"], paths["simple_json"])
        crash_point("index.simple_pages_written")  # the package stays dirty: redone on restart
        tree.write(paths["project_html"],
                   render.project_html(project, SiteInfo(base_url=self._base_url())))
        tree.write(paths["project_json"], render.project_json(project, self._base_url()))
        for build_id, log_gz in logs.items():
            relative = data.log_path(name, build_id)
            if not tree.path(relative).exists():
                tree.write(relative, log_gz)
        return had_simple != bool(project.files)

    def _render_root(self, session: Session) -> None:
        tree = self.pages.tree
        projects = data.indexed_projects(session)
        names = [p.name for p in projects]
        tree.write("simple/index.html", render.simple_root_html(names))
        tree.write("simple/index.json", render.simple_root_json(names))
        tree.write("packages.json", render.packages_json(projects))
        site = data.site_info(session, self._base_url())
        tree.write("index.html", render.home_html(site))
        tree.write("faq.html", render.faq_html(site))
        tree.write("json.html", render.json_api_html(site))
        tree.write("404.html", render.not_found_html(site))
        today = datetime.now(UTC).date().isoformat()
        for path, text in render.sitemaps(self._base_url(), names, today).items():
            tree.write(path, text)
        log.info("rewrote the root pages: %d projects", len(names))

    def _base_url(self) -> str:
        return self.settings.base_url

    # -- operators ----------------------------------------------------------------------------
    @rpc
    def rebuild(self) -> int:
        """Rewrite every page (after restoring a www tree, say); returns how many packages."""
        with self.db() as s, s.begin():
            count = dirty.mark_all(s)
        self._flush()
        return count

    @rpc
    def status(self) -> dict[str, Any]:
        with self.db() as s:
            return {"dirty": dirty.pending(s), "www": str(self.pages.tree.root),
                    "rendered": self.pages.rendered}
