"""Build one wheel from its sdist with ``pip wheel``, the way piw-builder does on each Pi.

Every build runs in a fresh temporary directory (its working directory, ``HOME``, ``TMPDIR`` and
pip's cache all live inside it) with none of this machine's pip configuration, so one build can
neither see nor leave behind anything another build would pick up; the directory is removed when
:func:`build_wheel` returns, after the wheels have been moved to the caller's ``out_dir``.

pip runs in a process group of its own, so a timeout or a cancellation (the version was removed
from PyPI mid-build) can stop the compilers and build backends it started, not just pip. Output is
captured without blocking and bounded, so a chatty build cannot exhaust a Pi's memory.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

__all__ = [
    "DEFAULT_TIMEOUT",
    "KILL_GRACE",
    "LOG_HEAD_BYTES",
    "LOG_TAIL_BYTES",
    "BuildResult",
    "Status",
    "build_wheel",
    "pip_command",
]

Status = Literal["success", "failed", "timeout", "cancelled"]

#: Seconds a build may take before it is killed: big C++ projects on a Pi 3 take hours.
DEFAULT_TIMEOUT = 3 * 3600.0
#: Seconds between SIGTERM and SIGKILL for the build's process group.
KILL_GRACE = 10.0
#: The log keeps this many bytes from the start of the output ...
LOG_HEAD_BYTES = 1024 * 1024
#: ... and this many from the end; what is in between is replaced by a marker line.
LOG_TAIL_BYTES = 1024 * 1024

_POLL = 0.1
_READ_CHUNK = 64 * 1024
#: How long to wait for the output reader to see EOF once the process group is gone.
_READER_JOIN = 5.0
#: How long to wait after SIGKILL (a process in uninterruptible sleep can take a while).
_AFTER_KILL = 30.0
#: PEP 508 project names; anything else could be read by pip as an option or a URL.
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
#: Liberal enough for legacy PyPI versions, strict enough to stay one ``name==version`` argument.
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*$")


@dataclass
class BuildResult:
    """What one build did: its status, how long it took, its log and the wheels it produced.

    ``status`` is "success" (pip exited 0 and left at least one wheel), "failed", "timeout" or
    "cancelled". ``wheels`` are paths in the caller's ``out_dir``; ``returncode`` is pip's exit
    status (negative for a signal), or None when pip never ran.
    """

    status: Status
    duration: float
    log: str
    wheels: list[Path] = field(default_factory=list)
    returncode: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for the message bus: wheel file names rather than local paths."""
        return {
            "status": self.status,
            "duration": self.duration,
            "log": self.log,
            "wheels": [path.name for path in self.wheels],
            "returncode": self.returncode,
        }


def pip_command(
    python: str,
    index_url: str,
    name: str,
    version: str,
    out: Path,
    no_binary: str | None = None,
) -> list[str]:
    """The pip invocation: this project from source, no dependencies, no cache, no user config.

    ``no_binary`` defaults to the project's own name, as piwheels does, not ":all:": pip passes
    ``--no-binary`` on to the isolated build environment, so ":all:" would also refuse the
    setuptools/wheel (or numpy, cmake, ...) wheels that the build requires and build each of
    them from source too, every time.

    ``--use-pep517``: a project without a pyproject.toml (MarkupSafe 2.1.5's sdist) is built in
    an isolated environment with setuptools and wheel from the index too, rather than by
    ``setup.py bdist_wheel`` in the builder's own environment, which fails ("invalid command
    'bdist_wheel'") where ``wheel`` is not installed: a fresh venv on a Pi, or a Debian one.
    What the builder has installed never changes what it builds.
    """
    return [
        python,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--use-pep517",
        "--no-binary",
        no_binary or name,
        "--no-cache-dir",
        "--isolated",
        "--index-url",
        index_url,
        "-w",
        str(out),
        f"{name}=={version}",
    ]


