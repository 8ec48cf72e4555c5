"""docker-compose.yml: no Docker engine runs here, so check what can be checked without one:
the file as a compose implementation reads it, the commands against the code, the nginx site
with `nginx -t`, and the RabbitMQ definitions against piw_services/rabbit_users.py (and, imported
into a throwaway vhost of the test broker, against what RabbitMQ lets each user do).

``python -m tests.deploy.test_compose`` rewrites config/rabbitmq/definitions.json from the
permission functions, the one source of truth."""

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from builders import protocol
from piw_services import rabbit_users
from piw_services.cli.services import MASTER_SERVICES
from piw_services.db.roles import SERVICES as DATABASE_USERS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DEFINITIONS = ROOT / "config" / "rabbitmq" / "definitions.json"
RABBIT_ENTRYPOINT = ROOT / "config" / "rabbitmq" / "entrypoint.sh"
NGINX_CONF = ROOT / "config" / "nginx" / "piw.conf"
NGINX_SITE_SCRIPT = ROOT / "config" / "nginx" / "compose-site.sh"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)

VHOST = "piw"
#: The compose builder's build target (a 64-bit ARM Docker host running the image's cp311).
BUILDER1_TARGET = "cp311-linux_aarch64"
#: (user, password variable, tags, permissions, topic permission) of the definitions.
USERS = [
    ("piw-master", "PIW_MASTER_PASSWORD", "administrator",
     {"configure": ".*", "write": ".*", "read": ".*"}, None),
    ("piw-operator", "PIW_OPERATOR_PASSWORD", "",
     rabbit_users.operator_permissions(), rabbit_users.operator_topic_permissions()),
    ("builder1", "PIW_BUILDER_PASSWORD", "",
     protocol.builder_permissions(BUILDER1_TARGET, "builder1"), None),
]
SECRETS = {"PIW_MASTER_PASSWORD", "PIW_OPERATOR_PASSWORD", "PIW_BUILDER_PASSWORD",
           "PIW_DB_PASSWORD", "PIW_STATS_SALT"}


def expected_definitions() -> dict:
    """The definitions RabbitMQ loads at boot: the vhost, and each user with the permissions
    piw-operator-user and piw-builder-user would give it (the master's: everything, and the
    administrator tag those commands need for the management API)."""
    return {
        "vhosts": [{"name": VHOST}],
        "users": [{"name": name, "password": f"${{{var}}}", "tags": tags}
                  for name, var, tags, _, _ in USERS],
        "permissions": [{"user": name, "vhost": VHOST, **perms}
                        for name, _, _, perms, _ in USERS],
        "topic_permissions": [{"user": name, "vhost": VHOST, **topic}
                              for name, _, _, _, topic in USERS if topic],
    }


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def compose_command() -> list[str] | None:
    """`docker compose` where the plugin answers, else Debian's docker-compose, else None."""
    if shutil.which("docker") and subprocess.run(
            ["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIW_")}
    env.update(extra)
    return env


# -- the compose file --------------------------------------------------------------------------


