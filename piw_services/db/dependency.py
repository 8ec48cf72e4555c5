"""nameko dependency provider: a SQLAlchemy session factory per service container."""

from __future__ import annotations

import logging
from typing import Any

from nameko.extensions import DependencyProvider
from sqlalchemy.orm import sessionmaker

from piw_services.db import check_schema, make_engine
from piw_services.settings import Settings

log = logging.getLogger(__name__)


def ensure_green_psycopg() -> None:
    """Under eventlet, psycopg2 must yield while it waits, or one query blocks the process
    (and its AMQP heartbeats): docs/development.md, nameko pitfall 3."""
    import eventlet.patcher
    import psycopg2.extensions

    if eventlet.patcher.is_monkey_patched("socket") and (
            psycopg2.extensions.get_wait_callback() is None):
        from eventlet.support import psycopg2_patcher

        psycopg2_patcher.make_psycopg_green()
        log.info("psycopg2 made cooperative for eventlet")


class Database(DependencyProvider):
    """Injects a ``sessionmaker``: ``with self.db() as s, s.begin(): ...``.

    Refuses to start on a database whose schema is not the one this code expects.
    """

    def setup(self) -> None:
        ensure_green_psycopg()
        settings = Settings.from_config(self.container.config)
        url = settings.db_url_for(self.container.service_name)
        self.engine = make_engine(url, pool_size=settings.max_workers)
        check_schema(self.engine)
        self.sessions = sessionmaker(self.engine)

    def stop(self) -> None:
        self.engine.dispose()

    def kill(self) -> None:
        self.engine.dispose()

    def get_dependency(self, worker_ctx: Any) -> sessionmaker:
        return self.sessions
