"""piw-builder's main loop: take a job, claim it, build, upload, report, and only then ack.

Threads: kombu connections are not thread-safe, so everything AMQP (publishing, waiting for
answers, heartbeats, acks) happens on the main thread. A build (``pip wheel`` plus inspecting
its wheels, which can take hours) runs in one worker thread that touches no connection; the
main thread meanwhile keeps the connection alive with short ``drain_events`` calls and sends a
status heartbeat every HEARTBEAT_INTERVAL. If the connection drops mid-build the build goes
on: the main thread reconnects (RabbitMQ has already given the job back to the queue, since it
was never acked), reports the outcome on the new connection, and the master tells whichever
builder receives the redelivered job that it is already built.

SIGTERM/SIGINT cancel the running build and close the connection without acking, so the job
goes to another builder. The decisions that need no broker (what to upload, the final status,
the packed log, the shape of an answer) are plain functions at the top, tested on their own.
"""

from __future__ import annotations

import base64
import gzip
import ipaddress
import logging
import signal
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from amqp.exceptions import MessageNacked
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.exceptions import KombuError
from kombu.message import Message
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from builders import protocol, sysinfo
from builders.build import build_wheel
from builders.config import Interpreter, Settings
from builders.inspection import InspectionError, inspect_wheel
from builders.uploader import upload_file

__all__ = [
    "Backoff",
    "BuildOutcome",
    "Builder",
    "BuiltWheel",
    "ConnectionTrouble",
    "BrokerLink",
    "Stopping",
    "build_and_inspect",
    "check_answer",
    "final_status",
    "last_line",
    "pack_log",
    "split_uploads",
    "tls_options",
]

log = logging.getLogger(__name__)

#: Times a claim or result is sent without a usable answer before the connection is
#: considered broken (reconnecting also says hello again, which waits for the master).
REQUEST_ATTEMPTS = 3
#: Seconds between looks for a job queue that does not exist yet.
QUEUE_RETRY = 10.0
#: Seconds before a request is sent again that RabbitMQ could route to no queue (the master's
#: request queue is not there yet: build_dispatch is starting).
NO_ROUTE_RETRY = 1.0
#: Longest pause between attempts to reach RabbitMQ or the master.
BACKOFF_MAX = 60.0
#: Longest the main thread blocks in drain_events: how soon it notices a finished build or a
#: signal.
PUMP = 0.5
#: AMQP heartbeat in seconds (RabbitMQ drops a connection silent for twice this).
AMQP_HEARTBEAT = 30
CONNECT_TIMEOUT = 10.0
#: Seconds to wait before taking jobs again after this builder could not run one (full disk).
LOCAL_TROUBLE_PAUSE = 60.0
#: Seconds a builder whose build an operator killed takes no job, so that the job, queued
#: again by the master, goes to another builder when one is free (else back to this one).
KILL_REST = 60.0


class ConnectionTrouble(Exception):
    """RabbitMQ or the master cannot be used right now: drop the connection and reconnect."""


class Stopping(Exception):
    """SIGTERM or SIGINT arrived: unwind without acking the current job."""


# --------------------------------------------------------------------------------------------
# Decisions that need no broker
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltWheel:
    """A wheel the build produced, with its inspection record (protocol "file info")."""

    path: Path
    info: dict[str, Any]


@dataclass
class BuildOutcome:
    """A build and the inspection of its wheels. ``problems`` are wheels that could not be
    inspected: the build then counts as failed, since it cannot be served as it is."""

    status: str
    duration: float
    log: str
    wheels: list[BuiltWheel] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Backoff:
    """Pauses that double from ``first`` to ``limit``, so a down master is not hammered."""

    def __init__(self, first: float = 1.0, limit: float = BACKOFF_MAX) -> None:
        self.first, self.limit = first, limit
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.limit)
        return delay

    def reset(self) -> None:
        self._next = self.first


def _wheel_identity(filename: str) -> object:
    try:
        name, version, build, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return filename
    return (name, version, build, tags)


