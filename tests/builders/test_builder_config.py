"""piw-builder's settings: the YAML loader, ${ENV:default} substitution, every refusal, and
the probe that finds the build interpreter's ABI by running it."""

from __future__ import annotations

import socket
import ssl
import sys
from pathlib import Path

import pytest
import yaml

from builders import config, sysinfo
from builders.builder import tls_options
from builders.cli import main
from builders.config import (
    DEFAULTS,
    ConfigError,
    load_settings,
    parse_preinstalled,
    probe_python,
    substitute,
)

REPO = Path(__file__).resolve().parents[2]
PYTHON312 = Path("/root/.pyenv/versions/3.12.1/bin/python3.12")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "builder.yaml"
    path.write_text(text)
    return path


def test_defaults_without_any_environment():
    s = load_settings(REPO / "config" / "builder.yaml", env={})
    assert s.amqp_uri == "pyamqp://guest:guest@127.0.0.1:5672/"
    assert s.index_url == "http://127.0.0.1:8700/simple/"
    assert s.label == socket.gethostname()
    assert s.python == sys.executable
    assert s.abi is None
    assert s.build_timeout == 10800.0
    assert s.heartbeat_interval == 5.0
    assert s.reply_timeout == 30.0
    assert s.upload_retries == 3
    assert s.preinstalled == ()
    assert s.log_level == "INFO"
    assert s.work_dir.is_dir()


def test_the_environment_overrides_and_is_typed_per_setting(tmp_path):
    env = {
        "PIW_BUILDER_AMQP_URI": "amqp://pi:secret@master:5672/piw",
        "PIW_BUILDER_INDEX_URL": "https://pypi.org/simple/",
        "PIW_BUILDER_LABEL": "0755",  # YAML typing would make this 493
        "PIW_BUILDER_ABI": "cp39",
        "PIW_BUILD_TIMEOUT": "60",
        "PIW_BUILDER_WORK_DIR": str(tmp_path / "work"),
        "PIW_HEARTBEAT_INTERVAL": "2.5",
        "PIW_BUILDER_REPLY_TIMEOUT": "7",
        "PIW_BUILDER_UPLOAD_RETRIES": "0",
        "PIW_BUILDER_LOG_LEVEL": "debug",
    }
    s = load_settings(REPO / "config" / "builder.yaml", env=env)
    assert s.amqp_uri == "amqp://pi:secret@master:5672/piw"
    assert s.index_url == "https://pypi.org/simple/"
    assert s.label == "0755"
    assert s.abi == "cp39"
    assert s.build_timeout == 60.0
    assert s.work_dir == tmp_path / "work"
    assert s.heartbeat_interval == 2.5
    assert s.reply_timeout == 7.0
    assert s.upload_retries == 0
    assert s.log_level == "DEBUG"


def test_literal_yaml_values_and_missing_keys(tmp_path):
    path = write(tmp_path, "BUILD_TIMEOUT: 120\nLABEL: pi4-a\nUPLOAD_RETRIES: 5\n")
    s = load_settings(path, env={})
    assert (s.build_timeout, s.label, s.upload_retries) == (120.0, "pi4-a", 5)
    assert s.heartbeat_interval == 5.0  # left out: the built-in default
    assert load_settings(write(tmp_path, ""), env={}).reply_timeout == 30.0


def test_label_argument_beats_file_and_environment(tmp_path):
    path = write(tmp_path, "LABEL: ${PIW_BUILDER_LABEL:from-file}\n")
    assert load_settings(path, env={"PIW_BUILDER_LABEL": "from-env"}, label="cli").label == "cli"


def test_config_file_from_the_environment(tmp_path):
    path = write(tmp_path, "LABEL: chosen\n")
    assert load_settings(env={"PIW_BUILDER_CONFIG": str(path)}).label == "chosen"


