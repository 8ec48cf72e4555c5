"""build_wheel's process handling, with a fake interpreter standing in for ``python -m pip``.

The fake records its argv, cwd, environment and process group, then behaves as ``FAKE_MODE``
says: build a wheel, fail, print megabytes, hang (optionally ignoring SIGTERM), or exit leaving
a child behind. Real pip builds against the fake PyPI are in test_build_real.py.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from builders.build import LOG_HEAD_BYTES, BuildResult, _BoundedLog, build_wheel, pip_command

from .build_helpers import assert_group_gone, pid_running, wait_for_json

INDEX = "http://127.0.0.1:9/simple/"  # never contacted: the fake interpreter ignores it

FAKE_PIP = """\
import json, os, signal, subprocess, sys, time
from pathlib import Path

args = sys.argv[1:]
mode = os.environ.get("FAKE_MODE", "ok")
out = Path(args[args.index("-w") + 1])
name, _, version = args[-1].partition("==")
info = {
    "argv": args, "cwd": os.getcwd(), "env": dict(os.environ),
    "pid": os.getpid(), "pgid": os.getpgid(0), "sid": os.getsid(0),
}

def report():
    path = os.environ["FAKE_REPORT"]
    with open(path + ".tmp", "w") as fh:
        json.dump(info, fh)
    os.replace(path + ".tmp", path)

def wheel():
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}-{version}-py3-none-any.whl").write_bytes(b"PK not really a zip")

if os.environ.get("FAKE_READONLY"):
    os.makedirs("ro/deep")
    Path("ro/deep/file").write_text("x")
    os.chmod("ro/deep", 0o500)
    os.chmod("ro", 0o500)

if mode == "ok":
    wheel()
    print("built it", flush=True)
elif mode == "nowheel":
    print("nothing to see", flush=True)
elif mode == "fail":
    print("something went wrong", file=sys.stderr, flush=True)
    report()
    sys.exit(3)
elif mode == "chatty":
    sys.stdout.write("FIRST LINE\\n")
    line = "x" * 99 + "\\n"
    for _ in range(30_000):  # 3 MB
        sys.stdout.write(line)
    sys.stdout.write("LAST LINE\\n")
    sys.stdout.flush()
elif mode == "hang":
    ignore = bool(os.environ.get("FAKE_IGNORE_TERM"))
    if ignore:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    code = "import signal, time\\n"
    if ignore:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
    child = subprocess.Popen([sys.executable, "-c", code + "time.sleep(600)"])
    info["child"] = child.pid
    time.sleep(0.3)  # let the child install its handler before anyone signals it
    print("hanging", flush=True)
    report()
    time.sleep(600)
elif mode == "leftover":
    child = subprocess.Popen(["sleep", "600"])  # inherits our stdout: the log pipe stays open
    info["child"] = child.pid
    wheel()
    print("done, but my child lingers", flush=True)