def split_uploads(wheels: Iterable[BuiltWheel], upstream_files: Iterable[str]
                  ) -> tuple[list[BuiltWheel], list[str]]:
    """The wheels to upload, and the names of those withheld because upstream serves them.

    A wheel is withheld when upstream has a file of that name, or one naming the same wheel
    spelled otherwise (``Foo_Bar-1.0-py3-none-any.whl`` vs ``foo_bar-1.0-...``): pip would
    see two different files for one wheel.
    """
    upstream = {_wheel_identity(name) for name in upstream_files}
    upload: list[BuiltWheel] = []
    withheld: list[str] = []
    for wheel in wheels:
        filename = wheel.info["filename"]
        if _wheel_identity(filename) in upstream:
            withheld.append(filename)
        else:
            upload.append(wheel)
    return upload, withheld


def final_status(status: str, problems: Collection[str]) -> str:
    """A build whose wheels could not all be inspected or stored has not succeeded."""
    return "failed" if status == "success" and problems else status


def pack_log(text: str, problems: Iterable[str] = ()) -> str:
    """The build log with the builder's own problems appended, gzipped and base64'd for the
    result message."""
    notes = "".join(f"piw-builder: {problem}\n" for problem in problems)
    if notes and text and not text.endswith("\n"):
        text += "\n"
    return base64.b64encode(gzip.compress((text + notes).encode("utf-8"))).decode("ascii")


def last_line(text: str, problems: Sequence[str] = ()) -> str:
    """What a failure's log line quotes: the builder's last problem, else pip's last
    ``ERROR:`` line (its summary of what went wrong), else the log's last non-blank line."""
    if problems:
        return problems[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["no output"])[-1][:200]


def check_answer(answer: object) -> Mapping[str, Any]:
    """An answer from the master: ``{"ok": true, ...}`` or ``{"ok": false, "error": str}``."""
    if not isinstance(answer, Mapping) or not isinstance(answer.get("ok"), bool):
        raise protocol.ProtocolError(f"answer without a boolean 'ok': {answer!r:.100}")
    if not answer["ok"] and not isinstance(answer.get("error"), str):
        raise protocol.ProtocolError(f"refusal without an 'error' text: {answer!r:.100}")
    return answer


def build_and_inspect(settings: Settings, job: Mapping[str, Any], out_dir: Path,
                      cancel: threading.Event) -> BuildOutcome:
    """Build the job's wheels into ``out_dir`` and inspect them (run in the worker thread:
    both can take long, neither touches the connection). Raises OSError for trouble on the
    builder's own side, which says nothing about the package."""
    try:
        result = build_wheel(settings.index_url, job["package"], job["version"], out_dir,
                             timeout=settings.build_timeout, python=settings.python,
                             work_dir=settings.work_dir, cancel=cancel)
    except ValueError as exc:  # a name or version that must never reach pip's command line
        return BuildOutcome("failed", 0.0, f"piw-builder: refusing to build: {exc}\n")
    outcome = BuildOutcome(result.status, result.duration, result.log)
    for path in result.wheels:
        try:
            info = inspect_wheel(path, settings.preinstalled).as_dict()
            protocol.check_file_info(info)
        except (InspectionError, protocol.ProtocolError) as exc:
            outcome.problems.append(f"cannot inspect {path.name}: {exc}")
        else:
            outcome.wheels.append(BuiltWheel(path, info))
    return outcome


