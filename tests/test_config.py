"""The master's config loader: nameko's ${ENV:default} substitution, without changing how
anything else in the process reads YAML (the builder's config is read by yaml.safe_load)."""

import yaml

from piw_services.config import load_config


def test_env_substitution_and_typed_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("PIW_AMQP_URI", "pyamqp://op:pw@broker:5672/")
    monkeypatch.delenv("PIW_HOLD_SECONDS", raising=False)
    config = load_config()
    assert config["AMQP_URI"] == "pyamqp://op:pw@broker:5672/"
    assert config["HOLD_SECONDS"] == 300 and config["ADMIN_WAIT"] == 30
    path = tmp_path / "c.yaml"
    path.write_text("WWW: ${PIW_TEST_WWW:/srv/www}\nSTATS_SALT: !raw_env_var ${PIW_S:}\n")
    monkeypatch.setenv("PIW_TEST_WWW", "/elsewhere")
    assert load_config(path)["WWW"] == "/elsewhere"


def test_other_yaml_readers_in_the_process_are_untouched():
    load_config()
    assert yaml.safe_load("INDEX_URL: ${PIW_BUILDER_INDEX_URL:https://x/}") == {
        "INDEX_URL": "${PIW_BUILDER_INDEX_URL:https://x/}"}