report()
"""


@pytest.fixture
def fake_python(tmp_path) -> str:
    path = tmp_path / "fake-python"
    path.write_text(f"#!{sys.executable}\n{FAKE_PIP}")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def run(tmp_path, fake_python):
    """Call build_wheel with the fake; returns (result, the fake's report or None)."""
    report = tmp_path / "report.json"

    def call(mode="ok", name="demo", version="1.0", env=None, **kwargs):
        extra = {"FAKE_MODE": mode, "FAKE_REPORT": str(report), **(env or {})}
        kwargs.setdefault("work_dir", tmp_path / "work")
        kwargs.setdefault("python", fake_python)
        result = build_wheel(INDEX, name, version, tmp_path / "out", extra_env=extra, **kwargs)
        info = json.loads(report.read_text()) if report.exists() else None
        return result, info

    return call


def work_is_empty(tmp_path: Path) -> bool:
    work = tmp_path / "work"
    return not work.exists() or not any(work.iterdir())


def test_success_moves_the_wheel_out_and_removes_the_build_directory(run, tmp_path):
    result, info = run("ok")
    assert result.status == "success"
    assert result.returncode == 0
    assert result.wheels == [tmp_path / "out" / "demo-1.0-py3-none-any.whl"]
    assert result.wheels[0].read_bytes() == b"PK not really a zip"
    assert "built it" in result.log
    assert result.log.startswith("$ ") and "pip wheel --no-deps" in result.log.splitlines()[0]
    assert 0 < result.duration < 30
    assert work_is_empty(tmp_path)
    assert not Path(info["cwd"]).exists()
    as_dict = result.as_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["wheels"] == ["demo-1.0-py3-none-any.whl"]
    assert as_dict["status"] == "success" and as_dict["returncode"] == 0


def test_command_environment_and_process_group(run, tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://local-mirror.invalid/simple/")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "http://other-mirror.invalid/simple/")
    monkeypatch.setenv("PIP_TRUSTED_HOST", "local-mirror.invalid")
    monkeypatch.setenv("PIW_UNRELATED", "kept")
    result, info = run("ok", name="Some.Project", version="2.0rc1", env={"MAKEFLAGS": "-j4"})
    assert result.status == "success"
    tmp = Path(info["cwd"]).parent
    assert tmp.parent == tmp_path / "work" and tmp.name.startswith("piw-build-")
    out = info["argv"][info["argv"].index("-w") + 1]
    assert Path(out).parent == tmp
    assert info["argv"] == pip_command("python", INDEX, "Some.Project", "2.0rc1", Path(out))[1:]
    assert info["argv"][:10] == [
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--use-pep517",
        "--no-binary",
        "Some.Project",
        "--no-cache-dir",
        "--isolated",
        "--index-url",
    ]
    env = info["env"]
    assert sorted(k for k in env if k.startswith("PIP_")) == [
        "PIP_CACHE_DIR",
        "PIP_CONFIG_FILE",
        "PIP_DISABLE_PIP_VERSION_CHECK",
        "PIP_NO_INPUT",
    ]
    assert env["PIP_CONFIG_FILE"] == os.devnull
    for key in ("HOME", "TMPDIR", "TMP", "TEMP", "PIP_CACHE_DIR", "XDG_CACHE_HOME"):
        assert Path(env[key]).is_relative_to(tmp), key
    assert env["MAKEFLAGS"] == "-j4" and env["PIW_UNRELATED"] == "kept"
    # Its own session, so its own process group: pgid == sid == pid, none of them ours.
    assert info["pgid"] == info["sid"] == info["pid"] != os.getpgid(0)
    assert not tmp.exists()
    assert result.wheels[0].name == "Some.Project-2.0rc1-py3-none-any.whl"


def test_no_binary_can_be_widened_to_all(run):
    result, info = run("ok", no_binary=":all:")
    assert result.status == "success"
    assert info["argv"][5:7] == ["--no-binary", ":all:"]


def test_exit_status_zero_without_a_wheel_is_a_failure(run, tmp_path):
    result, _ = run("nowheel")
    assert (result.status, result.returncode, result.wheels) == ("failed", 0, [])
    assert "nothing to see" in result.log
    assert "pip exited with status 0 but produced no wheel" in result.log
    assert not (tmp_path / "out").exists()
    assert work_is_empty(tmp_path)


def test_a_failing_build_keeps_its_stderr_in_the_log(run, tmp_path):
    result, _ = run("fail")
    assert (result.status, result.returncode, result.wheels) == ("failed", 3, [])
    assert "something went wrong" in result.log
    assert result.log.rstrip().endswith("piw-builder: pip exited with status 3")
    assert work_is_empty(tmp_path)


def test_the_log_keeps_the_first_and_last_mebibyte(run):
    result, _ = run("chatty")
    assert result.status == "failed"
    log = result.log
    assert "FIRST LINE" in log and log.rstrip().splitlines()[-2] == "LAST LINE"
    total = len("FIRST LINE\n") + 30_000 * 100 + len("LAST LINE\n")
    omitted = total - 2 * LOG_HEAD_BYTES
    assert f"\n[piw-builder: {omitted} bytes of output omitted]\n" in log
    assert 2 * LOG_HEAD_BYTES < len(log) < 2 * LOG_HEAD_BYTES + 4096


def test_bounded_log_boundaries():
    log = _BoundedLog(head=4, tail=3)
    for chunk in (b"ab", b"cdef", b"", b"ghij", b"k"):
        log.feed(chunk)
    assert log.text() == "abcd\n[piw-builder: 4 bytes of output omitted]\nijk"
    short = _BoundedLog(head=4, tail=3)
    short.feed(b"abcdefg")
    assert short.text() == "abcdefg"  # exactly head + tail: nothing omitted, no marker
    split = _BoundedLog(head=1, tail=1)
    split.feed("€".encode())  # three bytes: the bounds cut the character, which decodes lossily
    assert split.text() == "\ufffd\n[piw-builder: 1 bytes of output omitted]\n\ufffd"


def test_timeout_escalates_to_sigkill_for_a_group_that_ignores_sigterm(run, tmp_path):
    started = time.monotonic()
    result, info = run("hang", env={"FAKE_IGNORE_TERM": "1"}, timeout=2.0, kill_grace=0.5)
    elapsed = time.monotonic() - started
    assert result.status == "timeout"
    assert result.returncode == -signal.SIGKILL
    assert 2.0 <= result.duration < 10 and elapsed < 10
    assert "hanging" in result.log
    assert "build timed out after 2s" in result.log
    assert "still running 0.5s after SIGTERM; sent SIGKILL" in result.log
    assert result.wheels == []
    assert_group_gone(info["pgid"], info["pid"], info["child"])
    assert work_is_empty(tmp_path)


def test_cancel_stops_the_whole_group_with_sigterm(run, tmp_path):
    cancel = threading.Event()
    report = tmp_path / "report.json"

    def cancel_once_hanging():
        wait_for_json(report)
        cancel.set()

    canceller = threading.Thread(target=cancel_once_hanging, daemon=True)
    canceller.start()
    result, info = run("hang", cancel=cancel)
    canceller.join(5)
    assert result.status == "cancelled"
    assert result.returncode == -signal.SIGTERM
    assert "build cancelled" in result.log and "SIGKILL" not in result.log
    assert_group_gone(info["pgid"], info["pid"], info["child"])
    assert work_is_empty(tmp_path)


def test_cancelled_before_start_runs_nothing(run, tmp_path):
    cancel = threading.Event()
    cancel.set()
    result, info = run("ok", cancel=cancel)
    assert (result.status, result.returncode, result.wheels, info) == ("cancelled", None, [], None)
    assert "cancelled before the build started" in result.log
    assert work_is_empty(tmp_path)


def test_processes_left_behind_are_stopped_and_do_not_hold_up_the_build(run, tmp_path):
    started = time.monotonic()
    result, info = run("leftover")
    assert time.monotonic() - started < 5  # the child's open pipe did not make us wait for it
    assert result.status == "success"
    assert "done, but my child lingers" in result.log
    assert "pip exited but left processes in its group; stopping them" in result.log
    assert not pid_running(info["child"])
    assert_group_gone(info["pgid"])
    assert work_is_empty(tmp_path)


def test_read_only_leftovers_are_still_removed(run, tmp_path):
    result, info = run("ok", env={"FAKE_READONLY": "1"})
    assert result.status == "success"
    assert not Path(info["cwd"]).exists()
    assert work_is_empty(tmp_path)


def test_an_interpreter_that_cannot_start_is_a_failure(run, tmp_path):
    result, _ = run("ok", python=str(tmp_path / "no-such-python"))
    assert (result.status, result.returncode, result.wheels) == ("failed", None, [])
    assert "could not start the build" in result.log
    assert work_is_empty(tmp_path)


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("--index-url=http://evil.invalid/", "1.0"),
        ("-rrequirements.txt", "1.0"),
        ("two words", "1.0"),
        ("", "1.0"),
        ("pkg", ""),
        ("pkg", "1.0; python_version>'3'"),
        ("pkg", "1.0,>0"),
        ("pkg", "--pre"),
        ("pkg[extra]", "1.0"),
        ("https://evil.invalid/pkg.tar.gz", "1.0"),
    ],
)
def test_refuses_anything_but_one_plain_requirement(name, version, tmp_path):
    with pytest.raises(ValueError):
        build_wheel(INDEX, name, version, tmp_path / "out", work_dir=tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_refuses_a_non_positive_timeout(tmp_path):
    with pytest.raises(ValueError, match="timeout"):
        build_wheel(INDEX, "pkg", "1.0", tmp_path / "out", timeout=0)


def test_result_as_dict_without_paths():
    result = BuildResult("failed", 1.5, "log", [Path("/x/a-1-py3-none-any.whl")], 1)
    assert result.as_dict() == {
        "status": "failed",
        "duration": 1.5,
        "log": "log",
        "wheels": ["a-1-py3-none-any.whl"],
        "returncode": 1,
    }
