"""The outbox and its consumers against a real PostgreSQL: order, repeats, gaps, relay."""

import json

from sqlalchemy import text

from piw_services import outbox


def write(db, *batches):
    seqs = []
    for events in batches:
        with db() as s, s.begin():
            seqs += outbox.write(s, events)
    return seqs


def consume(db, message, applied):
    with db() as s, s.begin():
        return outbox.consume(s, "c", message, lambda _s, seq, ev: applied.append((seq, ev)))


def test_repeats_are_ignored_and_gaps_are_read_from_the_table(db):
    s1, s2, s3 = write(db, [{"n": 1}], [{"n": 2}], [{"n": 3}])
    applied = []
    assert consume(db, {"seq": s1, "events": [{"n": 1}]}, applied) == s1
    assert consume(db, {"seq": s1, "events": [{"n": 1}]}, applied) == s1  # redelivered
    assert consume(db, {"seq": s3, "events": [{"n": 3}]}, applied) == s3  # s2 never arrived
    assert consume(db, {"seq": s2, "events": [{"n": 2}]}, applied) == s3  # late: ignored
    assert applied == [(s1, [{"n": 1}]), (s2, [{"n": 2}]), (s3, [{"n": 3}])]


def test_catch_up_without_any_message(db):
    seqs = write(db, [{"n": i} for i in range(outbox.BATCH_EVENTS + 1)], [{"n": "last"}])
    assert len(seqs) == 3  # the first write is split into two batches
    applied = []
    assert consume(db, None, applied) == seqs[-1]
    assert [seq for seq, _ in applied] == seqs
    assert sum(len(ev) for _, ev in applied) == outbox.BATCH_EVENTS + 2


def test_a_failing_apply_leaves_the_mark_where_it_was(db):
    (s1,) = write(db, [{"n": 1}])

    def boom(_s, _seq, _ev):
        raise RuntimeError("consumer crashed")

    try:
        with db() as s, s.begin():
            outbox.consume(s, "c", None, boom)
    except RuntimeError:
        pass
    applied = []
    assert consume(db, None, applied) == s1 and applied == [(s1, [{"n": 1}])]


def test_relay_publishes_each_unsent_batch_once_in_order(db):
    seqs = write(db, [{"n": 1}], [{"n": 2}])
    published = []
    assert outbox.relay(db, lambda body: published.append(json.loads(body))) == 2
    assert published == [{"seq": seqs[0], "events": [{"n": 1}]},
                         {"seq": seqs[1], "events": [{"n": 2}]}]
    assert outbox.relay(db, published.append) == 0
    with db() as s:
        assert s.execute(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL")).scalar() == 0