def test_away_from_a_checkout_the_packaged_file_applies(monkeypatch, tmp_path):
    """From a directory without config/builder.yaml (an installed Pi), the packaged file is
    read, and the environment still sets every setting."""
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={"PIW_BUILD_TIMEOUT": "99"})
    assert s.build_timeout == 99.0 and s.index_url == "http://127.0.0.1:8700/simple/"
    (tmp_path / "config").mkdir()
    write(tmp_path / "config", "BUILD_TIMEOUT: 7\n")  # ./config/builder.yaml beats it
    assert load_settings(env={}).build_timeout == 7.0
    assert load_settings(env={}).heartbeat_interval == 5.0  # the rest from the defaults


def test_the_defaults_are_the_packaged_file():
    """One list: DEFAULTS is read from the packaged builder.yaml, which is config/'s."""
    assert DEFAULTS == yaml.safe_load((REPO / "config" / "builder.yaml").read_text())
    assert set(DEFAULTS) == set(config._PARSERS)


def test_substitute():
    env = {"A": "x", "EMPTY": ""}
    assert substitute("${A:default}", env) == "x"
    assert substitute("${B:default}", env) == "default"
    assert substitute("${B:amqp://u:p@h:5672/}", env) == "amqp://u:p@h:5672/"
    assert substitute("${EMPTY:default}", env) == ""
    assert substitute("${B:}", env) == ""
    assert substitute("${A}-${B:b}/$A", env) == "x-b/$A"
    with pytest.raises(ConfigError, match="B is not set and has no default"):
        substitute("${B}", env)


def test_substitution_cannot_inject_yaml_structure(tmp_path):
    path = write(tmp_path, "LABEL: ${L:x}\n")
    assert load_settings(path, env={"L": "{a: 1, ABI: cp27}"}).label == "{a: 1, ABI: cp27}"
    with pytest.raises(ConfigError, match="LABEL must be 1-100 printable characters"):
        load_settings(path, env={"L": "x\nABI: cp27"})