@pytest.mark.parametrize("secrets", ["placeholders", "set"])
def test_a_compose_implementation_accepts_the_file(secrets, tmp_path):
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed (./run setup "
                    "installs Debian's docker-compose, which checks files without an engine)")
    env = clean_env(**({name: f"s3cret-{name.lower()}" for name in SECRETS}
                       if secrets == "set" else {}))
    proc = subprocess.run([*command, "-f", str(COMPOSE), "--project-directory", str(ROOT),
                           "config"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)
    assert set(resolved["services"]) == set(compose()["services"])
    uri = resolved["services"]["upstream"]["environment"]["PIW_AMQP_URI"]
    if secrets == "set":
        assert "s3cret-piw_master_password" in uri
        assert "change-me" not in proc.stdout
    else:
        assert "change-me-master" in uri


def test_compose_services_run_code_that_exists():
    scripts = configparser.ConfigParser()
    scripts.read(ROOT / "setup.cfg")
    console = {line.split("=")[0].strip()
               for line in scripts["options.entry_points"]["console_scripts"].splitlines()
               if line.strip()}
    services = compose()["services"]
    assert {"rabbitmq", "postgres", "initdb", "nginx", "logger", "builder"} <= set(services)
    for name, service in services.items():
        command = service.get("command")
        if "image" in service and not service["image"].startswith("piw:"):
            continue  # rabbitmq, postgres, nginx: their images' own programs
        assert command, name
        if command[0] == "piw-master":  # one service each, the config packaged with piw
            assert command[1] == "--only" and command[2] in MASTER_SERVICES, name
        if service.get("user") == "root":
            # www-init only
            assert command == ["chown", "piw:piw", "/srv/www", "/srv/tls", "/srv/db"], name
        else:
            assert command[0] in console, f"{name} runs {command[0]}, not a console script"
        env = service.get("environment", {})
        if command[0] == "piw-builder":  # a builder knows only the broker and the index
            assert set(env) == {"PIW_BUILDER_AMQP_URI", "PIW_BUILDER_INDEX_URL"}, name
        elif command[0] == "piw-broker-cert":  # files in the tls volume, nothing else
            assert not env and service["volumes"] == ["tls:/srv/tls"], name
        elif command[0] != "chown":
            assert {"PIW_AMQP_URI", "PIW_DB_URL", "PIW_WWW"} <= set(env), name
            assert service["volumes"][0].split(":")[:2] == ["www", env["PIW_WWW"]] or \
                name == "logger", name
        if command[0] == "piw-master" and command[2] in DATABASE_USERS:
            # its own database role, the password from the file initdb writes
            url = env["PIW_DB_SERVICE_URL"]
            assert "piw_{service}@" in url and "passfile=/srv/db/pgpass" in url, name
            assert "db-passwords:/srv/db:ro" in service["volumes"], name
    assert services["initdb"]["command"] == ["piw-initdb", "--passfile", "/srv/db/pgpass"]
    assert "db-passwords:/srv/db" in services["initdb"]["volumes"]


def test_every_master_service_is_a_container_that_scales():
    services = compose()["services"]
    run = {s["command"][2]: name for name, s in services.items()
           if s.get("command", [""])[0] == "piw-master"}
    assert set(run) == set(MASTER_SERVICES) and all(k == v for k, v in run.items())
    for name, service in services.items():
        # a fixed name or host port would make `--scale` fail
        assert "container_name" not in service, name
        if name not in ("rabbitmq", "postgres", "nginx"):
            assert "ports" not in service, name
    assert services["web"]["environment"]["PIW_WEB_ADDRESS"] == "0.0.0.0:8080"
    assert compose()["volumes"].keys() >= {"rabbitmq", "postgres", "www"}
    assert "rabbitmq:/var/lib/rabbitmq" in services["rabbitmq"]["volumes"]
    assert "postgres:/var/lib/postgresql/data" in services["postgres"]["volumes"]


def test_only_amqps_is_published_to_the_world():
    """Builders cross the internet on 5671 with TLS; plain AMQP (5672), the management API
    and PostgreSQL are published on the private address only."""
    services = compose()
    published = {name: service.get("ports", []) for name, service in services["services"].items()}
    private = "${PIW_PRIVATE_ADDRESS:-127.0.0.1}:"
    assert published["rabbitmq"] == ["5671:5671", f"{private}5672:5672",
                                     f"{private}15672:15672"]
    assert published["postgres"] == [f"{private}5432:5432"]
    world = [port for ports in published.values() for port in ports
             if not port.startswith(private)]
    assert sorted(world) == ["${PIW_HTTP_PORT:-80}:80", "5671:5671"]
    rabbit = services["services"]["rabbitmq"]
    assert "tls:/etc/piw-tls:ro" in rabbit["volumes"]
    assert rabbit["depends_on"]["broker-cert"]["condition"] == "service_completed_successfully"
    cert = services["services"]["broker-cert"]["command"]
    assert cert[:3] == ["piw-broker-cert", "--dir", "/srv/tls"] and "rabbitmq" in cert
    conf = (ROOT / "config" / "rabbitmq" / "rabbitmq.conf").read_text()
    assert "listeners.ssl.default = 5671" in conf


def test_entrypoint_gives_the_tls_files_to_rabbitmq(tmp_path):
    """entrypoint.sh copies piw-broker-cert's files where rabbitmq.conf's ssl_options read
    them (the key is the rabbitmq user's when it runs as root, as the image's does)."""
    made = subprocess.run([str(Path(sys.executable).parent / "piw-broker-cert"),
                           "--dir", str(tmp_path / "from"), "--name", "rabbitmq"],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    passwords = {var: "pw" for _, var, *_ in USERS}
    proc = render(tmp_path, PIW_TLS_FROM=str(tmp_path / "from"),
                  PIW_TLS_TO=str(tmp_path / "to"), **passwords)
    assert proc.returncode == 0, proc.stderr
    for name in ("ca.crt", "broker.crt", "broker.key"):
        assert (tmp_path / "to" / name).read_bytes() == (tmp_path / "from" / name).read_bytes()
        assert f"/etc/rabbitmq/tls/{name}" in \
            (ROOT / "config" / "rabbitmq" / "rabbitmq.conf").read_text()
    assert (tmp_path / "to" / "broker.key").stat().st_mode & 0o077 == 0
    proc = render(tmp_path, PIW_TLS_FROM=str(tmp_path / "none"), **passwords)
    assert proc.returncode == 0 and "the TLS listener (5671) cannot start" in proc.stderr


def test_secrets_are_environment_variables_with_placeholders():
    text = COMPOSE.read_text()
    for name in SECRETS:
        defaults = set(re.findall(rf"\$\{{{name}:-([^}}]*)\}}", text))
        assert defaults and all(d.startswith("change-me") for d in defaults), name
    services = compose()["services"]
    master = urlsplit(services["upstream"]["environment"]["PIW_AMQP_URI"])
    builder = urlsplit(services["builder"]["environment"]["PIW_BUILDER_AMQP_URI"])
    users = {name: var for name, var, *_ in USERS}
    # each client connects as a user of the definitions, with that user's password variable
    for url in (master, builder):
        assert url.netloc.endswith("@${PIW_BROKER_HOST:-rabbitmq}:5672")
        assert url.path == f"/{VHOST}"
        assert url.password.startswith(f"${{{users[url.username]}:-")
    assert master.username == "piw-master" and builder.username == "builder1"
    assert set(services["rabbitmq"]["environment"]) == set(users.values())


# -- nginx and piw-logger ----------------------------------------------------------------------


def compose_site(tmp_path: Path, upstream: str) -> str:
    """The site the nginx container serves: compose-site.sh run on piw.conf."""
    site = tmp_path / "default.conf"
    subprocess.run(["sh", str(NGINX_SITE_SCRIPT)], check=True, env=clean_env(
        PIW_NGINX_CONF=str(NGINX_CONF), PIW_NGINX_SITE=str(site), PIW_WEB_UPSTREAM=upstream))
    return site.read_text()


def test_nginx_container_layout_matches_the_site(tmp_path):
    services = compose()["services"]
    nginx = services["nginx"]
    site = compose_site(tmp_path, nginx["environment"]["PIW_WEB_UPSTREAM"])
    assert "server web:8080;" in site and "server 127.0.0.1:8080;" not in site
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in nginx["volumes"]}
    [root] = re.findall(r"^\s*root (\S+);", site, re.M)
    assert mounts[root] == "www"  # the tree file_manager and index write
    [access_log] = re.findall(r"^\s*access_log (\S+) piw;", site, re.M)
    logs = os.path.dirname(access_log)
    assert mounts[logs] == "nginx-logs"
    assert mounts["/etc/piw/nginx"] == "./config/nginx"
    assert mounts["/docker-entrypoint.d/40-piw-site.sh"] == "./config/nginx/compose-site.sh"
    assert os.access(NGINX_SITE_SCRIPT, os.X_OK)  # the image's entrypoint runs only those
    logger = services["logger"]
    assert logger["command"][-1] == access_log
    assert f"nginx-logs:{logs}:ro" in logger["volumes"]
    assert services["web"]["environment"]["PIW_WEB_ADDRESS"].endswith(":8080")


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_the_compose_nginx_site_passes_nginx_t(tmp_path):
    # There is no compose network here to resolve `web`; everything else is as served.
    site = compose_site(tmp_path, "127.0.0.1:8080")
    prefix = tmp_path / "nginx"
    (prefix / "www").mkdir(parents=True)
    site = site.replace("/srv/piw/www", str(prefix / "www"))
    site = site.replace("/var/log/nginx/", f"{prefix}/")
    (prefix / "piw.conf").write_text(site)
    temps = "\n".join(f"    {kind}_temp_path {prefix}/{kind};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # the image's nginx.conf in short: the site is included inside http { }
    (prefix / "nginx.conf").write_text(f"""
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
{temps}
    include {prefix}/piw.conf;
}}
""")
    proc = subprocess.run([NGINX, "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                           "-e", str(prefix / "error.log")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "test is successful" in proc.stderr


def test_compose_site_refuses_a_piw_conf_without_the_web_upstream(tmp_path):
    conf = tmp_path / "piw.conf"
    conf.write_text(NGINX_CONF.read_text().replace("server 127.0.0.1:8080;", "server x:1;"))
    proc = subprocess.run(["sh", str(NGINX_SITE_SCRIPT)], capture_output=True, text=True,
                          env=clean_env(PIW_NGINX_CONF=str(conf),
                                        PIW_NGINX_SITE=str(tmp_path / "site.conf")))
    assert proc.returncode == 1 and "127.0.0.1:8080" in proc.stderr


# -- RabbitMQ ----------------------------------------------------------------------------------


def test_definitions_are_what_rabbit_users_gives_each_role():
    definitions = json.loads(DEFINITIONS.read_text())
    assert definitions == expected_definitions(), \
        "regenerate with: python -m tests.deploy.test_compose"


def test_definitions_are_consistent():
    definitions = json.loads(DEFINITIONS.read_text())
    vhosts = {v["name"] for v in definitions["vhosts"]}
    users = [u["name"] for u in definitions["users"]]
    assert len(users) == len(set(users))
    for user in definitions["users"]:
        # never a real password in the repository: a placeholder entrypoint.sh fills in
        assert set(user) == {"name", "password", "tags"}
        assert re.fullmatch(r"\$\{PIW_[A-Z_]+_PASSWORD\}", user["password"]), user
    for grant in definitions["permissions"] + definitions["topic_permissions"]:
        assert grant["user"] in users and grant["vhost"] in vhosts, grant
        for key in ("configure", "write", "read"):
            if key in grant:
                re.compile(grant[key])
    assert {p["user"] for p in definitions["permissions"]} == set(users)
    conf = (ROOT / "config" / "rabbitmq" / "rabbitmq.conf").read_text()
    assert "load_definitions = /etc/rabbitmq/piw-definitions.json" in conf


def test_builders_cannot_reach_nameko_rpc():
    definitions = json.loads(DEFINITIONS.read_text())
    builders = [p for p in definitions["permissions"] if p["user"] == "builder1"]
    assert builders
    for perms in builders:
        for key in ("configure", "write", "read"):
            for name in ("nameko-rpc", "rpc-admin", "rpc-build_dispatch", "web.events",
                         "piw.builds.cp313-linux_aarch64", "piw.builds.cp311-linux_armv7l"):
                assert not re.search(perms[key], name), (key, name)
        assert re.search(perms["write"], protocol.EXCHANGE)
        assert re.search(perms["read"], protocol.job_queue(BUILDER1_TARGET))
    operator = next(p for p in definitions["topic_permissions"] if p["user"] == "piw-operator")
    assert re.search(operator["write"], "admin.remove")
    assert not re.search(operator["write"], "build_dispatch.status")


def render(tmp_path: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(RABBIT_ENTRYPOINT), "true"], capture_output=True,
                          text=True, env=clean_env(
                              PIW_DEFINITIONS_TEMPLATE=str(DEFINITIONS),
                              PIW_DEFINITIONS=str(tmp_path / "out.json"), **env))


def test_entrypoint_fills_in_the_passwords(tmp_path):
    passwords = {var: f"pw-{var.lower()}_~." for _, var, *_ in USERS}
    proc = render(tmp_path, **passwords)
    assert proc.returncode == 0, proc.stderr
    rendered = json.loads((tmp_path / "out.json").read_text())
    assert {u["name"]: u["password"] for u in rendered["users"]} == {
        name: passwords[var] for name, var, *_ in USERS}
    assert (tmp_path / "out.json").stat().st_mode & 0o077 == 0
    # missing, or unsafe in JSON and URIs: refused before RabbitMQ starts
    for bad in ({}, dict(passwords, PIW_BUILDER_PASSWORD='a"b'),
                dict(passwords, PIW_BUILDER_PASSWORD="a|b@c")):
        proc = render(tmp_path, **bad)
        assert proc.returncode == 1 and "must be set" in proc.stderr
    proc = render(tmp_path, **dict(passwords, PIW_MASTER_PASSWORD="change-me-master"))
    assert proc.returncode == 0 and "WARNING: PIW_MASTER_PASSWORD" in proc.stderr


@pytest.fixture
def imported(request):
    """The definitions, with passwords filled in and every name made unique, imported into
    the test broker through its management API (the import rabbitmqctl import_definitions
    does); yields {user: AMQP URI}; removes the users and the vhost again. Nothing else of
    the broker is touched."""
    requests = pytest.importorskip("requests")
    api = urlsplit(request.config.getoption("RABBIT_API_URI"))
    amqp = urlsplit(request.config.getoption("RABBIT_AMQP_URI"))
    base = f"{api.scheme}://{api.hostname}:{api.port}/api"
    auth = (api.username or "guest", api.password or "guest")
    try:
        requests.get(f"{base}/overview", auth=auth, timeout=5).raise_for_status()
    except requests.RequestException as exc:
        pytest.skip(f"no RabbitMQ management API at {base}: {exc}")
    tag = f"piw-deftest-{uuid.uuid4().hex[:8]}"
    text = DEFINITIONS.read_text()
    passwords = {var: uuid.uuid4().hex for _, var, *_ in USERS}
    for var, password in passwords.items():
        text = text.replace(f"${{{var}}}", password)
    definitions = json.loads(text)
    for key in ("users", "permissions", "topic_permissions"):
        for item in definitions[key]:
            item["name" if key == "users" else "user"] = (
                f"{tag}-{item['name' if key == 'users' else 'user']}")
            if "vhost" in item:
                item["vhost"] = tag
    definitions["vhosts"] = [{"name": tag}]
    response = requests.post(f"{base}/definitions", json=definitions, auth=auth, timeout=30)
    try:
        assert response.status_code in (200, 201, 204), response.text
        yield {name: f"pyamqp://{tag}-{name}:{passwords[var]}@{amqp.hostname}:"
                     f"{amqp.port or 5672}/{tag}" for name, var, *_ in USERS}
    finally:
        for name, *_ in USERS:
            requests.delete(f"{base}/users/{tag}-{name}", auth=auth, timeout=10)
        requests.delete(f"{base}/vhosts/{tag}", auth=auth, timeout=10)


def test_rabbitmq_imports_the_definitions_and_enforces_them(imported):
    from amqp.exceptions import AccessRefused
    from kombu import Connection, Exchange, Queue
    from kombu.messaging import Producer

    rpc = Exchange("nameko-rpc", type="topic", durable=True)
    builders = Exchange(protocol.EXCHANGE, type="direct", durable=True)
    jobs = Queue(protocol.job_queue(BUILDER1_TARGET), builders, routing_key=BUILDER1_TARGET,
                 durable=True)
    armv7 = Queue(protocol.job_queue("cp311-linux_armv7l"), durable=True)

    def publish(uri, exchange, routing_key):
        with Connection(uri, transport_options={"confirm_publish": True}) as conn:
            Producer(conn.channel(), exchange=exchange, auto_declare=False).publish(
                {}, routing_key=routing_key, declare=[])

    # the master: everything (here it declares what the services would)
    with Connection(imported["piw-master"]) as conn:
        channel = conn.channel()
        rpc(channel).declare()
        jobs(channel).declare()
        armv7(channel).declare()
        Queue("rpc-admin", rpc, routing_key="admin.*")(channel).declare()
    publish(imported["piw-master"], rpc, "build_dispatch.status")

    # a builder: its exchange and its target's queue; not another target's, nothing of
    # nameko's RPC
    publish(imported["builder1"], builders, BUILDER1_TARGET)
    with Connection(imported["builder1"]) as conn:
        assert conn.channel().basic_get(jobs.name) is not None
    with Connection(imported["builder1"]) as conn, pytest.raises(AccessRefused,
                                                                  match="cp311-linux_armv7l"):
        conn.channel().basic_get(armv7.name)
    with pytest.raises(AccessRefused, match="nameko-rpc"):
        publish(imported["builder1"], rpc, "admin.status")
    with Connection(imported["builder1"]) as conn, pytest.raises(AccessRefused, match="rpc-"):
        conn.channel().basic_get("rpc-admin")
    with Connection(imported["builder1"]) as conn, pytest.raises(AccessRefused,
                                                                  match="nameko-rpc"):
        rpc(conn.channel()).declare()

    # an operator: calls to admin only, and no service's queue
    publish(imported["piw-operator"], rpc, "admin.status")
    with pytest.raises(AccessRefused, match="build_dispatch.status"):
        publish(imported["piw-operator"], rpc, "build_dispatch.status")
    with Connection(imported["piw-operator"]) as conn, pytest.raises(AccessRefused,
                                                                      match="rpc-admin"):
        conn.channel().basic_get("rpc-admin")
    # piw-import uploads as a builder does, but an operator takes no job
    publish(imported["piw-operator"], builders, BUILDER1_TARGET)
    with Connection(imported["piw-operator"]) as conn, pytest.raises(AccessRefused,
                                                                      match="piw.builds"):
        conn.channel().basic_get(jobs.name)


if __name__ == "__main__":
    DEFINITIONS.write_text(json.dumps(expected_definitions(), indent=2) + "\n")
    print(f"wrote {DEFINITIONS.relative_to(ROOT)}", file=sys.stderr)
