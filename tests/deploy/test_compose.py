"""docker-compose.yml: no Docker engine runs here, so check what can be checked without one."""

import configparser
import importlib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_services_run_code_that_exists():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    scripts = configparser.ConfigParser()
    scripts.read(ROOT / "setup.cfg")
    console = {line.split("=")[0].strip()
               for line in scripts["options.entry_points"]["console_scripts"].splitlines()
               if line.strip()}
    services = compose["services"]
    assert {"rabbitmq", "postgres", "initdb", "upstream", "reorderer", "build_dispatch",
            "file_manager", "index", "web", "builder-user", "builder"} <= set(services)
    for name, service in services.items():
        command = service.get("command")
        if not command:
            continue
        if command[0] == "nameko":
            assert command[1:4] == ["run", "--config", "config/master.yaml"], name
            assert (ROOT / command[3]).exists()
            importlib.import_module(command[4])
        else:
            assert command[0] in console, f"{name} runs {command[0]}, not a console script"
        env = service.get("environment", {})
        if command[0] == "piw-builder":  # a builder knows only the broker and the index
            assert set(env) == {"PIW_BUILDER_AMQP_URI", "PIW_BUILDER_INDEX_URL"}, name
        else:
            assert {"PIW_AMQP_URI", "PIW_DB_URL"} <= set(env), name
