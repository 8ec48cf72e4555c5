"""Upload a built wheel to the master: raw chunks, then a commit the master answers.

Wheels can be hundreds of MB and a Pi has little RAM, so a file is read one chunk
(protocol.MAX_CHUNK) at a time and never held whole. Each chunk travels as raw bytes with its
own sha256 in the headers; the commit carries the wheel's inspection record, whose size and
whole-file sha256 the master checks before it moves the file into place. A refusal that says
``retry`` (a corrupted or incomplete upload, a busy master) is answered by sending the whole
file again under a new upload id, so no half-received upload is ever continued.

The AMQP side is whatever object offers :class:`Link`'s two methods (the builder's
:class:`~builders.builder.BrokerLink`), so this module knows the protocol but not the connection.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from builders import protocol

__all__ = ["Chunk", "Link", "UploadOutcome", "chunk_properties", "iter_chunks", "upload_file"]

log = logging.getLogger(__name__)

#: Seconds between progress lines while one file uploads.
PROGRESS_EVERY = 10.0
_MB = 1024 * 1024


@dataclass(frozen=True)
class Chunk:
    """One piece of a file: where it starts, its bytes and their sha256."""

    offset: int
    data: bytes
    sha256: str


@dataclass(frozen=True)
class UploadOutcome:
    """How an upload ended. ``refusal`` says why the master would not take the file;
    ``job_lost`` that the job is no longer this builder's (so nothing more is to be sent)."""

    committed: bool
    refusal: str | None = None
    job_lost: bool = False


class Link(Protocol):
    """What the uploader needs from the builder's connection to the master."""

    def publish(self, body: Any, routing_key: str, **properties: Any) -> None:
        """Publish to protocol.EXCHANGE."""

    def request(self, message: Mapping[str, Any], routing_key: str, what: str,
                retry_refusals: bool = True) -> Mapping[str, Any]:
        """Publish with a reply queue and return the master's answer."""


def iter_chunks(path: Path, size: int = protocol.MAX_CHUNK) -> Iterator[Chunk]:
    """The file's chunks in order, read one at a time; an empty file has none."""
    if not 0 < size <= protocol.MAX_CHUNK:
        raise ValueError(f"chunk size must be 1..{protocol.MAX_CHUNK}, not {size}")
    offset = 0
    with open(path, "rb") as fh:
        while data := fh.read(size):
            yield Chunk(offset, data, hashlib.sha256(data).hexdigest())
            offset += len(data)


def chunk_properties(upload_id: str, chunk: Chunk) -> dict[str, Any]:
    """Message properties of one chunk: raw bytes (a content type kombu passes through
    undecoded) and the protocol's chunk headers. Chunks are transient: a broker restart
    mid-upload only means the commit is refused and the file sent again, while persisting
    every MiB to the broker's disk before confirming it would halve the upload rate."""
    return {
        "content_type": "application/data",
        "content_encoding": "binary",
        "headers": protocol.chunk_headers(upload_id, chunk.offset, chunk.sha256),
        "delivery_mode": 1,
    }


class _Progress:
    """Logs a file's upload at INFO: a line every PROGRESS_EVERY seconds, and one at the end."""

    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size
        self.started = self.last = time.monotonic()

    def rate(self, sent: int) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return f"{sent / _MB:.1f} MB in {elapsed:.1f}s ({sent / _MB / elapsed:.1f} MB/s)"

    def tick(self, sent: int) -> None:
        if time.monotonic() - self.last >= PROGRESS_EVERY:
            self.last = time.monotonic()
            log.info("uploading %s: %s of %.1f MB", self.name, self.rate(sent),
                     self.size / _MB)


def _send(link: Link, path: Path, upload_id: str, progress: _Progress) -> None:
    sent = 0
    for chunk in iter_chunks(path):
        link.publish(chunk.data, protocol.UPLOADS, **chunk_properties(upload_id, chunk))
        sent += len(chunk.data)
        progress.tick(sent)


def upload_file(link: Link, path: Path, info: Mapping[str, Any], builder_id: int,
                job_id: str, retries: int) -> UploadOutcome:
    """Upload ``path`` (whose inspection record is ``info``) for a job and commit it.

    A refusal with ``retry`` sends the whole file again, at most ``retries`` more times. Lost
    connections and unanswered commits are the caller's (the link raises).
    """
    name = str(info["filename"])
    attempts = retries + 1
    for attempt in range(1, attempts + 1):
        upload_id = uuid.uuid4().hex
        progress = _Progress(name, int(info["size"]))
        _send(link, path, upload_id, progress)
        reply = link.request(protocol.commit(upload_id, builder_id, job_id, info),
                             protocol.UPLOADS, what=f"commit of {name}", retry_refusals=False)
        if reply["ok"]:
            log.info("uploaded %s: %s", name, progress.rate(int(info["size"])))
            return UploadOutcome(True)
        refusal = str(reply.get("error"))
        if protocol.is_job_lost(reply):
            return UploadOutcome(False, refusal, job_lost=True)
        if not reply.get("retry"):
            log.warning("master refused %s: %s", name, refusal)
            return UploadOutcome(False, refusal)
        log.warning("master refused %s (attempt %d of %d): %s%s", name, attempt, attempts,
                    refusal, "; uploading it again" if attempt < attempts else "")
    return UploadOutcome(False, f"refused {attempts} times; last: {refusal}")
