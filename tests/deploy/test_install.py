"""Installed, not editable: the wheel and sdist carry everything, the plain package is a lean
builder, and the installed commands run the whole system from an empty directory: piw-initdb
on a fresh database, piw-fake-pypi with the bundled scenario, piw-master, a piw-builder from a
second venv (the sdist, plain), then a real ``pip install`` from the index, ``piw-remove -y``
and a clean ``piw-audit``."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import free_port, service_url, wait_for
from tests.deploy.conftest import BASE_PYTHON, ROOT, run, user_env

pytestmark = pytest.mark.slow

#: Libraries only the master needs; none may reach a builder Pi (no armv7l wheels for some,
#: hours of compiling for others).
MASTER_ONLY = ("sqlalchemy", "psycopg2-binary", "nameko", "eventlet", "matplotlib", "alembic",
               "jinja2", "orjson", "numpy")


def package_files() -> set[str]:
    """Every file of the two packages in the working tree (links resolved by name)."""
    return {path.relative_to(ROOT).as_posix()
            for top in ("piw_services", "builders")
            for path in (ROOT / top).rglob("*")
            if (path.is_file() and "__pycache__" not in path.parts
                and not path.name.endswith(".pyc"))}


def test_the_wheel_and_the_sdist_carry_every_file_of_the_packages(dists):
    wheel = set(zipfile.ZipFile(dists["wheel"]).namelist())
    assert {"piw_services/db/migrations/env.py", "piw_services/master.yaml",
            "builders/builder.yaml", "piw_services/fake_pypi/scenarios/demo.jsonl"} <= wheel
    versions = {p.relative_to(ROOT).as_posix()
                for p in (ROOT / "piw_services/db/migrations/versions").glob("*.py")}
    assert versions and versions <= wheel
    assert package_files() - wheel == set()
    with tarfile.open(dists["sdist"]) as sdist:
        members = {m.name.split("/", 1)[1]: m for m in sdist.getmembers() if "/" in m.name}
    assert package_files() - set(members) == set()
    # the links to config/ are files in both: an installed package has no config/ beside it
    assert members["piw_services/master.yaml"].isfile()
    assert (zipfile.ZipFile(dists["wheel"]).read("piw_services/master.yaml").decode()
            == (ROOT / "config" / "master.yaml").read_text())


def test_the_plain_package_is_a_lean_builder(builder_bin, tmp_path):
    """`pip install piw` (here from the sdist): piw-builder works, and none of the master's
    libraries came with it; the master's commands say what to install instead."""
    listed = run([builder_bin / "pip", "list", "--format=freeze"], env=user_env()).stdout
    installed = {line.split("==")[0].lower() for line in listed.split()}
    assert {"piw", "kombu", "amqp", "packaging", "pyyaml"} <= installed
    assert installed & set(MASTER_ONLY) == set(), listed
    proc = run([builder_bin / "piw-builder", "--help"], env=user_env(), cwd=tmp_path)
    assert "-c FILE, --configuration FILE" in proc.stdout
    proc = run([builder_bin / "piw-builder", "--version"], env=user_env(), cwd=tmp_path)
    assert proc.stdout.strip() == f"piw-builder (piw) {importlib.metadata.version('piw')}"
    proc = run([builder_bin / "piw-master", "--help"], env=user_env(), cwd=tmp_path,
               check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("piw's master commands need the master's libraries "
                                   "(missing: nameko, sqlalchemy): pip install 'piw[master]'")


def test_installed_commands_run_the_system_from_an_empty_directory(
        master_bin, builder_bin, fresh_db_url, rabbit_config, elsewhere, tmp_path):
    web = f"127.0.0.1:{free_port()}"
    env = user_env(PIW_DB_URL=fresh_db_url, PIW_AMQP_URI=rabbit_config["AMQP_URI"],
                   PIW_WWW=str(tmp_path / "www"), PIW_WEB_ADDRESS=web,
                   PIW_POLL_INTERVAL="1", PIW_STATS_SALT="deploy-test")
    cwd = elsewhere.cwd

    proc = run([master_bin / "piw-initdb"], env=env, cwd=cwd)
    assert "created database" in proc.stderr and "schema at" in proc.stderr, proc.stderr
    run([master_bin / "piw-initdb", "--check"], env=env, cwd=cwd)

    port = free_port()
    upstream = f"http://127.0.0.1:{port}"
    elsewhere.start("fake-pypi", [master_bin / "piw-fake-pypi", "--scenario", "demo",
                                  "--port", port], env)
    wait_for(lambda: requests.get(upstream + "/simple/", timeout=2).ok, 60,
             what="piw-fake-pypi", describe=elsewhere.logs_text)
    env["PIW_UPSTREAM"] = upstream
    elsewhere.start("master", [master_bin / "piw-master"], env)
    builder_env = user_env(PIW_BUILDER_AMQP_URI=rabbit_config["AMQP_URI"],
                           PIW_BUILDER_INDEX_URL=f"{upstream}/simple/",
                           PIW_BUILDER_WORK_DIR=str(tmp_path / "builds"))
    elsewhere.start("builder", [builder_bin / "piw-builder", "--label", "deploy-test"],
                    builder_env)

    page = f"http://{web}/simple/pitemp/"

    def built() -> bool:
        for name, proc in elsewhere.procs.items():
            assert proc.poll() is None, f"{name} exited {proc.returncode}"
        response = requests.get(page, timeout=5)
        return response.ok and "pitemp-1.0-py3-none-any.whl" in response.text.lower()

    wait_for(built, 300, interval=1, what="pitemp 1.0's wheel on the index",
             describe=elsewhere.logs_text)

    user = tmp_path / "user"
    run([BASE_PYTHON, "-m", "venv", user], env=user_env())
    proc = run([user / "bin" / "pip", "install", "--no-cache-dir", "--index-url",
                f"http://{web}/simple/", "pitemp"],
               env=user_env(PIP_CONFIG_FILE="/dev/null"), cwd=cwd)
    assert "successfully installed pitemp-1.0" in proc.stdout.lower(), proc.stdout
    assert f"http://{web}/simple/pitemp/pitemp-1.0-py3-none-any.whl" in proc.stdout.lower()

    proc = run([master_bin / "piw-remove", "-y", "pitemp", "1.0"], env=env, cwd=cwd,
               timeout=180)
    assert "removed pitemp 1.0" in proc.stderr, proc.stderr
    wait_for(lambda: "pitemp-1.0-" not in requests.get(page, timeout=5).text.lower(), 60,
             what="pitemp 1.0 gone from its page")
    proc = run([master_bin / "piw-audit", "--wait", "60", "--settle", "10"], env=env, cwd=cwd,
               check=False, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not list(Path(cwd).iterdir()), "a command wrote into the working directory"


def test_a_fresh_venv_sees_no_checkout(master_bin, tmp_path):
    """The installed package is read from site-packages, not from this checkout."""
    proc = run([master_bin / "python", "-c",
                "import piw_services, builders; print(piw_services.__file__, builders.__file__)"],
               env=user_env(), cwd=tmp_path)
    assert str(ROOT) not in proc.stdout and "site-packages" in proc.stdout
    assert subprocess.run([master_bin / "python", "-c", "import tests"], env=user_env(),
                          cwd=tmp_path, capture_output=True).returncode != 0


# -- docker-compose.yml's commands, without an engine -----------------------------------------
#: How long each long-running container's command must stay up.
STAY_UP = 20
#: Containers whose command is their image's own program, not piw's (nginx's site is checked
#: by test_compose with nginx -t), and www-init's chown to the image's user piw.
NOT_PIW = {"rabbitmq", "postgres", "nginx", "www-init"}


def interpolate(value: str, env: dict[str, str]) -> str:
    """compose's ``${NAME:-default}`` and ``${NAME}`` against *env*."""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}",
                  lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)


