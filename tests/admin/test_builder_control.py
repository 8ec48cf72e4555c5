"""The admin service's builder_control (piwheels' monitor keys) on a real PostgreSQL: what each
order changes of the job, the orders it would send, and the refusals that change nothing.
Delivery to real builders: tests/e2e/test_builder_control.py."""

import pytest
from sqlalchemy import text

from builders import protocol
from piw_services.admin import actions
from piw_services.build_dispatch import store
from tests.admin.test_actions import CP311, snapshot, states
from tests.build_dispatch.test_store import hello, job_of


def builder(s, label="pi", user="pi-user", target=CP311):
    abi, platform = protocol.split_target(target)
    return store.hello(s, protocol.check_hello(protocol.hello(
        label, abi, {"platform": platform, "preinstalled": []})), user)


def claimed(s, b, version="1.0"):
    job = job_of(s, "foo", version, CP311)
    assert store.claim(s, {"builder_id": b, "job_id": job, "redelivered": False})[0]
    return job


def test_pause_and_resume_send_orders_and_the_registry_keeps_the_pause(s):
    b1, b2 = builder(s, "pi1", "u1"), builder(s, "pi2", "u.2")
    hello(s, "old")  # an older builder, no user: takes no orders
    before = {t: rows for t, rows in snapshot(s).items() if t != "builders"}
    out = actions.builder_control(s, "pause", "pi1")
    assert out.summary == f"paused builder {b1} (pi1)" and out.event() is None
    assert out.orders == [{"builder_id": b1, "label": "pi1", "queue": f"piw.orders.{b1}.u1",
                           "order": protocol.order("pause")}]
    assert store.held(s, b1) and not store.held(s, b2)
    builder(s, "pi1", "u1")  # a restart: its hello is told it is paused
    assert store.held(s, b1)
    out = actions.builder_control(s, "resume")
    assert out.summary == "resumed every builder (2)"
    assert [o["queue"] for o in out.orders] == [f"piw.orders.{b1}.u1", f"piw.orders.{b2}.u.2"]
    assert not store.held(s, b1) and not store.held(s, b2)
    assert {t: rows for t, rows in snapshot(s).items() if t != "builders"} == before


def test_kill_queues_the_job_again_under_a_new_id(s):
    b = builder(s)
    job = claimed(s, b)
    out = actions.builder_control(s, "kill", b)
    assert out.revoked_jobs == [job] and [tuple(q) for q in out.queued] == [("1.0", CP311)]
    assert out.orders[0]["order"] == protocol.order("kill", job)
    assert states(s)[("1.0", CP311)] == "pending" and job_of(s, "foo", "1.0", CP311) != job
    assert out.event()["action"] == "kill" and out.event()["package"] == "foo"
    # the killed builder's late result is not its job's any more
    assert store.record_result(s, {"builder_id": b, "job_id": job, "status": "success",
                                   "duration": 1.0, "log_gz_b64": "", "files": [],
                                   "not_uploaded": []})["build_id"] is None


def test_skip_records_the_target_skipped_with_the_reason(s):
    b = builder(s)
    job = claimed(s, b)
    out = actions.builder_control(s, "skip", "pi", "needs 8 GB")
    assert out.summary == f"skipped the build of foo 1.0 for {CP311} on builder {b}: needs 8 GB"
    row = s.execute(text("SELECT state, note, job_id, builder_id FROM build_targets "
                         "WHERE version = '1.0' AND abi = :a"), {"a": CP311}).one()
    assert row[:2] == ("skipped", "skipped by an operator: needs 8 GB") and row[2] != job
    assert row[3] is None and out.revoked_jobs == [job]
    assert s.execute(text("SELECT job_id FROM builders WHERE id = :b"), {"b": b}).scalar() is None
    assert actions.add(s, "foo", "1.0").queued == []  # a skipped target is not queued again


@pytest.mark.parametrize("args, message", [
    (("nap",), "no such order: 'nap'"),
    (("kill",), "kill needs a builder"),
    (("skip", "pi"), "reason must be a non-empty string"),
    (("skip", "pi", "why\n"), "not acceptable"),
    (("pause", "pi", "why"), "pause takes no reason"),
    (("pause", "nobody"), "no builder 'nobody'"),
    (("pause", 999), "no builder 999"),
    (("pause", True), "builder must be a non-empty string, not True"),
    (("pause", "old"), "did not name its RabbitMQ user"),
    (("pause", "twin"), "names builders"),
    (("kill", "pi"), "is not building anything"),
    (("pause", "pi\x00; DROP TABLE builders"), "not acceptable"),
    (("pause", ["pi"]), "builder must be a non-empty string"),
])
def test_refusals_name_the_problem_and_change_nothing(s, args, message):
    builder(s)
    hello(s, "old")
    builder(s, "twin", "u1", CP311)
    builder(s, "twin", "u2", "cp313-linux_armv7l")
    s.commit()
    before = snapshot(s)
    with pytest.raises(actions.AdminError, match=message):
        actions.builder_control(s, *args)
    s.rollback()
    assert snapshot(s) == before


def test_order_queues_and_permissions():
    assert protocol.order_queue(3, "pi.42") == "piw.orders.3.pi.42"
    for bad in ((True, "u"), (-1, "u"), (3, ""), (3, "a\nb"), ("3", "u")):
        with pytest.raises(protocol.ProtocolError):
            protocol.order_queue(*bad)
    import re
    read = protocol.builder_permissions(CP311, "pi.42")["read"]
    assert re.match(read, "piw.orders.3.pi.42") and re.match(read, "piw.orders.17.pi.42")
    for other in ("piw.orders.3.pi.43", "piw.orders.3.pi.42x", "piw.orders.3.xpi.42",
                  "piw.orders.x.pi.42", "piw.orders.3.pi", "piw.orders.3.pia42"):
        assert not re.match(read, other), other
    assert "orders" not in protocol.builder_permissions(CP311)["read"]
    assert protocol.check_order(protocol.order("kill", "j1"))["job_id"] == "j1"
    for bad in ({"type": "order", "order": "reboot"}, {"type": "order", "order": "kill"},
                {"type": "order", "order": "skip", "job_id": "j 1"}, ["order"]):
        with pytest.raises(protocol.ProtocolError):
            protocol.check_order(bad)
