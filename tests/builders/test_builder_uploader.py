"""The chunked upload client: chunk iteration and headers for awkward sizes, and what it does
with each answer to a commit (driven through an in-memory link, no broker)."""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict

import pytest

from builders import protocol
from builders.uploader import Chunk, chunk_properties, iter_chunks, upload_file

MAX = protocol.MAX_CHUNK


@pytest.mark.parametrize("size, lengths", [
    (0, []),
    (1, [1]),
    (MAX - 1, [MAX - 1]),
    (MAX, [MAX]),
    (2 * MAX, [MAX, MAX]),
    (2 * MAX + 1, [MAX, MAX, 1]),
    (3 * MAX - 7, [MAX, MAX, MAX - 7]),
])
def test_chunks_cover_the_file_in_order(tmp_path, size, lengths):
    data = os.urandom(size)
    path = tmp_path / "demo-1.0-py3-none-any.whl"
    path.write_bytes(data)
    chunks = list(iter_chunks(path))
    assert [len(c.data) for c in chunks] == lengths
    assert [c.offset for c in chunks] == [i * MAX for i in range(len(lengths))]
    assert b"".join(c.data for c in chunks) == data
    for c in chunks:
        assert c.sha256 == hashlib.sha256(c.data).hexdigest()


def test_smaller_chunks_and_size_limits(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abcdefg")
    assert [(c.offset, c.data) for c in iter_chunks(path, 3)] == [(0, b"abc"), (3, b"def"),
                                                                  (6, b"g")]
    for bad in (0, MAX + 1):
        with pytest.raises(ValueError, match="chunk size"):
            list(iter_chunks(path, bad))


def test_chunks_are_read_lazily(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * (2 * MAX))
    chunks = iter_chunks(path)
    first = next(chunks)
    path.write_bytes(b"y" * (2 * MAX))  # same size: the open file sees the new bytes
    assert first.data == b"x" * MAX
    assert next(chunks).data == b"y" * MAX


def test_chunk_properties_pass_the_masters_check():
    data = b"\x00\xffPK raw bytes"
    chunk = Chunk(MAX, data, hashlib.sha256(data).hexdigest())
    props = chunk_properties("u1", chunk)
    assert props["content_type"] == "application/data"
    assert props["content_encoding"] == "binary"
    assert props["delivery_mode"] == 1
    checked = protocol.check_chunk(props["headers"], data)
    assert (checked["upload_id"], checked["offset"], checked["sha256"]) == ("u1", MAX,
                                                                              chunk.sha256)


class FakeLink:
    """Collects chunks per upload id and answers commits from a script."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.uploads = defaultdict(bytearray)
        self.commits = []

    def publish(self, body, routing_key, **properties):
        assert routing_key == protocol.UPLOADS
        headers = protocol.check_chunk(properties["headers"], body)
        upload = self.uploads[headers["upload_id"]]
        assert headers["offset"] == len(upload)
        upload += body

    def request(self, message, routing_key, what, retry_refusals=True):
        assert routing_key == protocol.UPLOADS and not retry_refusals
        commit = protocol.check_commit(message)
        self.commits.append(commit)
        return self.answers.pop(0)


@pytest.fixture
def wheel(tmp_path):
    data = os.urandom(MAX + 123)
    path = tmp_path / "demo-1.0-cp311-cp311-linux_armv7l.whl"
    path.write_bytes(data)
    info = {"filename": path.name, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "requires_python": None,
            "requires_dist": [], "apt_depends": [], "unresolved": []}
    return path, info, data


def test_upload_committed(wheel):
    path, info, data = wheel
    link = FakeLink([protocol.ok()])
    done = upload_file(link, path, info, 7, "j1", retries=3)
    assert done.committed and done.refusal is None and not done.job_lost
    (commit,) = link.commits
    assert (commit["builder_id"], commit["job_id"], commit["info"]) == (7, "j1", info)
    assert bytes(link.uploads[commit["upload_id"]]) == data


def test_retryable_refusal_uploads_everything_again_under_a_new_id(wheel):
    path, info, data = wheel
    link = FakeLink([protocol.error("sha256 mismatch", retry=True), protocol.ok()])
    assert upload_file(link, path, info, 7, "j1", retries=3).committed
    first, second = (c["upload_id"] for c in link.commits)
    assert first != second
    assert bytes(link.uploads[first]) == bytes(link.uploads[second]) == data


def test_retries_are_bounded(wheel):
    path, info, _ = wheel
    link = FakeLink([protocol.error("busy", retry=True)] * 3)
    done = upload_file(link, path, info, 7, "j1", retries=2)
    assert not done.committed and not done.job_lost
    assert done.refusal == "refused 3 times; last: busy"
    assert len(link.commits) == 3


def test_final_refusal_is_not_retried(wheel):
    path, info, _ = wheel
    link = FakeLink([protocol.error("refusing filename")])
    done = upload_file(link, path, info, 7, "j1", retries=3)
    assert (done.committed, done.refusal, done.job_lost) == (False, "refusing filename", False)
    assert len(link.commits) == 1


def test_job_lost(wheel):
    path, info, _ = wheel
    link = FakeLink([protocol.job_lost("job taken over by builder 9")])
    done = upload_file(link, path, info, 7, "j1", retries=3)
    assert (done.committed, done.job_lost) == (False, True)
    assert done.refusal == "job taken over by builder 9"