def tls_options(settings: Settings) -> dict[str, Any] | None:
    """py-amqp's TLS options for an ``amqps://`` AMQP_URI (None for plain AMQP): the broker's
    certificate must verify against CA_FILE (else the system's CAs) and name the host of the
    URI. py-amqp's own default for ``amqps://`` checks the chain but not the host name, so any
    certificate of that CA (or, without CA_FILE, any public one) would pass."""
    url = urlsplit(settings.amqp_uri)
    if url.scheme != "amqps":
        return None
    return {"ca_certs": str(settings.ca_file) if settings.ca_file else None,
            "cert_reqs": ssl.CERT_REQUIRED, "server_hostname": url.hostname}


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _unverified(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate failure behind *exc* (kombu wraps it in its own error), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _describe(exc: BaseException, settings: Settings | None = None) -> str:
    unverified = _unverified(exc)
    if unverified is not None:
        against = (f"CA_FILE {settings.ca_file}" if settings and settings.ca_file
                   else "the system's CA certificates")
        host = urlsplit(settings.amqp_uri).hostname if settings else None
        return (f"refusing the broker: its TLS certificate does not verify for host {host} "
                f"against {against} ({unverified.verify_message or unverified}); is CA_FILE "
                "the broker's ca.crt (piw-broker-cert), and AMQP_URI's host one of the names "
                "it was made for?")
    text = getattr(exc, "reply_text", None) or str(exc) or type(exc).__name__
    if getattr(exc, "reply_code", None) == 404 and "exchange" in text:
        return (f"exchange {protocol.EXCHANGE} does not exist yet: is the master running? "
                f"({text})")
    return f"{type(exc).__name__}: {text}"


# --------------------------------------------------------------------------------------------
# One connection
# --------------------------------------------------------------------------------------------


class BrokerLink:
    """One connection to RabbitMQ and its server-named reply queue; main thread only.

    Everything the builder's RabbitMQ user may not do (declare the exchange or a job queue) is
    never tried. Every broker error comes out as :class:`ConnectionTrouble`, a signal as
    :class:`Stopping`. ``status`` makes the heartbeat to send when one is due (None: none yet).
    """

    def __init__(self, settings: Settings, status: Callable[[], Mapping[str, Any] | None],
                 stopping: Callable[[], bool]) -> None:
        self.settings = settings
        self._status, self._stopping = status, stopping
        self.conn = Connection(settings.amqp_uri, heartbeat=AMQP_HEARTBEAT,
                               connect_timeout=CONNECT_TIMEOUT, ssl=tls_options(settings),
                               transport_options={"confirm_publish": True})
        self.jobs: deque[Message] = deque()
        self.consuming = False
        self.reply_to = ""
        self._replies: dict[str, Mapping[str, Any]] = {}
        self._waiting: set[str] = set()
        self._unrouted: set[str] = set()
        self._next_status = 0.0
        self._producer: Producer
        self._jobs_consumer: Consumer
        self._errors = (*self.conn.connection_errors, *self.conn.channel_errors,
                        MessageNacked, KombuError)

    @property
    def where(self) -> str:
        """The broker's URI without its password, for log lines."""
        return self.conn.as_uri()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise ConnectionTrouble(_describe(exc, self.settings)) from exc

    def open(self) -> None:
        """Connect and start consuming the exclusive reply queue."""
        with self._guard():
            self.conn.ensure_connection(max_retries=0)  # our own back-off retries
            channel = self.conn.channel()
            self._producer = Producer(channel, exchange=Exchange(protocol.EXCHANGE,
                                                                 no_declare=True),
                                      serializer="json", auto_declare=False,
                                      on_return=self._on_return)
            replies = Queue("", exclusive=True, auto_delete=True, channel=channel)
            replies.declare()
            self.reply_to = replies.name
            Consumer(channel, [replies], no_ack=True, accept=["json"],
                     on_message=self._on_reply, auto_declare=False).consume()

    def close(self) -> None:
        """Close the connection; an unacked job goes back to its queue."""
        try:
            self.conn.release()
        except self._errors:
            pass

    # -- receiving --------------------------------------------------------------------------
    def _on_reply(self, message: Message) -> None:
        correlation_id = message.properties.get("correlation_id")
        if correlation_id not in self._waiting:
            log.debug("ignoring an answer nobody waits for (%s)", correlation_id)
            return
        try:
            self._replies[correlation_id] = check_answer(message.decode())
        except (ValueError, KombuError) as exc:
            log.warning("ignoring a malformed answer from the master: %s", exc)

    def _on_return(self, exc: Exception, exchange: str, routing_key: str,
                   message: Message) -> None:
        """RabbitMQ returns a mandatory request it could route to no queue (before it
        confirms it): nobody will answer it, so the request need not wait for an answer."""
        correlation_id = message.properties.get("correlation_id")
        if correlation_id in self._waiting:
            self._unrouted.add(correlation_id)

    def consume_jobs(self, target: str) -> None:
        """Consume the build target's job queue, one unacked job at a time; wait while it is
        missing."""
        name = protocol.job_queue(target)
        reported = False
        stopped = getattr(self, "_jobs_consumer", None)
        if stopped is not None:  # stopped by stop_jobs: no job of it is unacked between jobs
            with self._guard():
                stopped.channel.close()
        while True:
            with self._guard():
                channel = self.conn.channel()
                consumer = Consumer(channel, [Queue(name, no_declare=True)], no_ack=False,
                                    prefetch_count=1, accept=["json"],
                                    on_message=self.jobs.append)
            try:
                consumer.consume()
                self._jobs_consumer = consumer
                break
            except self.conn.channel_errors as exc:
                if getattr(exc, "reply_code", None) != 404:
                    raise ConnectionTrouble(_describe(exc)) from exc
            except self._errors as exc:
                raise ConnectionTrouble(_describe(exc)) from exc
            if not reported:
                log.warning("job queue %s does not exist yet: is build_dispatch running with "
                            "this target in BUILD_ABIS? Looking again every %gs", name, QUEUE_RETRY)
                reported = True
            self.wait(QUEUE_RETRY)
        self.consuming = True
        log.info("waiting for jobs on %s", name)

    def consume_orders(self, name: str, on_order: Callable[[Mapping[str, Any]], None]) -> None:
        """Consume this builder's order queue (the master declared it at hello); each order
        goes to *on_order* on the main thread, then is acked."""
        def received(message: Message) -> None:
            try:
                order = protocol.check_order(message.decode())
            except (ValueError, KombuError) as exc:
                log.warning("ignoring a malformed order: %s", exc)
            else:
                on_order(order)
            message.ack()

        with self._guard():
            channel = self.conn.channel()
        try:
            Consumer(channel, [Queue(name, no_declare=True)], no_ack=False, accept=["json"],
                     on_message=received, auto_declare=False).consume()
        except self.conn.channel_errors as exc:  # only that channel is closed
            log.warning("cannot read this builder's order queue %s (%s): it takes no "
                        "operator's orders; piw-builder-user NAME, run again, allows it",
                        name, _describe(exc))
        except self._errors as exc:
            raise ConnectionTrouble(_describe(exc)) from exc

    def next_job(self, hold: Callable[[], bool]) -> Message | None:
        """The next job, or None as soon as *hold* says to take none (an operator's pause)."""
        while not self.jobs:
            if hold():
                return None
            self.pump(PUMP)
        return self.jobs.popleft()

    def stop_jobs(self) -> None:
        """Take no more jobs: cancel the job consumer and give back one delivered but not
        started (the job being built stays ours, unacked, until it is done)."""
        with self._guard():
            if self.consuming:
                self._jobs_consumer.cancel()
            while self.jobs:
                self.jobs.popleft().reject(requeue=True)
        self.consuming = False

    def ack(self, message: Message) -> None:
        with self._guard():
            message.ack()

    def give_back(self, message: Message) -> None:
        """Stop taking jobs, then return ``message`` to its queue for another builder."""
        with self._guard():
            self._jobs_consumer.cancel()
            message.reject(requeue=True)
        self.consuming = False

    # -- keeping the connection alive -------------------------------------------------------
    def _tick(self) -> None:
        """Stop if asked; AMQP heartbeats; the builder's status heartbeat when due."""
        if self._stopping():
            raise Stopping()
        with self._guard():
            self.conn.heartbeat_check()
        now = time.monotonic()
        if now >= self._next_status:
            self._next_status = now + self.settings.heartbeat_interval
            status = self._status()
            if status is not None:
                self._publish(status, protocol.STATUS, delivery_mode=1,
                              expiration=protocol.DEFAULT_SILENCE_LIMIT)

    def pump(self, timeout: float) -> None:
        """Handle whatever the broker sends for up to ``timeout`` seconds."""
        self._tick()
        with self._guard():
            try:
                self.conn.drain_events(timeout=timeout)
            except TimeoutError:
                pass

    def wait(self, seconds: float) -> None:
        """Pause while keeping the connection alive."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.pump(min(PUMP, remaining))

    # -- sending ----------------------------------------------------------------------------
    def _publish(self, body: Any, routing_key: str, **properties: Any) -> None:
        # user_id: RabbitMQ checks it is our user, so the master knows whose orders queue
        # is ours (protocol.order_queue) and who sent a message it refuses (a user that sends
        # too much garbage is blocked)
        with self._guard():
            self._producer.publish(body, routing_key=routing_key, retry=False,
                                   confirm_timeout=self.settings.reply_timeout,
                                   user_id=self.conn.userid, **properties)

    def publish(self, body: Any, routing_key: str, **properties: Any) -> None:
        """Publish to protocol.EXCHANGE and wait for the broker's confirm."""
        self._tick()
        self._publish(body, routing_key, **properties)

    def _expiry(self, routing_key: str) -> dict[str, float]:
        """A request nobody took within REPLY_TIMEOUT is sent again, so its copy may expire
        (a master down for a day then finds no pile of hellos). Not a commit: it queues
        behind its own file's chunks, and an answer to any copy of it is as good."""
        if routing_key != protocol.REQUESTS:
            return {}
        return {"expiration": self.settings.reply_timeout, "mandatory": True}

    def _await(self, ids: set[str], latest: str, timeout: float
               ) -> Mapping[str, Any] | str | None:
        """The answer to any of *ids*; "unrouted" as soon as RabbitMQ has returned *latest*
        (and no earlier try is answered); None after *timeout*."""
        deadline = time.monotonic() + timeout
        while True:
            for correlation_id in ids:
                if correlation_id in self._replies:
                    return self._replies.pop(correlation_id)
            if latest in self._unrouted:
                return "unrouted"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.pump(min(PUMP, remaining))

    def request(self, message: Mapping[str, Any], routing_key: str, what: str,
                retry_refusals: bool = True, attempts: int | None = REQUEST_ATTEMPTS
                ) -> Mapping[str, Any]:
        """Send ``message`` and return the master's answer, asking again (with back-off)
        when none comes within REPLY_TIMEOUT or, with ``retry_refusals``, when the master
        says to retry. After ``attempts`` tries (None: forever) raises ConnectionTrouble.
        An answer to any earlier try counts."""
        backoff = Backoff()
        ids: set[str] = set()
        attempt = 0
        unrouted = False
        try:
            while True:
                attempt += 1
                correlation_id = uuid.uuid4().hex
                ids.add(correlation_id)
                self._waiting.add(correlation_id)
                self.publish(message, routing_key, reply_to=self.reply_to,
                             correlation_id=correlation_id, delivery_mode=2,
                             **self._expiry(routing_key))
                answer = self._await(ids, correlation_id, self.settings.reply_timeout)
                if answer == "unrouted":  # nobody will answer: ask again soon, say so once
                    problem = (f"the master's request queue {routing_key} does not exist yet "
                               "(is build_dispatch running?)")
                    if attempts is not None and attempt >= attempts:
                        raise ConnectionTrouble(f"{problem}; gave up after {attempt} tries")
                    if not unrouted:
                        log.warning("%s; asking again every %gs", problem, NO_ROUTE_RETRY)
                    unrouted = True
                    self.wait(NO_ROUTE_RETRY)
                    continue
                if answer is None:
                    problem = (f"no answer to {what} from the master within "
                               f"{self.settings.reply_timeout:g}s (is it running?)")
                elif answer["ok"] or not (retry_refusals and answer.get("retry")):
                    return answer
                else:
                    problem = f"the master asks to retry {what}: {answer['error']}"
                if attempts is not None and attempt >= attempts:
                    raise ConnectionTrouble(f"{problem}; gave up after {attempt} tries")
                delay = backoff.next()
                log.warning("%s; asking again in %gs", problem, delay)
                self.wait(delay)
        finally:
            self._waiting -= ids
            self._unrouted -= ids
            for correlation_id in ids:
                self._replies.pop(correlation_id, None)


# --------------------------------------------------------------------------------------------
# The builder
# --------------------------------------------------------------------------------------------


class Builder:
    """The process: (re)connects, says hello, and handles one job at a time until stopped."""

    def __init__(self, settings: Settings, interpreter: Interpreter) -> None:
        self.settings, self.interpreter = settings, interpreter
        self.link: BrokerLink | None = None
        self.builder_id: int | None = None
        self.current: dict[str, Any] | None = None
        #: an operator's orders (protocol.order): paused takes no new job; the job whose
        #: build was killed or skipped is dropped, unreported; after a kill no job is taken
        #: until _rest_until (monotonic); _orders: this builder's order queue
        self.paused = False
        self._dropped: str | None = None
        self._rest_until = 0.0
        self._orders: str | None = None
        self._stop = False
        self._cancel: threading.Event | None = None
        self._backoff = Backoff()

    # -- lifecycle --------------------------------------------------------------------------
    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Signal handler: stop soon, cancelling the build; the job is not acked."""
        if not self._stop:
            log.info("%s received: stopping%s", signal.Signals(signum).name,
                     " and cancelling the build" if self._cancel else "")
        self._stop = True
        if self._cancel is not None:
            self._cancel.set()

    def run(self) -> int:
        """Serve jobs until SIGTERM/SIGINT; the exit status (0)."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        log.info("piw-builder %s: builds for %s with %s (Python %s, %s) from %s",
                 self.settings.label, self.interpreter.target, self.settings.python,
                 self.interpreter.version, self.interpreter.platform, self.settings.index_url)
        host = urlsplit(self.settings.amqp_uri).hostname or ""
        if tls_options(self.settings) is None and not _loopback(host):
            log.warning("AMQP_URI is not amqps://: this builder's password and every wheel "
                        "cross the network to %s unencrypted (docs/security.md)", host)
        try:
            while True:
                try:
                    link = self._connected()
                    if self._held():
                        link.stop_jobs()
                        link.pump(PUMP)
                        continue
                    if not link.consuming:
                        link.consume_jobs(self.interpreter.target)
                    message = link.next_job(self._held)
                    if message is not None:
                        self._handle(link, message)
                except ConnectionTrouble as exc:
                    self._lost(exc)
        except Stopping:
            log.info("stopped")
        finally:
            if self.link is not None:
                self.link.close()
        return 0

    def _held(self) -> bool:
        """Whether to take no job now: paused, or resting after a kill."""
        return self.paused or time.monotonic() < self._rest_until

    def _obey(self, order: Mapping[str, Any]) -> None:
        """An operator's order (main thread, from the order queue): piwheels' SLEEP, WAKE,
        KILL and SKIP (master/slave_driver.py). A kill or skip names the job: an order for a
        job this builder no longer builds (it restarted since) changes nothing."""
        kind, job_id = order["order"], order.get("job_id")
        if kind == "pause":
            if not self.paused:
                log.info("paused by an operator: %s, then no new job until resumed",
                         "finishing the current build" if self.current else "idle")
            self.paused = True
            if self.link is not None:
                self.link.stop_jobs()
        elif kind == "resume":
            if self.paused:
                log.info("resumed by an operator: taking jobs again")
            self.paused = False
        elif self.current is None or self.current["job_id"] != job_id:
            log.info("an operator's %s of job %s: not building it (any more)", kind, job_id)
        else:
            log.info("an operator %s the build of %s %s (job %s)%s: stopping it",
                     "killed" if kind == "kill" else "skipped", self.current["package"],
                     self.current["version"], job_id,
                     f": {order['reason']}" if order.get("reason") else "")
            self._dropped = job_id
            if kind == "kill":  # another builder should take it: stay out of its way
                self._rest_until = time.monotonic() + KILL_REST
                if self.link is not None:
                    self.link.stop_jobs()
            if self._cancel is not None:
                self._cancel.set()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._stop:
                raise Stopping()
            time.sleep(min(PUMP, max(deadline - time.monotonic(), 0)))

    def _connected(self) -> BrokerLink:
        """The live link, after (re)connecting and saying hello if need be."""
        while self.link is None:
            if self._stop:
                raise Stopping()
            link = BrokerLink(self.settings, self._heartbeat, lambda: self._stop)
            try:
                link.open()
                self.builder_id = self._hello(link)
                if self._orders:
                    link.consume_orders(self._orders, self._obey)
            except ConnectionTrouble as exc:
                link.close()
                if self._stop:
                    raise Stopping() from None
                delay = self._backoff.next()
                # a certificate that does not verify is a setting to fix, not a network blip
                level = logging.ERROR if _unverified(exc) else logging.WARNING
                log.log(level, "cannot reach the master through %s: %s; trying again in %gs",
                            link.where, exc, delay)
                self._sleep(delay)
            else:
                self.link = link
                self._backoff.reset()
        return self.link

    def _lost(self, exc: ConnectionTrouble) -> None:
        log.warning("connection trouble: %s; reconnecting", exc)
        if self.link is not None:
            self.link.close()
        self.link = None
        self.builder_id = None

    def _hello(self, link: BrokerLink) -> int:
        info = {
            "platform": self.interpreter.platform,
            "distro": sysinfo.distro(),
            "board": sysinfo.board(),
            "python": self.interpreter.version,
            "host": socket.gethostname(),
            "preinstalled": list(self.settings.preinstalled),
        }
        message = protocol.hello(self.settings.label, self.interpreter.abi, info)
        backoff = Backoff()
        while True:
            answer = link.request(message, protocol.REQUESTS, "hello", attempts=None)
            builder_id = answer.get("builder_id")
            if answer["ok"] and isinstance(builder_id, int) and not isinstance(builder_id, bool):
                log.info("connected to %s as builder %d (%s, %s)", link.where, builder_id,
                         self.settings.label, self.interpreter.target)
                orders = answer.get("orders")
                self._orders = orders if isinstance(orders, str) and \
                    orders.startswith("piw.orders.") else None
                if answer.get("paused") is True and not self.paused:
                    log.info("paused by an operator (the master remembers it): no new job "
                             "until resumed")
                self.paused = answer.get("paused") is True
                limit = answer.get("silence_limit")
                if isinstance(limit, int | float) and 2 * self.settings.heartbeat_interval > limit:
                    log.warning("HEARTBEAT_INTERVAL %gs is over half the master's silence "
                                "limit of %gs: it may take this builder for gone",
                                self.settings.heartbeat_interval, limit)
                return builder_id
            problem = answer["error"] if not answer["ok"] else f"no builder_id in {answer!r:.80}"
            delay = backoff.next()
            log.error("the master refused hello: %s; asking again in %gs", problem, delay)
            link.wait(delay)

    def _heartbeat(self) -> Mapping[str, Any] | None:
        if self.builder_id is None:
            return None
        return protocol.heartbeat(self.builder_id, self.settings.label,
                                  sysinfo.snapshot(self.settings.work_dir), self.current,
                                  self.paused)

    # -- one job ----------------------------------------------------------------------------
    def _handle(self, link: BrokerLink, message: Message) -> None:
        try:
            job = protocol.check_job(message.decode())
            if job["target"] != self.interpreter.target:
                raise protocol.ProtocolError(f"a {job['target']} job in the "
                                             f"{self.interpreter.target} queue")
        except (ValueError, KombuError) as exc:
            log.error("dropping a malformed job (it can never be built): %s", exc)
            link.ack(message)
            return
        what = f"{job['package']} {job['version']} (job {job['job_id']})"
        assert self.builder_id is not None
        try:
            answer = link.request(
                protocol.claim(self.builder_id, job["job_id"],
                               bool(message.delivery_info.get("redelivered"))),
                protocol.REQUESTS, f"claim of job {job['job_id']}")
            if not answer["ok"]:
                log.warning("the master refused the claim of %s: %s; dropping it", what,
                            answer["error"])
            elif answer.get("build") is not True:
                log.info("not building %s: %s", what, answer.get("reason"))
            else:
                self._build(job, link, message)
                return
        except Stopping:
            log.info("leaving %s unacked: RabbitMQ gives it to another builder", what)
            raise
        link.ack(message)

    def _build(self, job: Mapping[str, Any], link: BrokerLink, message: Message) -> None:
        self.current = {"job_id": job["job_id"], "package": job["package"],
                        "version": job["version"], "started": time.time()}
        log.info("building %s %s for %s (job %s%s)", job["package"], job["version"],
                 job["target"], job["job_id"],
                 ", redelivered" if message.delivery_info.get("redelivered") else "")
        trouble: OSError | None = None
        try:
            with tempfile.TemporaryDirectory(prefix="piw-out-", dir=self.settings.work_dir,
                                             ignore_cleanup_errors=True) as out_dir:
                outcome = self._in_thread(
                    lambda cancel: build_and_inspect(self.settings, job, Path(out_dir), cancel))
                if self._dropped == job["job_id"]:  # the master gave it away or skipped it
                    log.info("dropped %s %s (job %s) on an operator's order: nothing reported",
                             job["package"], job["version"], job["job_id"])
                else:
                    self._report(job, outcome)
        except OSError as exc:  # this builder's trouble (full disk, ...), not the package's
            trouble = exc
        finally:
            self.current = None
            self._dropped = None
        if trouble is not None:
            log.error("cannot build %s %s on this builder: %s; giving the job back and "
                      "pausing %gs", job["package"], job["version"], trouble,
                      LOCAL_TROUBLE_PAUSE)
            if self.link is link:
                link.give_back(message)
            self._connected().wait(LOCAL_TROUBLE_PAUSE)
        elif self.link is link:
            link.ack(message)
        else:
            log.info("job %s came over a connection since lost: RabbitMQ hands it out again "
                     "and the master will drop it as done", job["job_id"])

    def _in_thread(self, work: Callable[[threading.Event], BuildOutcome]) -> BuildOutcome:
        """Run ``work`` in a worker thread while the main thread keeps the connection (or
        reconnects); cancel and wait for it if we have to stop."""
        cancel = threading.Event()
        self._cancel = cancel
        if self._stop:
            cancel.set()
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["outcome"] = work(cancel)
            except BaseException as exc:  # handed to the main thread below
                box["error"] = exc

        thread = threading.Thread(target=target, name="piw-build", daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                try:
                    self._connected().pump(PUMP)
                except ConnectionTrouble as exc:
                    self._lost(exc)
        finally:
            if thread.is_alive():
                cancel.set()
                log.info("waiting for the cancelled build to stop")
                thread.join()
            self._cancel = None
        if "error" in box:
            raise box["error"]
        return box["outcome"]

    def _report(self, job: Mapping[str, Any], outcome: BuildOutcome) -> None:
        """Upload the wheels and send the result, again on a new connection if this one
        breaks: a finished build is worth more than the retransmission."""
        upload, withheld = split_uploads(outcome.wheels, job["upstream_files"])
        while True:
            link = self._connected()
            try:
                self._send_outcome(link, job, outcome, upload, withheld)
                return
            except ConnectionTrouble as exc:
                self._lost(exc)

    def _send_outcome(self, link: BrokerLink, job: Mapping[str, Any], outcome: BuildOutcome,
                      upload: list[BuiltWheel], withheld: list[str]) -> None:
        assert self.builder_id is not None
        job_id = job["job_id"]
        files: list[dict[str, Any]] = []
        problems = list(outcome.problems)
        for wheel in upload:
            done = upload_file(link, wheel.path, wheel.info, self.builder_id, job_id,
                               self.settings.upload_retries)
            if done.job_lost:
                log.info("job %s is no longer ours (%s); dropping it", job_id, done.refusal)
                return
            if done.committed:
                files.append(wheel.info)
            else:
                problems.append(f"the master refused {wheel.info['filename']}: {done.refusal}")
        status = final_status(outcome.status, problems)
        answer = link.request(
            protocol.result(self.builder_id, job_id, status, round(outcome.duration, 3),
                            pack_log(outcome.log, problems), files, withheld),
            protocol.REQUESTS, f"result of job {job_id}")
        if answer["ok"]:
            log.info("finished %s %s %s: %s in %.1fs; uploaded: %s; withheld: %s (job %s)%s",
                     job["package"], job["version"], job["target"], status, outcome.duration,
                     ", ".join(f["filename"] for f in files) or "none",
                     ", ".join(withheld) or "none", job_id,
                     "" if status == "success" else f"; {last_line(outcome.log, problems)}")
        elif protocol.is_job_lost(answer):
            log.info("job %s is no longer ours (%s); dropping it", job_id, answer["error"])
        else:
            log.error("the master refused the result of job %s (%s %s %s): %s; dropping it",
                      job_id, job["package"], job["version"], status, answer["error"])