class _BoundedLog:
    """Collects a byte stream, keeping only its first ``head`` and last ``tail`` bytes."""

    def __init__(self, head: int = LOG_HEAD_BYTES, tail: int = LOG_TAIL_BYTES) -> None:
        self.head_limit, self.tail_limit = head, tail
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self._lock = threading.Lock()

    def feed(self, data: bytes) -> None:
        with self._lock:
            self.total += len(data)
            room = self.head_limit - len(self.head)
            if room > 0:
                self.head += data[:room]
                data = data[room:]
            if data:
                self.tail += data
                if len(self.tail) > 2 * self.tail_limit:  # trim in batches: amortised O(n)
                    del self.tail[: -self.tail_limit]

    def drain(self, stream: IO[bytes]) -> None:
        """Read ``stream`` to EOF (run in a thread so the build never blocks on a full pipe)."""
        try:
            while chunk := stream.read(_READ_CHUNK):
                self.feed(chunk)
        except (OSError, ValueError):  # closed under us: keep what we have
            pass

    def text(self) -> str:
        with self._lock:
            tail = bytes(self.tail[-self.tail_limit :]) if self.tail_limit else b""
            omitted = self.total - len(self.head) - len(tail)
            parts = [bytes(self.head)]
            if omitted > 0:
                marker = f"\n[piw-builder: {omitted} bytes of output omitted]\n"
                parts.append(marker.encode())
            parts.append(tail)
        return b"".join(parts).decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------------
# Process groups
# --------------------------------------------------------------------------------------------


