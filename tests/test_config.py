"""The master's config loader: nameko's ${ENV:default} substitution, without changing how
anything else in the process reads YAML (the builder's config is read by yaml.safe_load)."""

import os

import pytest
import yaml

from piw_services.config import defaults, load_config


@pytest.fixture(autouse=True)
def fresh_defaults():
    """The packaged defaults are read once per process, with that process's environment:
    these tests change the environment, so they read them afresh and leave no trace."""
    defaults.cache_clear()
    yield
    defaults.cache_clear()


def test_env_substitution_and_typed_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("PIW_AMQP_URI", "pyamqp://op:pw@broker:5672/")
    monkeypatch.delenv("PIW_HOLD_SECONDS", raising=False)
    config = load_config()
    assert config["AMQP_URI"] == "pyamqp://op:pw@broker:5672/"
    assert config["HOLD_SECONDS"] == 10 and config["ADMIN_WAIT"] == 30
    # settings that are text stay text when unset (None once put "None/simple/..." in links)
    for key, variable in (("BASE_URL", "PIW_BASE_URL"), ("STATS_SALT", "PIW_STATS_SALT")):
        monkeypatch.delenv(variable, raising=False)
        defaults.cache_clear()
        assert load_config()[key] == "", key
    path = tmp_path / "c.yaml"
    path.write_text("WWW: ${PIW_TEST_WWW:/srv/www}\nSTATS_SALT: !raw_env_var ${PIW_S:}\n")
    monkeypatch.setenv("PIW_TEST_WWW", "/elsewhere")
    assert load_config(path)["WWW"] == "/elsewhere"


def test_other_yaml_readers_in_the_process_are_untouched():
    load_config()
    assert yaml.safe_load("INDEX_URL: ${PIW_BUILDER_INDEX_URL:https://x/}") == {
        "INDEX_URL": "${PIW_BUILDER_INDEX_URL:https://x/}"}


def test_one_list_of_defaults(monkeypatch, tmp_path):
    """The packaged master.yaml is config/master.yaml, and what a deployment's file leaves out
    comes from it (with the environment), wherever the command runs."""
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    assert (repo / "piw_services" / "master.yaml").read_text() == \
        (repo / "config" / "master.yaml").read_text()
    monkeypatch.chdir(tmp_path)  # no ./config/master.yaml here: the packaged one
    monkeypatch.delenv("PIW_CONFIG", raising=False)
    assert load_config() == defaults()
    own = tmp_path / "own.yaml"
    own.write_text("HOLD_SECONDS: 5\n")
    config = load_config(own)
    assert config["HOLD_SECONDS"] == 5 and config["UPSTREAM"] == defaults()["UPSTREAM"]
    assert "LOGGING" not in config  # the file's own choice: plain logging


def test_a_missing_or_broken_config_is_one_clear_line(tmp_path):
    with pytest.raises(SystemExit, match=r"cannot read config file .*absent.yaml: No such"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("A: [1,\n")
    with pytest.raises(SystemExit, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(SystemExit, match="must hold a mapping, not list"):
        load_config(bad)


def test_no_packaged_default_is_none(monkeypatch):
    """An empty default read by nameko's plain ${VAR:} is YAML's null, which with_defaults
    would hand on as None (a BASE_URL of 'None' once put pages' links under /None/): such
    settings are !raw_env_var, so empty stays ''."""
    for key in [k for k in os.environ if k.startswith("PIW_")]:
        monkeypatch.delenv(key)
    assert [key for key, value in defaults().items() if value is None] == []
