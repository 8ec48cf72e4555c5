"""piw-monitor: the frame (a pure function, no broker), the report as RPC sends it, a dead
broker, and one --once frame from a stand-in stats service over a real RabbitMQ."""

import dataclasses
import json
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date, datetime

import pytest
from nameko.rpc import rpc

from piw_services.cli import monitor
from tests.conftest import free_port
from tests.stats import sample


def as_rpc_sends_it(report) -> dict:
    """dataclasses.asdict with dates and datetimes as ISO strings, through JSON."""
    def default(value):
        if isinstance(value, (date, datetime)):
            return value.isoformat()
        raise TypeError(type(value))
    return json.loads(json.dumps(dataclasses.asdict(report), default=default))


def test_the_report_survives_the_trip_over_rpc():
    report = sample.status_report(hostile=True)
    assert monitor.status_from_dict(as_rpc_sends_it(report)) == report
    empty = sample.empty_status_report()
    assert monitor.status_from_dict(as_rpc_sends_it(empty)) == empty


@pytest.mark.parametrize("width", [40, 80, 132])
def test_frame_fits_and_shows_everything(width):
    report = sample.status_report(builders=8)
    lines = monitor.format_status(report, width)
    assert all(len(line) <= width for line in lines)
    text = "\n".join(lines)
    assert "behind upstream: 42" in text
    assert "cp311 1,234" in text and "cp313 56" in text
    assert "BUILDERS (8, 1 silent)" in text
    for b in report.builders:
        assert any(line.startswith(b.label) for line in lines)
    silent = next(line for line in lines if line.startswith("pi08"))
    assert "SILENT 45 min" in silent
    if width >= 80:
        first = next(line for line in lines if line.startswith("pi01"))
        assert "numpy 1.0.0" in first and "35 s" in first and "°C" in first
        assert "RECENT BUILDS" in text and "failed" in text


def test_hostile_strings_cannot_drive_the_terminal():
    report = sample.status_report(builders=2)
    evil = "\x1b[2J\x1b]0;owned\x07pi\r\n"
    b = replace(report.builders[0], label=evil, job=evil)
    lines = monitor.format_status(replace(report, builders=(b,)), 100)
    assert not any(c in line for line in lines for c in "\x1b\x07\r\n")
    assert any("?[2J" in line for line in lines)


def test_empty_report():
    lines = monitor.format_status(sample.empty_status_report(), 80)
    text = "\n".join(lines)
    assert "behind upstream: unknown" in text
    assert "no builder has said hello yet" in text
    assert "queues: none" in text and "none yet" in text


def test_unreachable_broker_is_a_clear_message_within_ten_seconds(tmp_path):
    config = tmp_path / "master.yaml"
    config.write_text(f"AMQP_URI: amqp://guest:guest@127.0.0.1:{free_port()}//\n")
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "piw_services.cli.monitor", "--once",
                           "-c", str(config)], capture_output=True, text=True, timeout=30)
    assert time.monotonic() - start < 10
    assert done.returncode == 1
    assert "cannot reach RabbitMQ at 127.0.0.1" in done.stderr
    assert "Traceback" not in done.stderr


class FakeStats:
    """Stands in for the stats service: answers status() as the real one does."""

    name = "stats"

    @rpc
    def status(self):
        return as_rpc_sends_it(sample.status_report(builders=3))


def test_once_prints_a_frame_from_the_stats_service(container_factory, rabbit_config,
                                                    tmp_path, capsys):
    container_factory(FakeStats, rabbit_config).start()
    config = tmp_path / "master.yaml"
    config.write_text(f"AMQP_URI: {rabbit_config['AMQP_URI']}\n")
    assert monitor.main(["--once", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "BUILDERS (3, 1 silent)" in out and "pi01" in out and "SILENT" in out


def test_a_paused_builder_is_shown_paused():
    report = sample.status_report(builders=2)
    b = replace(report.builders[0], paused=True)
    lines = monitor.format_status(replace(report, builders=(b, report.builders[1])), 100)
    assert "paused" in next(line for line in lines if line.startswith(b.label))
    assert "paused" not in next(line for line in lines
                                if line.startswith(report.builders[1].label))


@pytest.mark.parametrize("key, selected, asked", [
    ("p", 3, ("pause", 3)), ("r", 3, ("resume", 3)), ("k", 3, ("kill", 3)),
    ("s", 3, ("skip", 3)), ("P", 3, ("pause", None)), ("R", None, ("resume", None)),
    ("p", None, None), ("k", None, None), ("x", 3, None), ("q", 3, None)])
def test_keys_name_the_orders_they_send(key, selected, asked):
    """piwheels' monitor keys: each key is on the help line, and sends its order for the
    selected builder (or every builder: P, R)."""
    assert monitor.order_for_key(key, selected) == asked
    if asked:
        assert f" {key} " in f" {monitor.HELP} "