def _group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still running (zombies awaiting a reaper don't
    count: they hold no resources and cannot be killed)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_text(errors="replace")
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may contain spaces and parentheses.
        fields = stat_line.rpartition(")")[2].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_group(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Reap pip and wait up to ``seconds`` for its whole group to exit; True if it did."""
    deadline = time.monotonic() + seconds
    while True:
        proc.poll()
        if proc.returncode is not None and not _group_alive(proc.pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _stop_group(proc: subprocess.Popen[bytes], grace: float, note: Callable[[str], None]) -> None:
    """SIGTERM the build's process group, then SIGKILL whatever is left after ``grace`` s."""
    pgid = proc.pid  # start_new_session: pip leads its own group
    _signal_group(pgid, signal.SIGTERM)
    if _wait_group(proc, grace):
        return
    note(f"process group {pgid} still running {grace:g}s after SIGTERM; sent SIGKILL")
    _signal_group(pgid, signal.SIGKILL)
    if not _wait_group(proc, _AFTER_KILL):
        note(f"process group {pgid} survived SIGKILL for {_AFTER_KILL:g}s; giving up on it")


# --------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------


def _build_env(tmp: Path, extra_env: Mapping[str, str] | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env.update(
        PIP_CONFIG_FILE=os.devnull,  # this machine's pip.conf points at local mirrors
        PIP_CACHE_DIR=str(tmp / "cache"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        HOME=str(tmp / "home"),
        TMPDIR=str(tmp / "tmp"),
        TEMP=str(tmp / "tmp"),
        TMP=str(tmp / "tmp"),
        XDG_CACHE_HOME=str(tmp / "cache"),
        XDG_CONFIG_HOME=str(tmp / "home" / ".config"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra_env or {})
    return env


def _rmtree(path: Path) -> None:
    """Remove a build directory even where the build left read-only files or directories."""

    def retry(func: Callable[..., object], target: str, *_: object) -> None:
        try:
            os.chmod(os.path.dirname(target), stat.S_IRWXU)
            os.chmod(target, stat.S_IRWXU)
            func(target)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)


def build_wheel(
    index_url: str,
    name: str,
    version: str,
    out_dir: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    python: str = sys.executable,
    extra_env: Mapping[str, str] | None = None,
    cancel: threading.Event | None = None,
    work_dir: Path | None = None,
    kill_grace: float = KILL_GRACE,
    no_binary: str | None = None,
) -> BuildResult:
    """Build ``name==version`` from source with ``python -m pip wheel`` against ``index_url``.

    Built wheels are moved into ``out_dir`` (created if needed) because the temporary build
    directory, made under ``work_dir`` (created if needed; default: the system's temporary
    directory; on a Pi, a disk with room), is removed before returning.
    ``extra_env`` is applied last, on top of the isolated environment (e.g. ``MAKEFLAGS``).
    Setting ``cancel`` stops the build (status "cancelled"); so does ``timeout`` ("timeout"):
    both SIGTERM pip's process group and SIGKILL it ``kill_grace`` seconds later.
    ``no_binary`` is passed to pip's ``--no-binary`` (default: just this project; see
    :func:`pip_command`).

    Raises ValueError for a name or version that is not a single safe requirement; a build
    that cannot even start (no such ``python``) is reported as "failed". Trouble on the
    builder's own side (cannot create the work directory, cannot move a wheel to ``out_dir``)
    raises OSError, since it says nothing about the package.
    """
    if not _NAME.match(name):
        raise ValueError(f"not a valid project name: {name!r}")
    if not _VERSION.match(version):
        raise ValueError(f"not a valid version: {version!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, not {timeout!r}")
    if os.sep in python:
        python = os.path.abspath(python)  # the build's cwd is the temporary directory

    started = time.monotonic()
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(f"piw-builder: {message}")

    if cancel is not None and cancel.is_set():
        note("cancelled before the build started")
        return BuildResult("cancelled", time.monotonic() - started, "\n".join(notes) + "\n")

    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="piw-build-", dir=work_dir))
    try:
        for sub in ("build", "home", "tmp", "cache"):
            (tmp / sub).mkdir()
        wheel_dir = tmp / "wheels"
        cmd = pip_command(python, index_url, name, version, wheel_dir, no_binary)
        header = f"$ {shlex.join(cmd)}\n"
        output = _BoundedLog()
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=tmp / "build",
                env=_build_env(tmp, extra_env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            note(f"could not start the build: {exc}")
            log = header + "\n".join(notes) + "\n"
            return BuildResult("failed", time.monotonic() - started, log)

        assert proc.stdout is not None
        reader = threading.Thread(
            target=output.drain, args=(proc.stdout,), name=f"piw-build-log:{name}", daemon=True
        )
        reader.start()
        status: Status | None = None
        try:
            deadline = started + timeout
            while proc.poll() is None:
                if cancel is not None and cancel.is_set():
                    status = "cancelled"
                    note("build cancelled; stopping its process group")
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    status = "timeout"
                    note(f"build timed out after {timeout:g}s; stopping its process group")
                    break
                try:
                    proc.wait(timeout=min(_POLL, remaining))
                except subprocess.TimeoutExpired:
                    pass
            if status is not None:
                _stop_group(proc, kill_grace, note)
            elif _group_alive(proc.pid):
                note("pip exited but left processes in its group; stopping them")
                _stop_group(proc, kill_grace, note)
        except BaseException:  # e.g. KeyboardInterrupt: never leave a build running
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            reader.join(_READER_JOIN)
            if reader.is_alive():
                note("a process outside the build's group holds its output open; log may be cut")
            else:
                proc.stdout.close()

        returncode = proc.returncode
        wheels: list[Path] = []
        if status is None:
            if returncode != 0:
                status = "failed"
                note(f"pip exited with status {returncode}")
            else:
                built = sorted(wheel_dir.glob("*.whl")) if wheel_dir.is_dir() else []
                if not built:
                    status = "failed"
                    note("pip exited with status 0 but produced no wheel")
                else:
                    Path(out_dir).mkdir(parents=True, exist_ok=True)
                    for wheel in built:
                        target = Path(out_dir) / wheel.name
                        shutil.move(wheel, target)
                        wheels.append(target)
                    status = "success"
        log = header + output.text()
        if notes:
            log += ("" if log.endswith("\n") else "\n") + "\n".join(notes) + "\n"
        return BuildResult(status, time.monotonic() - started, log, wheels, returncode)
    finally:
        _rmtree(tmp)
