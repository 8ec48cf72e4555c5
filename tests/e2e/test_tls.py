"""Builders over TLS (issue 18, item 3): a private RabbitMQ node with an AMQPS listener whose
certificate piw-broker-cert made; a real piw-builder verifies it and builds through it, and
builders given another CA, or a host name the certificate does not carry, refuse to connect.

The master's services stay on plain AMQP (the private network's listener), as in a
deployment; only the builders cross the internet."""

import subprocess

import pytest

from tests.conftest import BIN, wait_for
from tests.e2e.conftest import files_of, release, wheel
from tests.private_rabbit import PrivateRabbit

pytestmark = pytest.mark.slow

REFUSAL = "refusing the broker: its TLS certificate does not verify"


def broker_cert(directory, *names):
    run = subprocess.run([str(BIN / "piw-broker-cert"), "--dir", str(directory),
                          *(arg for name in names for arg in ("--name", name))],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    return directory / "ca.crt"


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    broker_cert(directory, "localhost")
    return directory


@pytest.fixture(scope="module")
def private_rabbit(tls_dir):
    rabbit = PrivateRabbit(tls=tls_dir)
    yield rabbit
    rabbit.stop()


@pytest.fixture
def rabbit_config(private_rabbit):
    return {"AMQP_URI": private_rabbit.uri}


def test_a_builder_builds_over_tls_and_refuses_a_broker_it_cannot_verify(
        system, db, rpc, processes, private_rabbit, tls_dir, tmp_path):
    system.start(release("tlspkg", "1.0", 1, "pure"), PIW_HOLD_SECONDS="2")
    tls_uri = f"amqps://guest:guest@localhost:{private_rabbit.tls_port}/"
    system.builder("pi-tls", PIW_BUILDER_AMQP_URI=tls_uri,
                   PIW_BUILDER_CA_FILE=str(tls_dir / "ca.crt"))
    [target] = system.settled("tlspkg")
    assert target["state"] == "built", target
    assert wheel("tlspkg", "1.0") in files_of(db, "tlspkg")
    assert f"connected to amqps://guest:**@127.0.0.1:{private_rabbit.tls_port}" \
        in processes.log("pi-tls")

    # another deployment's CA; and the right CA, but a host name the certificate lacks
    other_ca = broker_cert(tmp_path / "other", "localhost")
    system.builder("pi-stranger", PIW_BUILDER_AMQP_URI=tls_uri,
                   PIW_BUILDER_CA_FILE=str(other_ca))
    system.builder("pi-by-address", PIW_BUILDER_CA_FILE=str(tls_dir / "ca.crt"),
                   PIW_BUILDER_AMQP_URI=tls_uri.replace("@localhost:", "@127.0.0.1:"))
    for label, why in (("pi-stranger", "self-signed certificate in certificate chain"),
                       ("pi-by-address", "IP address mismatch")):
        wait_for(lambda label=label: REFUSAL in processes.log(label), 60,
                 what=f"{label} to refuse the broker",
                 describe=lambda label=label: processes.log(label)[-2000:])
        log = processes.log(label)
        assert why in log, log
        assert "ERROR" in log and "connected to" not in log, log
        assert processes.procs[label].poll() is None  # it tries again later, never connects
    labels = [b["label"] for b in rpc.build_dispatch.status()["builders"]]
    assert labels == ["pi-tls"], labels
    # a client that skips TLS gets nothing from the TLS port
    from kombu import Connection
    with pytest.raises(Exception):  # noqa: B017 - whatever py-amqp makes of the TLS alert
        with Connection(f"pyamqp://guest:guest@127.0.0.1:{private_rabbit.tls_port}/",
                        connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=0)
