"""Helpers for file_manager tests: real wheels, their inspection records, and a fake builder
that speaks builders/protocol.py to RabbitMQ with plain kombu (as a Pi does)."""

import hashlib
import io
import time
import uuid
import zipfile
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Producer, Queue
from sqlalchemy import text

from builders import protocol
from piw_services.fake_pypi.sdists import make_wheel

CHUNK = 64 * 1024


def wheel(directory: Path, filename: str, name: str = "foo", version: str = "1.0") -> Path:
    """A real wheel (pure module, proper dist-info) named *filename*."""
    directory.mkdir(parents=True, exist_ok=True)
    return make_wheel(directory, name, version, filename=filename, summary="a test wheel")


def metadata_of(path: Path) -> bytes:
    with zipfile.ZipFile(path) as zf:
        [name] = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return zf.read(name)


def info_of(path: Path, **changes) -> dict:
    """The inspection record a builder would send for *path*."""
    data = path.read_bytes()
    info = {"filename": path.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "requires_python": None, "requires_dist": [], "apt_depends": ["libfoo1"],
            "unresolved": [], "metadata_sha256": hashlib.sha256(metadata_of(path)).hexdigest(),
            "tags": []}
    info.update(changes)
    return info


def chunks(data: bytes, size: int = CHUNK) -> list[tuple[int, bytes]]:
    return [(off, data[off:off + size]) for off in range(0, len(data), size)]


def big_wheel(directory: Path, filename: str, size: int) -> Path:
    """A valid wheel of about *size* bytes (a stored, incompressible member)."""
    path = wheel(directory, filename)
    import os

    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(zipfile.ZipInfo("foo/blob.bin"), os.urandom(size))
    return path


class FakeBuilder:
    """Publishes chunks and commits to piw.uploads and reads the commit's answer."""

    def __init__(self, amqp_uri: str):
        self.conn = Connection(amqp_uri)
        self.channel = self.conn.channel()
        self.producer = Producer(self.channel, exchange=Exchange(
            protocol.EXCHANGE, type="direct", durable=True))
        self.replies = Queue(f"test-replies-{uuid.uuid4().hex}", exclusive=True,
                             auto_delete=True, channel=self.channel)
        self.replies.declare()

    def close(self):
        self.conn.release()

    def chunk(self, upload_id: str, offset: int, data: bytes, sha256: str | None = None):
        self.producer.publish(
            data, routing_key=protocol.UPLOADS, content_type="application/data",
            content_encoding="binary",
            headers=protocol.chunk_headers(upload_id, offset,
                                           sha256 or hashlib.sha256(data).hexdigest()))

    def send_chunks(self, upload_id: str, data: bytes, order=None, corrupt_at=None,
                    size: int = CHUNK):
        pieces = chunks(data, size)
        for off, piece in (order(pieces) if order else pieces):
            if off == corrupt_at:
                self.chunk(upload_id, off, b"X" + piece[1:], hashlib.sha256(piece).hexdigest())
            else:
                self.chunk(upload_id, off, piece)

    def publish_commit(self, upload_id: str, info: dict, job_id: str = "j1",
                       builder_id: int = 1) -> str:
        corr = uuid.uuid4().hex
        self.producer.publish(protocol.commit(upload_id, builder_id, job_id, info),
                              routing_key=protocol.UPLOADS, serializer="json",
                              reply_to=self.replies.name, correlation_id=corr)
        return corr

    def reply(self, corr: str, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.replies.get(no_ack=True)
            if message is None:
                time.sleep(0.02)
            elif message.properties.get("correlation_id") == corr:
                return message.payload
        raise AssertionError(f"no answer to commit {corr} within {timeout}s")

    def commit(self, upload_id: str, info: dict, job_id: str = "j1", builder_id: int = 1,
               timeout: float = 20) -> dict:
        return self.reply(self.publish_commit(upload_id, info, job_id, builder_id), timeout)

    def upload(self, path: Path, upload_id: str | None = None, **kwargs) -> dict:
        upload_id = upload_id or uuid.uuid4().hex
        self.send_chunks(upload_id, path.read_bytes(),
                         **{k: kwargs.pop(k) for k in ("order", "corrupt_at", "size")
                            if k in kwargs})
        return self.commit(upload_id, kwargs.pop("info", None) or info_of(path), **kwargs)


@pytest.fixture
def builder(rabbit_config):
    b = FakeBuilder(rabbit_config["AMQP_URI"])
    yield b
    b.close()


def add_target(db, package="foo", version="1.0", abi="cp311-linux_armv7l", job_id="j1",
               builder_id=1,
               state="building", armv6=True):
    """A job being built, of a target (in build_abis) whose image is ARMv6-compatible unless
    *armv6* is false."""
    with db() as s, s.begin():
        s.execute(text(
            "INSERT INTO build_abis (abi, distro, armv6) VALUES (:a, 'bookworm', :v6) "
            "ON CONFLICT (abi) DO UPDATE SET armv6 = excluded.armv6"), {"a": abi, "v6": armv6})
        s.execute(text(
            "INSERT INTO build_targets (package, version, abi, state, job_id, priority, "
            "builder_id) VALUES (:p, :v, :a, :s, :j, 5, :b)"),
            {"p": package, "v": version, "a": abi, "s": state, "j": job_id, "b": builder_id})


def add_upstream_file(db, filename, package="foo", version="1.0"):
    with db() as s, s.begin():
        s.execute(text("INSERT INTO upstream_files (package, version, filename, pyver, added_k, "
                       "removed_k) VALUES (:p, :v, :f, 'py3', 10, 0)"),
                  {"p": package, "v": version, "f": filename})


def tree(root: Path) -> list[str]:
    """Every path under *root* (relative), links included."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def zip_bytes(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()
