"""A RabbitMQ node of a test's own, for tests that stop the broker or need a listener the
shared one lacks (TLS): started in a temporary directory on free ports, torn down after."""

import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, wait_for

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
COMPOSE_CONF = ROOT / "config" / "rabbitmq" / "rabbitmq.conf"


def need(path):
    if not path.exists():
        pytest.skip(f"{path} is not installed")


class PrivateRabbit:
    """A RabbitMQ node of our own: own node name, ports, data, logs, config and Erlang cookie
    (HOME), no plugins. With *tls* (a directory holding piw-broker-cert's ca.crt, broker.crt
    and broker.key) it also listens for AMQPS on ``tls_port``, with the TLS settings of
    docker-compose's rabbitmq.conf."""

    def __init__(self, tls=None):
        need(RABBIT_BIN / "rabbitmq-server")
        self.dir = Path(tempfile.mkdtemp(prefix="piw-rabbit-"))
        self.port, dist = free_port(), free_port()
        self.node = f"piwtest{os.getpid()}x{uuid.uuid4().hex[:6]}@localhost"
        conf = f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
        self.tls_port = None
        if tls is not None:  # docker-compose's TLS settings, on our port and files
            self.tls_port = free_port()
            lines = COMPOSE_CONF.read_text().splitlines()
            conf += "".join(
                line.replace("= 5671", f"= 127.0.0.1:{self.tls_port}")
                .replace("/etc/rabbitmq/tls", str(tls)) + "\n"
                for line in lines if line.startswith(("listeners.ssl.", "ssl_options.")))
        (self.dir / "rabbitmq.conf").write_text(conf)
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")
        self.env = dict(
            os.environ, HOME=str(self.dir), RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_PORT=str(self.port), RABBITMQ_DIST_PORT=str(dist),
            RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"), RABBITMQ_LOG_BASE=str(self.dir / "log"),
            RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
            RABBITMQ_CONF_ENV_FILE=str(self.dir / "rabbitmq-env.conf"),
            RABBITMQ_PID_FILE=str(self.dir / "pid"), ERL_EPMD_ADDRESS="127.0.0.1")
        self.uri = f"pyamqp://guest:guest@127.0.0.1:{self.port}/"
        with open(self.dir / "server.log", "ab") as log:
            self.proc = subprocess.Popen([str(RABBIT_BIN / "rabbitmq-server")], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_for(lambda: self.ctl("await_startup", "--timeout", "30", check=False)
                 .returncode == 0, 60, interval=0.5, what="the private RabbitMQ node")

    def ctl(self, *args, check=True):
        return subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, "-q", *args],
                              env=self.env, capture_output=True, text=True, timeout=60,
                              check=check)

    def stop(self):
        try:
            self.ctl("stop", check=False)
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group of the node we started
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
