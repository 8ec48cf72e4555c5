"""The builder's decisions that need no broker: what to upload or withhold, the final status,
the packed log, the shape of the master's answers, back-off, and a build refused up front."""

from __future__ import annotations

import base64
import gzip
import threading
from pathlib import Path

import pytest

from builders import protocol
from builders.builder import (
    Backoff,
    BuiltWheel,
    build_and_inspect,
    check_answer,
    final_status,
    last_line,
    pack_log,
    split_uploads,
)
from builders.config import load_settings


def built(filename: str) -> BuiltWheel:
    return BuiltWheel(Path("/out") / filename, {"filename": filename})


def names(wheels: list[BuiltWheel]) -> list[str]:
    return [w.info["filename"] for w in wheels]


def test_everything_is_uploaded_when_upstream_has_no_wheels():
    wheels = [built("numpy-1.26.0-cp311-cp311-linux_armv7l.whl")]
    upload, withheld = split_uploads(wheels, ["numpy-1.26.0.tar.gz"])
    assert names(upload) == ["numpy-1.26.0-cp311-cp311-linux_armv7l.whl"]
    assert withheld == []


def test_a_wheel_upstream_serves_is_withheld():
    pure = "six-1.16.0-py2.py3-none-any.whl"
    upload, withheld = split_uploads([built(pure)], [pure, "six-1.16.0.tar.gz"])
    assert upload == [] and withheld == [pure]


def test_the_same_wheel_spelled_otherwise_is_withheld():
    upload, withheld = split_uploads([built("foo_bar-1.0-py3-none-any.whl")],
                                     ["Foo_Bar-1.0-py3-none-any.whl"])
    assert upload == [] and withheld == ["foo_bar-1.0-py3-none-any.whl"]


def test_only_matching_wheels_are_withheld():
    wheels = [built("demo-1.0-py3-none-any.whl"),
              built("demo-1.0-cp311-cp311-linux_armv7l.whl")]
    upload, withheld = split_uploads(wheels, ["demo-1.0-py3-none-any.whl", "junk name",
                                              "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"])
    assert names(upload) == ["demo-1.0-cp311-cp311-linux_armv7l.whl"]
    assert withheld == ["demo-1.0-py3-none-any.whl"]


@pytest.mark.parametrize("status, problems, expected", [
    ("success", [], "success"),
    ("success", ["the master refused x.whl: bad name"], "failed"),
    ("failed", ["cannot inspect x.whl"], "failed"),
    ("timeout", [], "timeout"),
])
def test_final_status(status, problems, expected):
    assert final_status(status, problems) == expected


def unpack(packed: str) -> str:
    return gzip.decompress(base64.b64decode(packed)).decode("utf-8")


def test_pack_log_round_trips_and_appends_problems():
    assert unpack(pack_log("Building wheel… ✓\n")) == "Building wheel… ✓\n"
    assert unpack(pack_log("no newline", ["refused a.whl"])) == (
        "no newline\npiw-builder: refused a.whl\n")
    assert unpack(pack_log("", [])) == ""


def test_check_answer():
    assert check_answer(protocol.ok(builder_id=3))["builder_id"] == 3
    assert check_answer(protocol.error("nope"))["error"] == "nope"
    for bad in ([], "ok", {"ok": "yes"}, {"error": "x"}, {"ok": False}):
        with pytest.raises(protocol.ProtocolError):
            check_answer(bad)


def test_backoff_doubles_to_a_limit_and_resets():
    backoff = Backoff(1, 10)
    assert [backoff.next() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    backoff.reset()
    assert backoff.next() == 1


@pytest.fixture
def settings(tmp_path):
    return load_settings(env={"PIW_BUILDER_WORK_DIR": str(tmp_path / "work"),
                              "PIW_BUILDER_INDEX_URL": "http://127.0.0.1:9/simple/"})


def test_a_name_pip_must_not_see_fails_without_running_pip(settings, tmp_path):
    job = protocol.job("j1", "--index-url=http://evil/", "1.0", "cp311-linux_armv7l", [])
    outcome = build_and_inspect(settings, job, tmp_path / "out", threading.Event())
    assert outcome.status == "failed" and outcome.wheels == []
    assert "refusing to build: not a valid project name" in outcome.log


def test_a_build_cancelled_before_it_starts(settings, tmp_path):
    cancel = threading.Event()
    cancel.set()
    job = protocol.job("j1", "demo", "1.0", "cp311-linux_armv7l", [])
    outcome = build_and_inspect(settings, job, tmp_path / "out", cancel)
    assert outcome.status == "cancelled" and outcome.wheels == []


def test_last_line_quotes_the_builders_problem_else_pips_error():
    log = ("Collecting demo\nERROR: No matching distribution found for demo==1.0\n"
           "piw-builder: pip exited with status 1\n\n")
    assert last_line(log) == "ERROR: No matching distribution found for demo==1.0"
    assert last_line(log, ["the master refused x.whl: bad"]) == "the master refused x.whl: bad"
    assert last_line("piw-builder: build timed out after 60s\n") == (
        "piw-builder: build timed out after 60s")
    assert last_line("") == "no output"
    assert len(last_line("x" * 1000)) == 200
