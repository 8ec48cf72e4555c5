"""The transactional outbox and its consumers (reorderer contract point 3).

Producers write event batches in the same transaction as the change they describe; a relay
publishes them and marks them sent. RabbitMQ delivers at least once and can drop events sent
before a handler's queue existed, so the outbox table is the log and messages are only a nudge:
a consumer applies batches strictly in seq order from its high-water mark, reading any it
missed from the table, in the same transaction as its own effects. Effect: exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
from sqlalchemy import text as _sql
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

#: Events per outbox row (and so per message): large enough to amortise, small enough to
#: keep one message well under RabbitMQ's frame limits.
BATCH_EVENTS = 5000
EVENT_TYPE = "ordered_events"
#: Advisory lock held by every outbox writer until its commit: seqs then become visible in
#: order, so a consumer that has seen seq N can never later find a smaller one appear.
WRITE_LOCK = 0x70697701


def chunks(events: Sequence[dict[str, Any]], size: int = BATCH_EVENTS) -> Iterator[Sequence]:
    for i in range(0, len(events), size):
        yield events[i:i + size]


def write(session: Session, events: Sequence[dict[str, Any]]) -> list[int]:
    """Add *events* to the outbox inside the caller's transaction; returns the new seqs."""
    cur = session.connection().connection.dbapi_connection.cursor()
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
    seqs = []
    for chunk in chunks(events):
        # orjson: the standard library's encoder was 7% of the reorderer's time in a replay
        cur.execute("INSERT INTO outbox (events, count) VALUES (%s::json, %s) RETURNING seq",
                    (orjson.dumps(list(chunk)).decode(), len(chunk)))
        seqs.append(cur.fetchone()[0])
    return seqs


def last_seq(session: Session) -> int:
    """The newest batch's seq (0 before the first)."""
    return session.execute(_sql("SELECT coalesce(max(seq), 0) FROM outbox")).scalar_one()


def unsent_count(session: Session) -> int:
    """How many batches the relay has not yet marked sent (published or not: it marks them
    after the broker has them, so consumers may apply a batch before it counts as sent)."""
    return session.execute(_sql("SELECT count(*) FROM outbox WHERE sent_at IS NULL")).scalar_one()


def consumer_marks(session: Session) -> dict[str, int]:
    """Each consumer's high-water mark: the last batch it applied."""
    return dict(session.execute(_sql("SELECT consumer, seq FROM consumer_marks")).all())


def relay(session_factory: Callable[[], Session], publish: Callable[[str], None],
          limit: int = 100) -> int:
    """Publish unsent batches in seq order and mark them sent; returns how many were sent.

    Each message is handed to *publish* as JSON text, ``{"seq": N, "events": [...]}``, built
    from the text PostgreSQL holds: decoding 5,000 events only to encode them again cost the
    reorderer a tenth of its time in a replay.

    Rows are locked with SKIP LOCKED, so concurrent relays never publish the same batch at the
    same time (a crash between publish and commit re-sends it: consumers ignore repeats).
    """
    sent = 0
    while True:
        with session_factory() as session, session.begin():
            rows = session.execute(
                _sql("SELECT seq, events::text FROM outbox WHERE sent_at IS NULL ORDER BY seq "
                     "LIMIT :limit FOR UPDATE SKIP LOCKED"), {"limit": limit}).all()
            for seq, events in rows:
                publish(f'{{"seq":{int(seq)},"events":{events}}}')
            if rows:
                session.execute(_sql("UPDATE outbox SET sent_at = now() WHERE seq = ANY(:seqs)"),
                                {"seqs": [r[0] for r in rows]})
        sent += len(rows)
        if len(rows) < limit:
            return sent


def consume(session: Session, consumer: str, message: dict[str, Any] | None,
            apply: Callable[[Session, int, list[dict[str, Any]]], None],
            limit: int = 100) -> int:
    """Apply, in the caller's transaction, every batch after *consumer*'s mark up to the
    message's seq (or up to *limit* batches of whatever is there when *message* is None).

    Returns the new mark. Batches at or below the mark are ignored: that is the exactly-once.
    """
    session.execute(_sql("INSERT INTO consumer_marks (consumer, seq) VALUES (:c, 0) "
                         "ON CONFLICT DO NOTHING"), {"c": consumer})
    mark = session.execute(_sql("SELECT seq FROM consumer_marks WHERE consumer = :c FOR UPDATE"),
                           {"c": consumer}).scalar_one()
    target = message["seq"] if message else None
    if target is not None and target <= mark:
        return mark
    if message and target == mark + 1:
        batches = [(target, message["events"])]
    else:
        query = "SELECT seq, events FROM outbox WHERE seq > :mark"
        params: dict[str, Any] = {"mark": mark, "limit": limit}
        if target is not None:
            query += " AND seq <= :target"
            params["target"] = target
        batches = session.execute(_sql(query + " ORDER BY seq LIMIT :limit"), params).all()
    for seq, events in batches:
        apply(session, seq, events)
        mark = seq
    session.execute(_sql("UPDATE consumer_marks SET seq = :s, updated_at = now() "
                         "WHERE consumer = :c"), {"s": mark, "c": consumer})
    return mark