@pytest.mark.parametrize("text, message", [
    ("BUILD_TIMEOUT: abc", "BUILD_TIMEOUT must be a positive number of seconds"),
    ("BUILD_TIMEOUT: 0", "BUILD_TIMEOUT must be a positive number of seconds"),
    ("HEARTBEAT_INTERVAL: -5", "HEARTBEAT_INTERVAL must be a positive number of seconds"),
    ("REPLY_TIMEOUT: .inf", "REPLY_TIMEOUT must be a positive number of seconds"),
    ("REPLY_TIMEOUT: true", "REPLY_TIMEOUT must be a positive number of seconds"),
    ("UPLOAD_RETRIES: -1", "UPLOAD_RETRIES must be a whole number"),
    ("UPLOAD_RETRIES: 1.5", "UPLOAD_RETRIES must be a whole number"),
    ("UPLOAD_RETRIES: yes", "UPLOAD_RETRIES must be a whole number"),
    ("ABI: cp3", "ABI not an ABI tag like cp311"),
    ("AMQP_URI: http://127.0.0.1:5672/", "AMQP_URI must be a amqp/amqps/pyamqp URL"),
    ("INDEX_URL: ftp://example.org/simple/", "INDEX_URL must be a http/https URL"),
    ("INDEX_URL: /srv/simple", "INDEX_URL must be a http/https URL"),
    ("LABEL: [a, b]", "LABEL must be a string"),
    ("LABEL: " + "x" * 101, "LABEL must be 1-100 printable characters"),
    ("LOG_LEVEL: LOUD", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR"),
    ("PYTHON: /nonexistent/python3", "PYTHON no executable '/nonexistent/python3'"),
    ("PREINSTALLED: /nonexistent/list.txt", "PREINSTALLED cannot read /nonexistent/list.txt"),
    ("LABLE: typo", "unknown setting\\(s\\) LABLE"),
    ("- a list", "must hold a mapping of settings, not list"),
    ("LABEL: [unclosed", "not valid YAML"),
    ("LABEL: ${NOPE}", "LABEL environment variable NOPE is not set"),
    ("CA_FILE: /nonexistent/ca.crt", "CA_FILE no such file: /nonexistent/ca.crt"),
    ("CA_FILE: /etc/hostname", "CA_FILE /etc/hostname holds no usable PEM CA certificate"),
    ("CA_FILE: /etc/ssl/certs/ca-certificates.crt",
     "CA_FILE is set but AMQP_URI is not amqps://"),
])
def test_bad_settings_are_one_line_naming_file_and_setting(tmp_path, text, message):
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(path, env={})
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_tls_settings_verify_the_ca_file_and_the_host_name(tmp_path):
    """amqps:// with CA_FILE verifies against that file, without it against the system's CAs;
    either way the host name is checked (py-amqp's own default for amqps:// does not)."""
    ca = "/etc/ssl/certs/ca-certificates.crt"
    path = write(tmp_path, f"AMQP_URI: amqps://pi:pw@master.example.org:5671/piw\nCA_FILE: {ca}\n")
    s = load_settings(path, env={})
    assert s.ca_file == Path(ca)
    assert tls_options(s) == {"ca_certs": ca, "cert_reqs": ssl.CERT_REQUIRED,
                              "server_hostname": "master.example.org"}
    s = load_settings(write(tmp_path, "AMQP_URI: amqps://pi:pw@10.0.0.1/piw\n"), env={})
    assert tls_options(s) == {"ca_certs": None, "cert_reqs": ssl.CERT_REQUIRED,
                              "server_hostname": "10.0.0.1"}
    assert tls_options(load_settings(write(tmp_path, "LABEL: x\n"), env={})) is None


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file .*absent.yaml"):
        load_settings(tmp_path / "absent.yaml", env={})


def test_parse_preinstalled():
    text = "# image packages\nlibc6\n\n  libssl3:armhf  # with an arch\n#libgone\nzlib1g\n"
    assert parse_preinstalled(text) == ("libc6", "libssl3:armhf", "zlib1g")
    assert parse_preinstalled("") == ()


def test_preinstalled_file_is_read(tmp_path):
    listing = tmp_path / "image.txt"
    listing.write_text("libc6\n# comment\nlibgcc-s1\n")
    path = write(tmp_path, f"PREINSTALLED: {listing}\n")
    assert load_settings(path, env={}).preinstalled == ("libc6", "libgcc-s1")


def test_probe_this_interpreter():
    found = probe_python(sys.executable)
    assert found.abi == sysinfo.abi_tag()
    assert found.platform == sysinfo.platform_tag()
    assert found.version == sys.version.split()[0]


@pytest.mark.skipif(not PYTHON312.exists(), reason="no python3.12 at " + str(PYTHON312))
def test_probe_another_interpreter_gives_its_abi():
    found = probe_python(str(PYTHON312))
    assert found.abi == "cp312"
    assert found.version.startswith("3.12.")


def test_probe_abi_override():
    assert probe_python(sys.executable, abi="cp39").abi == "cp39"


def test_probe_refusals(tmp_path):
    with pytest.raises(ConfigError, match="cannot run it"):
        probe_python(str(tmp_path / "no-python"))
    with pytest.raises(ConfigError, match="not a working Python 3"):
        probe_python("/bin/true")
    nopip = tmp_path / "python-without-pip"
    nopip.write_text(f"#!/bin/sh\nexec {sys.executable} -c "
                     f"\"$3\" 2>/dev/null | sed 's/\"pip\": true/\"pip\": false/'\n")
    nopip.chmod(0o755)
    with pytest.raises(ConfigError, match="has no pip"):
        probe_python(str(nopip))


def test_cli_bad_config_exits_2_with_one_line(tmp_path, capsys):
    path = write(tmp_path, "BUILD_TIMEOUT: soon\n")
    assert main(["-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("piw-builder: ") and err.count("\n") == 1
    assert "BUILD_TIMEOUT must be a positive number of seconds" in err
