"""piw_services.settings: one parser per setting, the packaged defaults, clear errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from piw_services.settings import SettingError, Settings, SettingsProvider


def test_the_packaged_defaults_are_valid_and_typed():
    settings = Settings.from_config({})
    assert settings.hold_seconds == 10.0 and settings.poll_min_interval == 1.0
    assert isinstance(settings.queue_window, int)
    assert settings.www == Path("var/www") and settings.base_url == ""


def test_values_are_converted_once():
    settings = Settings.from_config({"HOLD_SECONDS": "2.5", "QUEUE_WINDOW": "20",
                                     "BASE_URL": "https://pi.example.org/", "WWW": "/srv/www"})
    assert settings.hold_seconds == 2.5 and settings.queue_window == 20
    assert settings.base_url == "https://pi.example.org" and settings.www == Path("/srv/www")


def test_the_environment_reaches_a_setting(monkeypatch):
    from piw_services.config import load_config

    monkeypatch.setenv("PIW_QUEUE_WINDOW", "7")
    assert Settings.from_config(load_config()).queue_window == 7


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("HOLD_SECONDS", "abc", "a number of seconds (0 or more)"),
    ("HOLD_SECONDS", -1, "a number of seconds (0 or more)"),
    ("POLL_INTERVAL", 0, "a number of seconds above 0"),
    ("POLL_INTERVAL", "nan", "a number of seconds above 0"),
    ("UPLOAD_MAX_AGE", True, "a number of seconds above 0"),
    ("QUEUE_WINDOW", 1.5, "a whole number, 1 or more"),
    ("max_workers", 0, "a whole number, 1 or more"),
    ("UPSTREAM", "pypi.org", "an http:// or https:// URL"),
    ("BASE_URL", "ftp://x", "an http:// or https:// URL, or empty"),
    ("DB_URL", "", "a non-empty value"),
    ("WWW", ["a"], "a directory path"),
])
def test_a_bad_value_is_named_with_its_variable(key, value, expected):
    with pytest.raises(SettingError) as err:
        Settings.from_config({key: value})
    env = "PIW_MAX_WORKERS" if key == "max_workers" else f"PIW_{key}"
    assert f"{key} (${env}) is {str(value)!r}: expected {expected}" in str(err.value)


def test_every_bad_setting_is_named_at_once():
    with pytest.raises(SettingError, match="HOLD_SECONDS.*QUEUE_WINDOW"):
        Settings.from_config({"HOLD_SECONDS": "x", "QUEUE_WINDOW": "y"})


def test_a_service_with_a_bad_setting_does_not_start():
    class Container:
        config = {"INDEX_ROOT_INTERVAL": "soon"}

    provider = SettingsProvider()
    provider.container = Container()
    with pytest.raises(SettingError, match="INDEX_ROOT_INTERVAL"):
        provider.setup()


def test_piw_master_refuses_a_bad_setting_before_starting_anything(tmp_path):
    proc = subprocess.run([str(Path(sys.executable).parent / "piw-master")], cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "PIW_HOLD_SECONDS": "five minutes"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "HOLD_SECONDS ($PIW_HOLD_SECONDS) is 'five minutes'" in proc.stderr
