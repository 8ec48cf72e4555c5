"""config/systemd/: the units of a host without containers, checked by ``systemd-analyze
verify`` (syntax, directives, and that each ExecStart is an executable), with the venv path
/opt/piw replaced by this test run's venv, whose console scripts are the same."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from piw_services.cli.services import MASTER_SERVICES

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "config" / "systemd"
BIN = Path(sys.executable).parent
ANALYZE = shutil.which("systemd-analyze")


def console_scripts() -> set[str]:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    return {line.split("=")[0].strip()
            for line in setup["options.entry_points"]["console_scripts"].splitlines()
            if line.strip()}


def installed_copy(tmp_path: Path, name: str, text: str | None = None) -> Path:
    """The unit *name* as it would be on a host whose venv is this run's."""
    text = (UNITS / name).read_text() if text is None else text
    path = tmp_path / name
    path.write_text(text.replace("/opt/piw/bin/", f"{BIN}/"))
    return path


def verify(*units: Path) -> subprocess.CompletedProcess:
    if ANALYZE is None:
        pytest.skip("systemd-analyze is not installed (./run setup installs Debian's systemd)")
    return subprocess.run([ANALYZE, "verify", "--man=no", *map(str, units)],
                          capture_output=True, text=True, timeout=120)


def units() -> list[str]:
    return sorted(p.name for p in UNITS.glob("*.service"))


def test_the_units_there_are():
    assert set(units()) == {"piw-initdb.service", "piw-master.service", "piw-master@.service",
                            "piw-logger.service", "piw-builder.service"}


def test_systemd_verifies_the_units(tmp_path):
    """Together, as a host has them (piw-master requires piw-initdb)."""
    proc = verify(*(installed_copy(tmp_path, name) for name in units() if "@." not in name))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_one_unit_per_master_service_from_the_template(tmp_path):
    template = (UNITS / "piw-master@.service").read_text()
    paths = [installed_copy(tmp_path, f"piw-master@{service}.service", template)
             for service in MASTER_SERVICES]
    proc = verify(*paths)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "ExecStart=/opt/piw/bin/piw-master --only %i\n" in template


def test_every_unit_runs_a_console_script_of_the_package():
    scripts = console_scripts()
    for name in units():
        commands = re.findall(r"^ExecStart(?:Pre)?=(\S+)", (UNITS / name).read_text(), re.M)
        assert commands, name
        for command in commands:
            assert command.startswith("/opt/piw/bin/"), (name, command)
            assert command.rsplit("/", 1)[1] in scripts, (name, command)


def test_verify_catches_a_missing_program(tmp_path):
    """The check can fail: a unit whose program is not installed is refused."""
    text = (UNITS / "piw-master.service").read_text().replace("bin/piw-master", "bin/piw-mastr")
    proc = verify(installed_copy(tmp_path, "piw-master.service", text))
    assert proc.returncode != 0 and "piw-mastr is not executable" in proc.stderr


def test_the_environment_file_sets_only_settings_that_exist():
    known = set(re.findall(r"\$\{(PIW_[A-Z_]+)", (ROOT / "config" / "master.yaml").read_text()))
    names = {line.split("=", 1)[0] for line in (UNITS / "piw.env").read_text().splitlines()
             if line and not line.startswith("#")}
    assert names and names <= known, names - known