def test_every_compose_command_runs_from_the_installed_venv(
        master_bin, fresh_db_url, rabbit_config, elsewhere, tmp_path):
    """No Docker engine here (docs/deployment.md has the error), so each piw container's
    command runs as the image runs it: the installed console script, from an empty directory,
    with the environment docker-compose.yml gives that container. Only what names this test's
    world is replaced: the broker and database (this test's vhost and fresh database, for the
    compose users and passwords), the volumes (temporary directories), upstream (the fake, not
    pypi.org) and the web port (a free one: 8080 may be taken). One-shots exit 0; every
    long-running command is still running after STAY_UP seconds."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    port = free_port()
    elsewhere.start("fake-pypi", [master_bin / "piw-fake-pypi", "--scenario", "demo",
                                  "--port", port], user_env())
    upstream = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(upstream + "/simple/", timeout=2).ok, 60, what="fake PyPI")
    www, nginx_logs, tls = tmp_path / "www", tmp_path / "nginx-logs", tmp_path / "tls"
    passwords = tmp_path / "db"  # the db-passwords volume: initdb writes, services read
    www.mkdir()
    nginx_logs.mkdir()
    (nginx_logs / "piw.access.log").touch()  # nginx makes it at its start
    ours = {"PIW_AMQP_URI": rabbit_config["AMQP_URI"], "PIW_DB_URL": fresh_db_url,
            "PIW_BUILDER_AMQP_URI": rabbit_config["AMQP_URI"],
            "PIW_BUILDER_INDEX_URL": f"{upstream}/simple/", "PIW_UPSTREAM": upstream,
            "PIW_WWW": str(www), "PIW_WEB_ADDRESS": f"127.0.0.1:{free_port()}",
            # each service on its role of this database, as compose's on the real one
            "PIW_DB_SERVICE_URL": f"{service_url(fresh_db_url)}?passfile={passwords}/pgpass"}

    def command(name: str) -> tuple[list, dict[str, str]]:
        service = services[name]
        env = {key: interpolate(str(value), {}) for key, value in
               (service.get("environment") or {}).items()}
        args = [interpolate(str(a), {}).replace("/var/log/nginx", str(nginx_logs))
                .replace("/srv/tls", str(tls)).replace("/srv/db", str(passwords))
                for a in service["command"]]
        assert set(ours) & set(env) or str(tls) in args, \
            f"{name}: no setting to point at this test's world"
        env.update({k: v for k, v in ours.items() if k in env})
        assert (master_bin / args[0]).exists(), f"{name} runs {args[0]}: not installed"
        return [master_bin / args[0], *args[1:]], user_env(**env)

    piw_services = sorted(set(services) - NOT_PIW)
    one_shots = [n for n in piw_services if services[n].get("restart") == "no"]
    assert one_shots == ["broker-cert", "initdb"]
    for name in one_shots:
        cmd, env = command(name)
        run(cmd, env=env, cwd=elsewhere.cwd, timeout=300)
    assert (tls / "broker.key").exists() and (tls / "ca.crt").exists()
    long_running = [n for n in piw_services if n not in one_shots]
    assert {"upstream", "web", "logger", "builder"} <= set(long_running)
    for name in long_running:
        elsewhere.start(name, *command(name))
    deadline = time.monotonic() + STAY_UP
    while time.monotonic() < deadline:
        exited = {n: p.returncode for n, p in elsewhere.procs.items() if p.poll() is not None}
        assert not exited, f"exited: {exited}\n{elsewhere.logs_text()}"
        time.sleep(1)
    web = ours["PIW_WEB_ADDRESS"]
    assert requests.get(f"http://{web}/simple/", timeout=10).status_code in (200, 404)
    # on x86_64 the compose builder announces a target BUILD_ABIS lacks, and waits for it
    assert "builds for cp311-linux_x86_64" in elsewhere.log("builder"), elsewhere.log("builder")
    assert "connected to" in elsewhere.log("builder"), elsewhere.log("builder")
