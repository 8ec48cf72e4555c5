"""A consumer of the ordered events that records every event it applies, so tests can prove
exactly-once effect across kill -9 and redelivery. It is built the way real consumers are
(piw_services.ordered_events)."""

import json

from sqlalchemy import text

from piw_services import ordered_events
from piw_services.db.dependency import Database

TABLE = ("CREATE TABLE IF NOT EXISTS test_applied (seq bigint, idx int, event jsonb, "
         "applied_at timestamptz DEFAULT clock_timestamp())")


class RecordingConsumer(ordered_events.OrderedEventsConsumer):
    consumer_name = "recording"
    name = "recording_consumer"
    db = Database()

    def apply_events(self, session, seq, events):
        session.execute(text("INSERT INTO test_applied (seq, idx, event) "
                             "SELECT :seq, i - 1, e FROM jsonb_array_elements(CAST(:events AS "
                             "jsonb)) WITH ORDINALITY AS t(e, i)"),
                        {"seq": seq, "events": json.dumps(events)})
