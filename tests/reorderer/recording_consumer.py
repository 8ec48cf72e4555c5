"""A consumer of the ordered events that records every event it applies, so tests can prove
exactly-once effect across kill -9 and redelivery. It uses the same consume path as real
consumers (piw_services.outbox.consume)."""

import json

from nameko.events import SERVICE_POOL, event_handler
from nameko.timer import timer
from sqlalchemy import text

from piw_services import outbox
from piw_services.db.dependency import Database

CONSUMER = "recording"
TABLE = ("CREATE TABLE IF NOT EXISTS test_applied (seq bigint, idx int, event jsonb, "
         "applied_at timestamptz DEFAULT clock_timestamp())")


def record(session, seq, events):
    session.execute(text("INSERT INTO test_applied (seq, idx, event) "
                         "SELECT :seq, i - 1, e FROM jsonb_array_elements(CAST(:events AS jsonb))"
                         " WITH ORDINALITY AS t(e, i)"),
                    {"seq": seq, "events": json.dumps(events)})


class RecordingConsumer:
    name = "recording_consumer"
    db = Database()

    @event_handler("reorderer", outbox.EVENT_TYPE, handler_type=SERVICE_POOL)
    def on_events(self, batch):
        with self.db() as s, s.begin():
            outbox.consume(s, CONSUMER, batch, record)

    @timer(interval=1)
    def catch_up(self):
        with self.db() as s, s.begin():
            outbox.consume(s, CONSUMER, None, record)
