import json

import pytest

from piw_services.useragent import FIELDS, MAX_FIELD, parse_user_agent

PIP = (
    'pip/23.0.1 {"ci":null,"cpu":"armv7l","distro":{"id":"bookworm","libc":{"lib":"glibc",'
    '"version":"2.36"},"name":"Raspbian GNU/Linux","version":"12"},"implementation":'
    '{"name":"CPython","version":"3.11.2"},"installer":{"name":"pip","version":"23.0.1"},'
    '"openssl_version":"OpenSSL 3.0.11 19 Sep 2023","python":"3.11.2","rustc_version":null,'
    '"setuptools_version":"66.1.1","system":{"name":"Linux","release":"6.1.0-rpi7-rpi-v7"}}'
)
UV = (
    'uv/0.4.18 {"installer":{"name":"uv","version":"0.4.18"},"python":"3.12.6",'
    '"implementation":{"name":"CPython","version":"3.12.6"},"distro":{"name":"Debian GNU/Linux",'
    '"version":"12","id":"bookworm","libc":{"lib":"glibc","version":"2.36"}},"system":'
    '{"name":"Linux","release":"6.6.31+rpt-rpi-v8"},"cpu":"aarch64","openssl_version":null,'
    '"setuptools_version":null,"rustc_version":null,"ci":null}'
)


def test_pip():
    assert parse_user_agent(PIP) == {
        "installer_name": "pip", "installer_version": "23.0.1",
        "python_version": "3.11.2",
        "implementation_name": "CPython", "implementation_version": "3.11.2",
        "distro_name": "Raspbian GNU/Linux", "distro_version": "12", "distro_id": "bookworm",
        "system_name": "Linux", "system_release": "6.1.0-rpi7-rpi-v7",
        "arch": "armv7l",
    }


def test_uv():
    fields = parse_user_agent(UV)
    assert fields["installer_name"] == "uv"
    assert fields["installer_version"] == "0.4.18"
    assert fields["arch"] == "aarch64"
    assert fields["distro_id"] == "bookworm"
    assert fields["python_version"] == "3.12.6"


@pytest.mark.parametrize("header", [None, "", "   ", "/nothing", "(compatible)", "{}", 42])
def test_nothing_to_read(header):
    assert parse_user_agent(header) == dict.fromkeys(FIELDS)


@pytest.mark.parametrize("header, name, version", [
    ("curl/8.5.0", "curl", "8.5.0"),
    ("Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0", "Mozilla", "5.0"),
    ("python-requests/2.31.0", "python-requests", "2.31.0"),
    ("Wget", "Wget", None),
    ("pip/1.5.6 CPython/2.7.3 Linux/3.2.0", "pip", "1.5.6"),  # before pip 6: no JSON
])
def test_plain_agents(header, name, version):
    fields = parse_user_agent(header)
    assert (fields["installer_name"], fields["installer_version"]) == (name, version)
    assert all(fields[f] is None for f in FIELDS if not f.startswith("installer_"))


@pytest.mark.parametrize("tail", [
    "{", '{"python": "3.11"', "{not json}", '{"python": 3.11}x', "{" * 100_000,
    "[" * 5000 + "]" * 5000, '{"a": ' * 3000 + "1" + "}" * 3000,
])
def test_malformed_json_keeps_the_product(tail):
    fields = parse_user_agent("pip/24.0 " + tail)
    assert fields["installer_name"] == "pip"
    assert fields["installer_version"] == "24.0"
    assert fields["python_version"] is None


@pytest.mark.parametrize("data", [
    [], "string", 3, None,
    {"installer": "pip", "python": ["3"], "distro": {"name": {"x": 1}}, "cpu": True},
    {"implementation": [], "system": None, "distro": "x"},
])
def test_json_of_the_wrong_shape(data):
    fields = parse_user_agent("pip/24.0 " + json.dumps(data))
    assert fields["installer_name"] == "pip"
    assert all(v is None or isinstance(v, str) for v in fields.values())
    assert fields["python_version"] is None
    assert fields["arch"] is None
    assert fields["distro_name"] is None


def test_huge_header_is_bounded():
    data = {"python": "3" * 1_000_000, "cpu": "armv7l\x00\n\x1b[31m", "installer":
            {"name": "pip", "version": "x" * 500}}
    fields = parse_user_agent("pip/24.0 " + json.dumps(data))
    # the JSON is cut at MAX_AGENT, so it no longer parses: the product token remains
    assert fields["installer_name"] == "pip"
    small = {"cpu": "armv7l\x00\n\x1b[31m", "python": "3" * 1000}
    fields = parse_user_agent("pip/24.0 " + json.dumps(small))
    assert fields["arch"] == "armv7l[31m"
    assert len(fields["python_version"]) == MAX_FIELD
    fields = parse_user_agent("x" * 1_000_000)
    assert len(fields["installer_name"]) == MAX_FIELD


def test_numbers_become_text_and_empty_strings_none():
    fields = parse_user_agent('uv/0.5 {"python": 3.12, "cpu": "", "distro": {"version": 12}}')
    assert fields["python_version"] == "3.12"
    assert fields["distro_version"] == "12"
    assert fields["arch"] is None


def test_other_products_json_is_not_trusted():
    fields = parse_user_agent('evil/1.0 {"python": "3.11", "cpu": "armv7l"}')
    assert fields["installer_name"] == "evil"
    assert fields["python_version"] is None
