"""The options every piw-* command shares (builders/commandline.py), checked on every console
script the installed package declares, and the one way every command finds its config."""

from __future__ import annotations

import importlib.metadata
import logging

import pytest

from builders.commandline import command_parser, configure_logging, find_config, version

#: The commands that change something after showing it, so they ask (and take -y).
ASKING = {"piw-remove", "piw-skip", "piw-rebuild", "piw-rebuild-wheels", "piw-add",
          "piw-import", "piw-unblock", "piw-builder-control"}
#: The commands that read no config file (so take no -c).
NO_CONFIG = {"piw-fake-pypi", "piw-builder-image", "piw-broker-cert"}


def console_scripts() -> dict[str, importlib.metadata.EntryPoint]:
    scripts = {ep.name: ep for ep in importlib.metadata.distribution("piw").entry_points
               if ep.group == "console_scripts"}
    assert "piw-builder" in scripts and "piw-master" in scripts
    return scripts


def run_main(entry_point, argv, capsys):
    with pytest.raises(SystemExit) as exited:
        entry_point.load()(argv)
    out = capsys.readouterr()
    return exited.value.code, out.out + out.err


@pytest.mark.parametrize("name", sorted(console_scripts()))
def test_every_command_takes_the_common_options(name, capsys):
    entry_point = console_scripts()[name]
    code, text = run_main(entry_point, ["--help"], capsys)
    assert code == 0, text
    for option in ("--version", "-q, --quiet", "-v, --verbose", "-l FILE, --log-file FILE"):
        assert option in text, (name, option)
    assert ("-c FILE, --configuration FILE" in text) == (name not in NO_CONFIG), name
    assert ("-y, --yes" in text) == (name in ASKING), name
    code, text = run_main(entry_point, ["--version"], capsys)
    assert code == 0 and text.strip() == f"{name} (piw) {importlib.metadata.version('piw')}"


def test_every_spelling_of_the_config_option():
    parser = command_parser("piw-x", config="the config")
    for spelling in (["-c", "a.yaml"], ["--configuration", "a.yaml"], ["--config", "a.yaml"],
                     ["--configuration=a.yaml"]):
        assert parser.parse_args(spelling).config == "a.yaml"
    assert parser.parse_args([]).config is None


def test_quiet_and_verbose_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exited:
        command_parser("piw-x").parse_args(["-q", "-v"])
    assert exited.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_version_is_the_installed_package_version():
    assert version() == importlib.metadata.version("piw")


def test_config_is_found_in_one_order(tmp_path, monkeypatch):
    """-c FILE, else the variable, else ./config/NAME, else the packaged one."""
    monkeypatch.chdir(tmp_path)
    env = {"PIW_X_CONFIG": "from-env.yaml"}
    assert find_config("given.yaml", "PIW_X_CONFIG", "x.yaml", "builders", env).name == \
        "given.yaml"
    assert find_config(None, "PIW_X_CONFIG", "x.yaml", "builders", env).name == "from-env.yaml"
    packaged = find_config(None, "PIW_X_CONFIG", "builder.yaml", "builders", {})
    assert packaged.packaged and packaged.name == "builders:builder.yaml"
    assert "AMQP_URI" in packaged.read_text()
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "builder.yaml").write_text("LABEL: here\n")
    local = find_config(None, "PIW_X_CONFIG", "builder.yaml", "builders", {})
    assert not local.packaged and local.read_text() == "LABEL: here\n"


def test_log_file_appends_with_the_command_name(tmp_path):
    log_file = tmp_path / "piw.log"
    log_file.write_text("older\n")
    args = command_parser("piw-x").parse_args(["-q", "-l", str(log_file)])
    logger = configure_logging(args, logging.getLogger("piw.test.commandline"))
    try:
        logger.info("did a thing")
        logger.debug("a detail")
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
    lines = log_file.read_text().splitlines()
    assert lines[0] == "older" and len(lines) == 2  # -q quietens the console, not the record
    assert lines[1].endswith(" INFO piw-x: did a thing") and lines[1][:4].isdigit()


def test_a_log_file_that_cannot_be_opened_is_a_usage_error(tmp_path, capsys):
    args = command_parser("piw-x").parse_args(["-l", str(tmp_path / "no" / "such" / "f")])
    with pytest.raises(SystemExit) as exited:
        configure_logging(args, logging.getLogger("piw.test.commandline.bad"))
    assert exited.value.code == 2
    assert "piw-x: cannot open log file" in capsys.readouterr().err
