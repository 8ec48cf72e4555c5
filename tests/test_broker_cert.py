"""piw-broker-cert: the CA and the broker's certificate that builders verify (issue 18)."""

import os
import ssl
import subprocess

import pytest

from piw_services.cli.broker_cert import CertError, main, subject_alt_names


def verify(directory, host):
    """What a builder does: verify broker.crt against ca.crt for *host* (openssl, since
    Python's ssl verifies only during a handshake)."""
    run = subprocess.run(["openssl", "verify", "-CAfile", str(directory / "ca.crt"),
                          "-verify_hostname" if not host[0].isdigit() else "-verify_ip", host,
                          str(directory / "broker.crt")], capture_output=True, text=True)
    return run.returncode == 0


def test_makes_a_ca_and_a_certificate_for_the_names_and_keeps_the_ca(tmp_path, capsys):
    d = tmp_path / "tls"
    assert main(["--dir", str(d), "--name", "master.example.org", "--name", "192.0.2.7"]) == 0
    out = capsys.readouterr().out
    assert f"ssl_options.keyfile = {d / 'broker.key'}" in out
    assert verify(d, "master.example.org") and verify(d, "192.0.2.7")
    assert not verify(d, "other.example.org") and not verify(d, "192.0.2.8")
    assert oct(d.stat().st_mode & 0o777) == "0o700"
    for key in ("ca.key", "broker.key"):
        assert oct((d / key).stat().st_mode & 0o777) == "0o600"
    ssl.create_default_context(cafile=str(d / "ca.crt"))  # a CA file builders can load

    ca, cert = (d / "ca.crt").read_bytes(), (d / "broker.crt").read_bytes()
    assert main(["--dir", str(d), "--name", "master.example.org"]) == 0  # nothing to do
    assert ((d / "ca.crt").read_bytes(), (d / "broker.crt").read_bytes()) == (ca, cert)
    assert main(["--dir", str(d), "--name", "new.example.org", "--renew"]) == 0
    assert (d / "ca.crt").read_bytes() == ca and (d / "broker.crt").read_bytes() != cert
    assert verify(d, "new.example.org") and not verify(d, "master.example.org")
    assert main(["--dir", str(d), "--name", "new.example.org", "--new-ca"]) == 0
    assert (d / "ca.crt").read_bytes() != ca and verify(d, "new.example.org")


@pytest.mark.parametrize("name", ["", "a b", "x,DNS:evil.example", "a/b"])
def test_a_name_that_would_change_the_certificate_is_refused(name, tmp_path, capsys):
    with pytest.raises(CertError, match="not a host name or address"):
        subject_alt_names([name])
    assert main(["--dir", str(tmp_path / "t"), "--name", name]) == 1
    assert "piw-broker-cert: not a host name or address" in capsys.readouterr().err


def test_the_process_umask_is_left_as_it_was(tmp_path):
    """main() makes its keys under umask 077 and then restores the caller's: run in-process,
    it must not make every later file of the process private."""
    before = os.umask(0o022)
    try:
        assert main(["--dir", str(tmp_path / "tls"), "--name", "localhost"]) == 0
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)
